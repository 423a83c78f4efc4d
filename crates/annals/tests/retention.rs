//! Property: `truncate-before` and `max-count`, set per stream, hide the
//! events outside them from stream reads and loads at once (versions do not
//! change), together with soft deletes, before and after reopen and after a
//! crash; a refused setting writes nothing. Method: real directories and
//! crash images.

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    CurrentVersion, Direction, Error, EventData, ExpectedVersion, Options, Store, StreamMetadata,
};

fn events(from: u64, count: u64) -> Vec<EventData> {
    (from..from + count)
        .map(|v| EventData::new("Changed", format!("e{v}")))
        .collect()
}

fn versions(store: &Store, stream: &str, from: u64, direction: Direction) -> Vec<u64> {
    store
        .read_stream(stream, from, direction, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect()
}

#[test]
fn max_count_keeps_the_newest_events_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("log", ExpectedVersion::NoStream, events(0, 10))
        .unwrap()
        .unwrap();
    store.set_max_count("log", 3).unwrap();
    assert_eq!(versions(&store, "log", 0, Direction::Forward), [7, 8, 9]);
    assert_eq!(
        versions(&store, "log", u64::MAX, Direction::Backward),
        [9, 8, 7]
    );
    assert_eq!(
        store.stream_version("log").unwrap(),
        CurrentVersion::Version(9)
    );
    store
        .append("log", ExpectedVersion::Exact(9), events(10, 2))
        .unwrap()
        .unwrap();
    assert_eq!(versions(&store, "log", 0, Direction::Forward), [9, 10, 11]);
    let loaded = store.load_aggregate("log").unwrap();
    assert_eq!(
        loaded.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [9, 10, 11]
    );
    assert_eq!(
        store.stream_metadata("log").unwrap(),
        StreamMetadata {
            truncate_before: None,
            max_count: Some(3),
            ..StreamMetadata::default()
        }
    );
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(versions(&store, "log", 0, Direction::Forward), [9, 10, 11]);
}

#[test]
fn truncate_before_and_max_count_combine_and_never_move_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("log", ExpectedVersion::NoStream, events(0, 10))
        .unwrap()
        .unwrap();
    store.set_truncate_before("log", 5).unwrap();
    assert_eq!(
        versions(&store, "log", 0, Direction::Forward),
        [5, 6, 7, 8, 9]
    );
    store.set_max_count("log", 3).unwrap();
    assert_eq!(versions(&store, "log", 0, Direction::Forward), [7, 8, 9]);
    store.set_max_count("log", 8).unwrap();
    assert_eq!(
        versions(&store, "log", 0, Direction::Forward),
        [5, 6, 7, 8, 9]
    );

    let end = store.position_end();
    assert!(matches!(
        store.set_truncate_before("log", 4),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.set_truncate_before("log", 11),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.set_truncate_before("nobody", 0),
        Err(Error::StreamNotFound(_))
    ));
    assert!(matches!(
        store.set_max_count("nobody", 1),
        Err(Error::StreamNotFound(_))
    ));
    assert!(matches!(
        store.set_max_count("$meta-log", 1),
        Err(Error::InvalidInput(_))
    ));
    store
        .append("gone", ExpectedVersion::NoStream, events(0, 1))
        .unwrap()
        .unwrap();
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let end_after_gone = store.position_end();
    assert!(end_after_gone > end);
    assert!(matches!(
        store.set_max_count("gone", 1),
        Err(Error::StreamDeleted(_))
    ));
    assert_eq!(store.position_end(), end_after_gone);

    // Up to the next version: reads empty, like a soft delete.
    store.set_truncate_before("log", 10).unwrap();
    assert!(versions(&store, "log", 0, Direction::Forward).is_empty());
    // A soft delete after the rules moves the point further.
    store
        .append("log", ExpectedVersion::Exact(9), events(10, 2))
        .unwrap()
        .unwrap();
    store
        .soft_delete_stream("log", ExpectedVersion::Exact(11))
        .unwrap()
        .unwrap();
    assert!(versions(&store, "log", 0, Direction::Forward).is_empty());
    assert_eq!(
        store.stream_metadata("log").unwrap().truncate_before,
        Some(12)
    );
    assert_eq!(store.stream_metadata("log").unwrap().max_count, Some(8));
}

#[test]
fn acknowledged_rules_survive_every_crash_image() {
    for seed in 0..30u64 {
        let mem = MemStorage::new();
        let options = Options::default().segment_bytes(64 << 10);
        let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
        store
            .append("log", ExpectedVersion::NoStream, events(0, 6))
            .unwrap()
            .unwrap();
        store.set_truncate_before("log", 1).unwrap();
        store.set_max_count("log", 2).unwrap();
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        drop(store);
        let store = Store::open_storage(Arc::new(image), options).unwrap();
        assert_eq!(
            versions(&store, "log", 0, Direction::Forward),
            [4, 5],
            "seed {seed}"
        );
    }
}
