//! Property: one watermark for every reader. An event the global feed
//! (`read_all`) shows is already seen by `stream_version` and `read_stream`
//! of its stream — the writer publishes the new end only once the index
//! holds the group — in every durability mode.
//! Method: writer threads append (Buffered mode, so no fsync spreads the
//! groups out) while a reader repeatedly takes the newest event of the feed
//! and asks its stream for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{CurrentVersion, Direction, Durability, EventData, ExpectedVersion, Options, Store};

fn check_newest_events_are_indexed(durability: Durability, checks: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream = format!("s-{t}-{}", i % 50);
                    store
                        .append(
                            &stream,
                            ExpectedVersion::Any,
                            vec![EventData::new("E", "x")],
                        )
                        .unwrap()
                        .unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut checked = 0u64;
    while checked < checks {
        let end = store.position_end();
        if end == 0 {
            continue;
        }
        let newest = store.read_all(end - 1, 1).unwrap();
        let Some(event) = newest.first() else {
            panic!("read_all({}) returned nothing below the end {end}", end - 1);
        };
        match store.stream_version(&event.stream).unwrap() {
            CurrentVersion::Version(v) if v >= event.version => {}
            other => panic!(
                "the feed shows {}@{} at {} but stream_version says {other:?}",
                event.stream, event.version, event.position
            ),
        }
        let read = store
            .read_stream(&event.stream, event.version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(
            read.first().map(|e| e.position),
            Some(event.position),
            "the feed shows {}@{} at {} but read_stream does not",
            event.stream,
            event.version,
            event.position
        );
        checked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn the_feed_never_shows_an_event_its_stream_does_not_buffered() {
    check_newest_events_are_indexed(Durability::Buffered, 200_000);
}

#[test]
fn the_feed_never_shows_an_event_its_stream_does_not_fsync() {
    check_newest_events_are_indexed(Durability::Fsync, 20_000);
}
