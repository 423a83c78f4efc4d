//! Replay streams: one aggregate's events, or all events of an aggregate
//! type, pushed into a cqrs-es [`ReplayStream`] chunk by chunk.
//!
//! A task on the runtime reads a chunk on the blocking pool, then pushes
//! its events into the stream's bounded channel (waiting while the
//! consumer is behind), and reads the next. An error is pushed as the last
//! item; a consumer that drops the stream ends the task at its next push.

use std::ops::ControlFlow;

use annals::{Direction, Store};
use cqrs_es::persist::{PersistenceError, ReplayFeed, ReplayStream, SerializedEvent};

use crate::blocking;
use crate::category;
use crate::encoding::{self, Stored};
use crate::error::Error;

/// Events read per blocking call.
const CHUNK_EVENTS: usize = 256;

/// What a replay reads.
#[derive(Clone)]
pub enum Source {
    /// One stream, from version 0.
    Stream(String),
    /// The aggregate type's category, positions below `end` (the log's end
    /// when the replay was asked for).
    Category {
        /// Global position the replay stops at (exclusive).
        end: u64,
    },
}

/// Starts a replay of `source`, whose events are of `aggregate_type`.
/// Needs a Tokio runtime to run the task on ([`Error::Blocking`] without
/// one).
pub fn start(
    store: Store,
    aggregate_type: &'static str,
    source: Source,
    channel_events: usize,
) -> Result<ReplayStream, Error> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::Blocking("a replay stream needs a Tokio runtime".into()))?;
    let (feed, stream) = ReplayStream::new(channel_events.max(1));
    runtime.spawn(feed_all(store, aggregate_type, source, feed));
    Ok(stream)
}

async fn feed_all(
    store: Store,
    aggregate_type: &'static str,
    source: Source,
    mut feed: ReplayFeed,
) {
    // The next version (a stream) or position (a category) to read.
    let mut next = Some(0u64);
    while let Some(from) = next {
        let (reader, source) = (store.clone(), source.clone());
        let chunk = blocking::run(move || read_chunk(&reader, aggregate_type, &source, from));
        let events = match chunk.await {
            Ok((events, resume)) => {
                next = resume;
                events
            }
            Err(error) => {
                // The last item; the consumer may be gone already.
                let _ = feed.push(Err(PersistenceError::from(error))).await;
                return;
            }
        };
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// One chunk from `next` on, and where the next chunk starts (`None`: the
/// replay is complete).
fn read_chunk(
    store: &Store,
    aggregate_type: &str,
    source: &Source,
    next: u64,
) -> Result<(Vec<SerializedEvent>, Option<u64>), Error> {
    match source {
        Source::Stream(stream) => {
            let mut events = Vec::new();
            let mut failure = None;
            let visited = store.read_stream_with(
                stream,
                next,
                Direction::Forward,
                CHUNK_EVENTS,
                |event| match encoding::decode_event(aggregate_type, Stored::from(&event)) {
                    Ok(event) => {
                        events.push(event);
                        ControlFlow::Continue(())
                    }
                    Err(error) => {
                        failure = Some(error);
                        ControlFlow::Break(())
                    }
                },
            )?;
            if let Some(error) = failure {
                return Err(error);
            }
            let resume = (visited == CHUNK_EVENTS).then(|| next + visited as u64);
            Ok((events, resume))
        }
        &Source::Category { end } => {
            let (recorded, resume) =
                category::read_category(store, aggregate_type, next, end, CHUNK_EVENTS)?;
            let events = recorded
                .iter()
                .map(|event| encoding::decode_event(aggregate_type, Stored::from(event)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((events, (resume < end).then_some(resume)))
        }
    }
}
