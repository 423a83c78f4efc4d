//! The mirror: consumes a relay's JetStream stream and appends every event
//! into a local store exactly as the source wrote it
//! ([`Store::append_replicated`]): same positions, versions, ids, types,
//! data, metadata, commit times and atomic appends. It resumes from its own
//! store's end, so it is restartable and idempotent, and it records which
//! source it mirrors in [`MIRROR_OF_FILE_NAME`], refusing any other.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::Context;
use futures_util::{FutureExt, StreamExt};

use annals::{ReplicatedEvent, Store, StoreId};

use crate::connect::{back_off, connect, log};
use crate::error::{Error, Result};
use crate::message::{event_from_message, parse_store_id};
use crate::relay::blocking;
use crate::stream_config::METADATA_STORE_ID;

/// File in a mirror's store directory naming the store it mirrors (its id,
/// 32 hex digits, and a newline).
pub const MIRROR_OF_FILE_NAME: &str = "MIRROR_OF";

/// Longest time a mirror's appends stay unflushed while events stream in.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A stream this long without a message is quiet: the mirror flushes.
const QUIET: Duration = Duration::from_millis(10);

/// How a mirror runs.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The JetStream stream a relay publishes into.
    pub stream: String,
    /// Most events appended between two flushes of the store.
    pub batch_events: usize,
    /// Stop once the mirror's store reaches this end (`None`: for ever).
    pub until: Option<u64>,
    /// Longest wait between attempts while the server is unreachable.
    pub backoff_max: Duration,
    /// Whether to log each session's start and every failure (stderr).
    pub log: bool,
}

impl MirrorOptions {
    /// Mirrors stream `stream` on `nats_url` with default settings.
    pub fn new(nats_url: impl Into<String>, stream: impl Into<String>) -> Self {
        MirrorOptions {
            nats_url: nats_url.into(),
            stream: stream.into(),
            batch_events: 4096,
            until: None,
            backoff_max: Duration::from_secs(2),
            log: true,
        }
    }
}

/// Runs a mirror into `store` (open writable; its directory `dir`) until
/// [`MirrorOptions::until`] is reached, or for ever. Appends are made
/// durable with [`Store::flush`] at most 50 ms after they are made, and as
/// soon as the stream goes quiet (10 ms without a message), so a store
/// opened with [`Durability::Buffered`](annals::Durability::Buffered) costs
/// one fsync per 50 ms while events stream in. A restart after a machine
/// crash resumes from what was flushed. Returns the store's end.
pub async fn mirror(store: Store, dir: &Path, options: MirrorOptions) -> Result<u64> {
    let js = connect(&options.nats_url, 1).await?;
    let mut backoff = Duration::from_millis(50);
    loop {
        let before = store.position_end();
        match session(&store, dir, &js, &options).await {
            Ok(end) => return Ok(end),
            Err(e) if e.is_transient() => {
                if store.position_end() > before {
                    backoff = Duration::from_millis(50);
                }
                if options.log {
                    log("mirror", format_args!("{e}; starting again in {backoff:?}"));
                }
                back_off(&mut backoff, options.backoff_max).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn session(store: &Store, dir: &Path, js: &Context, options: &MirrorOptions) -> Result<u64> {
    let until = options.until.unwrap_or(u64::MAX);
    if store.position_end() >= until {
        return Ok(store.position_end());
    }
    let mut stream = js
        .get_stream(&options.stream)
        .await
        .map_err(|e| Error::nats(&format!("JetStream stream {}", options.stream), e))?;
    let source = source_of(&mut stream).await?;
    let Some(source) = source else {
        // Nothing published yet, and no id in the stream's metadata.
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Err(Error::Nats(format!(
            "JetStream stream {} is still empty",
            options.stream
        )));
    };
    claim(store, dir, source).await?;
    let start = start_sequence(store, &mut stream).await?;
    if options.log {
        log(
            "mirror",
            format_args!(
                "JetStream stream {} (store {source}) -> {}: appending from position {} (stream sequence {start})",
                options.stream,
                dir.display(),
                store.position_end()
            ),
        );
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..OrderedConfig::default()
        })
        .await
        .map_err(|e| Error::nats("create consumer", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::nats("consume", e))?;
    let mut next = store.position_end();
    let mut group: Vec<ReplicatedEvent> = Vec::new();
    // Appends become durable by a flush at most FLUSH_EVERY after they
    // were made, and as soon as the stream goes quiet: one fsync for many
    // batches while events stream in.
    let mut unflushed = false;
    let mut flushed_at = Instant::now();
    loop {
        let mut appends: Vec<Vec<ReplicatedEvent>> = Vec::new();
        let mut events = 0usize;
        // Block for one message, then take what is already there.
        let mut item = if unflushed {
            match tokio::time::timeout(QUIET, messages.next()).await {
                Ok(item) => item,
                Err(_) => {
                    blocking(store, |s| s.flush()).await?;
                    unflushed = false;
                    flushed_at = Instant::now();
                    continue;
                }
            }
        } else {
            messages.next().await
        };
        loop {
            let message = match item {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(Error::nats("consume", e)),
                None => return Err(Error::Nats("the consumer ended".into())),
            };
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let (id, event) =
                event_from_message(sequence, message.headers.as_ref(), message.payload.clone())?;
            if id != source {
                return Err(Error::Refused(format!(
                    "JetStream message {sequence} is from store {id}, this mirror follows store {source}"
                )));
            }
            if event.event.position != next {
                return Err(Error::Refused(format!(
                    "JetStream message {sequence} holds position {}, the mirror needs {next}",
                    event.event.position
                )));
            }
            next += 1;
            events += 1;
            let last = event.append_last;
            group.push(event);
            if last {
                appends.push(std::mem::take(&mut group));
                if next >= until {
                    break;
                }
            }
            if events >= options.batch_events.max(1) {
                break;
            }
            match messages.next().now_or_never() {
                Some(more) => item = more,
                None => break,
            }
        }
        if !appends.is_empty() {
            let flush = flushed_at.elapsed() >= FLUSH_EVERY || next >= until;
            let end = blocking(store, move |s| {
                for append in appends {
                    s.append_replicated(append)?;
                }
                if flush {
                    s.flush()?;
                }
                Ok(s.position_end())
            })
            .await?;
            unflushed = !flush;
            if flush {
                flushed_at = Instant::now();
            }
            if end >= until {
                return Ok(end);
            }
        }
    }
}

/// The source store's id: from the stream's metadata (set by the relay
/// that created it), else from its first message; `None` while it has
/// neither.
async fn source_of(stream: &mut Stream) -> Result<Option<StoreId>> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| Error::nats("stream info", e))?;
    if let Some(text) = info.config.metadata.get(METADATA_STORE_ID) {
        return parse_store_id(text).map(Some).ok_or_else(|| {
            Error::Refused(format!("the stream's {METADATA_STORE_ID} is {text:?}"))
        });
    }
    if info.state.messages == 0 {
        return Ok(None);
    }
    let first = info.state.first_sequence;
    let message = stream
        .get_raw_message(first)
        .await
        .map_err(|e| Error::nats("read the stream's first message", e))?;
    let (id, _) = event_from_message(first, Some(&message.headers), message.payload)?;
    Ok(Some(id))
}

/// The stream sequence that holds the mirror's next position. Checks that
/// the message before it holds the mirror's last event (the same history).
async fn start_sequence(store: &Store, stream: &mut Stream) -> Result<u64> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| Error::nats("stream info", e))?;
    let next = store.position_end();
    if info.state.messages == 0 {
        return Ok(info.state.last_sequence + 1);
    }
    let first_sequence = info.state.first_sequence;
    let first = read(stream, first_sequence).await?;
    let first_position = first.event.position;
    if next < first_position {
        return Err(Error::Refused(format!(
            "the JetStream stream starts at position {first_position}; this mirror needs position {next} (a mirror needs the feed from its start)"
        )));
    }
    let start = first_sequence + (next - first_position);
    if next > first_position && start - 1 <= info.state.last_sequence {
        let before = read(stream, start - 1).await?;
        let mine = blocking(store, move |s| s.read_all_replicated(next - 1, 1)).await?;
        if mine.first() != Some(&before) {
            return Err(Error::Refused(format!(
                "this mirror's position {} differs from the JetStream stream's: it mirrors another history",
                next - 1
            )));
        }
    }
    Ok(start)
}

async fn read(stream: &Stream, sequence: u64) -> Result<ReplicatedEvent> {
    let message = stream
        .get_raw_message(sequence)
        .await
        .map_err(|e| Error::nats(&format!("read stream message {sequence}"), e))?;
    Ok(event_from_message(sequence, Some(&message.headers), message.payload)?.1)
}

/// Records that the store mirrors `source`, or refuses a store that
/// mirrors another one or holds events of its own.
async fn claim(store: &Store, dir: &Path, source: StoreId) -> Result<()> {
    let path = dir.join(MIRROR_OF_FILE_NAME);
    let io = |what: &'static str, path: &PathBuf| {
        let path = path.display().to_string();
        move |source| Error::Io { what, path, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match parse_store_id(text.trim_end()) {
            Some(id) if id == source => Ok(()),
            Some(id) => Err(Error::Refused(format!(
                "{} mirrors store {id}, not store {source}",
                dir.display()
            ))),
            None => Err(Error::Refused(format!(
                "{} is not a store id: {text:?}",
                path.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if store.id() == Some(source) {
                return Err(Error::Refused("a store cannot mirror itself".into()));
            }
            if store.position_end() > 0 {
                return Err(Error::Refused(format!(
                    "{} holds events of its own: a mirror starts from an empty store",
                    dir.display()
                )));
            }
            let tmp = dir.join(format!("{MIRROR_OF_FILE_NAME}.tmp"));
            std::fs::write(&tmp, format!("{source}\n")).map_err(io("write", &tmp))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync", &dir.to_path_buf()))?;
            Ok(())
        }
        Err(e) => Err(io("read", &path)(e)),
    }
}
