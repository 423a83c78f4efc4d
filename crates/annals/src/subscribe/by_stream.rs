//! A one-stream subscription far behind the end reads its stream through
//! the stream index (O(log n + k)) instead of scanning every position of
//! the log in between. Same cursor, same rules: it moves `next` past every
//! position it has shown, and a position is shown once every event of the
//! stream below it was delivered.
//!
//! Why the index is complete up to the end read first: the writer publishes
//! a new end inside the index's write lock, after the memtable holds the
//! group, so an index read that starts after the end was read sees every
//! event below it.

use std::ops::ControlFlow;

use annals_index::Direction;

use super::options::{Filter, SubscriptionItem};
use super::subscription::Subscription;
use crate::error::{Error, Result};

/// Smallest gap (positions between the cursor and the end) worth crossing
/// through the index; below it a scan of the log is as cheap, and live
/// subscribers keep scanning.
const INDEX_GAP_MIN: u64 = 4096;

impl Subscription {
    /// Reads the next batch of a one-stream subscription through the
    /// index, if it applies (a stream filter, a gap of at least
    /// [`INDEX_GAP_MIN`], a stream not deleted). `Ok(false)`: scan instead.
    pub(super) fn stream_batch(&mut self, end: u64) -> Result<bool> {
        let Filter::Stream { name, from_version } = &self.options.filter else {
            return Ok(false);
        };
        if end - self.next < INDEX_GAP_MIN
            || !self.options.matches(name, u64::MAX, "", crate::Tags::EMPTY)
        {
            return Ok(false);
        }
        let (name, from_version) = (name.clone(), *from_version);
        let batch = self.options.batch_events.max(1);
        let mut version = self.stream_version_next.unwrap_or(0).max(from_version);
        // Skipping events already shown (a start after a position) is
        // bounded by the stream's length, and done once.
        loop {
            let (mut visited, mut delivered, mut beyond) = (0usize, 0usize, false);
            let mut last = None;
            let shown_before = self.next;
            let pending = &mut self.pending;
            let read = self.store.read_stream_from_with(
                &name,
                0,
                version,
                Direction::Forward,
                batch,
                |event| {
                    if event.position >= end {
                        beyond = true;
                        return ControlFlow::Break(());
                    }
                    visited += 1;
                    last = Some((event.version, event.position));
                    if event.position >= shown_before {
                        pending.push_back(SubscriptionItem::Event(event.to_recorded()));
                        delivered += 1;
                    }
                    ControlFlow::Continue(())
                },
            );
            match read {
                Ok(_) => {}
                // The tombstone and what came before are found by a scan.
                Err(Error::StreamDeleted(_)) => return Ok(false),
                Err(error) => return Err(error),
            }
            if let Some((v, p)) = last {
                version = v.saturating_add(1);
                self.stream_version_next = Some(version);
                self.next = self.next.max(p.saturating_add(1));
            }
            if beyond || visited < batch {
                // No event of the stream between here and `end`.
                self.next = self.next.max(end);
                return Ok(true);
            }
            if delivered > 0 {
                return Ok(true);
            }
        }
    }
}
