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

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use annals::{
    CompactionOptions, Direction, Error, EventData, ExpectedVersion, Options, Query, QueryItem,
    Store, SubscriptionOptions,
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

/// Calls back into `store` the way a visitor may: appends, reads of every
/// kind, a subscription, stats, verify, metadata, a snapshot, a
/// compaction and a backup. `n` tells the calls of one test apart.
fn call_back(store: &Store, n: u64) {
    let stream = format!("inner-{n}");
    let written = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(n)])
        .unwrap()
        .unwrap();
    store
        .read_stream(&stream, 0, Direction::Forward, 10)
        .unwrap();
    store.read_all(0, 10).unwrap();
    let shared = Query::new([QueryItem::new().tags(["shared"])]);
    store.read_query(&shared, 0, 10).unwrap();
    store.read_category("s", 0, 10).unwrap();
    let mut subscription = store.subscribe(SubscriptionOptions::all());
    subscription.try_visit(|_| {}).unwrap();
    store.stats();
    store.verify().unwrap();
    store.set_max_count(&stream, 10).unwrap();
    store
        .save_snapshot(&stream, written.last_version, "State", b"s")
        .unwrap();
    store.load_aggregate(&stream).unwrap();
    store.compact(&CompactionOptions::default()).unwrap();
    let backup = tempfile::tempdir().unwrap();
    store.backup(backup.path().join("copy")).unwrap();
}

#[test]
fn every_visitor_and_progress_callback_may_call_back_into_the_store() {
    within_deadline("visitors calling back into the store", || {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path(), 300);
        store
            .save_snapshot("s-0", 10, "State", b"snapshot")
            .unwrap();
        let calls = AtomicUsize::new(0);
        // Each visitor calls back once, from its first call.
        let once = |store: &Store| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u64;
            call_back(store, n);
        };
        let mut first = true;
        store
            .read_stream_with("s-1", 0, Direction::Forward, usize::MAX, |_| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        let mut first = true;
        store
            .read_all_with(0, usize::MAX, |_| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        let mut first = true;
        store
            .read_category_with("s", 0, usize::MAX, |_| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        // Three times: the first read notes its events in the query cache,
        // the second copies them, the third is served from it; the visitor
        // runs under the cache's table each time.
        let shared = Query::new([QueryItem::new().tags(["shared"])]);
        let hits = store.query_cache_stats().hits;
        for _ in 0..3 {
            let mut first = true;
            store
                .read_query_with(&shared, 0, usize::MAX, |_| {
                    if std::mem::take(&mut first) {
                        once(&store);
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
        }
        assert!(store.query_cache_stats().hits > hits, "the third read hit");
        let mut first = true;
        store
            .load_aggregate_with("s-0", |_| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        let mut subscription = store.subscribe(SubscriptionOptions::all());
        let mut first = true;
        subscription
            .try_visit(|_| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
            })
            .unwrap();
        let mut first = true;
        let backup = tempfile::tempdir().unwrap();
        store
            .backup_with_progress(backup.path().join("outer"), &mut |_, _| {
                if std::mem::take(&mut first) {
                    once(&store);
                }
            })
            .unwrap();
        let mut first = true;
        store
            .compact_with_progress(&CompactionOptions::default(), &mut |_, _| {
                if std::mem::take(&mut first) {
                    // Everything but the nested compaction, which is refused.
                    let n = calls.fetch_add(1, Ordering::SeqCst) as u64;
                    let stream = format!("inner-{n}");
                    store
                        .append(&stream, ExpectedVersion::NoStream, vec![event(n)])
                        .unwrap()
                        .unwrap();
                    store.read_query(&shared, 0, 10).unwrap();
                    store.verify().unwrap();
                    let copy = tempfile::tempdir().unwrap();
                    store.backup(copy.path().join("copy")).unwrap();
                }
            })
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            10,
            "one call per visitor and read"
        );
        store.verify().unwrap();
    });
}
