//! Query subscriptions (DCB queries on tags and types) far behind the end
//! read through the tag and type postings (`subscribe/by_query.rs`); they
//! must keep every guarantee of a scanning subscription: exactly the
//! matching events in order (system streams hidden, erased events
//! skipped), the caught-up position at the end, signals that never pass
//! what was shown, resuming after any shown position gives exactly the
//! rest, and live events follow with no gap and no repeat — also while
//! writers race the catch-up. Method: a store of ~14,000 tagged events
//! (gaps far over the index threshold, part in persisted runs, part in
//! the memtable), several queries, batch sizes and checkpoint intervals,
//! resuming after a sample of the shown positions; then writers on other
//! threads appending while subscribers catch up from far behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::{
    Durability, EventData, ExpectedVersion, Options, Query, QueryItem, RecordedEvent, Start, Store,
    SubscriptionItem, SubscriptionOptions,
};

mod common;
use common::{events, history};

/// Event k of append i: type by (i + k) % 4; tags `n:{p % 10}` on every
/// event, `rare` on one append in 100, `pair:{(i + k) % 3}`.
fn event(i: u64, k: u64) -> EventData {
    let mut tags = vec![
        format!("n:{}", (i + k) % 10),
        format!("pair:{}", (i + k) % 3),
    ];
    if i % 100 == 50 {
        tags.push("rare".into());
    }
    EventData::new(["A", "B", "C", "D"][((i + k) % 4) as usize], "x").with_tags(tags)
}

fn filled() -> (tempfile::TempDir, Store, Vec<RecordedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .index_buffer_events(1024)
        .durability(Durability::Buffered);
    let store = Store::open_with(dir.path(), options).unwrap();
    for i in 0..700u64 {
        let stream = ["order-1", "order-2", "user-1"][(i % 3) as usize];
        let batch: Vec<EventData> = (0..1 + i % 40).map(|k| event(i, k)).collect();
        store
            .append(stream, ExpectedVersion::Any, batch)
            .unwrap()
            .unwrap();
        if i % 97 == 96 {
            // A system stream's events: hidden from a query subscription.
            let hidden = EventData::new("A", "x").with_tags(["rare", "n:1"]);
            store
                .append("$internal-1", ExpectedVersion::Any, vec![hidden])
                .unwrap()
                .unwrap();
        }
    }
    store.maintain_index().unwrap();
    let all = store.read_all(0, usize::MAX).unwrap();
    (dir, store, all)
}

fn queries() -> Vec<Query> {
    vec![
        Query::new([QueryItem::new().tags(["rare"])]),
        Query::new([QueryItem::new().tags(["n:3"])]),
        Query::new([QueryItem::new().types(["B"]).tags(["n:1", "rare"])]),
        Query::new([QueryItem::new().tags(["pair:0", "rare"])]),
        Query::new([
            QueryItem::new().types(["A", "D"]).tags(["pair:2"]),
            QueryItem::new().tags(["rare"]),
        ]),
        Query::new([QueryItem::new().types(["C"])]),
        Query::new([QueryItem::new().tags(["never"])]),
        Query::default(),
    ]
}

fn matches(query: &Query, e: &RecordedEvent) -> bool {
    !e.stream.starts_with('$') && common::query_matches(query, &e.event_type, &e.tags)
}

fn want(all: &[RecordedEvent], query: &Query, after: Option<u64>) -> Vec<u64> {
    all.iter()
        .filter(|e| after.is_none_or(|a| e.position > a) && matches(query, e))
        .map(|e| e.position)
        .collect()
}

#[test]
fn indexed_query_history_resumes_exactly_after_any_shown_position() {
    let (_dir, store, all) = filled();
    let end = all.len() as u64;
    assert!(end > 12_000, "{end}");
    // A part of the log after the persisted runs: in the memtable.
    for query in queries() {
        for batch in [7, 256] {
            for every in [5_000, 500, 0] {
                // A refill crosses the index only if its budget of
                // positions (up to the next checkpoint by count) is at
                // least the index threshold: 500 scans, 5,000 and none
                // (0) go through the index.
                let options = |start| {
                    SubscriptionOptions::query(query.clone())
                        .start(start)
                        .batch_events(batch)
                        .checkpoint_every_positions(every)
                        .no_timed_checkpoints()
                };
                let (items, caught_up) = history(&store, options(Start::Beginning));
                assert_eq!(events(&items), want(&all, &query, None), "{query:?}");
                assert_eq!(caught_up, Some(end - 1));
                let mut shown = None;
                for item in &items {
                    match item {
                        SubscriptionItem::Event(e) => shown = Some(e.position),
                        SubscriptionItem::Checkpoint { position } => {
                            assert!(shown.is_none_or(|s| s <= *position), "{query:?}");
                            if every > 0 {
                                assert_eq!(position % every, every - 1, "by count: {query:?}");
                            }
                        }
                        _ => {}
                    }
                }
                let mut resume: Vec<Option<u64>> =
                    items.iter().map(|i| i.position()).step_by(37).collect();
                resume.extend([caught_up, None, Some(0), Some(end / 2)]);
                for after in resume {
                    let (rest, _) = history(&store, options(Start::after(after)));
                    assert_eq!(
                        events(&rest),
                        want(&all, &query, after),
                        "{query:?} after {after:?}"
                    );
                }
            }
        }
    }
}

/// Writers append (tagged, some matching) while subscribers that start far
/// behind catch up through the index and go live: each delivers exactly
/// the matching positions of the final log, in order, once.
#[test]
fn writers_racing_an_indexed_catch_up_leave_no_gap_and_no_repeat() {
    let (_dir, store, _) = filled();
    // The log's final end, once the writers are done (0 before).
    let final_end = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut i = 1_000 + w;
                while i < 1_000 + 3 * 400 {
                    let batch = (0..1 + i % 30).map(|k| event(i, k)).collect();
                    store
                        .append(&format!("order-{w}"), ExpectedVersion::Any, batch)
                        .unwrap()
                        .unwrap();
                    i += 3;
                }
            })
        })
        .collect();
    let subscribers: Vec<_> = queries()
        .into_iter()
        .enumerate()
        .map(|(n, query)| {
            let (store, final_end) = (store.clone(), Arc::clone(&final_end));
            std::thread::spawn(move || {
                let options = SubscriptionOptions::query(query.clone())
                    .batch_events(1 + n * 20)
                    .checkpoint_every_positions(4_777);
                let mut subscription = store.subscribe(options);
                let mut got = Vec::new();
                let mut shown = None;
                // Until everything up to the final end was shown.
                loop {
                    let Some(item) = subscription.next_timeout(Duration::from_millis(50)) else {
                        let end = final_end.load(Ordering::Acquire);
                        if end > 0 && subscription.last_shown() >= Some(end - 1) {
                            break;
                        }
                        continue;
                    };
                    match item.unwrap() {
                        SubscriptionItem::Event(e) => {
                            assert!(shown.is_none_or(|s| e.position > s), "in order, once");
                            shown = Some(e.position);
                            got.push(e.position);
                        }
                        SubscriptionItem::Checkpoint { position }
                        | SubscriptionItem::CaughtUp {
                            position: Some(position),
                        } => {
                            assert!(shown.is_none_or(|s| s <= position));
                        }
                        SubscriptionItem::CaughtUp { position: None } => {}
                    }
                }
                (query, got)
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    final_end.store(store.position_end(), Ordering::Release);
    for subscriber in subscribers {
        let (query, got) = subscriber.join().unwrap();
        assert_eq!(got, want(&all, &query, None), "{query:?}");
    }
}
