//! Property: every outcome of a conditional append, decided among racing
//! writers in shared group commits, can be checked afterwards against the
//! final log, because positions below a decision are fixed when it is made:
//! an accepted append had no event matching its query between its `after`
//! and its own first position; a refused one names exactly the first event
//! above `after` that matches its query; a retry of an accepted append
//! (same ids) is its duplicate. Across query shapes (types, tags, both,
//! neither, several items), stale and fresh `after`s, and appends to two
//! streams at once.
//! Method: threads over a memory store whose fsync is slowed (so groups
//! hold several requests), outcomes recorded, then the final `$all`
//! replayed as the model.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use annals::storage::{FaultyStorage, MemStorage};
use annals::{
    AppendCondition, AppendRejected, ConditionFailed, EventData, ExpectedVersion, Options, Query,
    QueryItem, RecordedEvent, Store,
};

mod common;
use common::Rng;

const TYPES: [&str; 3] = ["A", "B", "C"];
const TAGS: [&str; 4] = ["t:0", "t:1", "t:2", "t:3"];

fn query(rng: &mut Rng) -> Query {
    let items = 1 + rng.below(2);
    Query::new((0..items).map(|_| {
        let mut item = QueryItem::new();
        if rng.below(3) > 0 {
            item = item.types([TYPES[rng.below(3) as usize]]);
        }
        for _ in 0..rng.below(3) {
            item = item.tags([TAGS[rng.below(4) as usize]]);
        }
        item
    }))
}

fn event(rng: &mut Rng) -> EventData {
    let mut tags: Vec<&str> = TAGS.iter().copied().filter(|_| rng.below(3) == 0).collect();
    tags.dedup();
    EventData::new(TYPES[rng.below(3) as usize], "{}").with_tags(tags)
}

fn matches(query: &Query, e: &RecordedEvent) -> bool {
    query.items.iter().any(|i| {
        (i.types.is_empty() || i.types.contains(&e.event_type))
            && i.tags.iter().all(|t| e.tags.contains(t))
    })
}

type Outcome = Result<Vec<annals::AppendResult>, AppendRejected>;

#[test]
fn racing_conditional_appends_agree_with_the_final_log() {
    let faulty = FaultyStorage::new(Arc::new(MemStorage::new().handle()));
    faulty.slow_syncs(Duration::from_micros(300));
    let store = Store::open_storage(
        Arc::new(faulty),
        Options::default().segment_bytes(256 << 10),
    )
    .unwrap();
    let threads = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let record: Arc<Mutex<Vec<(AppendCondition, Outcome)>>> = Arc::default();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, barrier, record) = (store.clone(), barrier.clone(), record.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678));
                barrier.wait();
                for _ in 0..150 {
                    let q = query(&mut rng);
                    let read = store.read_query(&q, 0, usize::MAX).unwrap();
                    // Fresh, stale, or none at all.
                    let after = match rng.below(4) {
                        0 => None,
                        1 => read.read_up_to.and_then(|p| p.checked_sub(rng.below(5))),
                        _ => read.read_up_to,
                    };
                    let mut appends = vec![(
                        format!("s-{t}"),
                        ExpectedVersion::Any,
                        vec![event(&mut rng)],
                    )];
                    if rng.below(3) == 0 {
                        let more = vec![event(&mut rng), event(&mut rng)];
                        appends.push((format!("o-{}", rng.below(3)), ExpectedVersion::Any, more));
                    }
                    let condition = AppendCondition::new(q).after(after);
                    let outcome = store
                        .append_with_condition(appends.clone(), condition.clone())
                        .unwrap();
                    if let (Ok(first), 0) = (&outcome, rng.below(4)) {
                        let again = store
                            .append_with_condition(appends, condition.clone())
                            .unwrap()
                            .unwrap();
                        assert!(again.iter().all(|r| r.duplicate));
                        assert_eq!(again[0].first_position, first[0].first_position);
                    }
                    record.lock().unwrap().push((condition, outcome));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    let record = record.lock().unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for (condition, outcome) in record.iter() {
        let q = &condition.fail_if_events_match;
        let from = condition.after.map_or(0, |a| a + 1) as usize;
        match outcome {
            Ok(results) => {
                accepted += 1;
                let own = results[0].first_position as usize;
                let conflict = all
                    .get(from..own)
                    .unwrap_or_default()
                    .iter()
                    .find(|e| matches(q, e));
                assert!(
                    conflict.is_none(),
                    "{condition:?} accepted at {own} over {conflict:?}"
                );
            }
            Err(AppendRejected::Condition(ConditionFailed { position })) => {
                refused += 1;
                let first = all.get(from..).unwrap().iter().find(|e| matches(q, e));
                assert_eq!(first.map(|e| e.position), Some(*position), "{condition:?}");
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        accepted > 50 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
    let stats = store.write_stats();
    assert!(
        stats.requests > stats.groups + 50,
        "groups held several requests: {stats:?}"
    );
}
