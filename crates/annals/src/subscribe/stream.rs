//! The async face of a [`Subscription`]: a hand-written
//! [`futures_core::Stream`] that registers its task's `Waker` with the
//! store's feed, so it works on any executor and the library needs no
//! async runtime.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::options::SubscriptionItem;
use super::subscription::{Ready, Subscription};
use crate::error::Result;

/// Most batches one poll reads from the log before it yields.
const REFILLS_PER_POLL: usize = 4;

/// A [`Subscription`] as an async [`Stream`]; made by
/// [`Subscription::into_stream`]. Each poll reads at most four batches
/// from the log (memory-mapped, so it does not block on the network, but it
/// may touch the disk) and yields to the executor (waking itself) after a
/// long stretch that matched nothing; at the published end it registers the task's waker and
/// returns `Pending` until the writer publishes more.
///
/// Timed checkpoints are produced when the stream is polled: while the
/// store is idle nobody wakes the task, so an idle subscriber gets its
/// timed checkpoint with the next publish (count-based ones are exact).
///
/// ```
/// use annals::{EventData, ExpectedVersion, Store, SubscriptionItem, SubscriptionOptions};
/// use futures_core::Stream;
/// use std::pin::Pin;
/// use std::task::{Context, Poll, Waker};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("s-1", ExpectedVersion::Any, vec![EventData::new("Happened", "{}")])??;
/// let mut stream = store.subscribe(SubscriptionOptions::all()).into_stream();
/// let mut cx = Context::from_waker(Waker::noop());
/// let first = Pin::new(&mut stream).poll_next(&mut cx);
/// assert!(matches!(first, Poll::Ready(Some(Ok(SubscriptionItem::Event(_))))));
/// let caught_up = Pin::new(&mut stream).poll_next(&mut cx);
/// assert!(matches!(caught_up, Poll::Ready(Some(Ok(SubscriptionItem::CaughtUp { .. })))));
/// assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SubscriptionStream {
    subscription: Subscription,
}

impl Subscription {
    /// This subscription as an async [`Stream`] of the same items.
    pub fn into_stream(self) -> SubscriptionStream {
        SubscriptionStream { subscription: self }
    }
}

impl SubscriptionStream {
    /// Back to the blocking form.
    pub fn into_inner(self) -> Subscription {
        self.subscription
    }
}

impl Stream for SubscriptionStream {
    type Item = Result<SubscriptionItem>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let subscription = &mut self.get_mut().subscription;
        loop {
            match subscription.try_next_within(REFILLS_PER_POLL) {
                Ready::Item(item) => return Poll::Ready(Some(item)),
                Ready::Busy => {
                    // A long stretch that matched nothing: let the
                    // executor run other tasks, and come back.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Ready::AtEnd => {}
            }
            if subscription.failed {
                return Poll::Ready(None);
            }
            let next = subscription.next;
            let reader = subscription.store.log_reader();
            let advanced = subscription
                .store
                .feed()
                .register(subscription.id, cx.waker(), &|| {
                    reader.position_end() > next
                });
            if !advanced {
                return Poll::Pending;
            }
        }
    }
}
