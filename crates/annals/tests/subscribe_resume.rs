//! Property: resuming after any position a subscription showed — any
//! delivered event's, any checkpoint's, the caught-up position — or after
//! any position at all, delivers exactly the rest: the matching events
//! after it, no more, no fewer. Method: exhaustive over a small store (60
//! events in several streams, types and a system stream) × every filter ×
//! several batch sizes and checkpoint intervals.

use annals::{
    EventData, ExpectedVersion, Filter, RecordedEvent, Start, Store, SubscriptionOptions,
};

mod common;
use common::{events, history};

fn filled() -> (tempfile::TempDir, Store, Vec<RecordedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..30u64 {
        let stream = ["order-1", "order-2", "user-1", "lonely"][(i % 4) as usize];
        let types = ["A", "B", "C"];
        let batch: Vec<EventData> = (0..1 + i % 3)
            .map(|k| EventData::new(types[((i + k) % 3) as usize], "x"))
            .collect();
        store
            .append(stream, ExpectedVersion::Any, batch)
            .unwrap()
            .unwrap();
        if i % 7 == 6 {
            store.save_checkpoint("c", i).unwrap();
        }
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    (dir, store, all)
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::All,
        Filter::Category("order".into()),
        Filter::Category("lonely".into()),
        Filter::EventTypes(vec!["B".into()]),
        Filter::EventTypes(vec!["A".into(), "C".into()]),
        Filter::Stream {
            name: "user-1".into(),
            from_version: 2,
        },
        Filter::Stream {
            name: "$checkpoint-c".into(),
            from_version: 0,
        },
    ]
}

fn want(all: &[RecordedEvent], filter: &Filter, after: Option<u64>) -> Vec<u64> {
    all.iter()
        .filter(|e| after.is_none_or(|a| e.position > a))
        .filter(|e| match filter {
            Filter::All => !e.stream.starts_with('$'),
            Filter::Category(c) => e.stream.split_once('-').map(|x| x.0) == Some(c.as_str()),
            Filter::EventTypes(t) => t.contains(&e.event_type) && !e.stream.starts_with('$'),
            Filter::Stream { name, from_version } => {
                &e.stream == name && e.version >= *from_version
            }
            _ => unreachable!(),
        })
        .map(|e| e.position)
        .collect()
}

#[test]
fn resuming_after_any_shown_position_gives_exactly_the_rest() {
    let (_dir, store, all) = filled();
    assert!(all.len() >= 50);
    let mut resumes = 0;
    for filter in filters() {
        for batch in [1, 2, 5, 64] {
            for every in [1, 3, 10, 0] {
                let options = |start| {
                    SubscriptionOptions::new(filter.clone())
                        .start(start)
                        .batch_events(batch)
                        .checkpoint_every_positions(every)
                        .no_timed_checkpoints()
                };
                let (items, caught_up) = history(&store, options(Start::Beginning));
                assert_eq!(events(&items), want(&all, &filter, None), "{filter:?}");
                assert_eq!(caught_up, Some(all.len() as u64 - 1));
                let mut shown: Vec<Option<u64>> = items.iter().map(|i| i.position()).collect();
                shown.push(caught_up);
                for after in shown {
                    let (rest, _) = history(&store, options(Start::after(after)));
                    assert_eq!(
                        events(&rest),
                        want(&all, &filter, after),
                        "{filter:?} after {after:?}"
                    );
                    resumes += 1;
                }
            }
        }
    }
    assert!(resumes > 500, "{resumes}");
}

#[test]
fn resuming_after_every_position_gives_exactly_the_rest() {
    let (_dir, store, all) = filled();
    for filter in filters() {
        for after in 0..all.len() as u64 + 2 {
            let options = SubscriptionOptions::new(filter.clone()).start(Start::After(after));
            let (rest, caught_up) = history(&store, options);
            assert_eq!(
                events(&rest),
                want(&all, &filter, Some(after)),
                "{filter:?} after {after}"
            );
            assert_eq!(caught_up, Some(after.max(all.len() as u64 - 1)));
        }
    }
}

#[test]
fn checkpoints_come_at_the_interval_also_when_nothing_matches() {
    let (_dir, store, all) = filled();
    let options = SubscriptionOptions::event_types(["Never"])
        .checkpoint_every_positions(10)
        .no_timed_checkpoints();
    let (items, caught_up) = history(&store, options);
    let got: Vec<Option<u64>> = items.iter().map(|i| i.position()).collect();
    let expected: Vec<Option<u64>> = (1..=(all.len() as u64 - 1) / 10)
        .map(|k| Some(k * 10 - 1))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(caught_up, Some(all.len() as u64 - 1));
}

/// A one-stream subscription far behind the end crosses the gap through
/// the stream index: what it delivers, and where its signals resume, must
/// be the same as the scan's.
#[test]
fn a_stream_subscription_far_behind_resumes_exactly_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..120u64 {
        let appends = (0..100u64)
            .map(|s| {
                let stream = if s % 50 == 7 {
                    "rare-1".to_string()
                } else {
                    format!("busy-{s}")
                };
                let n = if round % 2 == 0 { 1 } else { 2 };
                let events = (0..n).map(|_| EventData::new("E", "x")).collect();
                (stream, ExpectedVersion::Any, events)
            })
            .collect();
        store.append_many(appends).unwrap().unwrap();
    }
    store
        .delete_stream("busy-3", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let all = store.read_all(0, usize::MAX).unwrap();
    assert!(all.len() > 15_000);
    for (name, from_version) in [
        ("rare-1", 0),
        ("rare-1", 300),
        ("busy-3", 10),
        ("absent-1", 0),
    ] {
        let filter = Filter::Stream {
            name: name.into(),
            from_version,
        };
        for batch in [1, 7, 256] {
            let options = |start| {
                SubscriptionOptions::new(filter.clone())
                    .start(start)
                    .batch_events(batch)
                    .checkpoint_every_positions(5000)
                    .no_timed_checkpoints()
            };
            let (items, caught_up) = history(&store, options(Start::Beginning));
            assert_eq!(
                events(&items),
                want(&all, &filter, None),
                "{filter:?} batch {batch}"
            );
            assert_eq!(caught_up, Some(all.len() as u64 - 1));
            let mut starts: Vec<Option<u64>> =
                items.iter().map(|i| i.position()).step_by(5).collect();
            starts.extend((0..all.len() as u64).step_by(1237).map(Some));
            for after in starts {
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
