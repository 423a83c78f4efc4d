//! The relay: publishes a store's global feed to a JetStream stream exactly
//! once, in position order, with no state of its own.
//!
//! Why exactly once holds: every message is published with
//! `Nats-Expected-Last-Sequence` = the stream sequence of the message
//! before it, so JetStream stores it only right after that message. A
//! session starts by reading the stream's last message (its position
//! header) and goes on from the next position, expecting that message's
//! sequence; every stored message therefore sits right after the position
//! before it. Whatever fails (a lost acknowledgement, a server restart, a
//! second relay racing this one), the session ends and the next one learns
//! the state afresh from JetStream. `Nats-Msg-Id` (store id and position)
//! is set too, so a late copy of a publish inside JetStream's duplicate
//! window is answered as a duplicate; correctness does not rest on it.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;

use annals::{ReplicatedEvent, Store, StoreId};

use crate::connect::{back_off, connect, log};
use crate::encoding::subject_for;
use crate::error::{Error, Result};
use crate::message::{event_from_message, headers};
use crate::stream_config::{self, StreamSettings};

/// How a relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The JetStream stream and its subjects.
    pub stream: StreamSettings,
    /// The first position to publish when the JetStream stream holds no
    /// event yet (default 0). Once it holds some, the relay resumes after
    /// the last one and this is ignored.
    pub from: Option<u64>,
    /// Most publishes awaiting their acknowledgement at once.
    pub acks_in_flight: usize,
    /// Most events read from the store at once.
    pub batch_events: usize,
    /// Stop once every position below this one is published and
    /// acknowledged (`None`: follow the store for ever).
    pub until: Option<u64>,
    /// Longest wait between attempts while the server is unreachable.
    pub backoff_max: Duration,
    /// Whether to log each session's start and every failure (stderr).
    pub log: bool,
}

impl RelayOptions {
    /// Relays to stream `stream` on `nats_url` with default settings.
    pub fn new(nats_url: impl Into<String>, stream: impl Into<String>) -> Self {
        RelayOptions {
            nats_url: nats_url.into(),
            stream: StreamSettings::new(stream),
            from: None,
            acks_in_flight: 256,
            batch_events: 1024,
            until: None,
            backoff_max: Duration::from_secs(2),
            log: true,
        }
    }
}

/// What a relay did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Messages this relay published and saw acknowledged.
    pub published: u64,
    /// Sessions started (1 + restarts after failures).
    pub sessions: u64,
}

/// Runs a relay from `store` (writable or read-only) until
/// [`RelayOptions::until`] is reached, or for ever. A server that is down
/// or restarting is retried with backoff, nothing skipped; a JetStream
/// stream that holds another store's events or positions this store does
/// not have is refused ([`Error::Refused`]) and nothing is published.
pub async fn relay(store: Store, options: RelayOptions) -> Result<RelayReport> {
    options.stream.check()?;
    let id = store.id().ok_or_else(|| {
        Error::Refused("the store has no identity yet: open it writable once first".into())
    })?;
    let js = connect(&options.nats_url, options.acks_in_flight).await?;
    let mut report = RelayReport::default();
    let mut backoff = Duration::from_millis(50);
    loop {
        report.sessions += 1;
        let published = report.published;
        match session(&store, id, &js, &options, &mut report).await {
            Ok(()) => return Ok(report),
            Err(e) if e.is_transient() => {
                if report.published > published {
                    backoff = Duration::from_millis(50);
                }
                if options.log {
                    log("relay", format_args!("{e}; starting again in {backoff:?}"));
                }
                back_off(&mut backoff, options.backoff_max).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A publish awaiting its acknowledgement.
struct InFlight {
    position: u64,
    sequence: u64,
    ack: PublishAckFuture,
}

/// One session: learn where JetStream is, then publish until `until` or
/// the first failure.
async fn session(
    store: &Store,
    id: StoreId,
    js: &Context,
    options: &RelayOptions,
    report: &mut RelayReport,
) -> Result<()> {
    let mut stream = stream_config::ensure(js, &options.stream, id).await?;
    let (mut sequence, mut position) = resume(store, id, &mut stream, options).await?;
    if options.log {
        log(
            "relay",
            format_args!(
                "store {id} -> JetStream stream {} ({}.>): publishing from position {position} (stream sequence {sequence})",
                options.stream.name, options.stream.subject_prefix
            ),
        );
    }
    let until = options.until.unwrap_or(u64::MAX);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    loop {
        if position >= until {
            settle_all(&mut in_flight, report).await?;
            return Ok(());
        }
        let want = options.batch_events.max(1).min((until - position) as usize);
        let batch = blocking(store, move |s| s.read_all_replicated(position, want)).await?;
        if batch.is_empty() {
            // Caught up: let the acknowledgements in, then wait for more.
            settle_all(&mut in_flight, report).await?;
            blocking(store, move |s| {
                s.wait_for_end(position, Duration::from_millis(200))
            })
            .await?;
            continue;
        }
        for event in batch {
            if in_flight.len() >= options.acks_in_flight.max(1) {
                if let Some(front) = in_flight.pop_front() {
                    settle(front, report).await?;
                }
            }
            let ack = publish(js, &options.stream.subject_prefix, id, &event, sequence).await?;
            sequence += 1;
            in_flight.push_back(InFlight {
                position,
                sequence,
                ack,
            });
            position += 1;
        }
    }
}

/// Sends one event's message, to be stored only right after `sequence`.
async fn publish(
    js: &Context,
    prefix: &str,
    id: StoreId,
    event: &ReplicatedEvent,
    sequence: u64,
) -> Result<PublishAckFuture> {
    let subject = subject_for(prefix, &event.event.stream);
    let message = PublishMessage::build()
        .payload(event.event.data.clone())
        .headers(headers(id, event))
        .expected_last_sequence(sequence);
    js.send_publish(subject, message).await.map_err(|e| {
        if e.kind() == PublishErrorKind::MaxPayloadExceeded {
            Error::Refused(format!(
                "the event at position {} does not fit in a NATS message ({e}): raise the server's max_payload",
                event.event.position
            ))
        } else {
            Error::nats(&format!("publish position {}", event.event.position), e)
        }
    })
}

/// Waits for one acknowledgement and checks it: stored, at the sequence
/// this session expects.
async fn settle(entry: InFlight, report: &mut RelayReport) -> Result<()> {
    let InFlight {
        position,
        sequence,
        ack,
    } = entry;
    let ack = ack.await.map_err(|e| match e.kind() {
        PublishErrorKind::WrongLastSequence => Error::Nats(format!(
            "position {position} refused: the stream's last message is not the one this session expected (an earlier publish was lost, or another relay is publishing)"
        )),
        _ => Error::nats(&format!("acknowledgement of position {position}"), e),
    })?;
    if ack.duplicate || ack.sequence != sequence {
        return Err(Error::Nats(format!(
            "position {position} was acknowledged as {} at sequence {} (expected a new message at {sequence})",
            if ack.duplicate { "a duplicate" } else { "stored" },
            ack.sequence
        )));
    }
    report.published += 1;
    Ok(())
}

async fn settle_all(in_flight: &mut VecDeque<InFlight>, report: &mut RelayReport) -> Result<()> {
    while let Some(front) = in_flight.pop_front() {
        settle(front, report).await?;
    }
    Ok(())
}

/// Where to go on: `(last stream sequence, next position)`. Refuses a
/// stream whose last event is another store's, or one this store does not
/// hold (a newer one after a restore from backup, another history).
async fn resume(
    store: &Store,
    id: StoreId,
    stream: &mut Stream,
    options: &RelayOptions,
) -> Result<(u64, u64)> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| Error::nats("stream info", e))?;
    let last = info.state.last_sequence;
    if info.state.messages == 0 {
        return Ok((last, options.from.unwrap_or(0)));
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(|e| Error::nats(&format!("read the stream's last message ({last})"), e))?;
    let (source, event) = event_from_message(last, Some(&message.headers), message.payload)?;
    let name = &options.stream.name;
    if source != id {
        return Err(Error::Refused(format!(
            "JetStream stream {name} holds events of store {source}, not of this store ({id})"
        )));
    }
    let position = event.event.position;
    let end = blocking(store, |s| s.refresh()).await?;
    let local = blocking(store, move |s| s.read_all_replicated(position, 1)).await?;
    match local.first() {
        Some(mine) if *mine == event => {}
        Some(_) => {
            return Err(Error::Refused(format!(
                "JetStream stream {name} holds, at position {position}, an event this store has otherwise: it holds another history"
            )))
        }
        None => {
            return Err(Error::Refused(format!(
                "JetStream stream {name} holds position {position}, but this store ends at {end}: never publishing into it (restored from an older backup?)"
            )))
        }
    }
    if let Some(from) = options.from.filter(|f| *f != position + 1) {
        if options.log {
            log(
                "relay",
                format_args!(
                    "--from {from} ignored: the stream already holds positions up to {position}"
                ),
            );
        }
    }
    Ok((last, position + 1))
}

/// Runs a blocking store call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    store: &Store,
    call: impl FnOnce(&Store) -> annals::Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| Error::Refused(format!("a store call did not finish: {e}")))?
        .map_err(Error::from)
}
