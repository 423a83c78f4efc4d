//! Property: with the query cache on (`Options::query_cache_bytes`),
//! `read_query` and its visitor form return exactly what they return
//! without it — the first read, which fills the cache, and every read
//! after, which is served from it — and never an erased payload: after the
//! owner's compaction erased events (its rewrite replaces segments), no
//! read serves their cached copies, in the owner and in a read-only view
//! once it refreshed. Method: tagged events of several streams, sizes and
//! metadata; every read compared with a model computed from `read_all`;
//! a deleted stream compacted away between reads that had cached it.

mod common;

use std::ops::ControlFlow;

use annals::{
    CompactionOptions, EventData, ExpectedVersion, Options, Query, QueryItem, RecordedEvent, Store,
};

fn options(cache: usize) -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
        .query_cache_bytes(cache)
}

fn event(n: u64) -> EventData {
    let kind = ["Opened", "Changed", "Closed"][(n % 3) as usize];
    EventData::new(
        kind,
        format!("payload {n} {}", "z".repeat((n % 7 * 40) as usize)),
    )
    .with_metadata(format!("meta {n}"))
    .with_tags(["shared".to_owned(), format!("n:{}", n % 4)])
}

fn append(store: &Store, stream: &str, n: u64) {
    store
        .append(stream, ExpectedVersion::Any, vec![event(n)])
        .unwrap()
        .unwrap();
}

fn queries() -> Vec<Query> {
    vec![
        Query::new([QueryItem::new().tags(["shared"])]),
        Query::new([QueryItem::new().tags(["n:1"])]),
        Query::new([QueryItem::new().types(["Changed"]).tags(["n:2"])]),
        Query::new([
            QueryItem::new().types(["Closed"]),
            QueryItem::new().tags(["n:3", "shared"]),
        ]),
    ]
}

/// What `read_query(query, from, max)` must return, from `read_all`.
fn model(store: &Store, query: &Query, from: u64, max: usize) -> Vec<RecordedEvent> {
    store
        .read_all(from, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| common::query_matches(query, &e.event_type, &e.tags))
        .take(max)
        .collect()
}

/// Reads every query (whole, from a position, a bounded number) through
/// both forms and compares them with the model.
fn check(store: &Store) {
    let end = store.position_end();
    for query in &queries() {
        for (from, max) in [(0, usize::MAX), (end / 3, usize::MAX), (end / 5, 7)] {
            let want = model(store, query, from, max);
            let read = store.read_query(query, from, max).unwrap();
            assert_eq!(read.events, want, "read_query {query:?} from {from}");
            let mut visited = Vec::new();
            store
                .read_query_with(query, from, max, |e| {
                    visited.push(e.to_recorded());
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(visited, want, "read_query_with {query:?} from {from}");
        }
    }
}

/// Reads `query` twice, the second time from the first's position notes:
/// afterwards the cache holds a copy of every event it matched.
fn read_twice(store: &Store, query: &Query) -> Vec<RecordedEvent> {
    let first = store.read_query(query, 0, usize::MAX).unwrap().events;
    let second = store.read_query(query, 0, usize::MAX).unwrap().events;
    assert_eq!(first, second);
    second
}

#[test]
fn cached_reads_equal_the_logs_before_and_after_it_fills() {
    for cache in [1 << 20, 16 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options(cache)).unwrap();
        for n in 0..200 {
            append(&store, &format!("s-{}", n % 5), n);
        }
        // Cold (fills), warm (served), and warm again with new events
        // among the cached ones.
        check(&store);
        check(&store);
        for n in 200..260 {
            append(&store, &format!("s-{}", n % 5), n);
        }
        check(&store);
        check(&store);
    }
}

/// Appends 120 events, alternately to the streams `gone` and `keep`.
fn fill_gone_keep(store: &Store) {
    for n in 0..120 {
        append(store, if n % 2 == 0 { "gone" } else { "keep" }, n);
    }
}

/// Deletes the stream `gone`, appends 80 more events to `keep` (so that
/// `gone`'s segments are sealed) and compacts: `gone`'s events are erased.
fn delete_gone_and_compact(store: &Store) {
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    for n in 120..200 {
        append(store, "keep", n);
    }
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
}

#[test]
fn a_compaction_that_erases_events_leaves_no_cached_copy_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(1 << 20)).unwrap();
    fill_gone_keep(&store);
    let shared = Query::new([QueryItem::new().tags(["shared"])]);
    // The cache now holds `gone`'s events, payloads and all.
    let before = read_twice(&store, &shared);
    assert!(before.iter().any(|e| e.stream == "gone"));
    delete_gone_and_compact(&store);
    let after = store.read_query(&shared, 0, usize::MAX).unwrap();
    assert!(
        after.events.iter().all(|e| e.stream == "keep"),
        "an erased event was read after the compaction"
    );
    assert_eq!(after.events, model(&store, &shared, 0, usize::MAX));
    check(&store);
}

#[test]
fn a_read_only_view_drops_cached_copies_of_what_the_owner_erased() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), options(0)).unwrap();
    fill_gone_keep(&owner);
    let reader = Store::open_read_only_with(dir.path(), options(1 << 20)).unwrap();
    let shared = Query::new([QueryItem::new().tags(["shared"])]);
    let before = read_twice(&reader, &shared);
    assert!(before.iter().any(|e| e.stream == "gone"));
    delete_gone_and_compact(&owner);
    reader.refresh().unwrap();
    let after = reader.read_query(&shared, 0, usize::MAX).unwrap();
    assert_eq!(
        after.events,
        owner.read_query(&shared, 0, usize::MAX).unwrap().events
    );
    assert!(after.events.iter().all(|e| e.stream == "keep"));
    check(&reader);
}

#[test]
fn reads_racing_a_compaction_serve_no_erased_event_once_it_returned() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), options(1 << 20)).unwrap();
        for n in 0..150 {
            append(&store, if n % 3 == 0 { "gone" } else { "keep" }, n);
        }
        store
            .delete_stream("gone", ExpectedVersion::Any)
            .unwrap()
            .unwrap();
        for n in 150..250 {
            append(&store, "keep", n);
        }
        let compacted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, compacted) = (store.clone(), std::sync::Arc::clone(&compacted));
                std::thread::spawn(move || {
                    let shared = Query::new([QueryItem::new().tags(["shared"])]);
                    let mut after = 0;
                    while after < 20 {
                        let done = compacted.load(std::sync::atomic::Ordering::Acquire);
                        let read = store.read_query(&shared, 0, usize::MAX).unwrap();
                        if done {
                            assert!(
                                read.events.iter().all(|e| e.stream == "keep"),
                                "round {round}: an erased event was read after compact returned"
                            );
                            after += 1;
                        }
                    }
                })
            })
            .collect();
        let report = store.compact(&CompactionOptions::default()).unwrap();
        assert!(report.segments_rewritten > 0, "{report:?}");
        compacted.store(true, std::sync::atomic::Ordering::Release);
        for reader in readers {
            reader.join().unwrap();
        }
        check(&store);
    }
}

#[test]
fn a_visitor_that_reads_a_query_again_neither_deadlocks_nor_differs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(1 << 20)).unwrap();
    for n in 0..100 {
        append(&store, &format!("s-{}", n % 3), n);
    }
    let shared = Query::new([QueryItem::new().tags(["shared"])]);
    let want = model(&store, &shared, 0, usize::MAX);
    for _ in 0..3 {
        let mut outer = Vec::new();
        store
            .read_query_with(&shared, 0, usize::MAX, |e| {
                // Read again from inside the outer read (which holds the
                // cache's table): served, copied or waiting, never stuck.
                let inner = store.read_query(&shared, e.position, 1).unwrap();
                assert_eq!(inner.events[0], e.to_recorded());
                outer.push(e.to_recorded());
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(outer, want);
    }
    check(&store);
}

/// `query_cache_stats`: all 0 with the cache off; with it on, a query's
/// first read misses and notes, its second misses and copies, its third
/// hits every event; the entries stay within the budget, and a compaction
/// that replaced their segments drops them.
#[test]
fn the_stats_count_misses_copies_and_hits() {
    let dir = tempfile::tempdir().unwrap();
    let off = Store::open_with(dir.path().join("off"), options(0)).unwrap();
    append(&off, "s", 1);
    off.read_query(&queries()[0], 0, usize::MAX).unwrap();
    assert_eq!(off.query_cache_stats(), annals::QueryCacheStats::default());

    let budget = 1 << 20;
    let store = Store::open_with(dir.path().join("on"), options(budget)).unwrap();
    for n in 0..40 {
        append(&store, &format!("s-{}", n % 5), n);
    }
    let query = Query::new([QueryItem::new().tags(["n:1"])]);
    let matches = store
        .read_query(&query, 0, usize::MAX)
        .unwrap()
        .events
        .len() as u64;
    assert_eq!(matches, 10);
    let first = store.query_cache_stats();
    assert_eq!(first.budget, budget as u64);
    assert_eq!((first.hits, first.misses, first.kept), (0, matches, 0));
    assert_eq!((first.entries, first.bytes), (0, 0));

    store.read_query(&query, 0, usize::MAX).unwrap();
    let second = store.query_cache_stats();
    assert_eq!((second.hits, second.misses), (0, 2 * matches));
    assert_eq!((second.kept, second.entries), (matches, matches));
    assert!(second.bytes > 0 && second.bytes <= budget as u64);

    let mut visited = 0;
    store
        .read_query_with(&query, 0, usize::MAX, |_| {
            visited += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    let third = store.query_cache_stats();
    assert_eq!(visited, matches);
    assert_eq!((third.hits, third.misses), (matches, 2 * matches));
    assert_eq!(
        (third.kept, third.entries, third.bytes),
        (matches, matches, second.bytes)
    );

    // Erase a stream, seal its segments and compact: segments are
    // replaced, and every entry read before is dropped (none is served
    // again; this frees them).
    store
        .delete_stream("s-1", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    for n in 40..120 {
        append(&store, "keep", n);
    }
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let after = store.query_cache_stats();
    assert_eq!((after.entries, after.bytes), (0, 0), "{after:?}");
    assert_eq!((after.hits, after.kept), (third.hits, third.kept));
}

/// A read of more than 1,024 events is a scan: only its first 1,024 go
/// through the cache (noted, then copied at their second read), the rest
/// are read from the log directly. Either way it returns what the log
/// holds.
#[test]
fn a_scan_goes_through_the_cache_for_its_first_1024_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(8 << 20).segment_bytes(1 << 20);
    let store = Store::open_with(dir.path(), options).unwrap();
    for chunk in 0..30u64 {
        let events = (chunk * 100..(chunk + 1) * 100).map(event).collect();
        store
            .append(&format!("s-{}", chunk % 3), ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
    let query = Query::new([QueryItem::new().tags(["shared"])]);
    let want = model(&store, &query, 0, usize::MAX);
    assert_eq!(want.len(), 3000);
    for read in 1..=3u64 {
        assert_eq!(
            store.read_query(&query, 0, usize::MAX).unwrap().events,
            want
        );
        let stats = store.query_cache_stats();
        assert_eq!(stats.hits + stats.misses, read * 1024, "{stats:?}");
        assert!(stats.kept <= 1024, "{stats:?}");
        if read == 3 {
            assert!(stats.hits > 900, "{stats:?}");
        }
    }
}

/// A read-only view that loads a segment the owner rewrote since the view
/// read it (here: read again after the view let it go, one segment open
/// at a time) counts that as a replacement: copies it cached before are
/// not served again, even before its refresh. (Reads served wholly from
/// the cache load nothing: until a load or a refresh they serve what the
/// view read, as a segment it holds does; `docs/GUARANTEES.md`.)
#[test]
fn a_read_only_view_that_loads_a_rewritten_segment_serves_no_copy_read_before() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), options(0)).unwrap();
    fill_gone_keep(&owner);
    let view =
        Store::open_read_only_with(dir.path(), options(1 << 20).open_segments_max(1)).unwrap();
    let query = &queries()[0];
    for _ in 0..2 {
        assert_eq!(
            view.read_query(query, 0, usize::MAX).unwrap().events.len(),
            120
        );
    }
    assert_eq!(view.query_cache_stats().kept, 120);
    delete_gone_and_compact(&owner);
    // Every segment loaded again, one at a time: the rewritten ones are
    // other files than the view read.
    let model = model(&view, query, 0, usize::MAX);
    assert!(
        model.iter().all(|e| e.stream != "gone"),
        "the log read sees the erasure"
    );
    let before = view.query_cache_stats();
    let read = view.read_query(query, 0, usize::MAX).unwrap();
    let erased = read.events.iter().filter(|e| e.stream == "gone").count();
    assert_eq!(erased, 0, "erased events served from copies read before");
    assert_eq!(read.events, model);
    assert_eq!(
        view.query_cache_stats().hits,
        before.hits,
        "no copy from before the load served"
    );
}

/// Copies a read made before a compaction it raced (here: one its own
/// visitor ran) are not kept after the compaction dropped the stale
/// entries: they could never be served, and would hold memory.
#[test]
fn copies_read_before_a_compaction_are_not_kept_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(1 << 20)).unwrap();
    fill_gone_keep(&store);
    let query = &queries()[0];
    store.read_query(query, 0, usize::MAX).unwrap();
    let mut compacted = false;
    store
        .read_query_with(query, 0, usize::MAX, |_| {
            if !compacted {
                compacted = true;
                delete_gone_and_compact(&store);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(compacted);
    let stats = store.query_cache_stats();
    assert_eq!((stats.entries, stats.bytes), (0, 0), "{stats:?}");
    check(&store);
}
