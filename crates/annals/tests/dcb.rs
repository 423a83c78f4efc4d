//! Property: the Dynamic Consistency Boundary's examples hold — a query
//! reads the events a decision depends on (and how far it read), and an
//! append conditioned on it fails, writing nothing and naming the first
//! matching position, if such an event was written after that position,
//! also by a concurrent writer in the same group commit; with per-stream
//! expected versions in the same atomic append. Method: examples from
//! dcb.events, a race of threads, and a randomised model with reopens.

use std::sync::{Arc, Barrier};

use annals::{
    AppendCondition, AppendRejected, ConditionFailed, EventData, ExpectedVersion, Query, QueryItem,
    Store,
};

fn event(event_type: &str, tags: &[&str]) -> EventData {
    EventData::new(event_type, "{}").with_tags(tags.iter().copied())
}

/// Appends one event of `event_type` with `tags` to stream `s`, any version.
fn append_any(store: &Store, event_type: &str, tags: &[&str]) {
    store
        .append("s", ExpectedVersion::Any, vec![event(event_type, tags)])
        .unwrap()
        .unwrap();
}

fn one(stream: &str, event: EventData) -> Vec<(String, ExpectedVersion, Vec<EventData>)> {
    vec![(stream.to_owned(), ExpectedVersion::Any, vec![event])]
}

#[test]
fn unique_username_two_concurrent_registrations_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("noise", ExpectedVersion::Any, vec![event("Other", &[])])
        .unwrap()
        .unwrap();
    let query = Query::new([QueryItem::new()
        .types(["AccountRegistered"])
        .tags(["username:ann"])]);
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, query, barrier) = (store.clone(), query.clone(), barrier.clone());
            std::thread::spawn(move || {
                let read = store.read_query(&query, 0, 10).unwrap();
                assert!(read.events.is_empty());
                assert_eq!(read.read_up_to, Some(0), "covered the noise event");
                barrier.wait();
                let condition = AppendCondition::new(query).after(read.read_up_to);
                let registered = event("AccountRegistered", &["username:ann"]);
                store
                    .append_with_condition(one(&format!("account-{t}"), registered), condition)
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let position = winners[0][0].first_position;
    for result in &results {
        if let Err(rejected) = result {
            assert_eq!(
                rejected,
                &AppendRejected::Condition(ConditionFailed { position })
            );
        }
    }
    assert_eq!(store.position_end(), 2, "the losers wrote nothing");
}

#[test]
fn course_capacity_and_student_limit_are_enforced_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (capacity, limit) = (2usize, 2usize);
    let subscribe = |student: u32, course: u32| {
        let (s, c) = (format!("student:{student}"), format!("course:{course}"));
        let query = Query::new([
            QueryItem::new()
                .types(["StudentSubscribed"])
                .tags([c.as_str()]),
            QueryItem::new()
                .types(["StudentSubscribed"])
                .tags([s.as_str()]),
        ]);
        let read = store.read_query(&query, 0, usize::MAX).unwrap();
        let in_course = read.events.iter().filter(|e| e.tags.contains(&c)).count();
        let of_student = read.events.iter().filter(|e| e.tags.contains(&s)).count();
        if in_course >= capacity || of_student >= limit {
            return false;
        }
        let condition = AppendCondition::new(query).after(read.read_up_to);
        store
            .append_with_condition(
                one(
                    &format!("student-{student}"),
                    event("StudentSubscribed", &[&s, &c]),
                ),
                condition,
            )
            .unwrap()
            .is_ok()
    };
    assert!(subscribe(1, 1) && subscribe(2, 1));
    assert!(!subscribe(3, 1), "course 1 is full");
    assert!(subscribe(1, 2));
    assert!(!subscribe(1, 3), "student 1 has two courses");
    assert!(subscribe(3, 3));
    assert_eq!(store.position_end(), 4);
}

#[test]
fn after_a_position_above_the_last_match_passes_and_below_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for tags in [&["a"][..], &["b"], &["a", "b"], &["c"], &["c"]] {
        store
            .append("s", ExpectedVersion::Any, vec![event("E", tags)])
            .unwrap()
            .unwrap();
    }
    let q = Query::new([QueryItem::new().tags(["a"])]);
    let read = store.read_query(&q, 0, 100).unwrap();
    let positions: Vec<u64> = read.events.iter().map(|e| e.position).collect();
    assert_eq!(positions, [0, 2]);
    assert_eq!(
        read.read_up_to,
        Some(4),
        "read to the end though the last match is 2"
    );
    let try_after = |after: Option<u64>| {
        store
            .append_with_condition(
                one("t", event("E", &["a"])),
                AppendCondition::new(q.clone()).after(after),
            )
            .unwrap()
            .map(|r| r[0].first_position)
    };
    let fail = |position| Err(AppendRejected::Condition(ConditionFailed { position }));
    assert_eq!(try_after(None), fail(0));
    assert_eq!(try_after(Some(0)), fail(2));
    assert_eq!(try_after(Some(1)), fail(2));
    assert_eq!(
        try_after(Some(3)),
        Ok(5),
        "above the last match, below the end"
    );
    assert_eq!(try_after(Some(4)), fail(5));
    // A query matching nothing never fails; an empty query matches nothing.
    let none = Query::new([QueryItem::new().tags(["zzz"])]);
    let ok = store.append_with_condition(one("t", event("E", &[])), AppendCondition::new(none));
    assert!(ok.unwrap().is_ok());
    let empty = store.append_with_condition(
        one("t", event("E", &[])),
        AppendCondition::new(Query::default()),
    );
    assert!(empty.unwrap().is_ok());
    // A read with a max reports the last event it returned.
    let first = store.read_query(&q, 0, 1).unwrap();
    assert_eq!((first.events.len(), first.read_up_to), (1, Some(0)));
    // Past the end: covered only what exists.
    let past = store.read_query(&q, 100, 10).unwrap();
    assert_eq!(past.read_up_to, Some(store.position_end() - 1));
    let empty_dir = tempfile::tempdir().unwrap();
    let empty_store = Store::open(empty_dir.path()).unwrap();
    assert_eq!(empty_store.read_query(&q, 0, 10).unwrap().read_up_to, None);
}

#[test]
fn a_condition_combines_atomically_with_expected_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("a", ExpectedVersion::NoStream, vec![event("E", &["x"])])
        .unwrap()
        .unwrap();
    let q = Query::new([QueryItem::new().tags(["x"])]);
    let both = |expected_a: ExpectedVersion, after: Option<u64>| {
        store
            .append_with_condition(
                vec![
                    ("a".into(), expected_a, vec![event("E", &["x"])]),
                    ("b".into(), ExpectedVersion::NoStream, vec![event("E", &[])]),
                ],
                AppendCondition::new(q.clone()).after(after),
            )
            .unwrap()
    };
    match both(ExpectedVersion::Exact(5), Some(0)) {
        Err(AppendRejected::WrongExpectedVersion(c)) => assert_eq!(c.index, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        both(ExpectedVersion::Exact(0), None),
        Err(ConditionFailed { position: 0 }.into())
    );
    assert_eq!(store.position_end(), 1, "neither wrote");
    let written = both(ExpectedVersion::Exact(0), Some(0)).unwrap();
    assert_eq!(
        (written[0].first_position, written[1].first_position),
        (1, 2)
    );
}

#[test]
fn a_retried_conditional_append_returns_its_original_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = Query::new([QueryItem::new().tags(["x"])]);
    let e = event("E", &["x"]);
    let first = store.append_with_condition(one("s", e.clone()), AppendCondition::new(q.clone()));
    let again = store.append_with_condition(one("s", e), AppendCondition::new(q));
    let (first, again) = (first.unwrap().unwrap(), again.unwrap().unwrap());
    assert!(again[0].duplicate && first[0].first_position == again[0].first_position);
}

#[test]
fn a_malformed_condition_is_invalid_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bad = Query::new([QueryItem::new().tags([""])]);
    let error =
        store.append_with_condition(one("s", event("E", &[])), AppendCondition::new(bad.clone()));
    assert!(matches!(error, Err(annals::Error::InvalidInput(_))));
    assert!(matches!(
        store.read_query(&bad, 0, 1),
        Err(annals::Error::InvalidInput(_))
    ));
    assert_eq!(store.position_end(), 0);
}

#[test]
fn threads_enforcing_at_most_k_matches_never_exceed_k() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (threads, k) = (6, 5usize);
    let query = Query::new([QueryItem::new().types(["Seat"]).tags(["flight:1"])]);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, query, barrier) = (store.clone(), query.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = 0;
                for attempt in 0..200 {
                    // Unrelated traffic between decisions.
                    store
                        .append(
                            "noise",
                            ExpectedVersion::Any,
                            vec![event("Seat", &["flight:2"])],
                        )
                        .unwrap()
                        .unwrap();
                    let read = store.read_query(&query, 0, usize::MAX).unwrap();
                    if read.events.len() >= k {
                        break;
                    }
                    let seat = event("Seat", &["flight:1", &format!("passenger:{t}-{attempt}")]);
                    let condition = AppendCondition::new(query.clone()).after(read.read_up_to);
                    match store
                        .append_with_condition(one(&format!("p-{t}"), seat), condition)
                        .unwrap()
                    {
                        Ok(_) => mine += 1,
                        Err(AppendRejected::Condition(ConditionFailed { position })) => {
                            assert!(read.read_up_to.is_none_or(|r| position > r));
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                mine
            })
        })
        .collect();
    let won: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let seats = store
        .read_query(&query, 0, usize::MAX)
        .unwrap()
        .events
        .len();
    assert_eq!((won, seats), (k, k));
}

#[test]
fn a_subscription_on_a_query_delivers_history_then_live_matches() {
    use annals::{SubscriptionItem, SubscriptionOptions};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for tags in [&["course:7"][..], &["course:8"], &["course:7", "student:1"]] {
        store
            .append("s", ExpectedVersion::Any, vec![event("Subscribed", tags)])
            .unwrap()
            .unwrap();
    }
    append_any(&store, "Other", &["course:7"]);
    let query = Query::new([QueryItem::new().types(["Subscribed"]).tags(["course:7"])]);
    let mut subscription = store.subscribe(SubscriptionOptions::query(query));
    let mut next_event = || loop {
        match subscription
            .next_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
        {
            SubscriptionItem::Event(e) => return e.position,
            _ => continue,
        }
    };
    assert_eq!((next_event(), next_event()), (0, 2));
    append_any(&store, "Subscribed", &["course:8"]);
    append_any(&store, "Subscribed", &["course:7"]);
    assert_eq!(next_event(), 5, "live, skipping the non-matching 3 and 4");
}

/// A subscription on a query out of its bounds (more items than
/// `QUERY_ITEMS_MAX`) hands out `InvalidInput` as its only item, as
/// `read_query` answers the same query, and then ends: through the
/// blocking iterator, `next_timeout` and the async stream.
#[test]
fn a_subscription_on_a_query_out_of_bounds_is_invalid_input_and_ends() {
    use annals::{Error, SubscriptionOptions, QUERY_ITEMS_MAX};
    use futures_executor::block_on_stream;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_any(&store, "Subscribed", &["course:7"]);
    let items = (0..=QUERY_ITEMS_MAX).map(|_| QueryItem::new().tags(["course:7"]));
    let query = Query::new(items);
    assert!(matches!(
        store.read_query(&query, 0, 10),
        Err(Error::InvalidInput(_))
    ));
    let mut iterated = store.subscribe(SubscriptionOptions::query(query.clone()));
    assert!(matches!(iterated.next(), Some(Err(Error::InvalidInput(_)))));
    assert!(iterated.next().is_none());
    let mut timed = store.subscribe(SubscriptionOptions::query(query.clone()));
    assert!(matches!(
        timed.next_timeout(Duration::from_millis(100)),
        Some(Err(Error::InvalidInput(_)))
    ));
    assert!(timed.next_timeout(Duration::from_millis(100)).is_none());
    let stream = store
        .subscribe(SubscriptionOptions::query(query))
        .into_stream();
    let items: Vec<_> = block_on_stream(stream).collect();
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(items[0], Err(Error::InvalidInput(_))));
}
