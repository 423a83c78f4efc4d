//! Property: a read-only open answers `read_query` exactly as a filtered
//! read of its own `$all` would, while the owner appends tagged events and
//! writes, merges and replaces secondary index runs under it; after each
//! `refresh` it sees the owner's new matches; a fresh read-only open (which
//! loads the owner's newest runs) agrees too; a conditional append on it is
//! `Error::ReadOnly` and writes nothing.
//! Method: an owner thread appending to a real directory with a small
//! index buffer (runs written and merged every few dozen events), a
//! read-only store refreshing and querying beside it, compared with the
//! matching events of its own `read_all` and, at the end, with the owner.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{
    AppendCondition, Error, EventData, ExpectedVersion, Options, Query, QueryItem, RecordedEvent,
    Store,
};

const TYPES: [&str; 3] = ["A", "B", "C"];

fn tagged(i: u64) -> EventData {
    let mut tags = vec![format!("m:{}", i % 7)];
    if i.is_multiple_of(3) {
        tags.push(format!("k:{}", i % 2));
    }
    EventData::new(TYPES[(i % 3) as usize], format!("{i}")).with_tags(tags)
}

/// Appends event `i` ([`tagged`]) to one of four streams.
fn append_tagged(store: &Store, i: u64) {
    store
        .append(
            &format!("s-{}", i % 4),
            ExpectedVersion::Any,
            vec![tagged(i)],
        )
        .unwrap()
        .unwrap();
}

fn queries() -> Vec<Query> {
    vec![
        Query::new([QueryItem::new().tags(["m:3"])]),
        Query::new([QueryItem::new().types(["B"]).tags(["k:1"])]),
        Query::new([
            QueryItem::new().types(["A", "C"]).tags(["m:1", "k:0"]),
            QueryItem::new().types(["B"]),
        ]),
        Query::new([QueryItem::new().tags(["absent"])]),
    ]
}

fn matching(all: &[RecordedEvent], query: &Query, from: u64) -> Vec<u64> {
    all.iter()
        .filter(|e| e.position >= from)
        .filter(|e| {
            query.items.iter().any(|i| {
                (i.types.is_empty() || i.types.contains(&e.event_type))
                    && i.tags.iter().all(|t| e.tags.contains(t))
            })
        })
        .map(|e| e.position)
        .collect()
}

/// Every query from a few positions, against the store's own `$all`.
fn check(store: &Store) -> u64 {
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for query in queries() {
        for from in [0, end / 2, end.saturating_sub(3)] {
            let read = store.read_query(&query, from, usize::MAX).unwrap();
            let got: Vec<u64> = read.events.iter().map(|e| e.position).collect();
            // The owner may have published more since `read_all`: a
            // refresh is what moves a read-only store, not a read.
            assert_eq!(got, matching(&all, &query, from), "{query:?} from {from}");
            assert_eq!(read.read_up_to, end.checked_sub(1), "{query:?} from {from}");
        }
    }
    end
}

fn options() -> Options {
    Options::default()
        .index_buffer_events(40)
        .segment_bytes(32 << 10)
}

#[test]
fn read_only_queries_follow_the_owner_and_its_index_runs() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..300 {
        append_tagged(&owner, i);
    }
    owner.maintain_index().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (owner, done) = (owner.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 300..1_500 {
                append_tagged(&owner, i);
                if i.is_multiple_of(200) {
                    owner.maintain_index().unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let reader = Store::open_read_only_with(dir.path(), options()).unwrap();
    let mut seen = check(&reader);
    let mut rounds = 0u64;
    while !done.load(Ordering::SeqCst) {
        reader.refresh().unwrap();
        let end = check(&reader);
        assert!(end >= seen);
        seen = end;
        rounds += 1;
        // Fresh read-only opens load whatever runs the owner has now.
        if rounds.is_multiple_of(5) {
            check(&Store::open_read_only_with(dir.path(), options()).unwrap());
        }
    }
    writer.join().unwrap();
    reader.refresh().unwrap();
    assert_eq!(check(&reader), 1_500);
    for query in queries() {
        assert_eq!(
            reader.read_query(&query, 0, usize::MAX).unwrap(),
            owner.read_query(&query, 0, usize::MAX).unwrap()
        );
    }
    let refused = reader.append_with_condition(
        vec![("s-0".into(), ExpectedVersion::Any, vec![tagged(0)])],
        AppendCondition::new(Query::default()),
    );
    assert!(matches!(refused, Err(Error::ReadOnly(_))), "{refused:?}");
    assert_eq!(owner.position_end(), 1_500);
    assert!(rounds > 0);
    let runs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".sidx")
        })
        .count();
    assert!(runs >= 1, "the owner wrote secondary runs");
    assert!(
        reader.index_report().secondary.checkpoint > 0,
        "the first read-only open loaded a run"
    );
}
