//! Property: compaction is online — while it runs (several times over),
//! threads append, read `$all` and streams, and follow a subscription, and
//! none of them sees an error, a lost event, a repeated one or changed
//! bytes; afterwards the store verifies, before and after reopen.
//! Method: real threads on a real directory, small segments, retention
//! rules on streams the appenders do not write to after setting them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use annals::{
    CompactionOptions, Direction, EventData, ExpectedVersion, Options, Store, SubscriptionItem,
    SubscriptionOptions,
};

fn options() -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
}

fn data(stream: &str, n: u64) -> Vec<u8> {
    format!("{stream}:{n}:{}", "p".repeat(50)).into_bytes()
}

#[test]
fn compaction_while_threads_append_read_and_subscribe() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    // Retention targets, filled first.
    for n in 0..200 {
        for stream in ["old-a", "old-b"] {
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![EventData::new("E", data(stream, n))],
                )
                .unwrap()
                .unwrap();
        }
    }
    store.set_max_count("old-a", 10).unwrap();
    store
        .delete_stream("old-b", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let stream = format!("live-{t}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 300 {
                    let r = store
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            vec![EventData::new("E", data(&stream, n))],
                        )
                        .unwrap()
                        .unwrap();
                    assert_eq!(r.first_version, n);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let stream = format!("live-{t}");
                let mut rounds = 0;
                while !stop.load(Ordering::Relaxed) {
                    let events = store
                        .read_stream(&stream, 0, Direction::Forward, usize::MAX)
                        .unwrap();
                    for (v, e) in events.iter().enumerate() {
                        assert_eq!(e.version, v as u64);
                        assert_eq!(&e.data[..], &data(&stream, v as u64)[..]);
                    }
                    let all = store.read_all(0, usize::MAX).unwrap();
                    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
                    for e in &all {
                        let ours = e.stream.starts_with("live-") || e.stream.starts_with("old-");
                        if ours && !e.is_tombstone() {
                            assert_eq!(&e.data[..], &data(&e.stream, e.version)[..]);
                        }
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let follower = {
        let store = store.clone();
        thread::spawn(move || {
            let mut subscription = store.subscribe(SubscriptionOptions::stream("live-0", 0));
            let mut next = 0u64;
            while next < 300 {
                if let SubscriptionItem::Event(e) = subscription.next().unwrap().unwrap() {
                    assert_eq!(e.version, next, "lost or repeated");
                    assert_eq!(&e.data[..], &data("live-0", next)[..]);
                    next += 1;
                }
            }
            next
        })
    };
    let mut removed = 0;
    for _ in 0..5 {
        let report = store.compact(&CompactionOptions::default()).unwrap();
        removed += report.removed.total();
        thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let written: Vec<u64> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(follower.join().unwrap(), 300);
    assert!(removed > 0, "the compactions removed nothing");
    store.verify().unwrap();
    let check = |store: &Store| {
        for (t, count) in written.iter().enumerate() {
            let stream = format!("live-{t}");
            let events = store
                .read_stream(&stream, 0, Direction::Forward, usize::MAX)
                .unwrap();
            assert_eq!(events.len() as u64, *count);
        }
        let kept: BTreeMap<u64, u64> = store
            .read_stream("old-a", 0, Direction::Forward, usize::MAX)
            .unwrap()
            .iter()
            .map(|e| (e.version, e.position))
            .collect();
        assert_eq!(
            kept.keys().copied().collect::<Vec<_>>(),
            (190..200).collect::<Vec<_>>()
        );
    };
    check(&store);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.verify().unwrap();
    check(&store);
}
