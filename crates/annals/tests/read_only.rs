//! Property: a read-only open never writes a byte (no lock file, no cut
//! tail, no marker, no index file, no frame index; every file keeps its
//! bytes), sees a prefix of the log (a torn tail is "not written yet"),
//! refuses appends with `Error::ReadOnly`, works while the owner holds the
//! store, and `refresh` follows the owner's appends across segment rolls:
//! every view, stream reads included, is a prefix of the final log.
//! Method: real directories, files hashed before and after; an owner
//! thread appending while the test opens read-only and refreshes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{Direction, Error, EventData, ExpectedVersion, Options, Store};

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

/// Every file: name → (length, hash of the bytes).
fn files(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (bytes.len() as u64, hasher.finish()),
        );
    }
    out
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "seg")
        })
        .count()
}

fn fill(store: &Store, count: u64) {
    for i in 0..count {
        let data = EventData::new("Changed", format!("{i}-{}", "x".repeat(200)));
        store
            .append(&format!("s-{}", i % 5), ExpectedVersion::Any, vec![data])
            .unwrap()
            .unwrap();
    }
}

/// A store whose active segment ends in garbage after its last frame (a
/// torn write), with no clean-close marker and no `LOCK` file.
fn torn_store(dir: &Path) -> u64 {
    let store = Store::open_with(dir, small()).unwrap();
    fill(&store, 700);
    let end = store.read_all(0, usize::MAX).unwrap().len() as u64;
    store.close().unwrap();
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let active = segments.last().unwrap().clone();
    std::fs::remove_file(dir.join("CLEAN")).unwrap();
    std::fs::remove_file(active.with_extension("fidx")).unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    let mut bytes = std::fs::read(&active).unwrap();
    let data_end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let at = data_end.next_multiple_of(64);
    for b in &mut bytes[at..at + 300] {
        *b = 0xA5;
    }
    std::fs::write(&active, &bytes).unwrap();
    end
}

#[test]
fn a_read_only_open_of_a_torn_tail_sees_the_prefix_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let end = torn_store(dir.path());
    let before = files(dir.path());
    let store = Store::open_read_only_with(dir.path(), small()).unwrap();
    assert!(store.is_read_only());
    let events = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(events.len() as u64, end);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position, i as u64);
    }
    let stream = store.read_stream("s-3", 0, Direction::Forward, usize::MAX);
    assert_eq!(stream.unwrap().len(), 140);
    assert_eq!(store.refresh().unwrap(), end);
    store.verify().unwrap();
    drop(store);
    assert_eq!(
        files(dir.path()),
        before,
        "a read-only open changed the directory"
    );
    // The tail really was torn: a writable open cuts it.
    let owner = Store::open_with(dir.path(), small()).unwrap();
    assert!(owner.recovery_report().truncated.is_some());
    assert_eq!(owner.read_all(0, usize::MAX).unwrap(), events);
}

#[test]
fn a_read_only_store_refuses_appends_and_index_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 10);
    let store = Store::open_read_only(dir.path()).unwrap();
    let data = EventData::new("Changed", "x");
    let error = store
        .append("s-1", ExpectedVersion::Any, vec![data])
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly(_)), "{error}");
    let error = store
        .delete_stream("s-1", ExpectedVersion::Any)
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly(_)), "{error}");
    let error = store.maintain_index().unwrap_err();
    assert!(matches!(error, Error::ReadOnly(_)), "{error}");
    assert_eq!(store.id(), owner.id());
    store.flush().unwrap();
    store.close().unwrap();
    assert_eq!(owner.read_all(0, usize::MAX).unwrap().len(), 10);
}

#[test]
fn a_read_only_open_of_no_store_creates_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("missing");
    let error = Store::open_read_only(&missing).unwrap_err();
    assert!(matches!(error, Error::NotAStore(_)), "{error}");
    assert!(!missing.exists());
    let error = Store::open_read_only(parent.path()).unwrap_err();
    assert!(matches!(error, Error::NotAStore(_)), "{error}");
    std::fs::write(parent.path().join("CLEAN"), b"mine").unwrap();
    let error = Store::open_read_only(parent.path()).unwrap_err();
    assert!(matches!(error, Error::NotAStore(_)), "{error}");
    assert_eq!(files(parent.path()).len(), 1);
}

#[test]
fn an_older_store_opens_read_only_without_getting_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 50);
    owner.close().unwrap();
    std::fs::remove_file(dir.path().join("IDENTITY")).unwrap();
    let before = files(dir.path());
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.id(), None);
    assert_eq!(store.read_all(0, usize::MAX).unwrap().len(), 50);
    drop(store);
    assert_eq!(files(dir.path()), before);
}

#[test]
fn read_only_views_while_the_owner_appends_are_prefixes_of_the_final_log() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small().index_buffer_events(64)).unwrap();
    fill(&owner, 20);
    let stop = Arc::new(AtomicBool::new(false));
    // The owner's appends are bounded: every view below keeps its events,
    // whose data are slices of the segments' mappings. Unbounded, an owner
    // that pays no fsync (tmpfs) wrote ~800,000 events (~4,000 segments)
    // while the views were taken, and their mappings passed the kernel's
    // limit (`mmap`: ENOMEM, in 3 of 3 runs on tmpfs under CPU load). On a
    // disk the owner stays far below the bound.
    const APPENDS_MAX: u64 = 5_000;
    let writer = {
        let (owner, stop) = (owner.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < APPENDS_MAX {
                let events = (0..1 + i % 3)
                    .map(|k| EventData::new("Changed", format!("{i}/{k}-{}", "y".repeat(300))))
                    .collect();
                owner
                    .append(&format!("s-{}", i % 7), ExpectedVersion::Any, events)
                    .unwrap()
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    let mut views = Vec::new();
    let mut followed = None;
    // At least 40 rounds, and on until the owner has rolled to a fourth
    // segment (its pace depends on the disk's fsync).
    let mut round = 0;
    while round < 40 || segment_count(dir.path()) < 4 {
        assert!(round < 5000, "the owner did not roll");
        round += 1;
        let store = Store::open_read_only_with(dir.path(), small()).unwrap();
        let opened = store.read_all(0, usize::MAX).unwrap();
        let mut streams = Vec::new();
        for s in 0..7 {
            let events = store
                .read_stream(&format!("s-{s}"), 0, Direction::Forward, usize::MAX)
                .unwrap();
            streams.push(events);
        }
        views.push((opened, streams));
        let follower = followed.get_or_insert_with(|| store.clone());
        let end = follower.refresh().unwrap();
        let seen = follower.read_all(0, usize::MAX).unwrap();
        assert_eq!(seen.len() as u64, end, "round {round}");
        views.push((seen, Vec::new()));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let appends = writer.join().unwrap();
    eprintln!("the owner made {appends} appends during {round} rounds");
    let last = followed.unwrap();
    let end = last.refresh().unwrap();
    let final_log = owner.read_all(0, usize::MAX).unwrap();
    assert_eq!(end, final_log.len() as u64);
    assert_eq!(last.read_all(0, usize::MAX).unwrap(), final_log);
    let segments = segment_count(dir.path());
    assert!(segments > 3, "the owner rolled segments ({segments})");
    let mut grew = 0;
    for (view, streams) in &views {
        assert_eq!(view[..], final_log[..view.len()], "a view is a prefix");
        grew = grew.max(view.len());
        for (s, events) in streams.iter().enumerate() {
            let name = format!("s-{s}");
            let expected: Vec<_> = final_log[..view.len()]
                .iter()
                .filter(|e| e.stream == name)
                .cloned()
                .collect();
            assert_eq!(events, &expected, "stream {name} of a view");
        }
    }
    assert!(grew > 20);
    // A stream read after a refresh sees what the refresh found.
    for s in 0..7 {
        let name = format!("s-{s}");
        let expected: Vec<_> = final_log
            .iter()
            .filter(|e| e.stream == name)
            .cloned()
            .collect();
        let got = last
            .read_stream(&name, 0, Direction::Forward, usize::MAX)
            .unwrap();
        assert_eq!(got, expected);
    }
}

/// Regression: a read-only open beside a live owner whose active segment
/// is larger than one read window reported `Corrupt` ("frame header
/// checksum mismatch, followed by a valid frame … written after this one
/// was durable"): its scan had read the frame before the owner's `write`
/// of it landed, and a later frame after. Seen 13 times in 30 `annals
/// stats` beside `annals stress` on a 10M-event store; the frame, read
/// afresh, is whole, so the view ends there instead.
#[test]
fn read_only_opens_beside_a_live_owner_never_report_its_newest_frames_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open(dir.path()).unwrap();
    // Tens of read windows (1 MiB each) of log before the reader starts,
    // so that its scan of the active segment takes long enough for the
    // owner to write behind it.
    let data = "d".repeat(2_000);
    for i in 0..400u64 {
        let events = (0..50)
            .map(|_| EventData::new("Pre", data.clone()))
            .collect();
        owner
            .append(&format!("pre-{}", i % 20), ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (owner, stop, data) = (owner.clone(), Arc::clone(&stop), data.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let events = (0..4)
                        .map(|_| EventData::new("Live", data.clone()))
                        .collect();
                    owner
                        .append(
                            &format!("live-{t}-{}", i % 10),
                            ExpectedVersion::Any,
                            events,
                        )
                        .unwrap()
                        .unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for _ in 0..40 {
        if let Err(error) = Store::open_read_only(dir.path()) {
            failures.push(error.to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of 40 opens failed: {failures:?}",
        failures.len()
    );
}

/// Regression: `refresh` made the owner's new events visible but not the
/// snapshots it saved after the open, so `load_aggregate` on the read-only
/// store replayed from the start (or from an older snapshot). Both cases:
/// the snapshot file created after the open, and one appended to after.
#[test]
fn refresh_shows_the_snapshots_the_owner_saved_since_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 20);
    let store = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(store.load_aggregate("s-1").unwrap().snapshot, None);

    owner.save_snapshot("s-1", 2, "S", b"at-2").unwrap();
    store.refresh().unwrap();
    let loaded = store.load_aggregate("s-1").unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.version), Some(2));
    assert_eq!(&loaded.snapshot.unwrap().data[..], b"at-2");
    assert_eq!(loaded.events.len(), 1, "version 3 only");

    fill(&owner, 10);
    owner.save_snapshot("s-1", 5, "S", b"at-5").unwrap();
    owner.save_snapshot("s-2", 4, "S", b"s2-at-4").unwrap();
    store.refresh().unwrap();
    let loaded = store.load_aggregate("s-1").unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.version), Some(5));
    assert_eq!(&loaded.snapshot.unwrap().data[..], b"at-5");
    assert_eq!(loaded.version, owner.load_aggregate("s-1").unwrap().version);
    let loaded = store.load_aggregate("s-2").unwrap();
    assert_eq!(&loaded.snapshot.unwrap().data[..], b"s2-at-4");
    // A refresh that finds nothing new changes nothing.
    store.refresh().unwrap();
    assert_eq!(
        store
            .load_aggregate("s-1")
            .unwrap()
            .snapshot
            .unwrap()
            .version,
        5
    );
}
