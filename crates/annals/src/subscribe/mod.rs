//! Subscriptions: catch up on history from any position, then follow live
//! events, on `$all`, one stream, a category or a set of event types.
//!
//! | file | owns |
//! |---|---|
//! | `options.rs` | `Filter`, `Start`, `SubscriptionOptions`, `SubscriptionItem` |
//! | `subscription.rs` | `Subscription`: the cursor, batches, signals, the blocking iterator |
//! | `stream.rs` | `SubscriptionStream`: the async `Stream` over the same cursor |
//! | `by_stream.rs` | a one-stream subscription far behind reads through the stream index |
//! | `by_key.rs` | a category or event-type subscription far behind reads through the secondary indexes |
//! | `visit.rs` | `SubscriptionItemRef`, `try_visit` / `visit_timeout`: zero-copy batches |
//! | `by_query.rs` | a query subscription far behind reads through the tag and type postings |
//! | `feed.rs` | `Feed`: how the writer wakes blocked and async subscribers |
//! | `checkpoint.rs` | durable named consumer checkpoints (`$checkpoint-NAME` streams) |

mod by_key;
mod by_query;
mod by_stream;
mod checkpoint;
mod feed;
mod options;
mod stream;
mod subscription;
mod visit;

pub use checkpoint::{checkpoint_stream, CHECKPOINT_EVENT_TYPE};
pub(crate) use feed::{Feed, Woken};
pub use options::{
    category_of, Filter, Start, SubscriptionItem, SubscriptionOptions, SYSTEM_STREAM_PREFIX,
};
pub use stream::SubscriptionStream;
pub use subscription::Subscription;
pub use visit::SubscriptionItemRef;

use crate::Store;

impl Store {
    /// Subscribes to the events `options` select, from its start: history
    /// from the log, then live events as the writer publishes them, in
    /// position order, every matching position exactly once. See
    /// [`Subscription`] for memory, durability and the signals.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Start, Store, SubscriptionItem, SubscriptionOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for n in 0..3 {
    ///     store.append(&format!("order-{n}"), ExpectedVersion::Any, vec![EventData::new("Placed", "{}")])??;
    /// }
    /// // Resume after position 0: exactly the rest.
    /// let items: Vec<_> = store
    ///     .subscribe(SubscriptionOptions::all().start(Start::After(0)))
    ///     .map_while(|item| match item {
    ///         Ok(SubscriptionItem::Event(event)) => Some(event.position),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(items, vec![1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, options: SubscriptionOptions) -> Subscription {
        Subscription::new(self.clone(), options)
    }
}
