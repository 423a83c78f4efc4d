//! Property: after a compaction the index runs that cover rewritten
//! segments hold the events' new offsets exactly (remapped from the
//! rewrite's offset map, not rebuilt from the log): `verify`, which
//! compares every run entry, offsets included, with what the log implies,
//! is clean before and after reopen, and every stream reads the same
//! events. The rewrite copies frames that lose nothing (at their old
//! offset before the first change, rebased after it) and re-encodes frames
//! that lose some of their events: all three kinds are in this workload.
//! Method: small segments and a small index buffer so that runs cover the
//! sealed log, on the real file system and in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use annals::storage::MemStorage;
use annals::{CompactionOptions, Direction, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
}

fn event(stream: &str, n: u64) -> EventData {
    EventData::new(
        "Happened",
        format!("DATA<{stream}#{n}>{}", "q".repeat(30)).into_bytes(),
    )
}

/// Fills the store: kept streams first (a clean prefix), then kept events
/// interleaved with a stream to hard-delete, and appends of 8 events to a
/// stream with a max-count (frames that lose only part of their events).
fn fill(store: &Store) {
    for n in 0..40 {
        store
            .append("early", ExpectedVersion::Any, vec![event("early", n)])
            .unwrap()
            .unwrap();
    }
    for n in 0..120 {
        for stream in ["kept", "gone"] {
            store
                .append(stream, ExpectedVersion::Any, vec![event(stream, n)])
                .unwrap()
                .unwrap();
        }
        if n % 10 == 0 {
            let batch = (0..8).map(|k| event("count", n * 8 + k)).collect();
            store
                .append("count", ExpectedVersion::Any, batch)
                .unwrap()
                .unwrap();
            let many = vec![
                (
                    "kept".to_owned(),
                    ExpectedVersion::Any,
                    vec![event("kept", 1000 + n)],
                ),
                (
                    "gone".to_owned(),
                    ExpectedVersion::Any,
                    vec![event("gone", 1000 + n)],
                ),
            ];
            store.append_many(many).unwrap().unwrap();
        }
    }
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    store.set_max_count("count", 13).unwrap();
    // Push the rule-bound events into sealed segments and into runs.
    for n in 0..200 {
        store
            .append("late", ExpectedVersion::Any, vec![event("late", n)])
            .unwrap()
            .unwrap();
    }
    store.flush().unwrap();
}

type Streams = BTreeMap<String, Vec<(u64, u64, Vec<u8>)>>;

fn streams(store: &Store) -> Streams {
    ["early", "kept", "count", "late"]
        .iter()
        .map(|s| {
            let events = store
                .read_stream(s, 0, Direction::Forward, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|e| (e.version, e.position, e.data.to_vec()))
                .collect();
            (s.to_string(), events)
        })
        .collect()
}

fn check(store: &Store) -> Streams {
    fill(store);
    let before = streams(store);
    let stats = store.stats();
    assert!(stats.index_runs > 0, "{stats:?}");
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    assert!(report.removed.hard_delete > 0, "{report:?}");
    assert!(report.removed.max_count > 0, "{report:?}");
    let stats = store.stats();
    assert!(stats.index_runs > 0, "{stats:?}");
    store.verify().unwrap();
    assert_eq!(streams(store), before);
    before
}

#[test]
fn index_runs_hold_the_new_offsets_after_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let before = check(&store);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.verify().unwrap();
    assert_eq!(streams(&store), before);
    // A second compaction finds nothing more to remove.
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert_eq!(report.removed.total(), 0, "{report:?}");
    assert_eq!(report.segments_rewritten, 0, "{report:?}");
    store.verify().unwrap();
}

#[test]
fn index_runs_hold_the_new_offsets_after_a_compaction_in_memory() {
    let mem = MemStorage::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    let before = check(&store);
    store.close().unwrap();
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    store.verify().unwrap();
    assert_eq!(streams(&store), before);
}
