//! Property: `LogReader::prefix` (what a backup copies) of a log whose
//! writer is appending to the same active segment never deadlocks, and
//! every prefix it answers ends inside its last segment's written bytes.
//!
//! Regression: `prefix` found the frame holding the last position under
//! one read lock of the active segment's frame index and, that guard still
//! alive, took a second read lock to fetch the frame. The lock is fair: a
//! writer waiting for it (every append takes it to push its frames) makes
//! new readers wait, and it waited for the first guard — a deadlock of the
//! backup, the writer and every appender behind it (a live store's backup
//! hung in `backup.rs` on tmpfs under CPU load).
//! Method: a writer thread appends and syncs as fast as it can while this
//! thread asks for the prefix of the published end again and again, for a
//! few seconds; a watchdog fails the test if either stops making progress.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_segment::storage::{MemStorage, Storage};
use annals_segment::{LogOptions, Record};
use common::{event, Owned};

/// How long the two threads race.
const RACE: Duration = Duration::from_secs(3);
/// How long either may go without progress before it counts as a deadlock
/// (on a loaded machine a thread can stall for a while; never for this).
const STALL_MAX: Duration = Duration::from_secs(30);

#[test]
fn regression_a_prefix_of_the_active_segment_never_deadlocks_with_the_writer() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let options = LogOptions {
        // Small: the active segment's mapping is cheap to renew, so that
        // the prefixes come fast.
        segment_bytes: 1 << 20,
        zero_ahead: Some(false),
    };
    let (mut writer, reader, _) = annals_segment::open(storage, options).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let prefixes = Arc::new(AtomicU64::new(0));
    let writing = {
        let (stop, appended) = (Arc::clone(&stop), Arc::clone(&appended));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<Owned> = (n..n + 2).map(|k| event(k, 40)).collect();
                let records: Vec<Record<'_>> = events.iter().map(Owned::record).collect();
                writer.append(&[&records]).unwrap();
                writer.sync().unwrap();
                n += 2;
                appended.store(n, Ordering::Relaxed);
            }
            writer
        })
    };
    let asking = {
        let (stop, prefixes, reader) = (Arc::clone(&stop), Arc::clone(&prefixes), reader.clone());
        std::thread::spawn(move || {
            let mut asked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let end = reader.position_end();
                if end > 0 {
                    let parts = reader.prefix(end).unwrap();
                    let last = parts.last().unwrap();
                    let segment = reader
                        .segments()
                        .into_iter()
                        .find(|s| s.name == last.name)
                        .unwrap();
                    assert!(last.bytes <= segment.data_bytes, "{last:?} of {segment:?}");
                }
                asked += 1;
                prefixes.store(asked, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    // Per thread: its count when last seen, and when it last moved.
    let mut seen = [(0, Instant::now()); 2];
    while started.elapsed() < RACE {
        std::thread::sleep(Duration::from_millis(20));
        let now = [
            appended.load(Ordering::Relaxed),
            prefixes.load(Ordering::Relaxed),
        ];
        for (count, (last, moved)) in now.into_iter().zip(seen.iter_mut()) {
            if count != *last {
                *last = count;
                *moved = Instant::now();
            }
            assert!(
                moved.elapsed() < STALL_MAX,
                "deadlock: {} events appended, {} prefixes asked, one stopped moving",
                now[0],
                now[1]
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Both must stop now; a deadlock after the last check above is caught
    // here (the threads are left behind: the test fails either way).
    let deadline = Instant::now() + STALL_MAX;
    while !(writing.is_finished() && asking.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "deadlock: {} events appended, {} prefixes asked",
            appended.load(Ordering::Relaxed),
            prefixes.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    asking.join().unwrap();
    let writer = writing.join().unwrap();
    drop(writer);
    eprintln!(
        "{} events appended, {} prefixes of the active segment asked",
        appended.load(Ordering::Relaxed),
        prefixes.load(Ordering::Relaxed)
    );
    assert!(prefixes.load(Ordering::Relaxed) > 0);
}
