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
//!
//! Method: each scenario runs on a thread of its own; the test waits for
//! it on a channel with a deadline, so a deadlock fails the test instead
//! of hanging it (the stuck thread is left behind).

use std::sync::mpsc;
use std::time::Duration;

use annals::{CompactionOptions, Error, EventData, ExpectedVersion, Options, Store};

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
