//! Property: a snapshot saved with `Ok` is loaded back as the newest
//! snapshot at or below the stream's version, with exactly the events after
//! it; snapshots never show in stream reads or `$all`; every refusal is a
//! typed error that writes nothing; saved snapshots survive reopen and
//! crashes; a torn last frame is cut and other damage is `Corrupt` with file
//! and offset. Method: real directories (file sizes compared byte for byte)
//! and crash images of the memory backend.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage, Storage};
use annals::{
    AggregatePart, CurrentVersion, Direction, Error, EventData, ExpectedVersion, Options, Store,
    SNAPSHOT_BYTES_MAX,
};

const SNAP_FILE: &str = "snapshots-0000000000000000.snap";

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

fn events(from: u64, count: u64) -> Vec<EventData> {
    (from..from + count)
        .map(|v| EventData::new("Changed", format!("e{v}")))
        .collect()
}

fn versions(aggregate: &annals::Aggregate) -> Vec<u64> {
    aggregate.events.iter().map(|e| e.version).collect()
}

/// Every file of the directory and its length.
fn sizes(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn load_returns_the_newest_snapshot_at_or_below_and_the_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 3))
        .unwrap()
        .unwrap();
    let plain = store.load_aggregate("acct").unwrap();
    assert_eq!(plain.snapshot, None);
    assert_eq!(versions(&plain), [0, 1, 2]);
    assert_eq!(plain.version, CurrentVersion::Version(2));

    store.save_snapshot("acct", 1, "S.v1", b"at-1").unwrap();
    let loaded = store.load_aggregate("acct").unwrap();
    let snapshot = loaded.snapshot.clone().unwrap();
    assert_eq!((snapshot.version, &snapshot.snapshot_type[..]), (1, "S.v1"));
    assert_eq!(&snapshot.data[..], b"at-1");
    assert_eq!(versions(&loaded), [2]);

    store
        .append("acct", ExpectedVersion::Exact(2), events(3, 7))
        .unwrap()
        .unwrap();
    store.save_snapshot("acct", 5, "S.v1", b"at-5").unwrap();
    store.save_snapshot("acct", 9, "S.v2", b"at-9").unwrap();
    // An older version saved later does not replace the newest.
    store.save_snapshot("acct", 3, "S.v1", b"at-3").unwrap();
    let loaded = store.load_aggregate("acct").unwrap();
    assert_eq!(loaded.snapshot.as_ref().unwrap().version, 9);
    assert_eq!(&loaded.snapshot.as_ref().unwrap().data[..], b"at-9");
    assert!(loaded.events.is_empty());
    assert_eq!(loaded.version, CurrentVersion::Version(9));

    store
        .append("acct", ExpectedVersion::Exact(9), events(10, 2))
        .unwrap()
        .unwrap();
    let loaded = store.load_aggregate("acct").unwrap();
    assert_eq!(loaded.snapshot.as_ref().unwrap().version, 9);
    assert_eq!(versions(&loaded), [10, 11]);
    assert_eq!(&loaded.events[0].data[..], b"e10");
    assert_eq!(loaded.version, CurrentVersion::Version(11));

    // A second save at the same version replaces the first.
    store.save_snapshot("acct", 11, "S.v2", b"first").unwrap();
    store.save_snapshot("acct", 11, "S.v2", b"second").unwrap();
    let loaded = store.load_aggregate("acct").unwrap();
    assert_eq!(&loaded.snapshot.unwrap().data[..], b"second");

    // Other streams are untouched by these snapshots.
    store
        .append("other", ExpectedVersion::NoStream, events(0, 2))
        .unwrap()
        .unwrap();
    assert_eq!(store.load_aggregate("other").unwrap().snapshot, None);
    // A stream with no events loads as empty.
    let none = store.load_aggregate("nobody").unwrap();
    assert_eq!(
        (none.snapshot, none.events.len(), none.version),
        (None, 0, CurrentVersion::NoStream)
    );
}

#[test]
fn the_fold_sees_what_the_collected_load_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 20))
        .unwrap()
        .unwrap();
    store.save_snapshot("acct", 14, "S", b"fourteen").unwrap();
    let mut seen = Vec::new();
    let mut snapshot = None;
    let loaded = store
        .load_aggregate_with("acct", |part| {
            match part {
                AggregatePart::Snapshot(s) => {
                    assert!(seen.is_empty(), "the snapshot comes first");
                    snapshot = Some((s.version, s.data.to_vec()))
                }
                AggregatePart::Event(event) => seen.push((event.version, event.data.to_vec())),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(snapshot, Some((14, b"fourteen".to_vec())));
    let collected = store.load_aggregate("acct").unwrap();
    let want: Vec<_> = collected
        .events
        .iter()
        .map(|e| (e.version, e.data.to_vec()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(
        (loaded.snapshot_version, loaded.events, loaded.version),
        (Some(14), 5, CurrentVersion::Version(19))
    );
    // Stopping early.
    let mut count = 0;
    let loaded = store
        .load_aggregate_with("acct", |part| {
            if let AggregatePart::Event(_) = part {
                count += 1;
            }
            if count == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(
        (count, loaded.events, loaded.version),
        (2, 2, CurrentVersion::Version(16))
    );
    // Stopping at the snapshot.
    let loaded = store
        .load_aggregate_with("acct", |_| ControlFlow::Break(()))
        .unwrap();
    assert_eq!((loaded.snapshot_version, loaded.events), (Some(14), 0));
}

#[test]
fn snapshots_take_no_position_and_never_show_in_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 4))
        .unwrap()
        .unwrap();
    let end = store.position_end();
    store.save_snapshot("acct", 3, "S", b"state").unwrap();
    assert_eq!(store.position_end(), end);
    assert_eq!(
        store.stream_version("acct").unwrap(),
        CurrentVersion::Version(3)
    );
    assert_eq!(store.read_all(0, 100).unwrap().len(), 4);
    assert_eq!(
        store
            .read_stream("acct", 0, Direction::Forward, 100)
            .unwrap()
            .len(),
        4
    );
    let next = store
        .append("acct", ExpectedVersion::Exact(3), events(4, 1))
        .unwrap()
        .unwrap();
    assert_eq!((next.first_version, next.first_position), (4, end));
}

#[test]
fn every_refusal_is_typed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 3))
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
    // Once before any snapshot file exists (the refusal must not create
    // it), once after.
    for round in 0..2 {
        store.flush().unwrap();
        let before = sizes(dir.path());
        let ahead = store.save_snapshot("acct", 3, "S", b"x").unwrap_err();
        assert!(
            matches!(&ahead, Error::SnapshotAhead { stream, version: 3, current: 2 } if stream == "acct"),
            "{ahead:?}"
        );
        assert!(
            matches!(store.save_snapshot("nobody", 0, "S", b"x"), Err(Error::StreamNotFound(s)) if s == "nobody")
        );
        assert!(
            matches!(store.save_snapshot("gone", 0, "S", b"x"), Err(Error::StreamDeleted(s)) if s == "gone")
        );
        assert!(matches!(
            store.save_snapshot("acct", 1, "", b"x"),
            Err(Error::InvalidInput(_))
        ));
        let long_type = "t".repeat(annals::SNAPSHOT_TYPE_BYTES_MAX + 1);
        assert!(matches!(
            store.save_snapshot("acct", 1, &long_type, b"x"),
            Err(Error::InvalidInput(_))
        ));
        let oversize = vec![7u8; SNAPSHOT_BYTES_MAX + 1];
        assert!(matches!(
            store.save_snapshot("acct", 1, "S", &oversize),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(sizes(dir.path()), before, "round {round}");
        assert_eq!(before.contains_key(SNAP_FILE), round == 1);
        store.save_snapshot("acct", 2, "S", b"ok").unwrap();
    }
    // The largest allowed snapshot is accepted and read back whole.
    let largest = vec![9u8; SNAPSHOT_BYTES_MAX];
    store.save_snapshot("acct", 2, "S", &largest).unwrap();
    assert_eq!(
        store
            .load_aggregate("acct")
            .unwrap()
            .snapshot
            .unwrap()
            .data
            .len(),
        SNAPSHOT_BYTES_MAX
    );
    assert!(matches!(
        store.load_aggregate("gone"),
        Err(Error::StreamDeleted(_))
    ));
}

#[test]
fn snapshots_survive_reopen_and_old_stores_open_without_snapshot_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 6))
        .unwrap()
        .unwrap();
    store.close().unwrap();
    // A store written before snapshots existed: nothing to read, nothing created.
    let store = Store::open(dir.path()).unwrap();
    assert!(!sizes(dir.path()).contains_key(SNAP_FILE));
    assert_eq!(store.load_aggregate("acct").unwrap().events.len(), 6);
    store.save_snapshot("acct", 4, "S", b"four").unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot_recovery().frames, 1);
    let loaded = store.load_aggregate("acct").unwrap();
    assert_eq!(&loaded.snapshot.clone().unwrap().data[..], b"four");
    assert_eq!(versions(&loaded), [5]);
}

#[test]
fn an_acknowledged_snapshot_survives_every_crash_image() {
    for seed in 0..60u64 {
        let mem = MemStorage::new();
        let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
        store
            .append("acct", ExpectedVersion::NoStream, events(0, 10))
            .unwrap()
            .unwrap();
        let mut acked = None;
        for v in 0..(seed % 5 + 1) {
            store
                .save_snapshot("acct", v * 2, "S", format!("snap-{v}").as_bytes())
                .unwrap();
            acked = Some(v * 2);
        }
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        drop(store);
        let store = Store::open_storage(Arc::new(image), small()).unwrap();
        let loaded = store.load_aggregate("acct").unwrap();
        let snapshot = loaded.snapshot.clone().unwrap();
        assert_eq!(Some(snapshot.version), acked, "seed {seed}");
        assert_eq!(
            snapshot.data,
            format!("snap-{}", snapshot.version / 2).into_bytes()
        );
        assert_eq!(
            versions(&loaded).first().copied(),
            Some(snapshot.version + 1).filter(|v| *v < 10)
        );
    }
}

/// A store with two snapshots of `acct` (versions 1 and 3); returns the
/// storage and the snapshot file's bytes.
fn two_snapshots() -> (MemStorage, Vec<u8>) {
    let mem = MemStorage::new();
    let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
    store
        .append("acct", ExpectedVersion::NoStream, events(0, 5))
        .unwrap()
        .unwrap();
    store.save_snapshot("acct", 1, "S", b"one").unwrap();
    store.save_snapshot("acct", 3, "S", b"three").unwrap();
    store.close().unwrap();
    let bytes = mem.read_file(SNAP_FILE).unwrap();
    (mem, bytes)
}

#[test]
fn a_torn_last_frame_is_cut_and_the_snapshots_before_it_load() {
    let (mem, bytes) = two_snapshots();
    let second = bytes.len() - (32 + 4 + 1 + 5); // header, "acct", "S", "three"
    for cut in [second + 1, second + 20, bytes.len() - 1] {
        for garbage in [0u8, 0xFF] {
            let image = mem.crash_image(0, CrashMode::DropUnsynced);
            let mut torn = bytes[..cut].to_vec();
            if garbage == 0xFF {
                // A garbled tail: the rest of the write came back as other
                // bytes (never past the write's end: nothing was written after it).
                torn.resize(bytes.len(), 0xFF);
            }
            image.write_file(SNAP_FILE, &torn);
            let store = Store::open_storage(Arc::new(image.handle()), small()).unwrap();
            assert_eq!(store.snapshot_recovery().frames, 1, "cut {cut}");
            assert_eq!(
                store.snapshot_recovery().torn_bytes,
                (torn.len() - second) as u64
            );
            assert_eq!(
                store
                    .load_aggregate("acct")
                    .unwrap()
                    .snapshot
                    .unwrap()
                    .version,
                1
            );
            // The cut is durable, and saving goes on after it.
            store.save_snapshot("acct", 4, "S", b"four").unwrap();
            drop(store);
            let after = image.crash_image(1, CrashMode::DropUnsynced);
            let store = Store::open_storage(Arc::new(after), small()).unwrap();
            assert_eq!(store.snapshot_recovery().torn_bytes, 0);
            assert_eq!(
                &store.load_aggregate("acct").unwrap().snapshot.unwrap().data[..],
                b"four"
            );
        }
    }
}

#[test]
fn damage_before_the_last_frame_is_corrupt_with_file_and_offset() {
    let (mem, bytes) = two_snapshots();
    let first_frame = 32u64;
    // Bytes of the first frame's CRC, version and stream name, and the file header.
    for at in [
        first_frame as usize + 5,
        first_frame as usize + 9,
        first_frame as usize + 33,
        3,
    ] {
        let image = mem.crash_image(0, CrashMode::DropUnsynced);
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        image.write_file(SNAP_FILE, &bad);
        let error = Store::open_storage(Arc::new(image), small()).unwrap_err();
        assert!(error.is_corruption(), "byte {at}: {error:?}");
        let Error::Log(annals_segment::Error::Corrupt { file, offset, .. }) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(file, SNAP_FILE);
        assert_eq!(*offset, if at < 32 { 0 } else { first_frame }, "byte {at}");
    }
    // A leftover file being created is removed, not read.
    let image = mem.crash_image(0, CrashMode::DropUnsynced);
    image.write_file("snapshots-0000000000000001.snap.tmp", b"half");
    let store = Store::open_storage(Arc::new(image.handle()), small()).unwrap();
    assert_eq!(store.snapshot_recovery().frames, 2);
    assert!(!image.list().unwrap().iter().any(|n| n.ends_with(".tmp")));
}

#[test]
fn concurrent_appenders_and_snapshotters_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for s in 0..4 {
        store
            .append(
                &format!("acct-{s}"),
                ExpectedVersion::NoStream,
                events(0, 1),
            )
            .unwrap()
            .unwrap();
    }
    std::thread::scope(|scope| {
        for t in 0..4 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..100u64 {
                    let stream = format!("acct-{}", (t + i) % 4);
                    store
                        .append(&stream, ExpectedVersion::Any, events(0, 1))
                        .unwrap()
                        .unwrap();
                }
            });
        }
        for t in 0..3 {
            let store = store.clone();
            scope.spawn(move || {
                for i in 0..60u64 {
                    let stream = format!("acct-{}", (t + i) % 4);
                    let CurrentVersion::Version(v) = store.stream_version(&stream).unwrap() else {
                        panic!()
                    };
                    store
                        .save_snapshot(&stream, v, "S", &v.to_le_bytes())
                        .unwrap();
                    let loaded = store.load_aggregate(&stream).unwrap();
                    let snapshot = loaded.snapshot.clone().unwrap();
                    assert!(snapshot.version >= v);
                    assert_eq!(snapshot.data, snapshot.version.to_le_bytes().to_vec());
                    let want: Vec<u64> =
                        (snapshot.version + 1..).take(loaded.events.len()).collect();
                    assert_eq!(versions(&loaded), want);
                }
            });
        }
    });
    let before: Vec<_> = (0..4)
        .map(|s| store.load_aggregate(&format!("acct-{s}")).unwrap())
        .collect();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot_recovery().frames, 180);
    for (s, want) in before.iter().enumerate() {
        assert_eq!(&store.load_aggregate(&format!("acct-{s}")).unwrap(), want);
    }
}
