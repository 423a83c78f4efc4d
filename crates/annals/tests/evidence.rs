//! Property: a log that ends before what the store's own files vouch was
//! durable (index runs, the clean-close marker, frame indexes) is refused
//! with `Error::Missing` naming the missing file, positions and evidence,
//! and nothing is changed while refusing; `Store::repair` then cuts it
//! explicitly, reporting what it drops. Method: the two cases of issue 18
//! item 2, on real directories (clean close) and on crash images of the
//! memory backend (no marker: only the index runs vouch).

use std::path::Path;
use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage, Storage};
use annals::{Error, EventData, EvidenceKind, ExpectedVersion, Options, Store};

fn small() -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(20)
}

fn fill(store: &Store, events: u64) {
    for i in 0..events {
        let data = format!("event {i} {}", ".".repeat(200));
        store
            .append(
                &format!("s-{}", i % 7),
                ExpectedVersion::Any,
                vec![EventData::new("E", data)],
            )
            .unwrap()
            .unwrap();
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK")
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

fn mem_files(storage: &MemStorage) -> Vec<(String, Vec<u8>)> {
    let mut names = storage.list().unwrap();
    names.retain(|n| n != "LOCK");
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = storage.read_file(&n).unwrap();
            (n, bytes)
        })
        .collect()
}

thread_local! {
    /// The message of the last error `missing` took apart.
    static MISSING_MESSAGE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The fields of an `Error::Missing` (without `found`, which the message
/// carries), or a panic naming what came instead.
fn missing(result: annals::Result<Store>) -> (String, u64, u64, u64, Vec<annals::Evidence>) {
    match result {
        Err(error @ Error::Log(annals_segment::Error::Missing { .. })) => {
            let message = error.to_string();
            let Error::Log(annals_segment::Error::Missing {
                file,
                offset,
                position_first,
                position_end,
                evidence,
                ..
            }) = error
            else {
                unreachable!()
            };
            assert!(message.contains(&file), "{message}");
            for piece in &evidence {
                assert!(message.contains(&piece.file), "{message}");
            }
            MISSING_MESSAGE.with(|m| *m.borrow_mut() = message);
            (file, offset, position_first, position_end, evidence)
        }
        Err(other) => panic!("expected Missing, got {other}"),
        Ok(store) => panic!(
            "opened with {} events instead of refusing",
            store.position_end()
        ),
    }
}

/// Issue 18 item 2 (a): with the newest segment file gone, open used to
/// succeed with fewer events and replace the index run that proved the rest
/// durable. Now it is refused, naming the file, the positions and the
/// evidence, and every file is left as it was; a dry run of the repair
/// changes nothing; the repair drops exactly the missing positions.
#[test]
fn regression_the_newest_segment_gone_is_refused_not_opened_short() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), small()).unwrap();
        fill(&store, 300);
        store.close().unwrap();
    }
    let end = 300;
    let newest = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| annals_segment::parse_segment_file_name(&n).map(|p| (p, n)))
        .max()
        .unwrap();
    assert!(newest.0 > 0 && newest.0 < end, "{newest:?}");
    std::fs::remove_file(dir.path().join(&newest.1)).unwrap();
    let before = files(dir.path());

    let (file, offset, first, last, evidence) = missing(Store::open_with(dir.path(), small()));
    assert_eq!((file.as_str(), offset), (newest.1.as_str(), 0));
    assert_eq!((first, last), (newest.0, end));
    let kinds: Vec<EvidenceKind> = evidence.iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EvidenceKind::CleanMarker), "{evidence:?}");
    assert!(kinds.contains(&EvidenceKind::IndexRun), "{evidence:?}");
    assert_eq!(files(dir.path()), before, "a refused open changed files");
    // Rebuilding the index does not get around it (it used to drop the runs).
    let rebuilt = Store::rebuild_index(dir.path(), small(), &mut |_, _| {});
    assert!(
        rebuilt.as_ref().is_err_and(Error::is_missing),
        "{rebuilt:?}"
    );
    assert_eq!(files(dir.path()), before, "a refused rebuild changed files");

    let dry = Store::repair(dir.path(), small(), true).unwrap();
    assert_eq!(dry.dropped, Some((newest.0, end)));
    assert_eq!(dry.position_end, newest.0);
    assert!(dry.evidence_discarded.iter().any(|e| e.file == "CLEAN"));
    assert_eq!(files(dir.path()), before, "a dry run changed files");

    let done = Store::repair(dir.path(), small(), false).unwrap();
    assert_eq!(done.dropped, dry.dropped);
    assert_eq!(done.evidence_discarded, dry.evidence_discarded);
    let store = Store::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.position_end(), newest.0);
    store.verify().unwrap();
}

/// Issue 18 item 2 (a) after a crash: no marker, only the index runs vouch
/// for the newest segment's events.
#[test]
fn regression_the_newest_segment_gone_after_a_crash_is_refused_through_the_index_runs() {
    let mem = MemStorage::new();
    {
        let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
        fill(&store, 300);
        store.maintain_index().unwrap();
        let image = mem.crash_image(1, CrashMode::DropUnsynced);
        drop(store);
        let mut firsts: Vec<u64> = image
            .list()
            .unwrap()
            .iter()
            .filter_map(|n| annals_segment::parse_segment_file_name(n))
            .collect();
        firsts.sort_unstable();
        let (newest, before_it) = (firsts[firsts.len() - 1], firsts[firsts.len() - 2]);
        image
            .remove(&annals_segment::segment_file_name(newest))
            .unwrap();
        let runs_end = image
            .list()
            .unwrap()
            .iter()
            .filter_map(|n| annals_index::parse_run_file_name(n))
            .map(|(_, end)| end)
            .max()
            .unwrap();
        assert!(runs_end > newest, "the runs must reach the lost segment");
        let before = mem_files(&image);
        let (file, offset, first, last, evidence) =
            missing(Store::open_storage(Arc::new(image.handle()), small()));
        // Nothing says whether the lost positions were in a successor or in
        // the last segment's tail: the error names where the log ends (and
        // its message, checked by `missing`, that the successor is absent).
        assert_eq!(file, annals_segment::segment_file_name(before_it));
        assert!(offset > 64, "{offset}");
        let message = MISSING_MESSAGE.with(|m| m.borrow().clone());
        let gone = format!(
            "{} does not exist",
            annals_segment::segment_file_name(newest)
        );
        assert!(message.contains(&gone), "{message}");
        assert_eq!((first, last), (newest, runs_end));
        assert!(evidence.iter().all(|e| e.kind != EvidenceKind::CleanMarker));
        assert!(evidence.iter().any(|e| e.kind == EvidenceKind::IndexRun));
        assert_eq!(mem_files(&image), before, "a refused open changed files");
    }
}

/// Issue 18 item 2 (b): after a crash, one flipped byte in the last frame
/// of the active segment used to drop an acknowledged event in silence
/// (and `verify` then said ok), although an index run said its position
/// was durable. Now the open is refused at that frame; the repair cuts it.
#[test]
fn regression_a_damaged_last_frame_vouched_for_by_a_run_is_refused_not_cut() {
    let mem = MemStorage::new();
    let options = Options::default().index_buffer_events(10);
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    fill(&store, 10);
    store.maintain_index().unwrap();
    let data_end = store.stats().data_bytes;
    let image = mem.crash_image(2, CrashMode::DropUnsynced);
    drop(store);
    let segment = annals_segment::segment_file_name(0);
    assert!(image
        .list()
        .unwrap()
        .contains(&"index-0000000000000000-000000000000000a.run".to_owned()));
    assert!(!image.list().unwrap().contains(&"CLEAN".to_owned()));
    let mut bytes = image.read_file(&segment).unwrap();
    bytes[data_end as usize - 20] ^= 0x01; // inside the last event's data
    image.write_file(&segment, &bytes);
    let before = mem_files(&image);

    let (file, offset, first, last, evidence) = missing(Store::open_storage(
        Arc::new(image.handle()),
        options.clone(),
    ));
    assert_eq!(file, segment);
    assert!(offset < data_end && offset > 64, "{offset}");
    assert_eq!((first, last), (9, 10));
    assert!(evidence.iter().any(|e| e.kind == EvidenceKind::IndexRun));
    assert_eq!(mem_files(&image), before, "a refused open changed files");

    let storage: Arc<dyn Storage> = Arc::new(image.handle());
    let report = Store::repair_storage(storage, options.clone(), false).unwrap();
    assert_eq!(report.dropped, Some((9, 10)));
    assert_eq!(report.truncated, Some((segment, offset)));
    let store = Store::open_storage(Arc::new(image.handle()), options).unwrap();
    assert_eq!(store.position_end(), 9);
    store.verify().unwrap();
}

/// The same damage after a clean close: the marker vouches for the end.
#[test]
fn a_damaged_last_frame_after_a_clean_close_is_refused_through_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().index_buffer_events(1000);
    let data_end = {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        fill(&store, 5);
        let data_end = store.stats().data_bytes;
        store.close().unwrap();
        data_end
    };
    let path = dir.path().join(annals_segment::segment_file_name(0));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[data_end as usize - 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    // The run written at close would vouch too: only the marker here.
    for (name, _) in files(dir.path()) {
        if name.ends_with(".run") || name.ends_with(".fidx") {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    let (_, _, first, last, evidence) = missing(Store::open_with(dir.path(), options));
    assert_eq!((first, last), (4, 5));
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].kind, EvidenceKind::CleanMarker);
    assert!(dir.path().join("CLEAN").exists(), "the marker was removed");
}

/// Where no file vouches for it, a damaged last frame is still
/// indistinguishable from a torn tail and is cut (the limit that remains).
#[test]
fn without_evidence_a_damaged_last_frame_is_still_cut_as_a_torn_tail() {
    let mem = MemStorage::new();
    let options = Options::default().index_buffer_events(1000);
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    fill(&store, 5);
    let data_end = store.stats().data_bytes;
    let image = mem.crash_image(3, CrashMode::DropUnsynced);
    drop(store);
    let segment = annals_segment::segment_file_name(0);
    let mut bytes = image.read_file(&segment).unwrap();
    bytes[data_end as usize - 20] ^= 0x01;
    image.write_file(&segment, &bytes);
    let store = Store::open_storage(Arc::new(image), options).unwrap();
    assert_eq!(store.position_end(), 4);
    assert!(store.recovery_report().truncated.is_some());
}

/// A repair of a store that opens as it is drops nothing.
#[test]
fn a_repair_of_a_sound_store_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), small()).unwrap();
        fill(&store, 50);
    }
    let report = Store::repair(dir.path(), small(), true).unwrap();
    assert_eq!(report.dropped, None);
    assert!(report.evidence_discarded.is_empty());
    assert_eq!(report.position_end, 50);
    let store = Store::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.position_end(), 50);
}

/// A segment missing between two others is refused by open and by the
/// repair alike (which would have to drop every later segment), naming it;
/// nothing is changed.
#[test]
fn a_missing_middle_segment_is_named_and_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), small()).unwrap();
        fill(&store, 300);
    }
    let mut firsts: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            annals_segment::parse_segment_file_name(e.unwrap().file_name().to_str().unwrap())
        })
        .collect();
    firsts.sort_unstable();
    assert!(firsts.len() > 3);
    let middle = annals_segment::segment_file_name(firsts[1]);
    std::fs::remove_file(dir.path().join(&middle)).unwrap();
    let before = files(dir.path());
    let (file, offset, first, last, evidence) = missing(Store::open_with(dir.path(), small()));
    assert_eq!((file.as_str(), offset), (middle.as_str(), 0));
    assert_eq!((first, last), (firsts[1], firsts[2]));
    assert_eq!(evidence[0].kind, EvidenceKind::NextSegment);
    for dry_run in [true, false] {
        let refused = Store::repair(dir.path(), small(), dry_run);
        assert!(
            refused.as_ref().is_err_and(Error::is_missing),
            "{refused:?}"
        );
    }
    assert_eq!(files(dir.path()), before, "a refused repair changed files");
}
