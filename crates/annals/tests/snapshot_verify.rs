//! Property: `verify` reads and checksums every frame of the snapshot
//! files and reports how many snapshots a load can find; `stats` counts
//! them; a snapshot frame damaged on disk after open is found by `verify`
//! as `Corrupt` naming the snapshot file (not reported as index damage).
//! Method: a real directory, a byte flipped in the snapshot file under an
//! open store.

use std::os::unix::fs::FileExt;

use annals::{Error, EventData, ExpectedVersion, Store};

const SNAP_FILE: &str = "snapshots-0000000000000000.snap";

fn store_with_snapshots(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    let events = (0..5).map(|n| EventData::new("Changed", vec![n])).collect();
    store
        .append("acct-1", ExpectedVersion::NoStream, events)
        .unwrap()
        .unwrap();
    store
        .append(
            "acct-2",
            ExpectedVersion::NoStream,
            vec![EventData::new("Opened", "x")],
        )
        .unwrap()
        .unwrap();
    store.save_snapshot("acct-1", 1, "S", b"one").unwrap();
    store.save_snapshot("acct-1", 3, "S", b"three").unwrap();
    // Saved again at the same version: supersedes the frame before it.
    store
        .save_snapshot("acct-1", 3, "S", b"three again")
        .unwrap();
    store.save_snapshot("acct-2", 0, "S", b"zero").unwrap();
    store
}

#[test]
fn verify_and_stats_count_snapshot_frames_and_findable_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_snapshots(dir.path());
    let report = store.verify().unwrap();
    assert_eq!(report.snapshot_frames, 4);
    assert_eq!(report.snapshots, 3);
    let stats = store.stats();
    assert_eq!(stats.snapshots, 3);
    let file_len = std::fs::metadata(dir.path().join(SNAP_FILE)).unwrap().len();
    assert_eq!(stats.snapshot_bytes, file_len);
    drop(store);

    let reopened = Store::open(dir.path()).unwrap();
    let again = reopened.verify().unwrap();
    assert_eq!((again.snapshot_frames, again.snapshots), (4, 3));
    assert_eq!(
        reopened
            .load_aggregate("acct-1")
            .unwrap()
            .snapshot
            .unwrap()
            .data,
        &b"three again"[..]
    );
}

#[test]
fn a_store_without_snapshots_verifies_with_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("s-1", ExpectedVersion::Any, vec![EventData::new("E", "d")])
        .unwrap()
        .unwrap();
    let report = store.verify().unwrap();
    assert_eq!((report.snapshot_frames, report.snapshots), (0, 0));
    assert_eq!(
        (store.stats().snapshots, store.stats().snapshot_bytes),
        (0, 0)
    );
}

#[test]
fn verify_finds_a_snapshot_frame_damaged_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_snapshots(dir.path());
    let path = dir.path().join(SNAP_FILE);
    let bytes = std::fs::read(&path).unwrap();
    // A byte inside the data of the first frame ("one"), not at the end.
    let at = bytes.windows(3).position(|w| w == b"one").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[bytes[at] ^ 0x20], at as u64).unwrap();
    file.sync_all().unwrap();

    let error = store.verify().unwrap_err();
    assert!(!error.is_index_damage(), "{error}");
    match &error {
        Error::Log(annals_segment_error) => {
            let text = annals_segment_error.to_string();
            assert!(text.contains(SNAP_FILE), "{text}");
        }
        other => panic!("expected a Corrupt log error, got {other:?}"),
    }
}
