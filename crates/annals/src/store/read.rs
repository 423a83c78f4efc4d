//! Reading: one stream through the index (candidates checked against the
//! events they name), and the global feed `$all` from a position.

use std::cell::Cell;
use std::ops::ControlFlow;

use annals_index::Direction;

use super::Store;
use crate::error::{Error, Result};
use crate::event::{EventRef, RecordedEvent};
use crate::expected::CurrentVersion;

impl Store {
    /// The stream's current version.
    pub fn stream_version(&self, stream: &str) -> Result<CurrentVersion> {
        Ok(CurrentVersion::from_state(self.inner.index.state(stream)?))
    }

    /// Up to `max` events of `stream` from version `from` (inclusive), in
    /// `direction`. Reading backward from `u64::MAX` starts at the newest
    /// event. A stream with no events reads as empty; a deleted one is
    /// [`Error::StreamDeleted`]; one soft-deleted
    /// ([`Store::soft_delete_stream`]) reads only its events after the soft
    /// delete. Touches only this stream's events.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(max.min(1024));
        self.read_stream_with(stream, from, direction, max, |event| {
            events.push(event.to_recorded());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// Like [`read_stream`](Store::read_stream), but hands each event to
    /// `visit` borrowed from the log ([`EventRef`]) instead of collecting
    /// owned copies: loading an aggregate by folding its events costs no
    /// allocation per event. `visit` returns `Break` to stop early. Returns
    /// the number of events visited. Each event is visited once, in order,
    /// even if the read has to repair a damaged index file on the way. If
    /// it returns an error, `visit` may have seen some events before it.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use annals::{Direction, EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let deposits = [5u64, 7, 30].map(|n| EventData::new("Deposited", n.to_le_bytes().to_vec()));
    /// store.append("account-1", ExpectedVersion::NoStream, deposits.to_vec())??;
    /// let mut balance = 0;
    /// store.read_stream_with("account-1", 0, Direction::Forward, usize::MAX, |event| {
    ///     let amount: [u8; 8] = event.data.try_into().unwrap_or_default();
    ///     balance += u64::from_le_bytes(amount);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(balance, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_with(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        // Versions below a soft delete's truncation point are hidden
        // (`crate::soft_delete`).
        let first = self.truncate_before(stream)?;
        self.read_stream_from_with(stream, first, from, direction, max, visit)
    }

    /// [`read_stream_with`](Store::read_stream_with) showing only versions
    /// from `first` on: what subscriptions use with `first` = 0 (they
    /// deliver what `$all` holds, soft-deleted events included).
    pub(crate) fn read_stream_from_with(
        &self,
        stream: &str,
        first: u64,
        from: u64,
        direction: Direction,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        let index = &self.inner.index;
        if index.state(stream)?.is_some_and(|s| s.deleted) {
            return Err(Error::StreamDeleted(stream.to_owned()));
        }
        let from = match direction {
            Direction::Forward => from.max(first),
            Direction::Backward if from < first => return Ok(0),
            Direction::Backward => from,
        };
        // What was delivered survives a repair's second attempt, which
        // resumes after the last event visited.
        let delivered = Cell::new(0usize);
        let mut next = Some(from);
        let mut stopped = false;
        index.repairing(|| {
            let Some(from) = next.filter(|_| !stopped && delivered.get() < max) else {
                return Ok(());
            };
            let mut deliver = |event: EventRef<'_>| {
                if event.version < first {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                delivered.set(delivered.get() + 1);
                next = match direction {
                    Direction::Forward => event.version.checked_add(1),
                    Direction::Backward => event.version.checked_sub(1),
                };
                let flow = visit(event);
                stopped = flow.is_break() || next.is_none() || delivered.get() >= max;
                if stopped {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            // Candidates are gathered, then read from the log together
            // (the segment's mapping and locks taken once per batch).
            let mut candidates = Candidates::default();
            let remaining = max - delivered.get();
            let mut wanted = remaining.min(READ_BATCH);
            let mut flow = ControlFlow::Continue(());
            index.read(stream, from, direction, remaining, &mut |candidate| {
                candidates.versions.push(candidate.version);
                candidates.positions.push(candidate.position);
                candidates.offsets.push(candidate.offset);
                if candidates.len() < wanted {
                    return Ok(ControlFlow::Continue(()));
                }
                flow = self.read_candidates(stream, &mut candidates, &mut deliver)?;
                wanted = (max - delivered.get()).min(READ_BATCH);
                Ok(flow)
            })?;
            if flow.is_continue() {
                // The last batch: whether it stopped early changes nothing.
                let _ = self.read_candidates(stream, &mut candidates, &mut deliver)?;
            }
            Ok(())
        })?;
        Ok(delivered.get())
    }

    /// Reads the candidate events the index gave for `stream` and hands
    /// those of `stream` to `deliver` (another stream whose name has the
    /// same hash is skipped), checking their versions. Leaves `candidates`
    /// empty.
    fn read_candidates(
        &self,
        stream: &str,
        candidates: &mut Candidates,
        deliver: &mut dyn FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let end = self.inner.reader.position_end();
        if let Some(position) = candidates.positions.iter().find(|p| **p >= end) {
            return Err(Error::Index(format!(
                "position {position} is not in the log"
            )));
        }
        let mut versions = candidates.versions.iter();
        let mut failure = None;
        let mut flow = ControlFlow::Continue(());
        self.inner.reader.with_stream_events(
            &candidates.positions,
            &candidates.offsets,
            stream,
            |position, record, owner| {
                let version = versions.next().copied().unwrap_or(u64::MAX);
                let Some(record) = record else {
                    // Another stream whose name has the same hash.
                    return ControlFlow::Continue(());
                };
                if crate::compact::is_erased(&record) {
                    // A gap a compaction left (`crate::compact`).
                    return ControlFlow::Continue(());
                }
                if record.stream_version != version {
                    failure = Some(Error::Index(format!(
                        "index maps {stream}@{version} to position {position}, which holds {}@{}",
                        record.stream, record.stream_version
                    )));
                    return ControlFlow::Break(());
                }
                flow = deliver(EventRef::new(position, record, owner));
                flow
            },
        )?;
        candidates.versions.clear();
        candidates.positions.clear();
        candidates.offsets.clear();
        failure.map_or(Ok(flow), Err)
    }

    /// Up to `max` events of the global feed from `from` (inclusive), in
    /// commit order. Positions are dense until a compaction erases events:
    /// their positions are gaps, stepped over (`crate::compact`).
    pub fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(max.min(4096));
        if max == 0 {
            return Ok(events);
        }
        self.inner
            .reader
            .scan_shared(from, |position, record, owner| {
                if crate::compact::is_erased(&record) {
                    return ControlFlow::Continue(());
                }
                events.push(RecordedEvent::from_record(position, record, owner));
                if events.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        Ok(events)
    }

    /// One past the last position of the global feed.
    pub fn position_end(&self) -> u64 {
        self.inner.reader.position_end()
    }
}

/// How many candidate events a stream read gathers before reading them.
const READ_BATCH: usize = 256;

/// (version, position) pairs the index gave for a stream read, in order.
#[derive(Default)]
struct Candidates {
    versions: Vec<u64>,
    positions: Vec<u64>,
    /// Where each event starts in its segment, if the index knows.
    offsets: Vec<Option<u32>>,
}

impl Candidates {
    fn len(&self) -> usize {
        self.positions.len()
    }
}
