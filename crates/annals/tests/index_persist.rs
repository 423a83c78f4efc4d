//! The persisted index: runs written and merged in the background, a clean
//! open replays nothing, retries are recognised from run files, and a
//! failing run write or merge stays reported until one succeeds.

use std::sync::Arc;
use std::time::Duration;

use annals::storage::{FsStorage, MemStorage, Storage};
use annals::{Direction, EventData, ExpectedVersion, Options, Store};

mod common;
use common::*;

#[test]
fn runs_are_merged_a_clean_open_replays_nothing_and_reads_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(50);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 5_000, 37, 0);
        check_against(&store, &model);
        // 100 buffers were frozen; merging keeps at most 3 runs per size
        // class (4 classes for 100 buffers).
        store.maintain_index().unwrap();
        let stats = store.stats();
        assert!(
            stats.index_checkpoint >= 4_950 && stats.index_runs <= 12,
            "{stats:?}"
        );
        let stats = store.stats();
        assert_eq!(stats.streams, 37);
        assert_eq!(stats.index_error, None);
        let report = store.verify().unwrap();
        assert_eq!(report.index_entries, 5_000);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().replayed,
        0,
        "a clean close persists everything"
    );
    assert_eq!(store.index_report().checkpoint, 5_000);
    assert!(store.index_report().discarded.is_empty());
    check_against(&store, &model);
    // Append more: streams continue across runs and the memtable.
    fill(&store, &mut model, 321, 41, 3);
    check_against(&store, &model);
    store.verify().unwrap();
    assert_eq!(store.stats().streams, 41);
}

#[test]
fn retries_are_recognised_from_index_files_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(32);
    let events: Vec<EventData> = (0..3).map(|v| event("r", v)).collect();
    let first = {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let first = store
            .append("r", ExpectedVersion::NoStream, events.clone())
            .unwrap()
            .unwrap();
        let mut model = Model::new();
        fill(&store, &mut model, 500, 11, 0);
        first
    };
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    let retried = store
        .append("r", ExpectedVersion::NoStream, events.clone())
        .unwrap()
        .unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.first_position, first.first_position);
    let partial = store.append("r", ExpectedVersion::Any, events[1..].to_vec());
    assert!(
        matches!(partial, Err(annals::Error::InvalidInput(_))),
        "{partial:?}"
    );
    assert_eq!(
        store.stream_version("r").unwrap(),
        annals::CurrentVersion::Version(2)
    );
}

#[test]
fn an_index_on_a_real_directory_survives_deletes_and_many_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(7);
    let mut model = Model::new();
    let doomed = "doomed";
    for round in 0..12u64 {
        let store =
            Store::open_storage(Arc::new(FsStorage::open(dir.path()).unwrap()), options()).unwrap();
        assert_eq!(store.index_report().replayed, 0, "round {round}");
        fill(&store, &mut model, 23, 5, round);
        if round < 6 {
            store
                .append(doomed, ExpectedVersion::Any, vec![EventData::new("D", "")])
                .unwrap()
                .unwrap();
        }
        if round == 6 {
            store
                .delete_stream(doomed, ExpectedVersion::Exact(5))
                .unwrap()
                .unwrap();
        }
        check_against(&store, &model);
        if round >= 6 {
            assert!(matches!(
                store.read_stream(doomed, 0, Direction::Forward, 1),
                Err(annals::Error::StreamDeleted(_))
            ));
            assert_eq!(
                store.stream_version(doomed).unwrap(),
                annals::CurrentVersion::Deleted { last: 6 }
            );
        }
        store.verify().unwrap();
    }
}

/// Regression: the background worker recorded the persist result and then
/// the merge result, so a merge with nothing to do cleared a failed
/// persist's error while the buffers were still only in memory.
#[test]
fn a_failing_index_write_stays_reported_until_a_write_succeeds() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    let mem = MemStorage::new();
    let faulty = Arc::new(FaultyStorage::new(Arc::new(mem.handle())));
    let options = Options::default().index_buffer_events(10);
    let store = Store::open_storage(Arc::clone(&faulty) as Arc<dyn Storage>, options).unwrap();
    // The first rename is an index run's (no segment rolls, no clean close yet).
    faulty.inject(Fault {
        op: FaultOp::Rename,
        nth: 0,
        persistent: true,
        kind: FaultKind::Eio,
    });
    let mut model = Model::new();
    fill(&store, &mut model, 25, 3, 0);
    wait_for("a failed index write", || {
        faulty.calls(FaultOp::Rename) >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let stats = store.stats();
    assert!(stats.index_error.is_some(), "{stats:?}");
    assert_eq!(stats.index_buffered, 25, "entries kept in memory");
    check_against(&store, &model);

    faulty.heal();
    fill(&store, &mut model, 10, 3, 1);
    wait_for("the retried index write", || {
        let stats = store.stats();
        stats.index_error.is_none() && stats.index_checkpoint >= 30
    });
    check_against(&store, &model);
    store.verify().unwrap();
}

/// Merges run on their own thread and report their own failures: a failed
/// merge stays reported (a successful run write does not clear it) until a
/// merge succeeds; the store stays correct throughout and after reopening.
#[test]
fn a_failing_merge_is_reported_until_a_merge_succeeds() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    let mem = MemStorage::new();
    let faulty = Arc::new(FaultyStorage::new(Arc::new(mem.handle())));
    // The fault is aimed at the stream index's merge: the secondary
    // indexes' files, removed on the same thread at moments of their own,
    // neither count nor fail (they took the planned fault in 2 of 40 runs).
    faulty.spare_names_starting_with("secondary-");
    let options = || Options::default().index_buffer_events(10);
    let store = Store::open_storage(Arc::clone(&faulty) as Arc<dyn Storage>, options()).unwrap();
    let mut model = Model::new();
    fill(&store, &mut model, 30, 3, 0);
    wait_for("three runs", || {
        let stats = store.stats();
        stats.index_checkpoint == 30 && stats.index_runs == 3
    });
    // Writing a run first removes a stale temp file, and so does a merge:
    // the next run write passes, the merge it triggers fails.
    let removes = faulty.calls(FaultOp::Remove);
    faulty.inject(Fault {
        op: FaultOp::Remove,
        nth: 1,
        persistent: false,
        kind: FaultKind::Eio,
    });
    fill(&store, &mut model, 10, 3, 1);
    wait_for("the failed merge", || {
        faulty.calls(FaultOp::Remove) >= removes + 2
    });
    std::thread::sleep(Duration::from_millis(200));
    let stats = store.stats();
    assert_eq!(stats.index_checkpoint, 40, "{stats:?}");
    assert_eq!(stats.index_runs, 4, "{stats:?}");
    let error = stats.index_error.expect("the merge failure is reported");
    assert!(error.contains("remove"), "{error}");
    check_against(&store, &model);

    // The next run write kicks the merger again; this merge succeeds.
    fill(&store, &mut model, 10, 3, 2);
    wait_for("the retried merge", || {
        let stats = store.stats();
        stats.index_error.is_none() && stats.index_checkpoint == 50 && stats.index_runs < 5
    });
    check_against(&store, &model);
    store.verify().unwrap();
    drop(store);
    drop(faulty);
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    check_against(&store, &model);
    store.verify().unwrap();
}
