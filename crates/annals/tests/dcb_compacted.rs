//! Events a compaction erased (gap records, which keep their type and tags)
//! match no query: `read_query`, its visitor form, an append condition and
//! a query subscription all step over them, whether the query walks a tag's
//! or a type's postings. Method: tagged events in a stream that is deleted,
//! a compaction, then every reader compared with what survives.

use std::ops::ControlFlow;

use annals::{
    AppendCondition, AppendRejected, CompactionOptions, EventData, ExpectedVersion, Options, Query,
    QueryItem, Store, SubscriptionItem, SubscriptionOptions,
};

fn event(n: u64) -> EventData {
    EventData::new("Happened", format!("payload {n} {}", "z".repeat(60)))
        .with_tags(["shared", &format!("n:{}", n % 3)])
}

#[test]
fn erased_events_match_no_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(8 << 10)).unwrap();
    for n in 0..60 {
        for stream in ["gone", "keep"] {
            store
                .append(stream, ExpectedVersion::Any, vec![event(n)])
                .unwrap()
                .unwrap();
        }
    }
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    for n in 60..160 {
        store
            .append("keep", ExpectedVersion::Any, vec![event(n)])
            .unwrap()
            .unwrap();
    }
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.segments_rewritten > 0, "{report:?}");
    let erased = store.read_all(0, usize::MAX).unwrap().len();
    assert_eq!(erased, 160 + 1, "only `keep` and the tombstone are left");
    let kept: Vec<u64> = store
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| e.stream == "keep")
        .map(|e| e.position)
        .collect();
    let queries = [
        Query::new([QueryItem::new().tags(["shared"])]),
        Query::new([QueryItem::new().types(["Happened"])]),
        Query::new([QueryItem::new().types(["Happened"]).tags(["shared", "n:1"])]),
    ];
    for query in &queries {
        let want: Vec<u64> = store
            .read_all(0, usize::MAX)
            .unwrap()
            .iter()
            .filter(|e| matches(query, &e.event_type, &e.tags))
            .map(|e| e.position)
            .collect();
        // What `read_all` shows is every kept event: the deleted stream's
        // are gone.
        assert!(want.len() >= 30 && want.iter().all(|p| kept.contains(p)));
        let read = store.read_query(query, 0, usize::MAX).unwrap();
        let got: Vec<u64> = read.events.iter().map(|e| e.position).collect();
        assert_eq!(got, want, "read_query {query:?}");
        let mut visited = Vec::new();
        store
            .read_query_with(query, 0, usize::MAX, |e| {
                visited.push(e.position);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(visited, want, "read_query_with {query:?}");
        // A condition from before the first kept match: only a kept event
        // fails it.
        let condition = AppendCondition::new(query.clone()).after(None);
        let outcome = store
            .append_with_condition(
                vec![(
                    "other".into(),
                    ExpectedVersion::Any,
                    vec![EventData::new("X", "{}")],
                )],
                condition,
            )
            .unwrap();
        match outcome {
            Err(AppendRejected::Condition(failed)) => {
                assert_eq!(failed.position, want[0], "{query:?}")
            }
            other => panic!("{other:?}"),
        }
        let mut subscription = store.subscribe(SubscriptionOptions::query(query.clone()));
        let mut delivered = Vec::new();
        loop {
            match subscription.next().unwrap().unwrap() {
                SubscriptionItem::Event(e) => delivered.push(e.position),
                SubscriptionItem::CaughtUp { .. } => break,
                _ => {}
            }
        }
        assert_eq!(delivered, want, "subscription {query:?}");
    }
}

/// The query's rule, on owned fields.
fn matches(query: &Query, event_type: &str, tags: &[String]) -> bool {
    query.items.iter().any(|item| {
        (item.types.is_empty() || item.types.iter().any(|t| t == event_type))
            && item.tags.iter().all(|t| tags.contains(t))
    })
}
