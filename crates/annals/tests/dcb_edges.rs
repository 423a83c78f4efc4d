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

/// Runs `appends` (stream, event, condition) from threads that submit them
/// while a flush holds the write path, so that they share one group; returns
/// each one's outcome, in the order given.
fn in_one_group(
    store: &Store,
    appends: Vec<(String, EventData, AppendCondition)>,
) -> Vec<annals::Result<Result<Vec<annals::AppendResult>, AppendRejected>>> {
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
        .map(|(i, (stream, event, condition))| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // After the flush took the write path; in order.
                std::thread::sleep(Duration::from_millis(40 + 20 * i as u64));
                store.append_with_condition(one(&stream, event), condition)
            })
        })
        .collect();
    let outcomes = handles.into_iter().map(|h| h.join().unwrap()).collect();
    flusher.join().unwrap();
    outcomes
}

/// Two appends in one group, each conditioned on "no event at all after
/// the end I read" (a query item with neither types nor tags): the first
/// wins; the second fails on the first's position. It was answered
/// `InvalidInput("position 1 is not in the log…")`: the check looked for
/// matches in the log up to the group's next position, past the log's end.
#[test]
fn an_item_matching_every_event_fails_on_an_event_earlier_in_the_group() {
    let store = slow_buffered_store(Duration::from_millis(400));
    let all = Query::all();
    let read = store.read_query(&all, 0, usize::MAX).unwrap();
    assert_eq!(read.read_up_to, None);
    // The flush's own unsynced event comes first: read past it.
    let after = Some(0);
    let appends = (0..2)
        .map(|i| {
            let condition = AppendCondition::new(all.clone()).after(after);
            (format!("s-{i}"), event("E", &[]), condition)
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
    assert!(
        store.write_stats().groups <= 3,
        "the two appends shared a group"
    );
}
