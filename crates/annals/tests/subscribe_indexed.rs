//! Category and event-type subscriptions far behind the end read through
//! the secondary indexes; they must keep every guarantee of a scanning
//! subscription: exactly the matching events in order, the caught-up
//! position at the end, signals that never pass what was shown, resuming
//! after any delivered or signalled position gives exactly the rest, and
//! live events follow with no gap. Method: a store of ~14,000 events (gaps
//! far over the index threshold), several filters, batch sizes and
//! checkpoint intervals, resuming after a sample of the shown positions.

use std::time::Duration;

use annals::{
    Durability, EventData, ExpectedVersion, Filter, Options, RecordedEvent, Start, Store,
    SubscriptionItem, SubscriptionOptions,
};

mod common;
use common::{events, history};

fn filled() -> (tempfile::TempDir, Store, Vec<RecordedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .index_buffer_events(1024)
        .durability(Durability::Buffered);
    let store = Store::open_with(dir.path(), options).unwrap();
    for i in 0..700u64 {
        // A rare category: one append in 100.
        let stream = match i % 100 {
            50 => "rare-1",
            _ => ["order-1", "order-2", "user-1", "lonely", "cart-9"][(i % 5) as usize],
        };
        let batch: Vec<EventData> = (0..1 + i % 40)
            .map(|k| EventData::new(["A", "B", "C", "D"][((i + k) % 4) as usize], "x"))
            .collect();
        store
            .append(stream, ExpectedVersion::Any, batch)
            .unwrap()
            .unwrap();
        if i % 97 == 96 {
            store.save_checkpoint("c", i).unwrap();
        }
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    (dir, store, all)
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::Category("order".into()),
        Filter::Category("rare".into()),
        Filter::Category("lonely".into()),
        Filter::Category("$checkpoint".into()),
        Filter::EventTypes(vec!["B".into()]),
        Filter::EventTypes(vec!["A".into(), "D".into()]),
        Filter::EventTypes(vec!["Never".into()]),
    ]
}

fn want(all: &[RecordedEvent], filter: &Filter, after: Option<u64>) -> Vec<u64> {
    all.iter()
        .filter(|e| after.is_none_or(|a| e.position > a))
        .filter(|e| match filter {
            Filter::Category(c) => annals::category_of(&e.stream) == Some(c.as_str()),
            Filter::EventTypes(t) => t.contains(&e.event_type) && !e.stream.starts_with('$'),
            _ => unreachable!(),
        })
        .map(|e| e.position)
        .collect()
}

#[test]
fn indexed_history_resumes_exactly_after_any_shown_position() {
    let (_dir, store, all) = filled();
    let end = all.len() as u64;
    assert!(end > 12_000, "{end}");
    for filter in filters() {
        for batch in [7, 256] {
            for every in [500, 0] {
                let options = |start| {
                    SubscriptionOptions::new(filter.clone())
                        .start(start)
                        .batch_events(batch)
                        .checkpoint_every_positions(every)
                        .no_timed_checkpoints()
                };
                let (items, caught_up) = history(&store, options(Start::Beginning));
                assert_eq!(events(&items), want(&all, &filter, None), "{filter:?}");
                assert_eq!(caught_up, Some(end - 1));
                // No signal passes what was shown before it.
                let mut shown = None;
                for item in &items {
                    match item {
                        SubscriptionItem::Event(e) => shown = Some(e.position),
                        SubscriptionItem::Checkpoint { position } => {
                            assert!(shown.is_none_or(|s| s <= *position));
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
                        want(&all, &filter, after),
                        "{filter:?} after {after:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn after_indexed_history_live_events_follow_without_gap() {
    let (_dir, store, all) = filled();
    let mut orders = store.subscribe(SubscriptionOptions::category("order").batch_events(64));
    let mut seen = Vec::new();
    loop {
        match orders.next().unwrap().unwrap() {
            SubscriptionItem::Event(e) => seen.push(e.position),
            SubscriptionItem::CaughtUp { position } => {
                assert_eq!(position, Some(all.len() as u64 - 1));
                break;
            }
            SubscriptionItem::Checkpoint { .. } => {}
        }
    }
    assert_eq!(seen, want(&all, &Filter::Category("order".into()), None));
    let written = store
        .append(
            "order-7",
            ExpectedVersion::Any,
            vec![EventData::new("A", "x")],
        )
        .unwrap()
        .unwrap();
    loop {
        match orders
            .next_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap()
        {
            SubscriptionItem::Event(e) => {
                assert_eq!(e.position, written.first_position);
                break;
            }
            SubscriptionItem::Checkpoint { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}
