//! Property: on a real filesystem that fills up, an append fails with a
//! clear ENOSPC error, nothing partial becomes visible, every acknowledged
//! append survives, and once space is freed the store reopens and takes
//! writes again. Method: a small tmpfs mounted by `scripts/diskfull.sh`,
//! which sets `ANNALS_DISKFULL_DIR` and runs it with `--ignored` (plain
//! `cargo test` has no small filesystem to fill, so it is ignored there).

use annals::{Direction, EventData, ExpectedVersion, Options, Store};

#[test]
#[ignore = "needs a small filesystem: run scripts/diskfull.sh"]
fn a_full_filesystem_is_a_clear_error_and_writes_resume_after_space_is_freed() {
    let root = std::env::var("ANNALS_DISKFULL_DIR")
        .expect("ANNALS_DISKFULL_DIR names a small filesystem (scripts/diskfull.sh sets it)");
    let root = std::path::PathBuf::from(root);
    let dir = root.join("store");
    let ballast = root.join("ballast");
    let _ = std::fs::remove_dir_all(&dir);
    // Leave a little room, then fill the rest with a file we can delete.
    std::fs::write(&ballast, vec![1u8; 1 << 20]).unwrap();
    let options = Options::default().segment_bytes(256 << 10);
    let store = Store::open_with(&dir, options.clone()).unwrap();
    let mut acked = Vec::new();
    let error = loop {
        let i = acked.len();
        let event = EventData::new("Filled", vec![(i % 251) as u8; 2000]);
        match store.append(&format!("s-{}", i % 7), ExpectedVersion::Any, vec![event]) {
            Ok(Ok(result)) => acked.push(result),
            Ok(Err(conflict)) => panic!("unexpected conflict {conflict}"),
            Err(error) => break error,
        }
        assert!(acked.len() < 100_000, "the filesystem never filled up");
    };
    let message = error.to_string();
    assert!(
        message.contains("No space left") || message.contains("os error 28"),
        "{message}"
    );
    // Nothing partial is visible: the feed holds exactly the acknowledged appends.
    assert_eq!(store.position_end(), acked.len() as u64);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), acked.len());
    drop(store);

    std::fs::remove_file(&ballast).unwrap();
    let store = Store::open_with(&dir, options).unwrap();
    for result in &acked {
        let read = store
            .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(read[0].position, result.first_position);
    }
    let more = store
        .append(
            "s-0",
            ExpectedVersion::Any,
            vec![EventData::new("Resumed", "ok")],
        )
        .unwrap()
        .unwrap();
    assert_eq!(more.first_position, acked.len() as u64);
    store.verify().unwrap();
    eprintln!(
        "disk full after {} acknowledged appends; all verified; writes resumed",
        acked.len()
    );
}
