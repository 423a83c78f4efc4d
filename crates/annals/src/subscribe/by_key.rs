//! A category or event-type subscription far behind the end reads through
//! the secondary indexes (O(log n + k): only matching events are read)
//! instead of scanning every position of the log in between. Same cursor,
//! same rules as `by_stream.rs`: it moves `next` past every position it
//! has shown, and a position is shown once every matching event below it
//! was delivered; near the end (live), it scans like any subscription.
//!
//! Why the index is complete up to the end read first: a secondary lookup
//! extends the secondary memtable from the log up to the published end it
//! reads itself, which is at least the `end` read before it.

use std::ops::ControlFlow;

use super::options::{Filter, SubscriptionItem};
use super::subscription::Subscription;
use crate::error::Result;
use crate::event::EventRef;

/// Smallest gap (positions between the cursor and the end) worth crossing
/// through the index; below it a scan of the log is as cheap.
const INDEX_GAP_MIN: u64 = 4096;

impl Subscription {
    /// Reads the next batch of a category or event-type subscription
    /// through the secondary indexes, if it applies (such a filter, a gap
    /// of at least [`INDEX_GAP_MIN`] within this refill's budget of
    /// positions). `Ok(false)`: scan instead.
    pub(super) fn key_batch(&mut self, end: u64) -> Result<bool> {
        let applies = match &self.options.filter {
            Filter::Category(_) => true,
            Filter::EventTypes(types) => !types.is_empty(),
            _ => false,
        };
        // Like a scan, a refill crosses at most its budget of positions:
        // checkpoints by count come at the same positions, and an async
        // task yields between refills.
        let end = end.min(self.next.saturating_add(self.positions_budget()));
        if !applies || end - self.next < INDEX_GAP_MIN {
            return Ok(false);
        }
        let batch = self.options.batch_events.max(1);
        loop {
            let (mut visited, mut delivered, mut beyond) = (0usize, 0usize, false);
            let mut last = None;
            let options = &self.options;
            let pending = &mut self.pending;
            let mut visit = |event: EventRef<'_>| {
                if event.position >= end {
                    beyond = true;
                    return ControlFlow::Break(());
                }
                visited += 1;
                last = Some(event.position);
                // System streams stay hidden unless asked for.
                if options.matches(event.stream, event.version, event.event_type) {
                    pending.push_back(SubscriptionItem::Event(event.to_recorded()));
                    delivered += 1;
                }
                ControlFlow::Continue(())
            };
            match &self.options.filter {
                Filter::Category(category) => self
                    .store
                    .read_category_with(category, self.next, batch, &mut visit)?,
                Filter::EventTypes(types) => self
                    .store
                    .read_event_types_with(types, self.next, batch, &mut visit)?,
                _ => return Ok(false),
            };
            if let Some(position) = last {
                self.next = self.next.max(position.saturating_add(1));
            }
            if beyond || visited < batch {
                // No matching event between here and `end`.
                self.next = self.next.max(end);
                return Ok(true);
            }
            if delivered > 0 {
                return Ok(true);
            }
        }
    }
}
