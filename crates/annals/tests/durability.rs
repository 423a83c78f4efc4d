//! Property: each durability mode loses exactly what its documentation
//! says a crash may lose — `Fsync` and `Batched` nothing acknowledged,
//! `Buffered` only what came after the last `flush()` (and then only a
//! suffix) — and under a stress of many threads no append is lost or
//! answered twice. Method: crash images of the memory backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{CrashMode, MemStorage};
use annals::{Direction, Durability, EventData, ExpectedVersion, Options, Store};

/// Runs a workload and returns the still-open store: the caller takes its
/// crash image before the store closes (a clean close flushes).
fn run(durability: Durability, seed: u64) -> (Store, MemStorage, Vec<annals::AppendResult>, usize) {
    let mem = MemStorage::new();
    let options = Options::default()
        .segment_bytes(16 << 10)
        .durability(durability);
    let store = Store::open_storage(Arc::new(mem.handle()), options).unwrap();
    let mut acked = Vec::new();
    let mut flushed = 0;
    for i in 0..120u64 {
        let stream = format!("s-{}", (i + seed) % 7);
        let result = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![EventData::new("E", format!("{i}"))],
            )
            .unwrap()
            .unwrap();
        // Visible at once, in every mode.
        assert_eq!(
            store
                .read_stream(&stream, result.first_version, Direction::Forward, 1)
                .unwrap()
                .len(),
            1
        );
        acked.push(result);
        if i == 59 {
            store.flush().unwrap();
            flushed = acked.len();
        }
    }
    (store, mem, acked, flushed)
}

#[test]
fn fsync_and_batched_lose_nothing_acknowledged() {
    for durability in [
        Durability::Fsync,
        Durability::Batched {
            delay: Duration::from_micros(200),
        },
    ] {
        for seed in 0..10 {
            let (open, mem, acked, _) = run(durability, seed);
            let image = mem.crash_image(seed, CrashMode::GarbleUnsynced);
            drop(open);
            let store =
                Store::open_storage(Arc::new(image), Options::default().segment_bytes(16 << 10))
                    .unwrap();
            assert_eq!(store.position_end(), acked.len() as u64, "{durability:?}");
        }
    }
}

#[test]
fn buffered_loses_at_most_what_came_after_the_last_flush() {
    let mut lost_somewhere = false;
    for seed in 0..10 {
        let (open, mem, acked, flushed) = run(Durability::Buffered, seed);
        let image = mem.crash_image(seed, CrashMode::DropUnsynced);
        drop(open);
        let store =
            Store::open_storage(Arc::new(image), Options::default().segment_bytes(16 << 10))
                .unwrap();
        let kept = store.position_end() as usize;
        assert!(kept >= flushed, "lost flushed appends: {kept} < {flushed}");
        lost_somewhere |= kept < acked.len();
        // What survives is a prefix: every kept append is intact.
        for result in &acked[..kept] {
            let events = store
                .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
                .unwrap();
            assert_eq!(events[0].position, result.first_position);
        }
    }
    assert!(
        lost_somewhere,
        "buffered mode never lost anything: the test does not exercise it"
    );
}

#[test]
fn a_clean_close_flushes_buffered_appends() {
    let mem = MemStorage::new();
    let options = Options::default().durability(Durability::Buffered);
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    for i in 0..10 {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                vec![EventData::new("E", format!("{i}"))],
            )
            .unwrap()
            .unwrap();
    }
    drop(store);
    let image = mem.crash_image(7, CrashMode::DropUnsynced);
    let store = Store::open_storage(Arc::new(image), options).unwrap();
    assert_eq!(store.position_end(), 10);
}

#[test]
fn no_append_is_lost_or_answered_twice_under_stress() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let stream = format!("writer-{t}");
                        store
                            .append(
                                &stream,
                                ExpectedVersion::Any,
                                vec![EventData::new("E", format!("{t}/{i}"))],
                            )
                            .unwrap()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut positions = HashSet::new();
    for (t, thread) in threads.into_iter().enumerate() {
        let results = thread.join().unwrap();
        assert_eq!(results.len(), 50);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(
                result.first_version, i as u64,
                "writer {t} versions out of order"
            );
            assert!(
                positions.insert(result.first_position),
                "position answered twice"
            );
        }
    }
    assert_eq!(positions.len(), 64 * 50);
    assert_eq!(store.position_end(), 64 * 50);
    assert_eq!(positions.iter().max().copied(), Some(64 * 50 - 1));
}
