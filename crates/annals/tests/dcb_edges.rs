//! Property: an append condition is decided the same way wherever the
//! events it counts sit — stored in the log or accepted earlier in the same
//! group commit — for every shape of query (an item of types, of tags, of
//! both, or of neither: every event), and `after` at any position (none,
//! inside the log, its last, past its end, `u64::MAX`). A failed condition
//! is an `AppendRejected::Condition` naming the first matching position,
//! never an error, and writes nothing.
//! Method: requests forced into one group (a slow `fsync` held by a flush
//! while they queue), and direct examples.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use annals::storage::{FaultyStorage, MemStorage};
use annals::{
    AppendCondition, AppendRejected, ConditionFailed, Durability, EventData, ExpectedVersion,
    Options, Query, QueryItem, Store,
};

fn event(event_type: &str, tags: &[&str]) -> EventData {
    EventData::new(event_type, "{}").with_tags(tags.iter().copied())
}

fn one(stream: &str, event: EventData) -> Vec<(String, ExpectedVersion, Vec<EventData>)> {
    vec![(stream.to_owned(), ExpectedVersion::Any, vec![event])]
}

/// A buffered store whose every fsync takes `sync`: a `flush` holds the
/// write path that long, and the appends queued meanwhile form one group.
fn slow_buffered_store(sync: Duration) -> Store {
    let faulty = FaultyStorage::new(Arc::new(MemStorage::new().handle()));
    faulty.slow_syncs(sync);
    let options = Options::default().durability(Durability::Buffered);
    Store::open_storage(Arc::new(faulty), options).unwrap()
}

type Appends = Vec<(String, ExpectedVersion, Vec<EventData>)>;
type Outcome = annals::Result<Result<Vec<annals::AppendResult>, AppendRejected>>;

/// Runs conditional appends from threads that submit them, in the order
/// given, while a flush holds the write path, so that they share one group;
/// returns each one's outcome, in the same order.
fn in_one_group(store: &Store, appends: Vec<(Appends, AppendCondition)>) -> Vec<Outcome> {
    let groups_before = store.write_stats().groups;
    // Something unsynced, so that the flush really syncs (slowly).
    store
        .append(
            "unsynced",
            ExpectedVersion::Any,
            vec![event("Unsynced", &["u"])],
        )
        .unwrap()
        .unwrap();
    let barrier = Arc::new(Barrier::new(appends.len() + 1));
    let flusher = {
        let (store, barrier) = (store.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            store.flush().unwrap();
        })
    };
    let handles: Vec<_> = appends
        .into_iter()
        .enumerate()
        .map(|(i, (appends, condition))| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // After the flush took the write path; in order.
                std::thread::sleep(Duration::from_millis(40 + 20 * i as u64));
                store.append_with_condition(appends, condition)
            })
        })
        .collect();
    let outcomes = handles.into_iter().map(|h| h.join().unwrap()).collect();
    flusher.join().unwrap();
    assert_eq!(
        store.write_stats().groups - groups_before,
        3,
        "the unsynced append, the flush, then one group of every conditional append"
    );
    outcomes
}

/// Two appends in one group, each conditioned on "no event at all after
/// the end I read" (a query item with neither types nor tags): the first
/// wins; the second fails on the first's position. It was answered
/// `InvalidInput("position 1 is not in the log…")`: the check looked for
/// matches in the log up to the group's next position, past the log's end.
#[test]
fn an_item_matching_every_event_fails_on_an_event_earlier_in_the_group() {
    let store = slow_buffered_store(Duration::from_millis(250));
    let all = Query::all();
    let read = store.read_query(&all, 0, usize::MAX).unwrap();
    assert_eq!(read.read_up_to, None);
    // The flush's own unsynced event comes first: read past it.
    let after = Some(0);
    let appends = (0..2)
        .map(|i| {
            let condition = AppendCondition::new(all.clone()).after(after);
            (one(&format!("s-{i}"), event("E", &[])), condition)
        })
        .collect();
    let outcomes = in_one_group(&store, appends);
    let first = match &outcomes[0] {
        Ok(Ok(written)) => written[0].first_position,
        other => panic!("the first append: {other:?}"),
    };
    assert_eq!(first, 1);
    match &outcomes[1] {
        Ok(Err(rejected)) => assert_eq!(
            rejected,
            &AppendRejected::Condition(ConditionFailed { position: 1 })
        ),
        other => panic!("the second append: {other:?}"),
    }
    assert_eq!(store.position_end(), 2, "the loser wrote nothing");
}

fn item() -> QueryItem {
    QueryItem::new()
}

/// The position of the first event of an accepted append.
fn written(outcome: &Outcome) -> u64 {
    match outcome {
        Ok(Ok(results)) => results[0].first_position,
        other => panic!("not written: {other:?}"),
    }
}

fn failed_at(outcome: &Outcome) -> u64 {
    match outcome {
        Ok(Err(AppendRejected::Condition(ConditionFailed { position }))) => *position,
        other => panic!("not a failed condition: {other:?}"),
    }
}

/// Every shape of query counts a match among the events accepted earlier
/// in the group at its exact position — the third event of a two-stream
/// append — whether the item names types, tags, both, neither, a tag twice,
/// or the match is by its second item.
#[test]
fn every_query_shape_counts_a_match_earlier_in_the_group_at_its_position() {
    let store = slow_buffered_store(Duration::from_millis(250));
    let shapes = [
        Query::new([item().types(["Hit"])]),
        Query::new([item().tags(["k:1"])]),
        Query::new([item().types(["Other", "Hit"]).tags(["k:2", "k:1"])]),
        Query::new([item()]),
        Query::new([item().tags(["k:1", "k:1"])]),
        Query::new([item().tags(["absent"]), item().types(["Hit"]).tags(["k:2"])]),
    ];
    for query in shapes {
        // The flush's unsynced event lands at `end`: read past it.
        let end = store.position_end();
        let two_streams = vec![
            (
                "a".to_owned(),
                ExpectedVersion::Any,
                vec![event("Miss", &["k:9"]), event("Miss", &[])],
            ),
            (
                "b".to_owned(),
                ExpectedVersion::Any,
                vec![event("Hit", &["k:1", "k:2"])],
            ),
        ];
        let nothing = AppendCondition::new(Query::default());
        let mut condition = AppendCondition::new(query.clone()).after(end);
        if query == Query::new([item()]) {
            // Every event matches: only the hit, which is last, may count.
            condition = condition.after(end + 2);
        }
        let outcomes = in_one_group(
            &store,
            vec![
                (two_streams, nothing),
                (one("c", event("Mine", &["k:1"])), condition),
            ],
        );
        assert_eq!(written(&outcomes[0]), end + 1, "{query:?}");
        assert_eq!(failed_at(&outcomes[1]), end + 3, "{query:?}");
        assert_eq!(
            store.position_end(),
            end + 4,
            "{query:?}: the loser wrote nothing"
        );
    }
}

/// Inside a group, `after` cuts exactly (an accepted event at `after` does
/// not count, one above does), a rejected request's events count for
/// nobody, and a retry of an accepted request (same ids) is answered its
/// result without its condition being checked again.
#[test]
fn within_a_group_after_cuts_exactly_and_rejected_or_retried_requests_write_nothing() {
    let store = slow_buffered_store(Duration::from_millis(250));
    let end = store.position_end();
    // The flush's event is at `end`; the first append's at `end + 1`.
    let hit = end + 1;
    let q = Query::new([item().tags(["seat"])]);
    let first = event("Seat", &["seat"]);
    let retry = one("a", first.clone());
    let rejected_only = Query::new([item().types(["Rejected"])]);
    let outcomes = in_one_group(
        &store,
        vec![
            (one("a", first), AppendCondition::new(q.clone()).after(end)),
            (
                one("b", event("E", &[])),
                AppendCondition::new(q.clone()).after(hit),
            ),
            (
                one("c", event("Rejected", &["seat"])),
                AppendCondition::new(q.clone()).after(hit - 1),
            ),
            (
                one("d", event("E", &[])),
                AppendCondition::new(rejected_only).after(end),
            ),
            (retry, AppendCondition::new(q).after(end)),
        ],
    );
    assert_eq!(written(&outcomes[0]), hit);
    assert_eq!(
        written(&outcomes[1]),
        hit + 1,
        "the hit is at `after`, not above"
    );
    assert_eq!(failed_at(&outcomes[2]), hit, "the hit is above `after`");
    assert_eq!(
        written(&outcomes[3]),
        hit + 2,
        "the rejected event was never written"
    );
    match &outcomes[4] {
        Ok(Ok(results)) => assert!(results[0].duplicate && results[0].first_position == hit),
        other => panic!("the retry: {other:?}"),
    }
    assert_eq!(store.position_end(), hit + 3);
    let types: Vec<String> = store
        .read_all(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["Unsynced", "Seat", "E", "E"]);
}

/// `after` at the log's last position, past its end and at `u64::MAX`
/// leaves nothing above it to count; `None` counts the whole log, also on
/// an empty one; `read_query` from past the end or with `max` 0 reports
/// only the positions that exist.
#[test]
fn after_at_and_past_the_end_and_at_u64_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = Query::all();
    let cond = |after: Option<u64>| AppendCondition::new(all.clone()).after(after);
    let append = |after: Option<u64>| {
        store
            .append_with_condition(one("s", event("E", &["t"])), cond(after))
            .unwrap()
    };
    assert_eq!(append(None).unwrap()[0].first_position, 0, "empty log");
    assert_eq!(
        append(None),
        Err(AppendRejected::Condition(ConditionFailed { position: 0 }))
    );
    assert_eq!(append(Some(0)).unwrap()[0].first_position, 1);
    assert_eq!(
        append(Some(10)).unwrap()[0].first_position,
        2,
        "past the end"
    );
    assert_eq!(append(Some(u64::MAX)).unwrap()[0].first_position, 3);
    assert_eq!(
        append(Some(u64::MAX - 1)).unwrap()[0].first_position,
        4,
        "u64::MAX - 1: from u64::MAX"
    );
    assert_eq!(
        append(Some(2)),
        Err(AppendRejected::Condition(ConditionFailed { position: 3 }))
    );
    let tag = Query::new([item().tags(["t"])]);
    for from in [5, 6, u64::MAX] {
        let read = store.read_query(&tag, from, 10).unwrap();
        assert!(read.events.is_empty());
        assert_eq!(read.read_up_to, Some(4), "from {from}");
    }
    assert_eq!(store.read_query(&tag, 3, 0).unwrap().read_up_to, Some(2));
    assert_eq!(store.read_query(&tag, 0, 0).unwrap().read_up_to, None);
    assert_eq!(store.position_end(), 5);
}

/// A conditional append that failed can be retried with the same event
/// ids: it fails again, naming the same position, while the match is
/// there; once the caller reads on and retries with the later `after`, it
/// is written once; a further retry is the duplicate, whatever the
/// condition says now.
#[test]
fn a_failed_conditional_append_retried_with_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let q = Query::new([item().types(["Registered"]).tags(["user:ann"])]);
    store
        .append(
            "x",
            ExpectedVersion::Any,
            vec![event("Registered", &["user:ann"])],
        )
        .unwrap()
        .unwrap();
    let mine = event("Registered", &["user:ann"]);
    let attempt = |after: Option<u64>| {
        store
            .append_with_condition(
                one("y", mine.clone()),
                AppendCondition::new(q.clone()).after(after),
            )
            .unwrap()
    };
    let failed = Err(AppendRejected::Condition(ConditionFailed { position: 0 }));
    assert_eq!(attempt(None), failed);
    assert_eq!(attempt(None), failed, "the retry fails the same way");
    assert_eq!(store.position_end(), 1);
    let read = store.read_query(&q, 0, usize::MAX).unwrap();
    let written = attempt(read.read_up_to).unwrap();
    assert_eq!(
        (written[0].first_position, written[0].duplicate),
        (1, false)
    );
    let again = attempt(read.read_up_to).unwrap();
    assert_eq!((again[0].first_position, again[0].duplicate), (1, true));
    let again = attempt(None).unwrap();
    assert_eq!((again[0].first_position, again[0].duplicate), (1, true));
    assert_eq!(store.position_end(), 2);
}
