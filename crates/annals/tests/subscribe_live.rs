//! Property: subscribers started at random moments during heavy concurrent
//! appends (several writer threads; single- and multi-stream appends; some
//! rejected by their expected version) each see every matching position
//! exactly once, in order, and what they see equals a filtered `read_all`
//! of the final store; signals never run ahead of what was shown.
//! Method: 4 writer threads, 12 subscribers with random filters and starts
//! (beginning, end, after a random position), small segments so the log
//! rolls under them; each subscriber runs until it has been shown the
//! final end, then is checked against the final store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::{
    EventData, ExpectedVersion, Filter, Options, RecordedEvent, Start, Store, SubscriptionItem,
    SubscriptionOptions,
};

mod common;
use common::Rng;

const CATEGORIES: [&str; 3] = ["order", "invoice", "user"];
const TYPES: [&str; 4] = ["Placed", "Paid", "Shipped", "Noted"];

fn events(rng: &mut Rng, n: u64) -> Vec<EventData> {
    (0..n)
        .map(|_| {
            EventData::new(
                TYPES[rng.below(4) as usize],
                vec![7u8; rng.below(200) as usize],
            )
        })
        .collect()
}

fn writer(store: Store, seed: u64, appends: usize) -> (u64, u64) {
    let mut rng = Rng(seed);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..appends {
        let stream =
            |rng: &mut Rng| format!("{}-{}", CATEGORIES[rng.below(3) as usize], rng.below(20));
        let outcome = match rng.below(10) {
            0..=5 => {
                let s = stream(&mut rng);
                let n = 1 + rng.below(3);
                store
                    .append(&s, ExpectedVersion::Any, events(&mut rng, n))
                    .unwrap()
                    .map(|_| ())
                    .map_err(|_| ())
            }
            6..=7 => {
                let a = stream(&mut rng);
                let mut b = stream(&mut rng);
                if a == b {
                    b.push('x');
                }
                let (ea, eb) = (events(&mut rng, 2), events(&mut rng, 1));
                store
                    .append_many(vec![
                        (a, ExpectedVersion::Any, ea),
                        (b, ExpectedVersion::Any, eb),
                    ])
                    .unwrap()
                    .map(|_| ())
                    .map_err(|_| ())
            }
            // A stale expectation: rejected, writes nothing.
            _ => {
                let s = stream(&mut rng);
                store
                    .append(&s, ExpectedVersion::Exact(1_000_000), events(&mut rng, 2))
                    .unwrap()
                    .map(|_| ())
                    .map_err(|_| ())
            }
        };
        match outcome {
            Ok(()) => accepted += 1,
            Err(()) => rejected += 1,
        }
    }
    (accepted, rejected)
}

fn matches(filter: &Filter, e: &RecordedEvent) -> bool {
    match filter {
        Filter::All => true,
        Filter::Stream { name, from_version } => &e.stream == name && e.version >= *from_version,
        Filter::Category(c) => {
            e.stream.split('-').next() == Some(c.as_str()) && e.stream.contains('-')
        }
        Filter::EventTypes(types) => types.contains(&e.event_type),
        _ => unreachable!(),
    }
}

/// Runs one subscriber until it has been shown `final_end`; returns the
/// position it started after and everything it received.
fn subscriber(
    store: Store,
    options: SubscriptionOptions,
    final_end: Arc<AtomicU64>,
) -> (u64, Vec<SubscriptionItem>) {
    let mut subscription = store.subscribe(options);
    let first = subscription.last_shown().map_or(0, |p| p + 1);
    let mut items = Vec::new();
    let mut shown: Option<u64> = None;
    loop {
        let end = final_end.load(Ordering::Acquire);
        if end != u64::MAX && shown.map_or(end == 0, |p| p + 1 >= end) {
            return (first, items);
        }
        if let Some(item) = subscription.next_timeout(Duration::from_millis(50)) {
            let item = item.unwrap();
            shown = item.position().max(shown);
            items.push(item);
        }
    }
}

#[test]
fn subscribers_started_at_random_moments_see_every_matching_position_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(128 << 10)).unwrap();
    let final_end = Arc::new(AtomicU64::new(u64::MAX));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || writer(store, 0x9e37_79b9 + t * 7919, 1000))
        })
        .collect();
    let mut rng = Rng(0xdead_beef);
    let mut subscribers = Vec::new();
    for k in 0..12u64 {
        std::thread::sleep(Duration::from_millis(rng.below(15)));
        let filter = match k % 4 {
            0 => Filter::All,
            1 => Filter::Category(CATEGORIES[rng.below(3) as usize].into()),
            2 => Filter::EventTypes(vec!["Paid".into(), "Shipped".into()]),
            _ => Filter::Stream {
                name: format!("order-{}", rng.below(20)),
                from_version: rng.below(3),
            },
        };
        let end = store.position_end();
        let start = match rng.below(3) {
            0 => Start::Beginning,
            1 => Start::End,
            _ => Start::After(rng.below(end + 1)),
        };
        let options = SubscriptionOptions::new(filter.clone())
            .start(start)
            .batch_events(1 + rng.below(64) as usize)
            .checkpoint_every_positions(1 + rng.below(500))
            .checkpoint_every(Duration::from_millis(20));
        let (store, final_end) = (store.clone(), Arc::clone(&final_end));
        subscribers.push((
            filter,
            std::thread::spawn(move || subscriber(store, options, final_end)),
        ));
    }
    let mut accepted = 0;
    let mut rejected = 0;
    for w in writers {
        let (a, r) = w.join().unwrap();
        accepted += a;
        rejected += r;
    }
    assert!(accepted > 3000 && rejected > 300, "{accepted} {rejected}");
    let end = store.position_end();
    final_end.store(end, Ordering::Release);
    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, end);
    for (filter, handle) in subscribers {
        let (first, items) = handle.join().unwrap();
        let want: Vec<&RecordedEvent> = all
            .iter()
            .filter(|e| e.position >= first && matches(&filter, e))
            .collect();
        let got: Vec<&RecordedEvent> = items
            .iter()
            .filter_map(|i| match i {
                SubscriptionItem::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{filter:?} from {first}");
        assert!(got.iter().zip(&want).all(|(g, w)| g == w), "{filter:?}");
        check_signals(&items, first);
    }
}

/// Positions never go back; a signal is never below an event delivered
/// before it, and no event after a signal is at or below it; one
/// `CaughtUp`.
fn check_signals(items: &[SubscriptionItem], first: u64) {
    let mut shown = first.checked_sub(1);
    let mut signalled = first.checked_sub(1);
    let mut caught_up = 0;
    for item in items {
        match item {
            SubscriptionItem::Event(e) => {
                assert!(
                    shown.is_none_or(|s| e.position > s),
                    "event {} after {shown:?}",
                    e.position
                );
                shown = Some(e.position);
            }
            SubscriptionItem::Checkpoint { position } => {
                // A checkpoint may name the event just delivered, but
                // always advances past the previous signal.
                assert!(
                    shown.is_none_or(|s| *position >= s),
                    "checkpoint {position} after {shown:?}"
                );
                assert!(
                    signalled.is_none_or(|s| *position > s),
                    "checkpoint {position} repeats"
                );
                shown = Some(*position);
                signalled = shown;
            }
            SubscriptionItem::CaughtUp { position } => {
                caught_up += 1;
                assert!(*position >= shown);
                shown = *position;
                signalled = shown;
            }
        }
    }
    assert_eq!(caught_up, 1);
}
