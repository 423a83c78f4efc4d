//! Property: everything acknowledged survives reopen with the same versions
//! and positions, the index after reopen equals the index before, a second
//! open is refused with `Locked`, bad input writes nothing, a multi-stream
//! append is all or nothing, and simulated crashes keep every acknowledged
//! append. Method: real directories and crash images of the memory backend.

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    CurrentVersion, Direction, Error, EventData, EventId, ExpectedVersion, Options, Store,
};

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

#[test]
fn acknowledged_appends_survive_reopen_with_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small()).unwrap();
    let mut acked = Vec::new();
    for i in 0..500u64 {
        let stream = format!("order-{}", i % 37);
        let events = (0..1 + i % 3)
            .map(|k| EventData::new("Changed", format!("{i}/{k}")))
            .collect();
        acked.push(
            store
                .append(&stream, ExpectedVersion::Any, events)
                .unwrap()
                .unwrap(),
        );
    }
    let dump = store.index_dump().unwrap();
    let all = store.read_all(0, usize::MAX).unwrap();
    assert!(store.stats().segments > 1);
    drop(store);

    let store = Store::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.index_dump().unwrap(), dump);
    assert_eq!(store.read_all(0, usize::MAX).unwrap(), all);
    for result in &acked {
        let events = store
            .read_stream(
                &result.stream,
                result.first_version,
                Direction::Forward,
                (result.last_version - result.first_version + 1) as usize,
            )
            .unwrap();
        for (k, event) in events.iter().enumerate() {
            assert_eq!(event.version, result.first_version + k as u64);
            assert_eq!(event.position, result.first_position + k as u64);
        }
    }
    let report = store.verify().unwrap();
    assert_eq!(report.events, all.len() as u64);
    assert_eq!(report.streams, 37);
}

#[test]
fn a_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked(_))));
    drop(store);
    Store::open(dir.path()).unwrap();
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small()).unwrap();
    let ok = || vec![EventData::new("T", "x")];
    let cases: Vec<(String, Vec<EventData>)> = vec![
        (String::new(), ok()),
        ("s".repeat(annals::STREAM_BYTES_MAX + 1), ok()),
        ("s".into(), vec![]),
        ("s".into(), vec![EventData::new("", "x")]),
        (
            "s".into(),
            vec![EventData::new(
                "T".repeat(annals::EVENT_TYPE_BYTES_MAX + 1),
                "x",
            )],
        ),
        ("s".into(), vec![EventData::new("$reserved", "x")]),
        (
            "s".into(),
            vec![EventData::new("T", vec![0u8; annals::EVENT_BYTES_MAX])],
        ),
        // Fits the event limit but not a 64 KiB segment.
        ("s".into(), vec![EventData::new("T", vec![0u8; 100 << 10])]),
    ];
    for (stream, events) in cases {
        let got = store.append(&stream, ExpectedVersion::Any, events);
        assert!(matches!(got, Err(Error::InvalidInput(_))), "{got:?}");
    }
    assert!(matches!(
        store.append_many(vec![]),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(store.position_end(), 0);
    assert_eq!(store.stream_version("s").unwrap(), CurrentVersion::NoStream);
}

#[test]
fn a_multi_stream_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append(
            "from-1",
            ExpectedVersion::NoStream,
            vec![EventData::new("Opened", "")],
        )
        .unwrap()
        .unwrap();
    let transfer = |from_expected| {
        vec![
            (
                "from-1".to_owned(),
                from_expected,
                vec![EventData::new("Debited", "10")],
            ),
            (
                "to-1".to_owned(),
                ExpectedVersion::NoStream,
                vec![EventData::new("Credited", "10")],
            ),
            (
                "ledger".to_owned(),
                ExpectedVersion::Any,
                vec![EventData::new("Moved", "10"), EventData::new("Fee", "1")],
            ),
        ]
    };
    let rejected = store
        .append_many(transfer(ExpectedVersion::Exact(7)))
        .unwrap()
        .unwrap_err();
    assert_eq!(rejected.index, 0);
    assert_eq!(rejected.conflict.actual, CurrentVersion::Version(0));
    assert_eq!(
        store.position_end(),
        1,
        "a rejected multi-stream append wrote something"
    );
    assert_eq!(
        store.stream_version("to-1").unwrap(),
        CurrentVersion::NoStream
    );

    let results = store
        .append_many(transfer(ExpectedVersion::Exact(0)))
        .unwrap()
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        (
            results[0].first_position,
            results[1].first_position,
            results[2].first_position
        ),
        (1, 2, 3)
    );
    assert_eq!(results[2].last_position, 4);
    // The same stream twice in one request: the second sees the first.
    let twice = store
        .append_many(vec![
            (
                "to-1".into(),
                ExpectedVersion::Exact(0),
                vec![EventData::new("A", "")],
            ),
            (
                "to-1".into(),
                ExpectedVersion::Exact(1),
                vec![EventData::new("B", "")],
            ),
        ])
        .unwrap()
        .unwrap();
    assert_eq!((twice[0].first_version, twice[1].first_version), (1, 2));
}

#[test]
fn events_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id: EventId = "0b9e2b8e-6a52-4cd3-9a3e-5b4f0d8d3a11".parse().unwrap();
    let event = EventData::new("Placed", vec![0u8, 1, 2, 255])
        .with_id(id)
        .with_metadata("{\"by\":\"me\"}");
    store
        .append("o-1", ExpectedVersion::NoStream, vec![event.clone()])
        .unwrap()
        .unwrap();
    let read = store
        .read_stream("o-1", 0, Direction::Forward, 1)
        .unwrap()
        .remove(0);
    assert_eq!(
        (read.id, &read.event_type, &read.data, &read.metadata),
        (id, &event.event_type, &event.data, &event.metadata)
    );
    assert!(read.timestamp_us > 1_600_000_000_000_000);
}

#[test]
fn simulated_crashes_keep_every_acknowledged_append() {
    let mut verified = 0usize;
    for seed in 0..40u64 {
        let mem = MemStorage::new();
        let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
        let mut acked = Vec::new();
        for i in 0..60u64 {
            let stream = format!("s-{}", (i + seed) % 5);
            let result = store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![EventData::new("E", format!("{seed}/{i}"))],
                )
                .unwrap()
                .unwrap();
            acked.push((result, format!("{seed}/{i}")));
        }
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        drop(store);
        let store = Store::open_storage(Arc::new(image), small()).unwrap();
        for (result, data) in &acked {
            let event = store
                .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
                .unwrap()
                .remove(0);
            assert_eq!(event.position, result.first_position);
            assert_eq!(&event.data[..], data.as_bytes());
            verified += 1;
        }
        store.verify().unwrap();
    }
    assert_eq!(verified, 40 * 60);
}

/// Events handed out share the mapped segment (no copy): they must stay
/// valid after the store is closed and the directory reopened and written.
#[test]
fn read_events_outlive_their_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..100 {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                vec![EventData::new("E", format!("payload {i}"))],
            )
            .unwrap()
            .unwrap();
    }
    let kept = store.read_all(0, usize::MAX).unwrap();
    let one = store.read_stream("s", 42, Direction::Forward, 1).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for i in 0..100 {
        store
            .append(
                "t",
                ExpectedVersion::Any,
                vec![EventData::new("E", vec![0xFFu8; 1000 + i])],
            )
            .unwrap()
            .unwrap();
    }
    drop(store);
    for (i, event) in kept.iter().enumerate() {
        assert_eq!(&event.data[..], format!("payload {i}").as_bytes());
    }
    assert_eq!(&one[0].data[..], b"payload 42");
}

#[test]
fn store_is_send_sync_and_clone() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Store>();
}
