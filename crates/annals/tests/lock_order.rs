//! Property: no code the store calls back — a visitor, a progress
//! callback, an async task's `Waker` — deadlocks the store when it calls
//! back into it (append, read, subscribe, compact, backup, refresh…),
//! because none runs while the store holds a lock that call needs
//! (`docs/ARCHITECTURE.md`, "Lock order").
//!
//! Regressions:
//! - `compact_with_progress` called `progress` while holding the
//!   compaction lock (a plain mutex); a progress callback that compacted
//!   again, on the same thread, waited for itself for ever.
//! - The writer woke async subscribers' `Waker`s while it held the write
//!   path (the writer's lock, leadership of the group); a waker that
//!   appended when woken queued behind the leader that was waking it, on
//!   the same thread: every appender stopped. A read-only store woke them
//!   inside `refresh`, holding the refresh lock: a waker that refreshed
//!   waited for itself.
//!
//! Method: each scenario runs on a thread of its own; the test waits for
//! it on a channel with a deadline, so a deadlock fails the test instead
//! of hanging it (the stuck thread is left behind).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use annals::{
    CompactionOptions, Error, EventData, ExpectedVersion, Options, Store, SubscriptionOptions,
};
use futures_core::Stream;

/// Far longer than any scenario takes, even on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `body` on a thread of its own; fails if it has not returned by
/// [`DEADLINE`] (a deadlock), and passes its panic on.
fn within_deadline(what: &str, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(DEADLINE) {
        Ok(()) => thread.join().unwrap(),
        // The body panicked (its sender dropped unsent): pass it on.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("deadlock: {what} did not return within {DEADLINE:?}")
        }
    }
}

fn options() -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
        .query_cache_bytes(1 << 20)
}

fn event(n: u64) -> EventData {
    EventData::new("Changed", format!("event {n} {}", "x".repeat(100)))
        .with_tags(["shared".to_owned()])
}

fn append(store: &Store, stream: &str, n: u64) {
    store
        .append(stream, ExpectedVersion::Any, vec![event(n)])
        .unwrap()
        .unwrap();
}

/// A store of `count` events over three streams, sealed segments among them.
fn filled(dir: &std::path::Path, count: u64) -> Store {
    let store = Store::open_with(dir, options()).unwrap();
    for n in 0..count {
        append(&store, &format!("s-{}", n % 3), n);
    }
    store
}

#[test]
fn regression_compact_from_its_own_progress_callback_is_refused_not_a_deadlock() {
    within_deadline("a compaction nested in its progress callback", || {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path(), 300);
        store.set_max_count("s-0", 5).unwrap();
        let mut nested = None;
        let report = store
            .compact_with_progress(&CompactionOptions::default(), &mut |_, _| {
                if nested.is_none() {
                    nested = Some(store.compact(&CompactionOptions::default()));
                }
            })
            .unwrap();
        // The nested call is refused, writing nothing; the outer one works.
        assert!(
            matches!(nested, Some(Err(Error::InvalidInput(_)))),
            "{nested:?}"
        );
        assert!(report.removed.max_count > 0, "{report:?}");
        // Another thread's compaction still waits its turn, then runs.
        let other = store.clone();
        std::thread::spawn(move || other.compact(&CompactionOptions::default()).unwrap())
            .join()
            .unwrap();
        store.verify().unwrap();
    });
}

/// A waker that, the first time it is woken, runs `act` (on the thread
/// that wakes it) and reports how that went.
struct ActingWaker {
    act: Box<dyn Fn() -> bool + Send + Sync>,
    woken: AtomicBool,
    done: std::sync::Mutex<mpsc::Sender<bool>>,
}

impl Wake for ActingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            let ok = (self.act)();
            let _ = self.done.lock().unwrap().send(ok);
        }
    }
}

/// Polls a subscription of everything in `store` until it waits for the
/// writer, with a waker that runs `act` when woken; returns the stream
/// (keep it: dropping it unregisters the waker) and the channel `act`'s
/// outcome comes on.
fn waiting_subscriber(
    store: &Store,
    act: impl Fn() -> bool + Send + Sync + 'static,
) -> (annals::SubscriptionStream, mpsc::Receiver<bool>) {
    let (done, outcome) = mpsc::channel();
    let waker = Waker::from(Arc::new(ActingWaker {
        act: Box::new(act),
        woken: AtomicBool::new(false),
        done: std::sync::Mutex::new(done),
    }));
    let mut stream = store.subscribe(SubscriptionOptions::all()).into_stream();
    let mut cx = Context::from_waker(&waker);
    // Bounded: a store of a few events yields them and `CaughtUp`.
    for _ in 0..1_000 {
        if Pin::new(&mut stream).poll_next(&mut cx).is_pending() {
            return (stream, outcome);
        }
    }
    panic!("the subscription never waited for the writer");
}

#[test]
fn regression_a_waker_that_appends_when_woken_does_not_deadlock_the_writer() {
    within_deadline("an append woken by an append", || {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path(), 3);
        let from_waker = store.clone();
        let (_stream, outcome) = waiting_subscriber(&store, move || {
            from_waker
                .append("woken-1", ExpectedVersion::Any, vec![event(1)])
                .is_ok_and(|written| written.is_ok())
        });
        // This thread leads the group and wakes the subscriber's waker.
        append(&store, "s-0", 3);
        assert_eq!(outcome.recv_timeout(DEADLINE), Ok(true));
        let streams: Vec<String> = store
            .read_all(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.stream)
            .collect();
        assert_eq!(streams, ["s-0", "s-1", "s-2", "s-0", "woken-1"]);
    });
}

#[test]
fn regression_a_waker_that_refreshes_a_read_only_view_does_not_deadlock_it() {
    within_deadline("a refresh woken by a refresh", || {
        let dir = tempfile::tempdir().unwrap();
        let owner = filled(dir.path(), 3);
        let view = Store::open_read_only_with(dir.path(), options()).unwrap();
        let from_waker = view.clone();
        let (_stream, outcome) = waiting_subscriber(&view, move || from_waker.refresh().is_ok());
        append(&owner, "s-0", 3);
        // The refresh that finds the append wakes the subscriber's waker.
        assert_eq!(view.refresh().unwrap(), 4);
        assert_eq!(outcome.recv_timeout(DEADLINE), Ok(true));
    });
}
