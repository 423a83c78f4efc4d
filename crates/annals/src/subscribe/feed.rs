//! How the writer tells subscribers that the published end moved: a
//! condition variable for blocked iterators and a table of `Waker`s for
//! async streams, both behind one mutex.
//!
//! The writer calls [`Feed::notify`] once per committed group, right after
//! it published the new end. When nobody waits it costs one fence and one
//! atomic load: the mutex is taken only if `listeners` is not zero.
//!
//! Blocked iterators are woken at once; async wakers are handed back
//! ([`Woken`]) and woken by the caller once it holds no lock: a `Waker` is
//! the user's code (an executor's, or anything a `Waker` can be made of),
//! and one that appends or refreshes when woken must not find the write
//! path or the refresh held by the very thread that woke it (a deadlock:
//! `tests/lock_order.rs`). A waker taken out of the table is no listener
//! any more, so waking it a little later loses nothing (the proof below
//! is about whether it is taken out).
//!
//! Why no wake-up is lost: a waiter counts itself in `listeners`, then
//! (after a `SeqCst` fence) reads the published end, all while holding the
//! mutex. The writer publishes the end, then (after a `SeqCst` fence) reads
//! `listeners`. Of the two fences one comes first: either the waiter sees
//! the new end and does not wait, or the writer sees the waiter and takes
//! the mutex, which it can get only once the waiter sleeps on the condvar
//! (or has registered its waker).
//!
//! Wake-up coalescing (`SubscriptionOptions::coalesce`, in
//! `Subscription::wait_for_more`) changes who waits here, not this proof:
//! a coalescing subscriber is not a listener while it sleeps out its
//! window (the writer neither counts nor wakes it), and it needs no
//! notification, because after the window it refills up to the end
//! published by then. A window ends coalescing unless it brought more than
//! one item; the subscriber then waits here as above, re-reading the end
//! under the mutex, so an event published during or after the window is
//! either read by that refill or seen by this wait. Nothing is lost, and
//! the added delay is at most the window (plus the OS's sleep overshoot).

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Wakes subscribers when the writer publishes a new end.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    /// Blocked iterators plus registered wakers.
    listeners: AtomicUsize,
    /// Registered async wakers, by subscription id.
    wakers: Mutex<HashMap<u64, Waker>>,
    changed: Condvar,
    /// Source of subscription ids.
    ids: AtomicU64,
}

/// Async wakers [`Feed::notify`] took out of the feed, woken when this is
/// dropped (or [`Woken::wake`]d): keep it until no lock is held, since a
/// waker may call back into the store (see the module comment).
#[derive(Debug, Default)]
#[must_use = "dropping it wakes at once: keep it until no lock is held"]
pub(crate) struct Woken(Vec<Waker>);

impl Woken {
    /// Takes `other`'s wakers too.
    pub(crate) fn join(&mut self, mut other: Woken) {
        self.0.append(&mut other.0);
    }

    /// Wakes them now.
    pub(crate) fn wake(self) {
        drop(self);
    }
}

impl Drop for Woken {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

impl Feed {
    /// Called by the writer after each publish of a new end: wakes the
    /// blocked iterators, and returns the async wakers for the caller to
    /// wake once it holds no lock.
    pub(crate) fn notify(&self) -> Woken {
        fence(Ordering::SeqCst);
        if self.listeners.load(Ordering::Relaxed) == 0 {
            return Woken::default();
        }
        let mut wakers = self.wakers.lock();
        self.listeners.fetch_sub(wakers.len(), Ordering::SeqCst);
        self.changed.notify_all();
        Woken(wakers.drain().map(|(_, w)| w).collect())
    }

    /// A fresh id for a subscription's waker slot.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Blocks until `advanced()` holds, or until `deadline`. Returns
    /// whether it holds. `advanced` reads the published end.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        advanced: &dyn Fn() -> bool,
    ) -> bool {
        let mut guard = self.wakers.lock();
        self.listeners.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let held = loop {
            if advanced() {
                break true;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut guard, deadline).timed_out() {
                        break advanced();
                    }
                }
                None => self.changed.wait(&mut guard),
            }
        };
        self.listeners.fetch_sub(1, Ordering::SeqCst);
        held
    }

    /// Registers `waker` under `id` to be woken at the next publish, unless
    /// `advanced()` already holds. Returns whether it holds (then nothing
    /// stays registered).
    pub(crate) fn register(&self, id: u64, waker: &Waker, advanced: &dyn Fn() -> bool) -> bool {
        let mut wakers = self.wakers.lock();
        match wakers.get_mut(&id) {
            Some(slot) => slot.clone_from(waker),
            None => {
                wakers.insert(id, waker.clone());
                self.listeners.fetch_add(1, Ordering::SeqCst);
            }
        }
        fence(Ordering::SeqCst);
        if advanced() {
            if wakers.remove(&id).is_some() {
                self.listeners.fetch_sub(1, Ordering::SeqCst);
            }
            return true;
        }
        false
    }

    /// Forgets the waker registered under `id` (a dropped stream).
    pub(crate) fn unregister(&self, id: u64) {
        let mut wakers = self.wakers.lock();
        if wakers.remove(&id).is_some() {
            self.listeners.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
