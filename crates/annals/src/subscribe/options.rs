//! What a subscription selects, where it starts, how often it signals, and
//! what it hands out.

use std::time::Duration;

use crate::event::RecordedEvent;

/// Which events a subscription delivers. Every filter is applied to the
/// same cursor over global positions; it only decides which of the
/// positions scanned are delivered.
///
/// A category or event-type subscription far behind the end reads only the
/// matching events through the secondary indexes (O(log n + k)); near the
/// end (live) it scans `$all` and skips what does not match. A one-stream
/// subscription far behind the end reads its stream through the stream
/// index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Every event (the `$all` feed).
    All,
    /// The events of one stream from `from_version` on (inclusive).
    Stream {
        /// The stream's name.
        name: String,
        /// First version delivered.
        from_version: u64,
    },
    /// The events of every stream of a category: the stream name up to its
    /// first `-` (`order-42` is in category `order`; a stream name without
    /// `-` is in no category).
    Category(String),
    /// The events whose type is one of these.
    EventTypes(Vec<String>),
    /// The events a Dynamic Consistency Boundary query matches (by type
    /// and tags: see [`Query`](crate::Query)).
    Query(crate::Query),
}

/// The category of `stream`: its name up to the first `-`, if it has one.
///
/// ```
/// assert_eq!(annals::category_of("order-42"), Some("order"));
/// assert_eq!(annals::category_of("order-42-b"), Some("order"));
/// assert_eq!(annals::category_of("singleton"), None);
/// ```
pub fn category_of(stream: &str) -> Option<&str> {
    stream.split_once('-').map(|(category, _)| category)
}

/// Prefix of the names of the store's own streams (`$checkpoint-NAME`).
pub const SYSTEM_STREAM_PREFIX: &str = "$";

impl Filter {
    /// Whether an event of `stream` at `version` with `event_type` and
    /// `tags` matches.
    pub(crate) fn matches(
        &self,
        stream: &str,
        version: u64,
        event_type: &str,
        tags: crate::Tags<'_>,
    ) -> bool {
        match self {
            Filter::All => true,
            Filter::Stream { name, from_version } => stream == name && version >= *from_version,
            Filter::Category(category) => category_of(stream) == Some(category.as_str()),
            Filter::EventTypes(types) => types.iter().any(|t| t == event_type),
            Filter::Query(query) => query.matches(event_type, tags),
        }
    }

    /// Whether the filter names a system stream itself (then system streams
    /// are not hidden from it).
    fn names_system(&self) -> bool {
        match self {
            Filter::Stream { name, .. } => name.starts_with(SYSTEM_STREAM_PREFIX),
            Filter::Category(category) => category.starts_with(SYSTEM_STREAM_PREFIX),
            Filter::All | Filter::EventTypes(_) | Filter::Query(_) => false,
        }
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At position 0: all of history.
    Beginning,
    /// After this position (exclusive): the first event delivered is the
    /// first match after it. Pass any delivered event's position or any
    /// signal's position to resume with exactly the rest.
    After(u64),
    /// At the published end when the subscription is created: only events
    /// committed later.
    End,
}

impl Start {
    /// Resume after `position` if there is one (a signal's position, which
    /// is `None` only when nothing had been shown yet), else from the
    /// beginning.
    ///
    /// ```
    /// use annals::Start;
    /// assert_eq!(Start::after(Some(7)), Start::After(7));
    /// assert_eq!(Start::after(None), Start::Beginning);
    /// ```
    pub fn after(position: Option<u64>) -> Start {
        position.map_or(Start::Beginning, Start::After)
    }
}

/// Default [`SubscriptionOptions::coalesce`] window.
pub(crate) const COALESCE_DEFAULT: Duration = Duration::from_micros(100);

/// How a subscription is set up; see [`Store::subscribe`](crate::Store::subscribe).
///
/// ```
/// use std::time::Duration;
/// use annals::{Filter, Start, SubscriptionOptions};
///
/// let options = SubscriptionOptions::new(Filter::Category("order".into()))
///     .start(Start::After(41))
///     .checkpoint_every_positions(10_000)
///     .checkpoint_every(Duration::from_secs(1));
/// assert_eq!(options.filter, Filter::Category("order".into()));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubscriptionOptions {
    /// Which events are delivered.
    pub filter: Filter,
    /// Where it starts (default [`Start::Beginning`]).
    pub start: Start,
    /// A [`SubscriptionItem::Checkpoint`] once at least this many positions
    /// were scanned since the last signal (default 4096; `None`: never by
    /// count).
    pub checkpoint_positions: Option<u64>,
    /// A checkpoint once this long has passed since the last signal and
    /// the cursor moved (default 1 s; `None`: never by time).
    pub checkpoint_interval: Option<Duration>,
    /// Most events read from the log ahead of the consumer (default 256):
    /// with the event size limit this bounds a subscriber's memory.
    pub batch_events: usize,
    /// Wake-up coalescing of the blocking iterator and of
    /// `visit_timeout` (default 100 µs; zero: none). A subscriber woken
    /// less than this after it began to wait (the feed is busy) that then
    /// handed out more than one item does not wait for the writer's next
    /// notification: it sleeps until this long after its last wake-up and
    /// reads everything published meanwhile in one go, again while each
    /// window brings more than one item; after a window that brings less,
    /// it waits for the writer's notification as before. Under a steady
    /// stream of commits this bounds a subscriber's wake-ups to about one
    /// per window (instead of one per group commit), at the price of at
    /// most this much added delay (plus the OS's sleep overshoot); a
    /// subscriber that was idle is woken by the writer's publish with no
    /// added delay. The async stream is not affected.
    pub coalesce: Duration,
    /// Whether the store's own streams (names starting with `$`, such as
    /// `$checkpoint-NAME`) are delivered. Default `false`, except that a
    /// filter naming such a stream or category delivers it.
    pub system_streams: bool,
}

impl SubscriptionOptions {
    /// Options with `filter`, starting at the beginning, default intervals.
    pub fn new(filter: Filter) -> SubscriptionOptions {
        SubscriptionOptions {
            system_streams: filter.names_system(),
            filter,
            start: Start::Beginning,
            checkpoint_positions: Some(4096),
            checkpoint_interval: Some(Duration::from_secs(1)),
            batch_events: 256,
            coalesce: COALESCE_DEFAULT,
        }
    }

    /// Subscribe to `$all`.
    pub fn all() -> SubscriptionOptions {
        Self::new(Filter::All)
    }

    /// Subscribe to one stream from version `from_version` (inclusive).
    pub fn stream(name: impl Into<String>, from_version: u64) -> SubscriptionOptions {
        Self::new(Filter::Stream {
            name: name.into(),
            from_version,
        })
    }

    /// Subscribe to a category (see [`Filter::Category`]).
    pub fn category(category: impl Into<String>) -> SubscriptionOptions {
        Self::new(Filter::Category(category.into()))
    }

    /// Subscribe to a set of event types.
    pub fn event_types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> SubscriptionOptions {
        Self::new(Filter::EventTypes(
            types.into_iter().map(Into::into).collect(),
        ))
    }

    /// Subscribe to the events a query matches (see [`Filter::Query`]). A
    /// query out of its bounds ([`Query::validate`](crate::Query::validate))
    /// makes the subscription's only item [`Error::InvalidInput`](crate::Error::InvalidInput).
    pub fn query(query: crate::Query) -> SubscriptionOptions {
        Self::new(Filter::Query(query))
    }

    /// Where to start.
    pub fn start(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    /// A checkpoint every `positions` scanned positions (0: never by count).
    pub fn checkpoint_every_positions(mut self, positions: u64) -> Self {
        self.checkpoint_positions = (positions > 0).then_some(positions);
        self
    }

    /// A checkpoint every `interval` while the cursor moves.
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = Some(interval);
        self
    }

    /// Wake-up coalescing window of the blocking iterator (see
    /// the `coalesce` field; `Duration::ZERO`: woken
    /// at every publish).
    pub fn coalesce(mut self, window: Duration) -> Self {
        self.coalesce = window;
        self
    }

    /// No time-based checkpoints.
    pub fn no_timed_checkpoints(mut self) -> Self {
        self.checkpoint_interval = None;
        self
    }

    /// Most events held ahead of the consumer (at least 1).
    pub fn batch_events(mut self, events: usize) -> Self {
        self.batch_events = events.max(1);
        self
    }

    /// Whether the store's own `$` streams are delivered.
    pub fn system_streams(mut self, deliver: bool) -> Self {
        self.system_streams = deliver;
        self
    }

    /// Whether an event passes both the filter and the system-stream rule.
    pub(crate) fn matches(
        &self,
        stream: &str,
        version: u64,
        event_type: &str,
        tags: crate::Tags<'_>,
    ) -> bool {
        (self.system_streams || !stream.starts_with(SYSTEM_STREAM_PREFIX))
            && self.filter.matches(stream, version, event_type, tags)
    }
}

/// What a subscription hands out, in position order.
///
/// A signal's `position` is the last position the subscriber has been
/// shown (delivered or filtered out); it is `None` only when nothing has
/// been shown yet (an empty store, or a start at the end of an empty one).
/// Resuming with [`Start::after`] of it gives exactly the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// An event that matches the filter.
    Event(RecordedEvent),
    /// History is exhausted: everything up to `position` was shown; what
    /// follows is live. Sent once.
    CaughtUp {
        /// The last position shown.
        position: Option<u64>,
    },
    /// Everything up to `position` was shown; safe to persist and resume
    /// after. Sent by scanned count or time, also when nothing matched and
    /// also while live.
    Checkpoint {
        /// The last position shown.
        position: u64,
    },
}

impl SubscriptionItem {
    /// The position a consumer can resume after once it has handled this
    /// item: the event's position, or the signal's.
    pub fn position(&self) -> Option<u64> {
        match self {
            SubscriptionItem::Event(event) => Some(event.position),
            SubscriptionItem::CaughtUp { position } => *position,
            SubscriptionItem::Checkpoint { position } => Some(*position),
        }
    }
}
