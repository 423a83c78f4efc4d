//! Reads through the index: long reads of scattered streams, and stream
//! entries (one per stream per append, several for a wide append) read
//! back from every version however their run was written.

use annals::{Direction, EventData, ExpectedVersion, Options, Store};

mod common;
use common::*;

/// Long reads gather candidates from runs, frozen buffers and the active
/// buffer in batches and read the log in between: every window of a long,
/// scattered stream reads exactly its events, across batch boundaries.
#[test]
fn long_reads_of_a_scattered_stream_return_exactly_the_window_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .index_buffer_events(64)
        .segment_bytes(64 << 10);
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut model = Model::new();
    fill(&store, &mut model, 2_100, 3, 0);
    store.maintain_index().unwrap();
    let stream = "s-0";
    let positions = &model[stream];
    let n = positions.len() as u64;
    assert_eq!(n, 700);
    assert!(store.stats().index_runs > 1 && store.stats().segments > 1);
    for from in [0, 1, 255, 256, 257, 400, 699, 700, u64::MAX] {
        for max in [0, 1, 255, 256, 257, 513, 699, 700, usize::MAX] {
            let forward: Vec<u64> = (from.min(n)..n).take(max).collect();
            let backward: Vec<u64> = if n == 0 {
                vec![]
            } else {
                (0..=from.min(n - 1)).rev().take(max).collect()
            };
            for (direction, versions) in [
                (Direction::Forward, forward),
                (Direction::Backward, backward),
            ] {
                let events = store.read_stream(stream, from, direction, max).unwrap();
                let got: Vec<(u64, u64)> = events.iter().map(|e| (e.version, e.position)).collect();
                let want: Vec<(u64, u64)> = versions
                    .iter()
                    .map(|v| (*v, positions[*v as usize]))
                    .collect();
                assert_eq!(got, want, "from {from} max {max} {direction:?}");
            }
        }
    }
}

/// A run keeps one stream entry per stream per append, however the run
/// came to be: written from the writer's memtables, from memtables a
/// replay filled (which freeze only where an append begins), merged, or
/// rebuilt from the log in pieces (which end where an append begins). Each
/// way must give the entries `verify` derives from the log: a run cut
/// inside an append is refused when merged.
#[test]
fn runs_hold_one_stream_entry_per_append_however_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    // A buffer of 10 events fills in the middle of a 3-event append.
    let options = || Options::default().index_buffer_events(10);
    let mut model = Model::new();
    let appends = 400;
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill_appends(&store, &mut model, appends, 3, 5);
        store.maintain_index().unwrap();
        store.verify().unwrap();
        check_reads_from_every_version(&store, &model);
    }
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));

    // Replay: no run files, the whole log replayed into buffers of 10.
    for (name, _) in run_files(dir.path()) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(store.index_report().replayed, 3 * appends);
        store.maintain_index().unwrap();
        store.verify().unwrap();
        check_reads_from_every_version(&store, &model);
    }
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));

    // Rebuild: the largest run damaged, rebuilt by the reads in pieces of
    // four buffers (40 events: inside an append).
    let (name, _) = run_files(dir.path())
        .into_iter()
        .max_by_key(|(name, _)| events_of(name))
        .unwrap();
    assert!(events_of(&name) > 40, "{name}: rebuilt in several pieces");
    flip(&dir.path().join(&name), 4096 + 40);
    let damaged = std::fs::read(dir.path().join(&name)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_reads_from_every_version(&store, &model);
    store.verify().unwrap();
    // (The rebuilt run may have been merged since: its name can be gone.)
    let rebuilt = run_files(dir.path())
        .iter()
        .all(|(n, _)| std::fs::read(dir.path().join(n)).unwrap() != damaged);
    assert!(rebuilt, "the reads rebuilt the damaged run");
    drop(store);
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));
}

/// An append of more events to one stream than one stream entry holds
/// takes several entries, cut at the same events whether the run comes
/// from the writer's memtable, a replay or `verify`'s reading of the log;
/// every version reads back across the cuts.
#[test]
fn an_append_wider_than_a_stream_entry_is_indexed_in_several() {
    let dir = tempfile::tempdir().unwrap();
    let max = u64::from(annals_index::MAX_ENTRY_EVENTS);
    let n = max + 100;
    let events = |from: u64, count: u64| -> Vec<EventData> {
        (from..from + count)
            .map(|v| EventData::new("Tiny", v.to_le_bytes().to_vec()))
            .collect()
    };
    for replay in [false, true] {
        let path = dir.path().join(format!("replay-{replay}"));
        {
            let store = Store::open(&path).unwrap();
            store
                .append("wide", ExpectedVersion::NoStream, events(0, n))
                .unwrap()
                .unwrap();
            store
                .append("wide", ExpectedVersion::Exact(n - 1), events(n, 3))
                .unwrap()
                .unwrap();
            store.verify().unwrap();
        }
        if replay {
            for (name, _) in run_files(&path) {
                std::fs::remove_file(path.join(name)).unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.index_report().replayed,
            if replay { n + 3 } else { 0 }
        );
        store.maintain_index().unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        store.verify().unwrap();
        for from in [0, max - 2, max - 1, max, n - 1, n] {
            let forward = store
                .read_stream("wide", from, Direction::Forward, 4)
                .unwrap();
            let versions: Vec<u64> = forward.iter().map(|e| e.version).collect();
            assert_eq!(versions, (from..(from + 4).min(n + 3)).collect::<Vec<_>>());
            for e in &forward {
                assert_eq!(&e.data[..], &e.version.to_le_bytes()[..]);
            }
            let backward = store
                .read_stream("wide", from, Direction::Backward, 3)
                .unwrap();
            let versions: Vec<u64> = backward.iter().map(|e| e.version).collect();
            let want: Vec<u64> = (from.saturating_sub(2)..=from).rev().collect();
            assert_eq!(versions, want);
        }
        drop(store);
        // The append's entries: one full, one of 100; then the next append.
        assert_eq!(stream_entries_on_disk(&path), (3, n + 3), "replay {replay}");
    }
}
