//! Wake-ups and zero-copy delivery of subscriptions: subscribers blocked
//! without a timeout (`next()`, or `visit_timeout` with an hour) through
//! many short bursts of appends, with wake-up coalescing off, at the
//! default window and at a window longer than the pauses, each receive
//! every event exactly once (a lost wake-up leaves one blocked at the end:
//! the test then fails on its deadline instead of hanging); and the batch
//! visitor (`try_visit` / `visit_timeout`) hands out exactly what the
//! iterator does — the same events, in the same order, with the same
//! signals — for every filter, also far behind (index paths) and live;
//! so does `next_timeout`, which hands out read-ahead items first.
//! Method: real stores, writer threads, a seeded xorshift for the bursts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use annals::{
    EventData, ExpectedVersion, Filter, Start, Store, Subscription, SubscriptionItem,
    SubscriptionItemRef, SubscriptionOptions,
};

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What a consumer saw, comparable across the two ways to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Event {
        position: u64,
        stream: String,
        version: u64,
        event_type: String,
        data: Vec<u8>,
        metadata: Vec<u8>,
        tags: Vec<String>,
    },
    CaughtUp(Option<u64>),
    Checkpoint(u64),
}

fn seen_owned(item: SubscriptionItem) -> Seen {
    match item {
        SubscriptionItem::Event(e) => Seen::Event {
            position: e.position,
            stream: e.stream,
            version: e.version,
            event_type: e.event_type,
            data: e.data.to_vec(),
            metadata: e.metadata.to_vec(),
            tags: e.tags,
        },
        SubscriptionItem::CaughtUp { position } => Seen::CaughtUp(position),
        SubscriptionItem::Checkpoint { position } => Seen::Checkpoint(position),
    }
}

fn seen_ref(item: SubscriptionItemRef<'_>) -> Seen {
    match item {
        SubscriptionItemRef::Event(e) => {
            // A kept copy equals the borrowed one.
            let kept = e.to_recorded();
            assert_eq!((kept.position, &kept.data[..]), (e.position, e.data));
            Seen::Event {
                position: e.position,
                stream: e.stream.to_owned(),
                version: e.version,
                event_type: e.event_type.to_owned(),
                data: e.data.to_vec(),
                metadata: e.metadata.to_vec(),
                tags: e.tags.iter().map(str::to_owned).collect(),
            }
        }
        SubscriptionItemRef::CaughtUp { position } => Seen::CaughtUp(position),
        SubscriptionItemRef::Checkpoint { position } => Seen::Checkpoint(position),
    }
}

/// Consumes until `last` (a position) was delivered, publishing each
/// delivered position in `progress`; sends the positions.
fn consumer(
    mut subscription: Subscription,
    visitor: bool,
    last: u64,
    progress: Arc<AtomicU64>,
) -> mpsc::Receiver<Vec<u64>> {
    let (tx, rx) = mpsc::channel();
    let _detached: JoinHandle<()> = std::thread::spawn(move || {
        let mut positions = Vec::new();
        while positions.last() != Some(&last) {
            if visitor {
                subscription
                    .visit_timeout(Duration::from_secs(3600), |item| {
                        if let SubscriptionItemRef::Event(e) = item {
                            positions.push(e.position);
                        }
                    })
                    .unwrap();
            } else if let SubscriptionItem::Event(e) = subscription.next().unwrap().unwrap() {
                positions.push(e.position);
            }
            if let Some(&p) = positions.last() {
                progress.store(p + 1, Ordering::Release);
            }
        }
        let _ = tx.send(positions);
    });
    rx
}

#[test]
fn subscribers_blocked_without_timeout_get_every_event_of_many_short_bursts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    const BURSTS: u64 = 300;
    let windows = [
        Duration::ZERO,
        SubscriptionOptions::all().coalesce,
        Duration::from_millis(2),
    ];
    // Bursts of 1..=4 appends of 1..=3 events, by one or two threads at
    // once; after most bursts a pause of 0, 20 us or 300 us, then wait
    // until every subscriber has the burst's last event (each is then
    // blocked at the end, so a lost notification leaves it there).
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let plan: Vec<(u64, u64, bool)> = (0..BURSTS)
        .map(|_| {
            let appends = 1 + xorshift(&mut rng) % 4;
            let events = 1 + xorshift(&mut rng) % 3;
            (appends, events, xorshift(&mut rng).is_multiple_of(2))
        })
        .collect();
    let total: u64 = plan
        .iter()
        .map(|&(a, e, two)| a * e * if two { 2 } else { 1 })
        .sum();
    let mut consumers = Vec::new();
    for window in windows {
        for visitor in [false, true] {
            let options = SubscriptionOptions::all()
                .start(Start::End)
                .no_timed_checkpoints()
                .coalesce(window);
            let progress = Arc::new(AtomicU64::new(0));
            let rx = consumer(
                store.subscribe(options),
                visitor,
                total - 1,
                Arc::clone(&progress),
            );
            consumers.push((window, visitor, progress, rx));
        }
    }
    let burst = |store: &Store, appends: u64, events: u64, w: u64| {
        for _ in 0..appends {
            let batch = (0..events)
                .map(|_| EventData::new("Burst", format!("{w}")))
                .collect();
            store
                .append(&format!("w-{w}"), ExpectedVersion::Any, batch)
                .unwrap()
                .unwrap();
        }
    };
    for (i, &(appends, events, two)) in plan.iter().enumerate() {
        if two {
            let other = {
                let store = store.clone();
                std::thread::spawn(move || burst(&store, appends, events, 1))
            };
            burst(&store, appends, events, 0);
            other.join().unwrap();
        } else {
            burst(&store, appends, events, 0);
        }
        let end = store.position_end();
        if i % 5 == 4 {
            // Now and then the next burst follows at once.
            continue;
        }
        std::thread::sleep(Duration::from_micros([0, 20, 300][i % 3]));
        let deadline = Instant::now() + Duration::from_secs(20);
        for (window, visitor, progress, _) in &consumers {
            while progress.load(Ordering::Acquire) < end {
                assert!(
                    Instant::now() < deadline,
                    "burst {i}: a subscriber (window {window:?}, visitor {visitor}) missed a wake-up at {end}"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    assert_eq!(store.position_end(), total);
    let expected: Vec<u64> = (0..total).collect();
    for (window, visitor, _, rx) in consumers {
        let positions = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!("a subscriber (window {window:?}, visitor {visitor}) missed a wake-up")
            });
        assert_eq!(positions, expected, "window {window:?}, visitor {visitor}");
    }
}

fn fill(store: &Store, events: u64) {
    for n in 0..events {
        let stream = format!("{}-{}", ["order", "user", "cart"][(n % 3) as usize], n % 7);
        let event_type = ["Placed", "Paid", "Shipped"][(n % 5 % 3) as usize];
        let mut event = EventData::new(event_type, format!("{{\"n\":{n}}}"));
        if n % 4 == 0 {
            event = event.with_metadata(format!("m{n}"));
        }
        if n % 6 == 0 {
            event = event.with_tags([format!("t{}", n % 3)]);
        }
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
    }
}

fn by_iterator(store: &Store, options: SubscriptionOptions) -> Vec<Seen> {
    let mut subscription = store.subscribe(options);
    let mut seen = Vec::new();
    while let Some(item) = subscription.try_next() {
        seen.push(seen_owned(item.unwrap()));
    }
    seen
}

fn by_visitor(store: &Store, options: SubscriptionOptions) -> Vec<Seen> {
    let mut subscription = store.subscribe(options);
    let mut seen = Vec::new();
    while subscription
        .try_visit(|item| seen.push(seen_ref(item)))
        .unwrap()
        > 0
    {}
    seen
}

/// For every filter and each `(start, batch, checkpoint interval)` of
/// `cases`, on a store of `events` events: `consume` hands out exactly the
/// items the blocking iterator does.
fn agrees_with_the_iterator(
    events: u64,
    cases: [(Start, usize, u64); 3],
    consume: fn(&Store, SubscriptionOptions) -> Vec<Seen>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, events);
    let filters = [
        Filter::All,
        Filter::Stream {
            name: "order-3".into(),
            from_version: 2,
        },
        Filter::Category("user".into()),
        Filter::EventTypes(vec!["Paid".into(), "Shipped".into()]),
    ];
    for filter in filters {
        for (start, batch, every) in cases {
            let options = SubscriptionOptions::new(filter.clone())
                .start(start)
                .batch_events(batch)
                .checkpoint_every_positions(every)
                .no_timed_checkpoints();
            let iterated = by_iterator(&store, options.clone());
            assert!(
                iterated.iter().any(|s| matches!(s, Seen::Event { .. })),
                "{filter:?}"
            );
            assert_eq!(
                consume(&store, options),
                iterated,
                "{filter:?} {start:?} batch {batch} checkpoint {every}"
            );
        }
    }
}

#[test]
fn the_visitor_hands_out_what_the_iterator_does() {
    // Enough events that filtered subscriptions from the start read
    // through the indexes (a gap of 4,096 positions or more).
    agrees_with_the_iterator(
        9_000,
        [
            (Start::Beginning, 256, 4096),
            (Start::After(4_321), 7, 1000),
            (Start::Beginning, 1, 0),
        ],
        by_visitor,
    );
}

/// Consumed through `next_timeout` (which hands out what was read ahead
/// without reading the clock), mixed with `try_next` and `next`.
fn by_next_timeout(store: &Store, options: SubscriptionOptions) -> Vec<Seen> {
    let mut subscription = store.subscribe(options);
    let mut seen = Vec::new();
    for k in 0u64.. {
        let item = match k % 4 {
            0 | 1 => subscription.next_timeout(Duration::ZERO),
            2 => subscription.next_timeout(Duration::from_millis(1)),
            _ => subscription.try_next(),
        };
        let Some(item) = item else {
            break;
        };
        seen.push(seen_owned(item.unwrap()));
    }
    seen
}

#[test]
fn next_timeout_hands_out_what_try_next_does() {
    agrees_with_the_iterator(
        3_000,
        [
            (Start::Beginning, 256, 1000),
            (Start::After(1_234), 7, 100),
            (Start::Beginning, 1, 0),
        ],
        by_next_timeout,
    );
}

#[test]
fn the_visitor_follows_live_appends_and_mixes_with_the_iterator() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store, 10);
    let mut subscription = store.subscribe(
        SubscriptionOptions::all()
            .batch_events(3)
            .no_timed_checkpoints(),
    );
    // Read ahead through the iterator, then hand the rest to the visitor:
    // what was read ahead (owned) comes first, in order.
    let first = subscription.next().unwrap().unwrap();
    assert!(matches!(first, SubscriptionItem::Event(ref e) if e.position == 0));
    assert_eq!(subscription.buffered(), 2);
    let mut positions = Vec::new();
    let mut caught_up = None;
    while subscription
        .try_visit(|item| match item {
            SubscriptionItemRef::Event(e) => positions.push(e.position),
            SubscriptionItemRef::CaughtUp { position } => caught_up = position,
            SubscriptionItemRef::Checkpoint { .. } => {}
        })
        .unwrap()
        > 0
    {}
    assert_eq!(positions, (1..10).collect::<Vec<_>>());
    assert_eq!(caught_up, Some(9));
    // Nothing ready: no wait, nothing visited.
    assert_eq!(subscription.try_visit(|_| panic!("nothing")).unwrap(), 0);
    // Live: woken by the writer.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            store
                .append(
                    "live-1",
                    ExpectedVersion::Any,
                    vec![EventData::new("Live", "l")],
                )
                .unwrap()
                .unwrap();
        })
    };
    let mut live = Vec::new();
    let visited = subscription
        .visit_timeout(Duration::from_secs(10), |item| {
            live.push(seen_ref(item));
        })
        .unwrap();
    writer.join().unwrap();
    assert_eq!(visited, 1);
    assert!(matches!(&live[..], [Seen::Event { position: 10, stream, .. }] if stream == "live-1"));
    // Nothing more in time.
    assert_eq!(
        subscription
            .visit_timeout(Duration::from_millis(20), |_| panic!("nothing"))
            .unwrap(),
        0
    );
}
