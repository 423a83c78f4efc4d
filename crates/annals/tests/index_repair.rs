//! Damaged or misplaced run files are never trusted: a damaged page is
//! detected and its run rebuilt from the log, `verify` reports runs that
//! differ from the log, and runs off the chain or of an older format are
//! discarded.

use annals::{Direction, Options, Store};

mod common;
use common::*;

#[test]
fn a_damaged_index_page_is_detected_and_the_run_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 3_000, 50, 2);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = dir.path().join(&runs[0].0);
    // A byte in the stream table (page 1 on): found when first read.
    flip(&run, 4096 + 1000);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().checkpoint,
        3_000,
        "the header is intact"
    );
    check_against(&store, &model);
    store.verify().unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.verify().unwrap();
    drop(store);

    // A byte of the header page: discarded at open, the log replayed.
    flip(&run, 40);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().discarded, vec![runs[0].0.clone()]);
    assert_eq!(store.index_report().replayed, 3_000);
    check_against(&store, &model);
    store.verify().unwrap();
}

#[test]
fn verify_reports_a_damaged_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let store = Store::open(dir.path()).unwrap();
        fill(&store, &mut model, 500, 5, 0);
    }
    let runs = run_files(dir.path());
    let last_page = runs[0].1 - 4096;
    flip(&dir.path().join(&runs[0].0), last_page + 7);
    let store = Store::open(dir.path()).unwrap();
    let error = store.verify().unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(error.to_string().contains(&runs[0].0), "{error}");
    // Derived data, told apart from damage to the log.
    assert!(error.is_index_damage(), "{error}");
}

#[test]
fn runs_ahead_of_the_log_or_off_the_chain_are_discarded() {
    let long = tempfile::tempdir().unwrap();
    let short = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100);
    let mut long_model = Model::new();
    {
        let store = Store::open_with(long.path(), options()).unwrap();
        fill(&store, &mut long_model, 200, 3, 0);
    }
    let mut model = Model::new();
    {
        let store = Store::open_with(short.path(), options()).unwrap();
        fill(&store, &mut model, 100, 3, 1);
    }
    // The long store's second run covers 100..200: past the short log's end.
    let ahead = run_files(long.path())
        .into_iter()
        .find(|(n, _)| n.contains("-0000000000000064-"))
        .map(|(n, _)| n)
        .unwrap();
    std::fs::copy(long.path().join(&ahead), short.path().join(&ahead)).unwrap();
    // And a run that leaves a gap after the chain.
    let gap = "index-00000000000000c8-00000000000000c9.run";
    std::fs::write(short.path().join(gap), b"not a run").unwrap();
    let store = Store::open_with(short.path(), options()).unwrap();
    let mut discarded = store.index_report().discarded.clone();
    discarded.sort();
    assert_eq!(discarded, vec![ahead, gap.to_string()]);
    assert_eq!(store.index_report().checkpoint, 100);
    check_against(&store, &model);
    store.verify().unwrap();
}

/// A read that meets a damaged index page halfway rebuilds the run and
/// resumes after the last event it delivered: each event visited once.
#[test]
fn a_read_repairing_a_run_halfway_visits_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(1_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 2_000, 1, 0);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 2, "{runs:?}");
    // The newer run holds versions 1,000..2,000 of the one stream; its
    // second page of stream entries (versions 1,146..) is damaged, so a
    // forward read delivers the older run's events and more before it
    // finds the damage.
    let newer = dir.path().join(&runs[1].0);
    flip(&newer, 2 * 4096 + 500);
    let damaged = std::fs::read(&newer).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut seen = Vec::new();
    let count = store
        .read_stream_with("s-0", 0, Direction::Forward, usize::MAX, |event| {
            seen.push((event.version, event.position));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let want: Vec<(u64, u64)> = model["s-0"]
        .iter()
        .enumerate()
        .map(|(v, p)| (v as u64, *p))
        .collect();
    assert_eq!(count, want.len());
    assert_eq!(seen, want);
    assert_ne!(
        std::fs::read(&newer).unwrap(),
        damaged,
        "the read rebuilt the damaged run"
    );
    store.verify().unwrap();
}

/// `verify` compares each run with the entries the log implies (by an
/// order-independent digest, in constant memory): a run that is internally
/// valid — pages verify, sorted, each position once — but maps two events
/// to each other's positions is reported.
#[test]
fn verify_finds_a_valid_run_whose_entries_differ_from_the_log() {
    let (dir, store) = with_rewritten_run(|streams| {
        // Two entries of different streams swap positions: still sorted by
        // (hash, version), still each position once.
        let other = streams
            .iter()
            .position(|e| e.hash != streams[0].hash)
            .unwrap();
        let (a, b) = (streams[0].position, streams[other].position);
        streams[0].position = b;
        streams[other].position = a;
    });
    let error = store.verify().unwrap_err();
    assert!(error.to_string().contains("differ from the log"), "{error}");
    drop(dir);
}

/// A run entry whose offset points at another event (a valid place, the
/// wrong event): the read fails on the event's checksum, bound to the
/// position the entry names, instead of returning the other event; and
/// `verify` reports the run.
#[test]
fn a_run_offset_pointing_at_another_event_is_an_error_not_that_event() {
    let mut victim = None;
    let (dir, store) = with_rewritten_run(|streams| {
        let other = streams
            .iter()
            .position(|e| e.hash != streams[0].hash)
            .unwrap();
        streams[0].offset = streams[other].offset;
        victim = Some(streams[0].hash);
    });
    let victim = victim.unwrap();
    let stream = (0..5)
        .map(|k| format!("s-{k}"))
        .find(|s| annals_index::StreamHasher::hash(&annals_index::Fnv1aMix, s) == victim)
        .unwrap();
    let error = store
        .read_stream(&stream, 0, Direction::Forward, usize::MAX)
        .unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    let error = store.verify().unwrap_err();
    assert!(error.to_string().contains("differ from the log"), "{error}");
    drop(dir);
}

/// Rebuilding a damaged run holds at most four buffers' worth of entries:
/// a large run is rebuilt as sorted pieces merged four at a time. The
/// result replaces the damaged file under the same name, and no piece is
/// left behind.
#[test]
fn a_large_damaged_run_is_rebuilt_in_pieces_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(10);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        // In steps of one buffer, each followed by the index's pending
        // work, so that runs are merged four at a time as they come and
        // the largest reaches 640 events whatever the background threads'
        // timing (once, in a loaded CI run, several small runs piled up at
        // the tail and merged into odd sizes that never merged further).
        for _ in 0..250 {
            fill(&store, &mut model, 10, 5, 0);
            store.maintain_index().unwrap();
        }
    }
    let before = run_files(dir.path());
    let (name, bytes) = before
        .iter()
        .max_by_key(|(name, _)| events_of(name))
        .unwrap()
        .clone();
    let events = events_of(&name);
    assert!(events > 4 * 4 * 10, "{events} events: two levels of pieces");
    // A byte of the first page of stream entries, which every read of a
    // stream whose entries live there reaches.
    flip(&dir.path().join(&name), 4096 + 100);
    let damaged = std::fs::read(dir.path().join(&name)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    check_against(&store, &model);
    eprintln!("{:?}", run_files(dir.path()));
    let rebuilt = std::fs::read(dir.path().join(&name)).unwrap();
    assert_ne!(rebuilt, damaged, "the reads rebuilt the damaged run");
    assert_eq!(rebuilt.len() as u64, bytes);
    store.verify().unwrap();
    assert_eq!(
        run_files(dir.path())
            .iter()
            .map(|r| &r.0)
            .collect::<Vec<_>>(),
        before.iter().map(|r| &r.0).collect::<Vec<_>>(),
        "same run files, no pieces left"
    );
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    assert!(store.index_report().discarded.is_empty());
    check_against(&store, &model);
    store.verify().unwrap();
}

/// A run written by another format version (here: format 2, one entry per
/// event) is discarded at open and its events replayed from the log; the
/// store reads and verifies as before, and writes format 3 runs again.
#[test]
fn a_run_of_an_older_format_is_discarded_and_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill_appends(&store, &mut model, 100, 3, 4);
    }
    let runs = run_files(dir.path());
    assert!(!runs.is_empty());
    let (name, _) = &runs[0];
    // Rewrite the header's version field, with a valid page checksum.
    let path = dir.path().join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let salt = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    let crc = annals_index::page_crc(salt, 0, &bytes[..4092]);
    bytes[4092..4096].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.index_report();
    assert!(report.discarded.contains(name), "{report:?}");
    assert_eq!(
        report.checkpoint, 0,
        "the chain starts at the discarded run"
    );
    assert_eq!(report.replayed, 300);
    check_reads_from_every_version(&store, &model);
    store.verify().unwrap();
    drop(store);
    assert_eq!(stream_entries_on_disk(dir.path()), (100, 300));
}
