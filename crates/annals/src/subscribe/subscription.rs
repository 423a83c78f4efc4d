//! One subscription: a cursor over global positions. History and live
//! events are read the same way — scan the log from the cursor up to the
//! published end, then wait until the writer publishes a further end — so
//! the switch from one to the other can neither skip nor repeat a position.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::options::{SubscriptionItem, SubscriptionOptions};
use crate::error::Result;
use crate::event::{EventRef, RecordedEvent};
use crate::Store;

/// Most positions one refill scans before it looks at the clock again, so
/// that a long filtered-out stretch still yields timed checkpoints.
const SCAN_POSITIONS_MAX: u64 = 1 << 16;

/// Fewest items a wake-up must have handed out for the next wait to
/// coalesce (`SubscriptionOptions::coalesce`): a subscriber that gets one
/// event per wake-up is not behind a busy feed, and waits for the writer.
const COALESCE_ITEMS_MIN: usize = 2;

/// A subscription to the store's events: history first, then live events,
/// in position order, each matching position exactly once, with
/// [`CaughtUp`](SubscriptionItem::CaughtUp) and
/// [`Checkpoint`](SubscriptionItem::Checkpoint) signals carrying positions.
/// Created by [`Store::subscribe`](crate::Store::subscribe).
///
/// Use it as a blocking [`Iterator`] (`next()` waits for the writer to
/// publish more), poll it with [`try_next`](Subscription::try_next) or
/// [`next_timeout`](Subscription::next_timeout), or turn it into an async
/// [`Stream`](futures_core::Stream) with
/// [`into_stream`](Subscription::into_stream), or hand zero-copy batches
/// to a visitor with [`try_visit`](Subscription::try_visit) /
/// [`visit_timeout`](Subscription::visit_timeout) (events borrowed from the
/// mapped segment, no owned copy each). Under a busy feed the blocking
/// forms coalesce wake-ups (see `SubscriptionOptions::coalesce`).
///
/// **Memory** is bounded: at most
/// [`batch_events`](SubscriptionOptions::batch_events) events are read ahead
/// of the consumer (their data and metadata share the mapped segment, their
/// stream and type names are copied), plus one signal. A consumer that stops
/// reading costs the writer nothing: it simply reads from the log later.
///
/// **What it can see** is what the writer published: in
/// [`Durability::Fsync`](crate::Durability::Fsync) and `Batched` modes only
/// durable events (the end is published after the `fdatasync`); in
/// [`Durability::Buffered`](crate::Durability::Buffered) mode every
/// acknowledged event, also one not yet flushed, which an OS crash or power
/// cut can take back (a suffix of the log, never part of an append).
///
/// It holds a clone of the [`Store`], so the store stays open while a
/// subscription lives.
///
/// ```
/// use std::time::Duration;
/// use annals::{EventData, ExpectedVersion, Store, SubscriptionItem, SubscriptionOptions};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::Any, vec![EventData::new("Placed", "{}")])??;
/// let mut orders = store.subscribe(SubscriptionOptions::category("order"));
/// let first = orders.next().transpose()?;
/// assert!(matches!(first, Some(SubscriptionItem::Event(e)) if e.position == 0));
/// assert_eq!(orders.next().transpose()?, Some(SubscriptionItem::CaughtUp { position: Some(0) }));
/// // Live: woken by the writer's publish.
/// store.append("order-2", ExpectedVersion::Any, vec![EventData::new("Placed", "{}")])??;
/// let live = orders.next_timeout(Duration::from_secs(5)).transpose()?;
/// assert!(matches!(live, Some(SubscriptionItem::Event(e)) if e.stream == "order-2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscription {
    pub(super) store: Store,
    pub(super) options: SubscriptionOptions,
    /// The next position to scan: everything before it has been shown.
    pub(super) next: u64,
    /// Items read ahead of the consumer (at most `batch_events` events and
    /// one signal).
    pub(super) pending: VecDeque<SubscriptionItem>,
    caught_up: bool,
    /// `next` when the last signal was queued (or at the start).
    signalled_next: u64,
    signalled_at: Instant,
    /// For a one-stream subscription: the next version of that stream not
    /// yet shown, once known (lets a long gap be crossed through the
    /// stream index instead of the log).
    pub(super) stream_version_next: Option<u64>,
    /// After an error, the subscription ends.
    pub(super) failed: bool,
    /// An error met while reading ahead, handed out after what was read
    /// before it.
    pub(super) error: Option<crate::Error>,
    /// This subscription's slot for an async waker.
    pub(super) id: u64,
    /// When the blocking iterator's last wait ended, and whether an item
    /// was handed out since (see `SubscriptionOptions::coalesce`).
    woken_at: Option<Instant>,
    pub(super) delivered_since_wake: usize,
    /// Whether the last wait ended soon after it began (a busy feed).
    woken_soon: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.options.filter)
            .field("next", &self.next)
            .field("caught_up", &self.caught_up)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(store: Store, options: SubscriptionOptions) -> Subscription {
        let next = match options.start {
            super::Start::Beginning => 0,
            super::Start::After(position) => position.saturating_add(1),
            super::Start::End => store.position_end(),
        };
        let id = store.feed().next_id();
        // A query out of its bounds (`Query::validate`) is the first and
        // only item, as `read_query` answers it.
        let error = match &options.filter {
            super::Filter::Query(query) => query.validate().err(),
            _ => None,
        };
        Subscription {
            store,
            options,
            next,
            pending: VecDeque::new(),
            caught_up: false,
            signalled_next: next,
            signalled_at: Instant::now(),
            failed: error.is_some(),
            error,
            stream_version_next: None,
            id,
            woken_at: None,
            delivered_since_wake: 0,
            woken_soon: false,
        }
    }

    /// The last position shown so far (delivered, filtered out, or before
    /// the start); `None` before anything.
    pub fn last_shown(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// How many items are read ahead of the consumer right now: at most
    /// [`batch_events`](SubscriptionOptions::batch_events) plus one signal.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// The next item if one is ready without waiting: `None` when the
    /// subscriber is at the published end and no signal is due (or after
    /// an error was returned). It may scan a long filtered-out stretch of
    /// the log before it returns.
    pub fn try_next(&mut self) -> Option<Result<SubscriptionItem>> {
        match self.try_next_within(usize::MAX) {
            Ready::Item(item) => Some(item),
            Ready::AtEnd | Ready::Busy => None,
        }
    }

    /// Like [`try_next`](Subscription::try_next), reading at most
    /// `refills` batches from the log (the async stream yields to its
    /// executor between them).
    pub(super) fn try_next_within(&mut self, refills: usize) -> Ready {
        for _ in 0..refills {
            if let Some(item) = self.pending.pop_front() {
                return Ready::Item(Ok(item));
            }
            if let Some(error) = self.error.take() {
                return Ready::Item(Err(error));
            }
            if self.failed {
                return Ready::AtEnd;
            }
            let before = self.next;
            if let Err(error) = self.refill() {
                self.failed = true;
                self.error = Some(error);
                continue;
            }
            if self.pending.is_empty() && self.next == before {
                return Ready::AtEnd;
            }
        }
        match self.pending.pop_front() {
            Some(item) => Ready::Item(Ok(item)),
            None => Ready::Busy,
        }
    }

    /// The next item, waiting up to `timeout` for the writer to publish
    /// more. `None` if nothing came in time (or after an error).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<SubscriptionItem>> {
        // An item read ahead is handed out without reading the clock (a
        // consumer calling this once per event would otherwise pay for a
        // clock read per event): `try_next` would hand out the same item.
        if let Some(item) = self.pending.pop_front() {
            self.delivered_since_wake += 1;
            return Some(Ok(item));
        }
        self.next_until(Instant::now().checked_add(timeout))
    }

    /// The next item, waiting until `deadline` (`None`: for ever).
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<SubscriptionItem>> {
        loop {
            if let Some(item) = self.try_next() {
                self.delivered_since_wake += 1;
                return Some(item);
            }
            if self.failed || !self.wait_for_more(deadline) {
                return None;
            }
        }
    }

    /// At the published end: waits until the writer publishes more, a
    /// timed checkpoint is due, or `deadline`. `false` once `deadline` has
    /// passed.
    pub(super) fn wait_for_more(&mut self, deadline: Option<Instant>) -> bool {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        // Wake for a timed checkpoint too, if the cursor moved since
        // the last signal.
        let timed = self
            .options
            .checkpoint_interval
            .filter(|_| self.next > self.signalled_next)
            .and_then(|interval| self.signalled_at.checked_add(interval));
        let wake = match (deadline, timed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let window = self.options.coalesce;
        let busy_until = self
            .woken_at
            .filter(|_| self.delivered_since_wake >= COALESCE_ITEMS_MIN && self.woken_soon)
            .and_then(|woken| woken.checked_add(window))
            .filter(|&until| until > now);
        self.delivered_since_wake = 0;
        if let Some(until) = busy_until {
            // Coalescing (`SubscriptionOptions::coalesce`): the feed is
            // busy, so read what the window brings in one go instead of
            // being woken for each group. Not a listener meanwhile: the
            // writer pays nothing for this subscriber. Nothing is lost:
            // the next refill reads up to the end published by then, and
            // a window that brings nothing ends the coalescing.
            let until = wake.map_or(until, |w| w.min(until));
            std::thread::sleep(until.saturating_duration_since(now));
            self.woken_at = Some(Instant::now());
            return true;
        }
        let next = self.next;
        let reader = self.store.log_reader();
        self.store
            .feed()
            .wait_until(wake, &|| reader.position_end() > next);
        let woken = Instant::now();
        self.woken_soon = woken.saturating_duration_since(now) < window;
        self.woken_at = Some(woken);
        true
    }

    /// Reads the next batch from the log into `pending`, and queues the
    /// signals that are due.
    fn refill(&mut self) -> Result<()> {
        self.refill_with(None)
    }

    /// Like [`refill`](Subscription::refill); with `direct`, the events a
    /// scan of the log matches go to it (borrowed, in order, before the
    /// signals queued in `pending`) instead of into `pending`, and the scan
    /// is not bounded by `batch_events` (nothing is held).
    pub(super) fn refill_with(&mut self, direct: Option<Direct<'_>>) -> Result<()> {
        let end = self.store.position_end();
        if self.next < end
            && !self.stream_batch(end)?
            && !self.key_batch(end)?
            && !self.query_batch(end)?
        {
            self.scan_batch(direct)?;
        }
        if !self.caught_up && self.next >= end {
            self.caught_up = true;
            self.signal(SubscriptionItem::CaughtUp {
                position: self.last_shown(),
            });
        } else if self.checkpoint_due() {
            if let Some(position) = self.last_shown() {
                self.signal(SubscriptionItem::Checkpoint { position });
            }
        }
        Ok(())
    }

    fn signal(&mut self, item: SubscriptionItem) {
        self.pending.push_back(item);
        self.signalled_next = self.next;
        self.signalled_at = Instant::now();
    }

    fn checkpoint_due(&self) -> bool {
        if self.next <= self.signalled_next {
            // Never a checkpoint that does not advance.
            return false;
        }
        let by_count = self
            .options
            .checkpoint_positions
            .is_some_and(|n| self.next - self.signalled_next >= n);
        let by_time = self
            .options
            .checkpoint_interval
            .is_some_and(|interval| self.signalled_at.elapsed() >= interval);
        by_count || by_time
    }

    /// Positions one refill may cross: up to the next checkpoint by count,
    /// at most [`SCAN_POSITIONS_MAX`] (so a long unmatched stretch still
    /// yields timed checkpoints and lets an async task yield), at least 1.
    pub(super) fn positions_budget(&self) -> u64 {
        let until_checkpoint = self
            .options
            .checkpoint_positions
            .map_or(u64::MAX, |n| {
                (self.signalled_next.saturating_add(n)).saturating_sub(self.next)
            })
            .max(1);
        until_checkpoint.min(SCAN_POSITIONS_MAX)
    }

    /// Scans from `next` until `batch_events` matches, the next checkpoint
    /// by count, [`SCAN_POSITIONS_MAX`] positions, or the published end.
    fn scan_batch(&mut self, mut direct: Option<Direct<'_>>) -> Result<()> {
        let budget = self.positions_budget();
        let start = self.next;
        let batch_events = self.options.batch_events.max(1);
        let mut matched = 0usize;
        let mut version_next = self.stream_version_next;
        let mut next = self.next;
        let options = &self.options;
        let pending = &mut self.pending;
        let scanned = self
            .store
            .log_reader()
            .scan_shared(start, |position, record, owner| {
                next = position.saturating_add(1);
                if crate::compact::is_erased(&record) {
                    // A gap a compaction left: stepped over.
                } else if options.matches(
                    record.stream,
                    record.stream_version,
                    record.event_type,
                    record.tags,
                ) {
                    version_next = record.stream_version.checked_add(1);
                    match direct.as_mut() {
                        Some(visit) => visit(EventRef::new(position, record, owner)),
                        None => {
                            pending.push_back(SubscriptionItem::Event(RecordedEvent::from_record(
                                position, record, owner,
                            )));
                            matched += 1;
                        }
                    }
                }
                if matched >= batch_events || next - start >= budget {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        // What was read before an error is still handed out, before it.
        self.next = next;
        if matches!(self.options.filter, super::Filter::Stream { .. }) {
            self.stream_version_next = version_next;
        }
        Ok(scanned?)
    }
}

/// Where a direct refill hands the events it matches.
pub(super) type Direct<'v> = &'v mut dyn FnMut(EventRef<'_>);

/// What [`Subscription::try_next_within`] found.
pub(super) enum Ready {
    /// An item (or the error that ends the subscription).
    Item(Result<SubscriptionItem>),
    /// Nothing until the writer publishes more (or the subscription ended).
    AtEnd,
    /// The refills allowed were spent on positions that matched nothing.
    Busy,
}

impl Iterator for Subscription {
    type Item = Result<SubscriptionItem>;

    /// Blocks until the next item (waiting for the writer to publish more
    /// events when at the end). `None` only after an error was returned.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.store.feed().unregister(self.id);
    }
}
