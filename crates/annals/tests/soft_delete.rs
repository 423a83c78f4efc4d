//! Property: a soft-deleted stream reads and loads as empty, keeps its
//! version, and takes appends again with versions continuing; only the
//! events after the soft delete are read, before and after reopen and
//! after a crash; snapshots from before it are not loaded; a refused soft
//! delete writes nothing. Method: real directories and crash images.

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    meta_stream, CurrentVersion, Direction, Error, EventData, ExpectedVersion, Options, Store,
};

fn events(from: u64, count: u64) -> Vec<EventData> {
    (from..from + count)
        .map(|v| EventData::new("Changed", format!("e{v}")))
        .collect()
}

fn read_versions(store: &Store, stream: &str, from: u64, direction: Direction) -> Vec<u64> {
    store
        .read_stream(stream, from, direction, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect()
}

#[test]
fn a_soft_deleted_stream_reads_empty_and_continues_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 5))
        .unwrap()
        .unwrap();
    store
        .append("other", ExpectedVersion::NoStream, events(0, 2))
        .unwrap()
        .unwrap();
    store
        .soft_delete_stream("cart", ExpectedVersion::Exact(4))
        .unwrap()
        .unwrap();
    assert!(read_versions(&store, "cart", 0, Direction::Forward).is_empty());
    assert!(read_versions(&store, "cart", u64::MAX, Direction::Backward).is_empty());
    assert_eq!(
        store.stream_version("cart").unwrap(),
        CurrentVersion::Version(4)
    );
    assert_eq!(
        read_versions(&store, "other", 0, Direction::Forward),
        [0, 1]
    );
    let loaded = store.load_aggregate("cart").unwrap();
    assert!(loaded.events.is_empty());
    assert_eq!(loaded.version, CurrentVersion::Version(4));

    // Appends go on from the old version; only they are read.
    let again = store
        .append("cart", ExpectedVersion::Exact(4), events(5, 3))
        .unwrap()
        .unwrap();
    assert_eq!(again.first_version, 5);
    assert_eq!(
        read_versions(&store, "cart", 0, Direction::Forward),
        [5, 6, 7]
    );
    assert_eq!(read_versions(&store, "cart", 6, Direction::Forward), [6, 7]);
    assert_eq!(
        read_versions(&store, "cart", u64::MAX, Direction::Backward),
        [7, 6, 5]
    );
    assert!(read_versions(&store, "cart", 3, Direction::Backward).is_empty());
    let page = store.read_stream("cart", 0, Direction::Forward, 2).unwrap();
    assert_eq!(page.iter().map(|e| e.version).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(&page[0].data[..], b"e5");

    // The events stay in `$all` (nothing is removed before a compaction).
    let all = store.read_all(0, 100).unwrap();
    assert_eq!(all.iter().filter(|e| e.stream == "cart").count(), 8);
    assert_eq!(
        all.iter()
            .filter(|e| e.stream == meta_stream("cart"))
            .count(),
        1
    );

    // A second soft delete hides the new events too; reopen keeps it all.
    store
        .soft_delete_stream("cart", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    assert!(read_versions(&store, "cart", 0, Direction::Forward).is_empty());
    store
        .append("cart", ExpectedVersion::Exact(7), events(8, 1))
        .unwrap()
        .unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_versions(&store, "cart", 0, Direction::Forward), [8]);
    assert_eq!(
        store.stream_version("cart").unwrap(),
        CurrentVersion::Version(8)
    );
    // A hard delete still works after a soft one.
    store
        .delete_stream("cart", ExpectedVersion::Exact(8))
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.read_stream("cart", 0, Direction::Forward, 10),
        Err(Error::StreamDeleted(_))
    ));
}

#[test]
fn snapshots_from_before_a_soft_delete_are_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 5))
        .unwrap()
        .unwrap();
    store.save_snapshot("cart", 4, "S", b"old").unwrap();
    store
        .soft_delete_stream("cart", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let loaded = store.load_aggregate("cart").unwrap();
    assert_eq!((loaded.snapshot, loaded.events.len()), (None, 0));
    store
        .append("cart", ExpectedVersion::Exact(4), events(5, 3))
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.save_snapshot("cart", 4, "S", b"x"),
        Err(Error::InvalidInput(_))
    ));
    let loaded = store.load_aggregate("cart").unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    store.save_snapshot("cart", 6, "S", b"new").unwrap();
    let loaded = store.load_aggregate("cart").unwrap();
    assert_eq!(&loaded.snapshot.unwrap().data[..], b"new");
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [7]
    );
}

#[test]
fn a_refused_soft_delete_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 2))
        .unwrap()
        .unwrap();
    store
        .append("gone", ExpectedVersion::NoStream, events(0, 1))
        .unwrap()
        .unwrap();
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let end = store.position_end();
    let conflict = store
        .soft_delete_stream("cart", ExpectedVersion::Exact(0))
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.actual, CurrentVersion::Version(1));
    assert!(matches!(
        store.soft_delete_stream("nobody", ExpectedVersion::Any),
        Err(Error::StreamNotFound(_))
    ));
    assert!(matches!(
        store.soft_delete_stream("gone", ExpectedVersion::Any),
        Err(Error::StreamDeleted(_))
    ));
    assert!(matches!(
        store.soft_delete_stream(&meta_stream("cart"), ExpectedVersion::Any),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(store.position_end(), end);
    // The longest stream name has no room for its metadata stream's prefix.
    let long = "l".repeat(annals::STREAM_BYTES_MAX);
    store
        .append(&long, ExpectedVersion::NoStream, events(0, 1))
        .unwrap()
        .unwrap();
    let end = store.position_end();
    assert!(matches!(
        store.soft_delete_stream(&long, ExpectedVersion::Any),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(store.position_end(), end);
    assert_eq!(read_versions(&store, "cart", 0, Direction::Forward), [0, 1]);
    assert_eq!(read_versions(&store, &long, 0, Direction::Forward), [0]);
}

#[test]
fn an_acknowledged_soft_delete_survives_every_crash_image() {
    for seed in 0..30u64 {
        let mem = MemStorage::new();
        let options = Options::default().segment_bytes(64 << 10);
        let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
        store
            .append("cart", ExpectedVersion::NoStream, events(0, 3))
            .unwrap()
            .unwrap();
        store
            .soft_delete_stream("cart", ExpectedVersion::Exact(2))
            .unwrap()
            .unwrap();
        store
            .append("cart", ExpectedVersion::Exact(2), events(3, 1))
            .unwrap()
            .unwrap();
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        drop(store);
        let store = Store::open_storage(Arc::new(image), options).unwrap();
        assert_eq!(
            read_versions(&store, "cart", 0, Direction::Forward),
            [3],
            "seed {seed}"
        );
        store.verify().unwrap();
    }
}

/// Soft-deletes "cart" `times` times, checking that the truncation point
/// it sees only moves forward; returns the last one.
fn soft_delete_cart(store: &Store, times: usize) -> u64 {
    let mut last = 0;
    for _ in 0..times {
        let deleted = store
            .soft_delete_stream("cart", ExpectedVersion::Any)
            .unwrap()
            .unwrap();
        assert!(deleted.truncate_before >= last);
        last = deleted.truncate_before;
    }
    last
}

#[test]
fn soft_deletes_racing_appenders_leave_a_dense_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 1))
        .unwrap()
        .unwrap();
    let last_cut = std::thread::scope(|scope| {
        for _ in 0..3 {
            let store = store.clone();
            scope.spawn(move || {
                for _ in 0..100 {
                    store
                        .append("cart", ExpectedVersion::Any, events(0, 1))
                        .unwrap()
                        .unwrap();
                    // Whatever a reader sees is a dense run of versions.
                    let seen = read_versions(&store, "cart", 0, Direction::Forward);
                    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
                }
            });
        }
        // Two deleters race each other: the truncation point only moves forward.
        let deleters: Vec<_> = (0..2)
            .map(|_| {
                let deleter = store.clone();
                scope.spawn(move || soft_delete_cart(&deleter, 20))
            })
            .collect();
        deleters
            .into_iter()
            .map(|d| d.join().unwrap())
            .max()
            .unwrap()
    });
    let CurrentVersion::Version(current) = store.stream_version("cart").unwrap() else {
        panic!()
    };
    assert_eq!(current, 300);
    let want: Vec<u64> = (last_cut..=current).collect();
    assert_eq!(read_versions(&store, "cart", 0, Direction::Forward), want);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_versions(&store, "cart", 0, Direction::Forward), want);
}

/// A one-stream subscription reads through the stream index when far
/// behind and scans when close: both paths deliver the soft-deleted
/// events (they are still in `$all`), so where it starts changes nothing.
#[test]
fn stream_subscriptions_deliver_soft_deleted_events_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 3))
        .unwrap()
        .unwrap();
    store
        .soft_delete_stream("cart", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    for n in 0..50 {
        store
            .append("other", ExpectedVersion::Any, events(n * 100, 100))
            .unwrap()
            .unwrap();
    }
    store
        .append("cart", ExpectedVersion::Exact(2), events(3, 1))
        .unwrap()
        .unwrap();
    let mut subscription = store.subscribe(annals::SubscriptionOptions::stream("cart", 0));
    let mut versions = Vec::new();
    while let Some(item) = subscription.next_timeout(std::time::Duration::from_secs(5)) {
        match item.unwrap() {
            annals::SubscriptionItem::Event(event) => versions.push(event.version),
            annals::SubscriptionItem::CaughtUp { .. } => break,
            annals::SubscriptionItem::Checkpoint { .. } => {}
        }
    }
    assert_eq!(versions, [0, 1, 2, 3]);
}

/// Regression: soft deletes and metadata setters of one stream racing in
/// one process take turns instead of retrying against each other — four
/// soft-deleters and two retention setters, 40 each, all succeed (before,
/// a setter that kept losing failed with "lost 16 races in a row", seen
/// under load in `soft_deletes_racing_appenders_leave_a_dense_suffix`), and
/// the truncation point each sees only moves forward.
#[test]
fn many_soft_deleters_and_setters_of_one_stream_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("cart", ExpectedVersion::NoStream, events(0, 1))
        .unwrap()
        .unwrap();
    std::thread::scope(|scope| {
        let appender = store.clone();
        scope.spawn(move || {
            for _ in 0..100 {
                appender
                    .append("cart", ExpectedVersion::Any, events(0, 1))
                    .unwrap()
                    .unwrap();
            }
        });
        for _ in 0..4 {
            let deleter = store.clone();
            scope.spawn(move || soft_delete_cart(&deleter, 40));
        }
        for n in 0..2u64 {
            let setter = store.clone();
            scope.spawn(move || {
                for k in 0..40 {
                    setter.set_max_count("cart", 1_000 + n * 100 + k).unwrap();
                }
            });
        }
    });
    assert_eq!(
        store.stream_version("cart").unwrap(),
        CurrentVersion::Version(100)
    );
}
