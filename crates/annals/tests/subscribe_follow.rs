//! Properties of following live: a filtered subscriber on a type that never
//! occurs still checkpoints while live (by count and by time, woken by the
//! writer); a subscriber paused under load holds at most its batch and
//! then catches up with no gap; the async `Stream` delivers live events on
//! a plain executor (`futures_executor::block_on`), woken by the writer.
//! Method: real stores, writer threads, explicit timeouts so a lost
//! wake-up fails instead of hanging.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Start, Store, SubscriptionItem, SubscriptionOptions};
use futures_core::Stream;

fn append(store: &Store, stream: &str, n: usize) {
    let events = (0..n).map(|_| EventData::new("Happened", "x")).collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .unwrap()
        .unwrap();
}

#[test]
fn a_type_that_never_occurs_still_checkpoints_while_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "a-1", 5);
    let mut never = store.subscribe(
        SubscriptionOptions::event_types(["Never"])
            .checkpoint_every_positions(10)
            .no_timed_checkpoints(),
    );
    let wait = Duration::from_secs(10);
    assert_eq!(
        never.next_timeout(wait).unwrap().unwrap(),
        SubscriptionItem::CaughtUp { position: Some(4) }
    );
    assert!(never.next_timeout(Duration::from_millis(50)).is_none());
    // Live, by count: a writer thread appends; the subscriber is woken by
    // the publish (not by its 10 s timeout).
    let started = Instant::now();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..12 {
                append(&store, "a-1", 1);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    assert_eq!(
        never.next_timeout(wait).unwrap().unwrap(),
        SubscriptionItem::Checkpoint { position: 14 }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    writer.join().unwrap();
    // Live, by time: one more event, no count reached.
    let mut timed = store.subscribe(
        SubscriptionOptions::event_types(["Never"])
            .start(Start::End)
            .checkpoint_every_positions(0)
            .checkpoint_every(Duration::from_millis(30)),
    );
    assert_eq!(
        timed.next_timeout(wait).unwrap().unwrap(),
        SubscriptionItem::CaughtUp { position: Some(16) }
    );
    append(&store, "a-1", 1);
    let started = Instant::now();
    assert_eq!(
        timed.next_timeout(wait).unwrap().unwrap(),
        SubscriptionItem::Checkpoint { position: 17 }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing moved since: no checkpoint repeats the same position.
    assert!(timed.next_timeout(Duration::from_millis(100)).is_none());
}

#[test]
fn a_paused_subscriber_keeps_its_bound_and_catches_up_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        annals::Options::default().segment_bytes(64 << 10),
    )
    .unwrap();
    let batch = 16;
    let mut subscription = store.subscribe(SubscriptionOptions::all().batch_events(batch));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..400 {
                    append(&store, &format!("s-{t}"), 1 + i % 3);
                }
            })
        })
        .collect();
    let mut positions = Vec::new();
    let mut most_buffered = 0;
    // Read a little now and then while the writers run far ahead.
    while writers.iter().any(|w| !w.is_finished()) {
        for _ in 0..3 {
            if let Some(SubscriptionItem::Event(e)) = subscription.try_next().transpose().unwrap() {
                positions.push(e.position);
            }
            most_buffered = most_buffered.max(subscription.buffered());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for w in writers {
        w.join().unwrap();
    }
    let end = store.position_end();
    assert!(
        end > positions.len() as u64 + 1000,
        "the subscriber fell behind"
    );
    while let Some(item) = subscription.try_next() {
        if let SubscriptionItem::Event(e) = item.unwrap() {
            positions.push(e.position);
        }
        most_buffered = most_buffered.max(subscription.buffered());
    }
    assert!(most_buffered <= batch + 1, "{most_buffered}");
    assert_eq!(positions, (0..end).collect::<Vec<_>>());
}

#[test]
fn the_async_stream_follows_live_appends_on_a_plain_executor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, "h-1", 3);
    let stream = store
        .subscribe(SubscriptionOptions::category("live"))
        .into_stream();
    let (done, finished) = mpsc::channel();
    let consumer = std::thread::spawn(move || {
        let mut stream = stream;
        let got = futures_executor::block_on(async {
            let mut got = Vec::new();
            while got.len() < 200 {
                match poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
                    Some(Ok(SubscriptionItem::Event(e))) => got.push(e.position),
                    Some(Ok(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
            got
        });
        done.send(()).unwrap();
        got
    });
    let mut want = Vec::new();
    for i in 0..200 {
        let r = store
            .append(
                &format!("live-{}", i % 5),
                ExpectedVersion::Any,
                vec![EventData::new("E", "x")],
            )
            .unwrap()
            .unwrap();
        append(&store, "other-1", 1);
        want.push(r.first_position);
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // A lost wake-up would leave the executor parked for ever.
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the async subscriber was not woken");
    assert_eq!(consumer.join().unwrap(), want);
}

#[test]
fn consumer_checkpoints_survive_reopen_and_commit_with_the_events_written_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        append(&store, "order-1", 3);
        store.save_checkpoint("projector", 1).unwrap();
        store.save_checkpoint("projector", 2).unwrap();
        store
            .append_many(vec![
                (
                    "invoice-1".into(),
                    ExpectedVersion::NoStream,
                    vec![EventData::new("Issued", "{}")],
                ),
                Store::checkpoint_append("invoicer", 2).unwrap(),
            ])
            .unwrap()
            .unwrap();
        // A rejected write-back saves no checkpoint either.
        let refused = store
            .append_many(vec![
                (
                    "invoice-1".into(),
                    ExpectedVersion::NoStream,
                    vec![EventData::new("Issued", "{}")],
                ),
                Store::checkpoint_append("invoicer", 99).unwrap(),
            ])
            .unwrap();
        assert!(refused.is_err());
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.load_checkpoint("projector").unwrap(), Some(2));
    assert_eq!(store.load_checkpoint("invoicer").unwrap(), Some(2));
    assert_eq!(store.load_checkpoint("nobody").unwrap(), None);
    assert!(store.load_checkpoint("").is_err());
    // A foreign event in a checkpoint stream is a typed error, not a panic.
    store
        .append(
            "$checkpoint-odd",
            ExpectedVersion::Any,
            vec![EventData::new("ConsumerCheckpoint", "not a number")],
        )
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.load_checkpoint("odd"),
        Err(annals::Error::BadCheckpoint { .. })
    ));
    // Subscriptions hide `$` streams unless asked; read_all shows them.
    let all = store.read_all(0, usize::MAX).unwrap();
    assert!(all.iter().any(|e| e.stream.starts_with('$')));
    let mut subscription = store.subscribe(SubscriptionOptions::all());
    let mut streams = Vec::new();
    while let Some(item) = subscription.try_next() {
        if let SubscriptionItem::Event(e) = item.unwrap() {
            streams.push(e.stream);
        }
    }
    assert_eq!(streams, ["order-1", "order-1", "order-1", "invoice-1"]);
    let mut with_system = store.subscribe(SubscriptionOptions::all().system_streams(true));
    let mut count = 0;
    while let Some(item) = with_system.try_next() {
        count += matches!(item.unwrap(), SubscriptionItem::Event(_)) as usize;
    }
    assert_eq!(count, all.len());
}

/// A filtered async subscriber crossing a long stretch that matches
/// nothing yields to its executor (returns `Pending` after waking itself)
/// instead of scanning it all in one poll, and still gets there.
#[test]
fn the_async_stream_yields_while_crossing_a_long_unmatched_stretch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..300 {
        let appends = (0..1000)
            .map(|s| {
                (
                    format!("s-{s}"),
                    ExpectedVersion::Any,
                    vec![EventData::new("Common", format!("{round}"))],
                )
            })
            .collect();
        store.append_many(appends).unwrap().unwrap();
    }
    let mut stream = store
        .subscribe(
            SubscriptionOptions::event_types(["Never"])
                .checkpoint_every_positions(0)
                .no_timed_checkpoints(),
        )
        .into_stream();
    let woken = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&woken));
    let mut cx = Context::from_waker(&waker);
    let mut pendings = 0;
    let caught_up = loop {
        match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Pending => pendings += 1,
            Poll::Ready(item) => break item.unwrap().unwrap(),
        }
        assert!(pendings < 100);
    };
    assert_eq!(
        caught_up,
        SubscriptionItem::CaughtUp {
            position: Some(299_999)
        }
    );
    assert!(pendings >= 1, "one poll scanned 300,000 positions");
    assert_eq!(
        woken.0.load(Ordering::Relaxed),
        pendings,
        "each yield woke the task again"
    );
}
