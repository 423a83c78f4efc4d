//! Zero-copy delivery: a subscription's items handed to a visitor in
//! batches, events borrowed from the mapped segment ([`EventRef`]) instead
//! of one owned [`RecordedEvent`](crate::RecordedEvent) each. Same cursor,
//! same order, same signals as the iterator: only the hand-over differs.

use std::time::{Duration, Instant};

use annals_segment::format::encode_tags;
use annals_segment::{Record, Tags};

use super::options::SubscriptionItem;
use super::subscription::Subscription;
use crate::error::Result;
use crate::event::EventRef;

/// An item handed to [`Subscription::try_visit`] or
/// [`Subscription::visit_timeout`]: like [`SubscriptionItem`], with the
/// event borrowed for the duration of the call (keep one with
/// [`EventRef::to_recorded`]).
#[derive(Debug, Clone, Copy)]
pub enum SubscriptionItemRef<'a> {
    /// An event that matches the filter.
    Event(EventRef<'a>),
    /// History is exhausted: everything up to `position` was shown.
    CaughtUp {
        /// The last position shown.
        position: Option<u64>,
    },
    /// Everything up to `position` was shown; safe to resume after.
    Checkpoint {
        /// The last position shown.
        position: u64,
    },
}

impl Subscription {
    /// Hands every item ready now to `visit`, in order, without waiting:
    /// what was already read ahead, then one batch scanned from the log up
    /// to the published end (at most 65,536 positions), events borrowed
    /// from the mapped segment, then the signals due. Returns how many
    /// items were visited; `Ok(0)` when the subscriber is at the published
    /// end and no signal is due (or after an error was returned). An error
    /// comes after the items read before it were visited; the subscription
    /// then ends.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store, SubscriptionItemRef, SubscriptionOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = (0..3).map(|_| EventData::new("Placed", "{}")).collect();
    /// store.append("order-1", ExpectedVersion::Any, events)??;
    /// let mut subscription = store.subscribe(SubscriptionOptions::all());
    /// let mut positions = Vec::new();
    /// let visited = subscription.try_visit(|item| {
    ///     if let SubscriptionItemRef::Event(event) = item {
    ///         positions.push(event.position);
    ///     }
    /// })?;
    /// assert_eq!(positions, vec![0, 1, 2]);
    /// assert_eq!(visited, 4); // three events and `CaughtUp`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_visit(&mut self, mut visit: impl FnMut(SubscriptionItemRef<'_>)) -> Result<usize> {
        let mut visited = self.visit_pending(&mut visit)?;
        if visited > 0 {
            self.delivered_since_wake += visited;
            return Ok(visited);
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if self.failed {
            return Ok(0);
        }
        let mut direct = |event: EventRef<'_>| {
            visited += 1;
            visit(SubscriptionItemRef::Event(event));
        };
        if let Err(error) = self.refill_with(Some(&mut direct)) {
            self.failed = true;
            self.error = Some(error);
        }
        visited += self.visit_pending(&mut visit)?;
        if visited == 0 {
            if let Some(error) = self.error.take() {
                return Err(error);
            }
        }
        self.delivered_since_wake += visited;
        Ok(visited)
    }

    /// Like [`try_visit`](Subscription::try_visit), first waiting up to
    /// `timeout` for the writer to publish more when nothing is ready
    /// (woken by the writer like [`next`](Iterator::next), with the same
    /// [`coalesce`](crate::SubscriptionOptions) window). `Ok(0)` if nothing
    /// came in time.
    pub fn visit_timeout(
        &mut self,
        timeout: Duration,
        mut visit: impl FnMut(SubscriptionItemRef<'_>),
    ) -> Result<usize> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let visited = self.try_visit(&mut visit)?;
            if visited > 0 || self.failed || !self.wait_for_more(deadline) {
                return Ok(visited);
            }
        }
    }

    /// Hands what was read ahead (owned) to `visit`, borrowed.
    fn visit_pending(&mut self, visit: &mut impl FnMut(SubscriptionItemRef<'_>)) -> Result<usize> {
        let mut visited = 0;
        let mut tags = Vec::new();
        while let Some(item) = self.pending.pop_front() {
            visited += 1;
            match item {
                SubscriptionItem::Event(event) => {
                    tags.clear();
                    encode_tags(&event.tags, &mut tags)?;
                    let record = Record {
                        stream: &event.stream,
                        stream_version: event.version,
                        id: event.id.0,
                        timestamp_us: event.timestamp_us,
                        flags: 0,
                        event_type: &event.event_type,
                        // Just encoded from tags read from the log: valid.
                        tags: Tags::from_encoded(&tags).unwrap_or(Tags::EMPTY),
                        metadata: &event.metadata,
                        data: &event.data,
                    };
                    visit(SubscriptionItemRef::Event(EventRef::new(
                        event.position,
                        record,
                        &event.data,
                    )));
                }
                SubscriptionItem::CaughtUp { position } => {
                    visit(SubscriptionItemRef::CaughtUp { position });
                }
                SubscriptionItem::Checkpoint { position } => {
                    visit(SubscriptionItemRef::Checkpoint { position });
                }
            }
        }
        Ok(visited)
    }
}
