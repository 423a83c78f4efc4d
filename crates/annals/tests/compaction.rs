//! Property: a compaction physically removes exactly the events the stream
//! rules hide (hard delete, soft delete, truncate-before, max-count,
//! max-age) and nothing else: afterwards `verify` is clean, every surviving
//! event reads byte-identical at the same version and position (through
//! `read_all`, `read_all_with`, `read_all_backward`, stream reads and
//! subscriptions, which step over the gaps), the removed payloads are in no
//! file of the directory, and all of it holds after reopen. With nothing to
//! remove it changes nothing. Method: fixed workloads on small segments,
//! on the real file system (to search every file's bytes) and in memory.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use annals::storage::MemStorage;
use annals::{
    CompactionOptions, Direction, EventData, EventId, ExpectedVersion, Options, Store,
    SubscriptionItem, SubscriptionOptions,
};

fn options() -> Options {
    Options::default().segment_bytes(8 << 10)
}

/// A payload that names its stream and number, unique in the directory.
fn payload(stream: &str, n: u64) -> Vec<u8> {
    format!("PAYLOAD<{stream}#{n}>{}", "z".repeat(40)).into_bytes()
}

fn metadata(stream: &str, n: u64) -> Vec<u8> {
    format!("META<{stream}#{n}>").into_bytes()
}

/// Appends events numbered `numbers` to each stream, interleaved, one
/// append each.
fn fill(store: &Store, streams: &[&str], numbers: std::ops::Range<u64>) {
    for n in numbers {
        for stream in streams {
            let event =
                EventData::new("Happened", payload(stream, n)).with_metadata(metadata(stream, n));
            store
                .append(stream, ExpectedVersion::Any, vec![event])
                .unwrap()
                .unwrap();
        }
    }
}

/// Every event of `$all` as (position → (stream, version, data, metadata)).
type Feed = BTreeMap<u64, (String, u64, Vec<u8>, Vec<u8>)>;

fn feed(store: &Store) -> Feed {
    store
        .read_all(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.position,
                (e.stream, e.version, e.data.to_vec(), e.metadata.to_vec()),
            )
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every removed payload is absent from every file; every surviving one is
/// still somewhere.
fn check_files(dir: &std::path::Path, removed: &Feed, kept: &Feed) {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for (position, (_, _, data, meta)) in removed {
        for file in &all {
            assert!(
                !contains(file, data),
                "removed payload at {position} still on disk: {}",
                String::from_utf8_lossy(data)
            );
            assert!(
                !contains(file, meta),
                "removed metadata at {position} still on disk"
            );
        }
    }
    for (position, (_, _, data, _)) in kept.iter().filter(|(_, e)| !e.2.is_empty()) {
        assert!(
            all.iter().any(|f| contains(f, data)),
            "kept payload at {position} missing"
        );
    }
}

fn versions(store: &Store, stream: &str) -> Vec<u64> {
    store
        .read_stream(stream, 0, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect()
}

#[test]
fn compaction_removes_what_the_rules_hide_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let streams = ["keep", "hard", "soft", "trunc", "count"];
    fill(&store, &streams, 0..40);
    store
        .delete_stream("hard", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    store
        .soft_delete_stream("soft", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    store.set_truncate_before("trunc", 25).unwrap();
    store.set_max_count("count", 10).unwrap();
    // More events so that the rules' events are in sealed segments too.
    fill(&store, &["keep"], 40..100);
    let before = feed(&store);
    let visible: BTreeMap<&str, Vec<u64>> = ["keep", "soft", "trunc", "count"]
        .iter()
        .map(|s| (*s, versions(&store, s)))
        .collect();

    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    store.verify().unwrap();

    let after = feed(&store);
    let removed: Feed = before
        .iter()
        .filter(|(p, _)| !after.contains_key(p))
        .map(|(p, e)| (*p, e.clone()))
        .collect();
    // Survivors: identical at the same positions; nothing new.
    for (position, event) in &after {
        assert_eq!(before.get(position), Some(event), "changed at {position}");
    }
    // What went is exactly what the rules hide, and the counts say so.
    let sealed_end = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".seg")?.parse::<u64>().ok()
        })
        .max()
        .unwrap();
    for (position, (stream, version, _, _)) in &removed {
        assert!(*position < sealed_end, "removed from the active segment");
        let hidden = match stream.as_str() {
            "hard" => true,
            "soft" => *version < 40,
            "trunc" => *version < 25,
            "count" => *version < 30,
            _ => false,
        };
        assert!(hidden, "{stream}@{version} removed but readable");
    }
    let r = report.removed;
    assert_eq!(r.total(), removed.len() as u64);
    assert!(r.hard_delete > 0 && r.soft_delete > 0 && r.truncate_before > 0 && r.max_count > 0);
    assert_eq!(r.max_age, 0);
    assert_eq!(
        r.hard_delete,
        removed.values().filter(|e| e.0 == "hard").count() as u64
    );
    assert_eq!(
        r.soft_delete,
        removed.values().filter(|e| e.0 == "soft").count() as u64
    );
    // Stream reads unchanged.
    for (stream, expected) in &visible {
        assert_eq!(&versions(&store, stream), expected, "{stream}");
    }
    // The other $all readers step over the gaps the same way.
    let mut with = Vec::new();
    store
        .read_all_with(0, usize::MAX, |e| {
            with.push(e.position);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(with, after.keys().copied().collect::<Vec<_>>());
    let backward: Vec<u64> = store
        .read_all_backward(u64::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(backward, after.keys().rev().copied().collect::<Vec<_>>());
    let limited = store.read_all_backward(u64::MAX, 7).unwrap();
    assert_eq!(limited.len(), 7);
    let mut subscription = store.subscribe(SubscriptionOptions::all());
    // Subscriptions to all leave out system streams ($meta-…).
    let expected: Vec<u64> = after
        .iter()
        .filter(|(_, e)| !e.0.starts_with('$'))
        .map(|(p, _)| *p)
        .collect();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        if let SubscriptionItem::Event(e) = subscription.next().unwrap().unwrap() {
            seen.push(e.position);
        }
    }
    assert_eq!(seen, expected);
    drop(subscription);

    // Again: nothing more to remove, nothing changes.
    let again = store.compact(&CompactionOptions::default()).unwrap();
    assert_eq!(again.segments_rewritten, 0);
    assert_eq!(again.removed.total(), 0);
    store.close().unwrap();

    check_files(dir.path(), &removed, &after);
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.verify().unwrap();
    assert_eq!(feed(&store), after);
    for (stream, expected) in &visible {
        assert_eq!(&versions(&store, stream), expected, "{stream} after reopen");
    }
}

#[test]
fn without_rules_compaction_removes_nothing() {
    let mem = MemStorage::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    fill(&store, &["a", "b"], 0..80);
    let before = feed(&store);
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_examined > 0);
    assert_eq!(report.segments_rewritten, 0);
    assert_eq!(report.removed.total(), 0);
    assert_eq!(report.bytes_before, report.bytes_after);
    assert_eq!(feed(&store), before);
}

#[test]
fn a_retry_of_a_removed_append_is_still_a_duplicate() {
    let mem = MemStorage::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    let id = EventId::random();
    let first = EventData::new("Happened", payload("gdpr", 0)).with_id(id);
    let written = store
        .append("gdpr", ExpectedVersion::NoStream, vec![first.clone()])
        .unwrap()
        .unwrap();
    fill(&store, &["gdpr", "other"], 1..61);
    store.set_truncate_before("gdpr", 30).unwrap();
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.removed.truncate_before > 0);
    // The removed event's position is a gap...
    assert!(!feed(&store).contains_key(&written.first_position));
    // ...and retrying its append gets the original result: the data does
    // not come back.
    let retried = store
        .append("gdpr", ExpectedVersion::NoStream, vec![first])
        .unwrap()
        .unwrap();
    assert!(retried.duplicate, "{retried:?}");
    assert_eq!(
        (
            retried.first_position,
            retried.first_version,
            retried.last_version
        ),
        (
            written.first_position,
            written.first_version,
            written.last_version
        )
    );
    assert!(!feed(&store).contains_key(&written.first_position));
}

#[test]
fn max_age_hides_at_once_and_compaction_removes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &["old"], 0..50);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    fill(&store, &["young", "old"], 50..90);
    assert_eq!(versions(&store, "old").len(), 90);
    store
        .set_max_age("old", std::time::Duration::from_secs(2))
        .unwrap();
    assert_eq!(store.stream_metadata("old").unwrap().max_age_secs, Some(2));
    assert_eq!(versions(&store, "old"), (50..90).collect::<Vec<_>>());
    let before = feed(&store);
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.removed.max_age > 0, "{report:?}");
    assert_eq!(report.removed.total(), report.removed.max_age);
    let after = feed(&store);
    for (position, (stream, version, _, _)) in &before {
        if !after.contains_key(position) {
            assert!(stream == "old" && *version < 50);
        }
    }
    store.close().unwrap();
    let removed: Feed = before
        .iter()
        .filter(|(p, _)| !after.contains_key(p))
        .map(|(p, e)| (*p, e.clone()))
        .collect();
    check_files(dir.path(), &removed, &after);
}

#[test]
fn compaction_keeps_the_newest_snapshots_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &["acct-1", "acct-2"], 0..20);
    let state = |stream: &str, v: u64| format!("STATE<{stream}@{v}>").into_bytes();
    for v in [3, 7, 11, 15] {
        for stream in ["acct-1", "acct-2"] {
            store
                .save_snapshot(stream, v, "State.v1", &state(stream, v))
                .unwrap();
        }
    }
    let keep_two = CompactionOptions {
        keep_snapshots: 2,
        ..CompactionOptions::default()
    };
    let report = store.compact(&keep_two).unwrap();
    assert_eq!(report.snapshots_removed, 4, "{report:?}");
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert_eq!(report.snapshots_removed, 2, "{report:?}");
    let check = |store: &Store| {
        for stream in ["acct-1", "acct-2"] {
            let loaded = store.load_aggregate(stream).unwrap();
            let snapshot = loaded.snapshot.unwrap();
            assert_eq!(snapshot.version, 15);
            assert_eq!(&snapshot.data[..], &state(stream, 15)[..]);
            assert_eq!(loaded.events.len(), 4);
        }
    };
    check(&store);
    // A save after the compaction goes on in the new file.
    store
        .save_snapshot("acct-1", 19, "State.v1", &state("acct-1", 19))
        .unwrap();
    store.close().unwrap();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        all.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for stream in ["acct-1", "acct-2"] {
        for v in [3, 7, 11] {
            assert!(
                !all.iter().any(|f| contains(f, &state(stream, v))),
                "superseded snapshot {stream}@{v} still on disk"
            );
        }
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    let loaded = store.load_aggregate("acct-1").unwrap();
    assert_eq!(loaded.snapshot.unwrap().version, 19);
    let loaded = store.load_aggregate("acct-2").unwrap();
    assert_eq!(loaded.snapshot.unwrap().version, 15);
}

/// Regression (merge of compaction with the secondary indexes): a gap
/// record keeps its stream and type, and the category and event-type
/// indexes keep their entries for it; reads by category or type must step
/// over it like `read_all` does, and count only events that are there.
#[test]
fn reads_by_category_and_type_step_over_removed_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &["gone-1", "kept-1", "gone-2"], 0..40);
    store
        .delete_stream("gone-1", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    fill(&store, &["kept-1"], 40..100);
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");

    let all = store.read_all(0, usize::MAX).unwrap();
    for (category, bound) in [("gone", 5usize), ("kept", 7), ("gone", usize::MAX)] {
        let expected: Vec<u64> = all
            .iter()
            .filter(|e| annals::category_of(&e.stream) == Some(category))
            .map(|e| e.position)
            .take(bound)
            .collect();
        let read: Vec<u64> = store
            .read_category(category, 0, bound)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(read, expected, "category {category}, max {bound}");
    }
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| e.event_type == "Happened")
        .map(|e| e.position)
        .collect();
    let read: Vec<u64> = store
        .read_event_types(&["Happened"], 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(read, expected);
    // Some of gone-1's events were removed, none of them is read back.
    assert!(store
        .read_category("gone", 0, usize::MAX)
        .unwrap()
        .iter()
        .all(|e| e.stream != "gone-1" || e.event_type == annals::TOMBSTONE_TYPE));
}
