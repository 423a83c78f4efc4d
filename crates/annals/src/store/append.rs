//! Appending: one stream or several atomically, deletes, flush, and the
//! validation of what the caller gives (nothing invalid reaches the writer).

use std::sync::Arc;

use annals_segment::format::{self, Record};

use super::Store;
use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::{ExpectedVersion, WrongExpectedVersion};
use crate::write::{Answer, Outcome, StreamAppend, Work};
use crate::TOMBSTONE_TYPE;

/// What an append wrote to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream.
    pub stream: String,
    /// Version of the first event written.
    pub first_version: u64,
    /// Version of the last event written.
    pub last_version: u64,
    /// Global position of the first event written.
    pub first_position: u64,
    /// Global position of the last event written.
    pub last_position: u64,
    /// Whether this append was a retry of one already stored: nothing was
    /// written, and this is the original append's result.
    pub duplicate: bool,
}

/// A rejected multi-stream append: which entry's expectation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("append entry {index} rejected: {conflict}")]
pub struct MultiConflict {
    /// Index of the failing entry in the request.
    pub index: usize,
    /// The conflict.
    pub conflict: WrongExpectedVersion,
}

/// How many times an append whose lookups met a damaged index run is
/// rebuilt and submitted again before it fails.
const REPAIR_ATTEMPTS: usize = 3;

impl Store {
    /// Appends `events` to `stream` if the stream is at `expected`: one
    /// atomic frame, durable (fsync'd) before this returns. A stale
    /// expectation is the inner `Err`, and nothing is written.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<Result<AppendResult, WrongExpectedVersion>> {
        let append = StreamAppend {
            stream: stream.to_owned(),
            expected,
            events,
            tombstone: false,
            replica: None,
        };
        Ok(self
            .submit(vec![append])?
            .map(first_result)
            .map_err(|(_, conflict)| conflict))
    }

    /// Appends to several streams atomically: one frame, one fsync. Either
    /// every expectation holds and every event is written, or nothing is and
    /// the inner `Err` says which entry failed.
    pub fn append_many(
        &self,
        appends: Vec<(String, ExpectedVersion, Vec<EventData>)>,
    ) -> Result<Result<Vec<AppendResult>, MultiConflict>> {
        let appends = appends
            .into_iter()
            .map(|(stream, expected, events)| StreamAppend {
                stream,
                expected,
                events,
                tombstone: false,
                replica: None,
            })
            .collect();
        Ok(self
            .submit(appends)?
            .map_err(|(index, conflict)| MultiConflict { index, conflict }))
    }

    /// Deletes `stream` for good: writes a tombstone (visible in the global
    /// feed) after which the stream cannot be read or appended to.
    pub fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
    ) -> Result<Result<AppendResult, WrongExpectedVersion>> {
        let tombstone = EventData::new(TOMBSTONE_TYPE, bytes::Bytes::new());
        let append = StreamAppend {
            stream: stream.to_owned(),
            expected,
            events: vec![tombstone],
            tombstone: true,
            replica: None,
        };
        Ok(self
            .submit(vec![append])?
            .map(first_result)
            .map_err(|(_, conflict)| conflict))
    }

    pub(super) fn submit(&self, appends: Vec<StreamAppend>) -> Outcome {
        self.validate(&appends)?;
        let mut work = Work::Append(appends);
        for _ in 0..REPAIR_ATTEMPTS {
            match self.inner.pipeline()?.submit(work) {
                Answer::Append(outcome) => return outcome,
                // A lookup met a damaged index run: rebuild it here, on the
                // caller's thread (the write path does bounded work only and
                // goes on with other appends meanwhile), then ask again.
                Answer::Repair(Some(back)) => {
                    self.inner.index.repair()?;
                    work = back;
                }
                Answer::Repair(None) | Answer::Flush(_) => {
                    return Err(Error::Internal("an append was answered as a flush".into()))
                }
            }
        }
        Err(Error::Index(format!(
            "an append's index lookups still met a damaged run after {REPAIR_ATTEMPTS} rebuilds"
        )))
    }

    /// Closes this handle and says whether closing went well. The last
    /// handle syncs what [`Durability::Buffered`](crate::Durability::Buffered) left unsynced, marks the
    /// log cleanly closed and persists the index buffer, returning the
    /// first error of these (dropping the last handle does the same but can
    /// only swallow an error). While other clones are open, it makes
    /// everything appended so far durable, as [`Store::flush`], and lets go
    /// of this handle.
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.shut_down(),
            Err(inner) => Store { inner }.flush(),
        }
    }

    /// Makes every append acknowledged so far durable. Needed only with
    /// [`Durability::Buffered`](crate::Durability::Buffered); in the other
    /// modes everything acknowledged already is.
    pub fn flush(&self) -> Result<()> {
        // A read-only store has nothing of its own to make durable.
        let Some(pipeline) = &self.inner.pipeline else {
            return Ok(());
        };
        match pipeline.submit(Work::Flush) {
            Answer::Flush(result) => result,
            Answer::Append(_) | Answer::Repair(_) => {
                Err(Error::Internal("a flush was answered as an append".into()))
            }
        }
    }

    /// Checks everything about an append that does not need the writer.
    fn validate(&self, appends: &[StreamAppend]) -> Result<()> {
        if appends.is_empty() {
            return Err(Error::InvalidInput(
                "an append needs at least one stream".into(),
            ));
        }
        let mut records = Vec::new();
        let mut ids = Vec::new();
        for append in appends {
            if append.events.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "append to {} has no events",
                    append.stream
                )));
            }
            for event in &append.events {
                ids.push(event.id);
                if !append.tombstone && event.event_type.starts_with('$') {
                    return Err(Error::InvalidInput(format!(
                        "event type {:?} is reserved: types starting with '$' belong to the store",
                        event.event_type
                    )));
                }
                records.push(Record {
                    stream: &append.stream,
                    stream_version: 0,
                    id: event.id.0,
                    timestamp_us: 0,
                    flags: 0,
                    event_type: &event.event_type,
                    metadata: &event.metadata,
                    data: &event.data,
                });
            }
        }
        // Sorting beats hashing for the few ids of one append.
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair.first() == pair.last()) {
            let id = pair.first().copied().unwrap_or_default();
            return Err(Error::InvalidInput(format!(
                "event id {id} appears twice in one append"
            )));
        }
        let bytes = format::frame_bytes(&records)?;
        if bytes > self.inner.frame_bytes_max {
            return Err(Error::InvalidInput(format!(
                "append of {bytes} bytes exceeds the limit of {}",
                self.inner.frame_bytes_max
            )));
        }
        Ok(())
    }
}

fn first_result(mut results: Vec<AppendResult>) -> AppendResult {
    results.swap_remove(0)
}
