//! Replication: reading the global feed with each event's place in its
//! atomic append, and appending a source's append into a replica at the
//! very position, with the very commit time, the source gave it.
//!
//! A replica built only with [`Store::append_replicated`] holds, record for
//! record, a prefix of its source's `$all`: stream, version, position, id,
//! type, metadata, data, timestamp and the append-boundary and tombstone
//! flags. (Frames may differ: the replica may group appends differently.)

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::{AppendResult, Store};
use crate::error::{Error, Result};
use crate::event::{EventData, RecordedEvent};
use crate::expected::ExpectedVersion;
use crate::write::{Conflict, Replica, StreamAppend};
use crate::{APPEND_FIRST_FLAG, APPEND_LAST_FLAG, TOMBSTONE_TYPE};

/// An event of the global feed and its place in the atomic append that
/// wrote it (one `append`, `append_many` or `delete_stream` call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedEvent {
    /// The event.
    pub event: RecordedEvent,
    /// Whether it is the first event of its append.
    pub append_first: bool,
    /// Whether it is the last event of its append.
    pub append_last: bool,
}

/// How often a read-only store looks for the owner's appends while
/// [`Store::wait_for_end`] waits.
const READ_ONLY_POLL: Duration = Duration::from_millis(5);

impl Store {
    /// Up to `max` events of the global feed from `from` (inclusive), in
    /// order, each with its append boundaries: what a replica needs to
    /// repeat the source's appends exactly.
    pub fn read_all_replicated(&self, from: u64, max: usize) -> Result<Vec<ReplicatedEvent>> {
        let mut events = Vec::with_capacity(max.min(4096));
        if max == 0 {
            return Ok(events);
        }
        self.inner
            .reader
            .scan_shared(from, |position, record, owner| {
                let flags = record.flags;
                events.push(ReplicatedEvent {
                    event: RecordedEvent::from_record(position, record, owner),
                    append_first: flags & APPEND_FIRST_FLAG != 0,
                    append_last: flags & APPEND_LAST_FLAG != 0,
                });
                if events.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        Ok(events)
    }

    /// Blocks until the feed's end passes `after` (some event at position
    /// `after` or later exists) or `timeout` runs out; returns the end. A
    /// read-only store looks for the owner's appends itself while it waits
    /// ([`Store::refresh`]).
    pub fn wait_for_end(&self, after: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let end = self.refresh()?;
            if end > after {
                return Ok(end);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(end);
            }
            let until = if self.is_read_only() {
                deadline.min(now + READ_ONLY_POLL)
            } else {
                deadline
            };
            self.feed()
                .wait_until(Some(until), &|| self.position_end() > after);
        }
    }

    /// Appends one append of a source store, as the source wrote it: the
    /// events of `append` (one whole append of the source: the first has
    /// `append_first`, the last `append_last`, none between them either)
    /// land at the positions and versions they carry, with their ids,
    /// types, data, metadata and commit time, atomically and (per the
    /// durability mode) durably. A tombstone
    /// ([`TOMBSTONE_TYPE`]) deletes its stream here
    /// too.
    ///
    /// Refused with [`Error::InvalidInput`], writing nothing, unless the
    /// first event's position is this store's next one and every stream is
    /// at the version before the event's: a replica takes its source's
    /// appends in order, once each.
    pub fn append_replicated(&self, append: Vec<ReplicatedEvent>) -> Result<Vec<AppendResult>> {
        self.refuse_if_read_only()?;
        let (position, timestamp_us) = check_shape(&append)?;
        let mut appends = stream_appends(append)?;
        if let Some(first) = appends.first_mut() {
            first.replica = Some(Replica {
                position,
                timestamp_us,
            });
        }
        let results = self.submit(appends, None)?.map_err(|conflict| match conflict {
            Conflict::Expected(index, conflict) => Error::InvalidInput(format!(
                "replicated append at position {position} does not follow this store (entry {index}: {conflict})"
            )),
            Conflict::Condition(at) => Error::Internal(format!(
                "a replicated append (no condition) failed a condition at {at}"
            )),
        })?;
        if results.first().map(|r| r.first_position) != Some(position) {
            return Err(Error::Internal(format!(
                "a replicated append of position {position} landed elsewhere"
            )));
        }
        Ok(results)
    }
}

/// Checks that `append` is one whole append with dense positions and one
/// commit time; returns its first position and that time.
fn check_shape(append: &[ReplicatedEvent]) -> Result<(u64, u64)> {
    let (Some(first), Some(last)) = (append.first(), append.last()) else {
        return Err(Error::InvalidInput(
            "a replicated append needs at least one event".into(),
        ));
    };
    let position = first.event.position;
    let timestamp_us = first.event.timestamp_us;
    let n = append.len();
    for (i, e) in append.iter().enumerate() {
        if e.event.position != position.saturating_add(i as u64) {
            return Err(Error::InvalidInput(format!(
                "replicated append from position {position}: position {} is out of place",
                e.event.position
            )));
        }
        if e.event.timestamp_us != timestamp_us {
            return Err(Error::InvalidInput(format!(
                "replicated append from position {position}: one append has one commit time"
            )));
        }
        if e.append_first != (i == 0) || e.append_last != (i + 1 == n) {
            return Err(Error::InvalidInput(format!(
                "replicated append from position {position}: position {} breaks the append's boundaries",
                e.event.position
            )));
        }
    }
    debug_assert!(first.append_first && last.append_last);
    Ok((position, timestamp_us))
}

/// The source append as the write path takes it: one entry per run of
/// consecutive events of one stream (a tombstone alone), each expecting
/// the version before its first event.
fn stream_appends(append: Vec<ReplicatedEvent>) -> Result<Vec<StreamAppend>> {
    let mut appends: Vec<StreamAppend> = Vec::new();
    let mut version_next = 0u64;
    for ReplicatedEvent { event, .. } in append {
        let tombstone = event.event_type == TOMBSTONE_TYPE;
        let data = EventData {
            id: event.id,
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
            tags: event.tags,
        };
        match appends.last_mut() {
            Some(run)
                if run.stream == event.stream
                    && !run.tombstone
                    && !tombstone
                    && event.version == version_next =>
            {
                run.events.push(data);
            }
            _ => {
                let expected = match event.version {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v - 1),
                };
                appends.push(StreamAppend::new(
                    event.stream,
                    expected,
                    vec![data],
                    tombstone,
                ));
            }
        }
        version_next = event.version.checked_add(1).ok_or_else(|| {
            Error::InvalidInput("a replicated event's version is out of range".into())
        })?;
    }
    Ok(appends)
}
