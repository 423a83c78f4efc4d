//! Property: conditional `append_many`s from racing threads — each with a
//! per-stream expected version on a stream of its own and `Any` on shared
//! streams, `after` at the edges of the writer's recent events (1,024 and
//! 2,048 back, the end, none) — are decided as the final log says, in
//! group commits of several requests, in `Fsync` and `Buffered`: a written
//! append had no event matching its condition between `after` and its
//! own first position (so none earlier in its group either) and sits
//! whole at the positions it was answered; a rejected one names the first
//! match above `after` and wrote nothing; a deliberately stale expected
//! version is answered as such (it is checked before the condition) and
//! writes nothing. Method: every answer checked afterwards against the
//! log read back, brute force.

use annals::{
    AppendCondition, AppendRejected, Durability, EventData, EventId, ExpectedVersion, Options,
    Query, QueryItem, Store,
};

mod common;
use common::Rng;

const THREADS: u64 = 4;
const APPENDS: u64 = 400;
const TAGS: u64 = 24;

/// What one call asked and got.
struct Call {
    query: Query,
    after: Option<u64>,
    ids: Vec<EventId>,
    outcome: Outcome,
}

enum Outcome {
    /// Written from this position on.
    Written(u64),
    /// Its condition failed on this position.
    Rejected(u64),
    /// Its own stream's expected version was stale, on purpose.
    Stale,
}

fn event(rng: &mut Rng) -> EventData {
    let ty = ["A", "B", "C"][rng.below(3) as usize];
    EventData::new(ty, "{}").with_tags([format!("k:{}", rng.below(TAGS))])
}

fn query(rng: &mut Rng) -> Query {
    let item = |rng: &mut Rng| match rng.below(4) {
        0 => QueryItem::new().types([["A", "B", "C"][rng.below(3) as usize]]),
        1 => QueryItem::new()
            .types(["A"])
            .tags([format!("k:{}", rng.below(TAGS))]),
        _ => QueryItem::new().tags([format!("k:{}", rng.below(TAGS))]),
    };
    let n = 1 + rng.below(2);
    Query::new((0..n).map(|_| item(rng)))
}

fn after(rng: &mut Rng, end: u64) -> Option<u64> {
    let back = match rng.below(12) {
        0..=3 => rng.below(3),
        4..=5 => 1_020 + rng.below(8),
        6..=7 => 2_044 + rng.below(8),
        8..=10 => rng.below(3_000),
        _ => return None,
    };
    end.checked_sub(1 + back)
}

fn run(store: &Store, t: u64, seed: u64) -> Vec<Call> {
    let mut rng = Rng(seed);
    let own = format!("own-{t}");
    let mut version: Option<u64> = None;
    let mut calls = Vec::new();
    for _ in 0..APPENDS {
        let end = store.position_end();
        let stale = rng.below(10) == 0;
        let expected = match (version, stale) {
            (None, false) => ExpectedVersion::NoStream,
            (Some(v), false) => ExpectedVersion::Exact(v),
            (v, true) => ExpectedVersion::Exact(v.map_or(7, |v| v + 3)),
        };
        let own_events: Vec<EventData> = (0..1 + rng.below(3)).map(|_| event(&mut rng)).collect();
        let own_count = own_events.len() as u64;
        let mut appends = vec![(own.clone(), expected, own_events)];
        for k in 0..rng.below(3) {
            let events = (0..1 + rng.below(2)).map(|_| event(&mut rng)).collect();
            appends.push((format!("shared-{k}"), ExpectedVersion::Any, events));
        }
        let ids: Vec<EventId> = appends
            .iter()
            .flat_map(|(_, _, events)| events.iter().map(|e| e.id))
            .collect();
        let query = query(&mut rng);
        let after = after(&mut rng, end);
        let condition = AppendCondition::new(query.clone()).after(after);
        let outcome = match store.append_with_condition(appends, condition).unwrap() {
            Ok(results) => {
                assert!(!stale, "written with a stale expected version");
                assert_eq!(results[0].first_version, version.map_or(0, |v| v + 1));
                version = Some(results[0].last_version);
                assert_eq!(
                    results[0].last_version + 1 - results[0].first_version,
                    own_count
                );
                Outcome::Written(results[0].first_position)
            }
            Err(AppendRejected::Condition(failed)) => {
                assert!(!stale, "a stale expected version is answered first");
                Outcome::Rejected(failed.position)
            }
            Err(AppendRejected::WrongExpectedVersion(conflict)) => {
                assert!(stale, "{conflict:?}");
                assert_eq!(conflict.index, 0);
                Outcome::Stale
            }
        };
        calls.push(Call {
            query,
            after,
            ids,
            outcome,
        });
    }
    calls
}

fn racing_append_manys(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .durability(durability)
        .index_buffer_events(500);
    let store = Store::open_with(dir.path(), options).unwrap();
    // A log longer than the recent events before any condition is seen.
    for chunk in 0..6u64 {
        let mut rng = Rng(0x5EED + chunk);
        let events = (0..500).map(|_| event(&mut rng)).collect();
        store
            .append("before", ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
    let groups_before = store.write_stats().groups;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || run(&store, t, 0x2545_F491_4F6C_DD1D ^ (t + 1)))
        })
        .collect();
    let calls: Vec<Call> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let groups = store.write_stats().groups - groups_before;
    let log = store.read_all(0, usize::MAX).unwrap();
    let end = store.position_end();
    assert_eq!(log.len() as u64, end);
    let mut written_events = 0;
    let (mut written, mut rejected, mut stale) = (0, 0, 0);
    for call in &calls {
        let from = call.after.map_or(0, |a| a + 1);
        let first_match = |below: u64| common::first_match_in(&log, &call.query, from, below);
        match call.outcome {
            Outcome::Written(first) => {
                written += 1;
                written_events += call.ids.len();
                assert_eq!(
                    first_match(first),
                    None,
                    "written at {first}: {:?} after {:?} matched before it",
                    call.query,
                    call.after
                );
                let here: Vec<EventId> = log
                    .iter()
                    .skip(first as usize)
                    .take(call.ids.len())
                    .map(|e| e.id)
                    .collect();
                assert_eq!(here, call.ids, "the append sits whole at {first}");
            }
            Outcome::Rejected(position) => {
                rejected += 1;
                assert_eq!(
                    first_match(end),
                    Some(position),
                    "rejected for {position}: {:?} after {:?}",
                    call.query,
                    call.after
                );
            }
            Outcome::Stale => stale += 1,
        }
    }
    // Nothing but the written appends' events was added.
    assert_eq!(end, 3_000 + written_events as u64);
    assert!(
        written > 150 && rejected > 150 && stale > 50,
        "{written} {rejected} {stale}"
    );
    // Requests shared groups (4 threads; fewer groups than requests).
    assert!(groups < THREADS * APPENDS, "{groups} groups");
    store.verify().unwrap();
}

#[test]
fn racing_append_manys_fsync() {
    racing_append_manys(Durability::Fsync);
}

#[test]
fn racing_append_manys_buffered() {
    racing_append_manys(Durability::Buffered);
}
