//! A store whose secondary index runs (postings per category, event type
//! and tag: `secondary-S-E.sidx`) hold fuzzed entries behind valid
//! checksums: the input (after its first two bytes, which say where to
//! start, in steps of 16 bytes) is XORed over the payloads of the data
//! pages of the secondary run files taken one after another (header pages
//! are left alone, so the runs are trusted at open), then each page's CRC
//! is recomputed. Key hashes, positions, their order and the zero tail of
//! the last page are then arbitrary. Open, reads by query (owned and
//! visitor, several shapes, from 0, from the middle and past the end), by
//! category and by event type (both forms), conditional appends and
//! `verify` must each return a result or an error: never panic, never hang.
//! (Subscriptions read through these postings only when more than 4096
//! positions behind: a store that large ran at a third of the speed, so
//! they are left to the reads, which walk the same lookups.)
//!
//! What must hold even with lying postings, and is asserted: every
//! candidate is confirmed on its event, so an index may make a read miss
//! events but never return one that does not match, nor one twice, nor out
//! of position order, nor one other than the log's event at that position;
//! and a conditional append refused for a condition names a position above
//! `after` whose event really matches the condition's query.
#![no_main]

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use annals::storage::{MemStorage, Storage};
use annals::{
    category_of, AppendCondition, AppendRejected, EventData, EventId, ExpectedVersion, Options,
    Query, QueryItem, RecordedEvent, Store,
};
use annals_index::parse_secondary_file_name;
use libfuzzer_sys::fuzz_target;

#[path = "shared/fuzzed_pages.rs"]
mod fuzzed_pages;

/// Events of the seeded store, in two secondary runs: `0..EVENTS_FIRST_RUN`
/// (16 data pages) and the rest (2): searches cross pages and runs.
const EVENTS: u64 = 1_100;
const EVENTS_FIRST_RUN: u64 = 1_000;
/// Events per append while seeding.
const BATCH: u64 = 100;
const CATEGORIES: [&str; 3] = ["order", "user", "cart"];
const TYPES: [&str; 4] = ["Placed", "Paid", "Shipped", "Registered"];

fn options() -> Options {
    Options::default()
        .index_buffer_events(2 * EVENTS)
        .segment_bytes(256 << 10)
}

fn id(n: u64, kind: u8) -> EventId {
    let mut id = [kind; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    EventId(id)
}

/// Event `n` of the seeded store: stream `cat-k` (every 13th in a stream
/// with no category), one of four types, two or three tags.
fn event(n: u64) -> (String, EventData) {
    let stream = if n % 13 == 0 {
        format!("solo{}", n % 2)
    } else {
        format!("{}-{}", CATEGORIES[(n % 3) as usize], n % 5)
    };
    let mut tags = vec![format!("student:{}", n % 4), format!("course:{}", n % 3)];
    if n % 97 == 5 {
        tags.push("rare".to_owned());
    }
    let data = EventData::new(TYPES[(n % 4) as usize], n.to_le_bytes().to_vec())
        .with_id(id(n, 1))
        .with_tags(tags);
    (stream, data)
}

/// Appends events `range` in batches of `BATCH`, each batch one
/// `append_many` over its streams.
fn seed(store: &Store, range: std::ops::Range<u64>) {
    for first in range.step_by(BATCH as usize) {
        let mut by_stream: BTreeMap<String, Vec<EventData>> = BTreeMap::new();
        for n in first..first + BATCH {
            let (stream, data) = event(n);
            by_stream.entry(stream).or_default().push(data);
        }
        let appends = by_stream
            .into_iter()
            .map(|(stream, events)| (stream, ExpectedVersion::Any, events))
            .collect();
        store.append_many(appends).expect("append").expect("any");
    }
}

/// The files of the seeded store, with its secondary runs, built once.
/// The index buffer holds every event, so nothing is persisted in the
/// background: each close writes one run of what it appended, and the
/// layout (the fuzzed offsets' meaning) is the same in every process.
fn base() -> &'static Vec<(String, Vec<u8>)> {
    static BASE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let storage = MemStorage::new();
        for range in [0..EVENTS_FIRST_RUN, EVENTS_FIRST_RUN..EVENTS] {
            let store = Store::open_storage(Arc::new(storage.handle()), options()).expect("open");
            seed(&store, range);
        }
        let mut names = storage.list().expect("list");
        names.sort();
        let secondary = names
            .iter()
            .filter(|n| parse_secondary_file_name(n).is_some())
            .count();
        assert!(
            secondary >= 2,
            "the seeded store has {secondary} secondary runs: {names:?}"
        );
        names
            .into_iter()
            .filter_map(|n| storage.read_file(&n).map(|b| (n, b)))
            .collect()
    })
}

/// Whether `event` matches `query`, checked here independently of the
/// store's own matching.
fn matches(query: &Query, event: &RecordedEvent) -> bool {
    query.items.iter().any(|item| {
        (item.types.is_empty() || item.types.contains(&event.event_type))
            && item.tags.iter().all(|t| event.tags.contains(t))
    })
}

/// Every event is the log's event at its position, `keep` holds for it,
/// it is at or after `from`, and positions strictly increase.
fn check(
    all: &[RecordedEvent],
    events: &[RecordedEvent],
    from: u64,
    what: &str,
    keep: impl Fn(&RecordedEvent) -> bool,
) {
    let mut last = None;
    for e in events {
        assert!(e.position >= from, "{what}: {} before {from}", e.position);
        assert!(
            last < Some(e.position),
            "{what}: {} after {last:?}",
            e.position
        );
        last = Some(e.position);
        assert!(keep(e), "{what}: {e:?} does not match");
        if let Some(logged) = usize::try_from(e.position).ok().and_then(|p| all.get(p)) {
            assert_eq!(logged, e, "{what}: not the log's event");
        }
    }
}

fn queries() -> Vec<Query> {
    vec![
        Query::new([QueryItem::new().tags(["student:1"])]),
        Query::new([QueryItem::new().types(["Placed", "Paid"])]),
        Query::new([QueryItem::new()
            .types(["Shipped", "Paid"])
            .tags(["course:2", "student:3"])]),
        Query::new([
            QueryItem::new().tags(["rare"]),
            QueryItem::new().types(["Registered"]).tags(["course:0"]),
        ]),
        Query::new([QueryItem::new().tags(["absent", "student:0"])]),
    ]
}

fn reads(store: &Store, all: &[RecordedEvent]) {
    let end = all.len() as u64;
    for query in &queries() {
        for (from, max) in [(0, 40), (end / 2, 25), (end - 3, usize::MAX), (end + 5, 10)] {
            let what = format!("{query:?} from {from} max {max}");
            if let Ok(read) = store.read_query(query, from, max) {
                assert!(read.events.len() <= max, "{what}");
                check(all, &read.events, from, &what, |e| matches(query, e));
                if let Some(last) = read.events.last() {
                    assert!(read.read_up_to >= Some(last.position), "{what}");
                }
                assert!(read.read_up_to < Some(end), "{what}");
            }
            let mut seen = Vec::new();
            let _ = store.read_query_with(query, from, max, |event| {
                seen.push(event.to_recorded());
                if seen.len() >= 7 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            assert!(seen.len() <= 7.min(max), "{what}");
            check(all, &seen, from, &what, |e| matches(query, e));
        }
    }
    // The rare tag's whole postings, through every run.
    let rare = Query::new([QueryItem::new().tags(["rare"])]);
    if let Ok(read) = store.read_query(&rare, 0, usize::MAX) {
        check(all, &read.events, 0, "rare", |e| matches(&rare, e));
    }
    for category in ["order", "cart", "absent"] {
        for (from, max) in [(0, 30), (end / 2, 20), (end - 10, usize::MAX)] {
            let what = format!("category {category} from {from}");
            let in_category = |e: &RecordedEvent| category_of(&e.stream) == Some(category);
            if let Ok(events) = store.read_category(category, from, max) {
                assert!(events.len() <= max, "{what}");
                check(all, &events, from, &what, in_category);
            }
            let mut seen = Vec::new();
            let _ = store.read_category_with(category, from, max, |event| {
                seen.push(event.to_recorded());
                ControlFlow::Continue(())
            });
            check(all, &seen, from, &what, in_category);
        }
    }
    for types in [&["Paid"][..], &["Shipped", "Registered", "Nope"][..]] {
        for (from, max) in [(0, 30), (end / 2, 20), (end - 10, usize::MAX)] {
            let what = format!("types {types:?} from {from}");
            let of_type = |e: &RecordedEvent| types.contains(&e.event_type.as_str());
            if let Ok(events) = store.read_event_types(types, from, max) {
                assert!(events.len() <= max, "{what}");
                check(all, &events, from, &what, of_type);
            }
            let mut seen = Vec::new();
            let _ = store.read_event_types_with(types, from, max, |event| {
                seen.push(event.to_recorded());
                ControlFlow::Continue(())
            });
            check(all, &seen, from, &what, of_type);
        }
    }
}

/// Conditional appends; one refused for its condition names an event
/// above `after` that matches the query.
fn appends(store: &Store, all: &[RecordedEvent]) {
    let end = all.len() as u64;
    let conditions = [
        (
            Query::new([QueryItem::new().tags(["student:1"])]),
            Some(end - 1),
        ),
        (
            Query::new([QueryItem::new().types(["Placed"])]),
            Some(end / 2),
        ),
        (Query::new([QueryItem::new().tags(["rare"])]), None),
        (Query::new([QueryItem::new().tags(["absent"])]), None),
    ];
    for (k, (query, after)) in conditions.into_iter().enumerate() {
        let data = EventData::new("Appended", vec![k as u8])
            .with_id(id(k as u64, 2))
            .with_tags(["appended"]);
        let appends = vec![(format!("order-{k}"), ExpectedVersion::Any, vec![data])];
        let condition = AppendCondition::new(query.clone()).after(after);
        if let Ok(Err(AppendRejected::Condition(failed))) =
            store.append_with_condition(appends, condition)
        {
            assert!(
                after < Some(failed.position),
                "{query:?} after {after:?}: {failed:?}"
            );
            let event = usize::try_from(failed.position)
                .ok()
                .and_then(|p| all.get(p));
            assert!(
                event.is_some_and(|e| matches(&query, e)),
                "{query:?} after {after:?}: {failed:?} is {event:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let storage = fuzzed_pages::storage_with_fuzzed_pages(base(), data, |name| {
        parse_secondary_file_name(name).is_some()
    });
    let Ok(store) = Store::open_storage(Arc::new(storage), options()) else {
        return;
    };
    // The log itself is not fuzzed: what the index is checked against.
    let Ok(all) = store.read_all(0, usize::MAX) else {
        return;
    };
    reads(&store, &all);
    appends(&store, &all);
    // Reads again: the appended events are in memory, the rest in runs.
    let Ok(all) = store.read_all(0, usize::MAX) else {
        return;
    };
    let query = Query::new([QueryItem::new().tags(["student:2"])]);
    if let Ok(read) = store.read_query(&query, all.len() as u64 - 20, usize::MAX) {
        check(&all, &read.events, 0, "after the appends", |e| {
            matches(&query, e)
        });
    }
    let _ = store.verify();
});
