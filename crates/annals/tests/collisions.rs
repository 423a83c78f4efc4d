//! Stream-hash collisions everywhere: in this process every stream name
//! hashes to one of four values (`annals_index::collisions::force`), so the
//! memtable's buckets, every run's entries, filters and fences hold many
//! streams under one hash, and each lookup must tell them apart by reading
//! the event's full name. Reads, versions, expectations, deletes, retries,
//! verify, merges and reopens are checked against a model.
//!
//! One test in its own binary: the switch is process-wide and must be set
//! before any store is opened.

use std::collections::HashMap;

use annals::{CurrentVersion, Direction, EventData, ExpectedVersion, Options, Store};
use annals_index::{Fnv1aMix, StreamHasher};

fn event(stream: &str, version: u64) -> EventData {
    EventData::new("E", format!("{stream}@{version}"))
}

/// What the test expects of each stream: the positions of its events in
/// version order, and whether it was deleted.
type Model = HashMap<String, (Vec<u64>, bool)>;

fn check(store: &Store, model: &Model) {
    for (stream, (positions, deleted)) in model {
        let expected_version = match (positions.len(), deleted) {
            (0, _) => CurrentVersion::NoStream,
            (n, true) => CurrentVersion::Deleted { last: n as u64 - 1 },
            (n, false) => CurrentVersion::Version(n as u64 - 1),
        };
        assert_eq!(
            store.stream_version(stream).unwrap(),
            expected_version,
            "{stream}"
        );
        if *deleted {
            continue;
        }
        let forward = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .unwrap();
        assert_eq!(
            forward.iter().map(|e| e.position).collect::<Vec<_>>(),
            *positions,
            "{stream}"
        );
        for (v, e) in forward.iter().enumerate() {
            assert_eq!((e.stream.as_str(), e.version), (stream.as_str(), v as u64));
            assert_eq!(&e.data[..], format!("{stream}@{v}").as_bytes());
        }
        // A window from the middle, both ways.
        let middle = positions.len() as u64 / 2;
        let back = store
            .read_stream(stream, middle, Direction::Backward, 4)
            .unwrap();
        let want: Vec<u64> = positions[..=middle as usize]
            .iter()
            .rev()
            .take(4)
            .copied()
            .collect();
        assert_eq!(
            back.iter().map(|e| e.position).collect::<Vec<_>>(),
            want,
            "{stream}"
        );
        let ahead = store
            .read_stream(stream, middle, Direction::Forward, 3)
            .unwrap();
        let want: Vec<u64> = positions[middle as usize..]
            .iter()
            .take(3)
            .copied()
            .collect();
        assert_eq!(ahead.iter().map(|e| e.position).collect::<Vec<_>>(), want);
    }
    // A stream never written, whose hash every written stream shares.
    assert_eq!(
        store.stream_version("never-written").unwrap(),
        CurrentVersion::NoStream
    );
    assert!(store
        .read_stream("never-written", 0, Direction::Forward, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn colliding_stream_hashes_never_mix_streams_up() {
    annals_index::collisions::force();
    let names: Vec<String> = (0..120).map(|i| format!("order-{i}")).collect();
    let hashes: std::collections::HashSet<u64> = names.iter().map(|n| Fnv1aMix.hash(n)).collect();
    assert!(hashes.len() <= 4, "collisions are forced: {hashes:?}");

    let dir = tempfile::tempdir().unwrap();
    // A small buffer: many runs, merged, each holding every stream.
    let options = || Options::default().index_buffer_events(40);
    let mut model = Model::new();
    let mut first_appends = Vec::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        for round in 0..12u64 {
            for (k, name) in names.iter().enumerate() {
                if (k as u64 + round).is_multiple_of(5) {
                    continue; // streams grow unevenly
                }
                let (positions, deleted) = model.entry(name.clone()).or_default();
                if *deleted {
                    continue;
                }
                let n = positions.len() as u64;
                let expected = match n {
                    0 => ExpectedVersion::NoStream,
                    n => ExpectedVersion::Exact(n - 1),
                };
                // A stale expectation is refused, whoever shares the hash.
                if n > 0 {
                    let stale = store
                        .append(name, ExpectedVersion::Exact(n), vec![event(name, n)])
                        .unwrap();
                    assert!(stale.is_err(), "{name}: stale expectation accepted");
                }
                let events = vec![event(name, n), event(name, n + 1)];
                let written = store
                    .append(name, expected, events.clone())
                    .unwrap()
                    .unwrap();
                assert_eq!(written.first_version, n);
                positions.extend([written.first_position, written.first_position + 1]);
                if round == 0 {
                    first_appends.push((name.clone(), events, written));
                }
            }
            if round == 6 {
                for name in names.iter().step_by(17) {
                    let (positions, deleted) = model.get_mut(name).unwrap();
                    store
                        .delete_stream(name, ExpectedVersion::Any)
                        .unwrap()
                        .unwrap();
                    // The tombstone is an event of the stream.
                    positions.push(store.position_end() - 1);
                    *deleted = true;
                }
            }
        }
        check(&store, &model);
        store.maintain_index().unwrap();
        assert!(store.stats().index_runs >= 2, "{:?}", store.stats());
        check(&store, &model);
        store.verify().unwrap();
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    check(&store, &model);
    // Retries of the first appends, now in runs among colliding entries,
    // are recognised as the originals.
    for (name, events, original) in &first_appends {
        if model[name].1 {
            continue;
        }
        let retried = store
            .append(name, ExpectedVersion::NoStream, events.clone())
            .unwrap()
            .unwrap();
        assert!(retried.duplicate, "{name}");
        assert_eq!(retried.first_position, original.first_position);
    }
    store.verify().unwrap();
}
