//! A query subscription (the Dynamic Consistency Boundary's [`Query`],
//! `crate::dcb`) far behind the end reads through the tag and event-type
//! postings of the secondary index (the same indexed walk as
//! [`Store::read_query`](crate::Store::read_query): per item, its rarest
//! key's candidates, each confirmed on its event) instead of scanning every
//! position of the log in between. Same cursor, same rules as `by_key.rs`:
//! it moves `next` past every position it has shown, a position is shown
//! once every matching event below it was delivered, a refill crosses at
//! most its budget of positions (so checkpoints by count come at the same
//! positions as a scan's); near the end (live), it scans like any
//! subscription.
//!
//! Why the index is complete up to the end read first: a secondary lookup
//! extends the secondary memtable from the log up to the published end it
//! reads itself, which is at least the `end` read before it.
//!
//! [`Query`]: crate::Query

use std::ops::ControlFlow;

use super::options::{Filter, SubscriptionItem};
use super::subscription::Subscription;
use crate::error::Result;

/// Smallest gap (positions between the cursor and the end) worth crossing
/// through the index; below it a scan of the log is as cheap (as for a
/// category, `by_key.rs`).
const INDEX_GAP_MIN: u64 = 4096;

impl Subscription {
    /// Reads the next batch of a query subscription through the index, if
    /// it applies (a query filter, a gap of at least [`INDEX_GAP_MIN`]
    /// within this refill's budget of positions). `Ok(false)`: scan
    /// instead.
    pub(super) fn query_batch(&mut self, end: u64) -> Result<bool> {
        let Filter::Query(query) = &self.options.filter else {
            return Ok(false);
        };
        let end = end.min(self.next.saturating_add(self.positions_budget()));
        if end.saturating_sub(self.next) < INDEX_GAP_MIN {
            return Ok(false);
        }
        let batch = self.options.batch_events.max(1);
        let mut delivered = 0usize;
        let options = &self.options;
        let pending = &mut self.pending;
        // The walk shows every position below where it stops: the events
        // it skipped there match nothing.
        let stopped = crate::dcb::lookup::visit_between(
            self.store.index(),
            self.store.log_reader(),
            query,
            self.next,
            end,
            |event| {
                // System streams stay hidden unless asked for.
                if options.matches(event.stream, event.version, event.event_type, event.tags) {
                    pending.push_back(SubscriptionItem::Event(event.to_recorded()));
                    delivered += 1;
                }
                if delivered >= batch {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        self.next = match stopped {
            Some(position) => self.next.max(position.saturating_add(1)),
            None => self.next.max(end),
        };
        Ok(true)
    }
}
