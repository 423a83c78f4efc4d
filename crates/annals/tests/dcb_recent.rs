//! Property: conditional appends from several threads, racing with each
//! other and with the index workers (a tiny index buffer: runs persisted,
//! merged and the secondary memtable extended all the time), decide
//! exactly as a model of the final log says. The writer checks a
//! condition's last events among those it wrote last and the older ones
//! through the secondary index (`write/recent.rs`); `after` is drawn so
//! that both paths and the split between them are taken, with plain
//! appends between. Method: every answer is checked afterwards against
//! the log read back. A written append's condition had no match between
//! its `after` and its own first position (everything before it was in the
//! log, or earlier in its group, when it was decided); a rejected one
//! names the first match above its `after` (the log it saw is a prefix of
//! the final one, so its first match there is the first match overall).

use annals::{
    AppendCondition, AppendRejected, ConditionFailed, Durability, EventData, ExpectedVersion,
    Options, Query, QueryItem, Store,
};

mod common;
use common::Rng;

const TYPES: [&str; 2] = ["A", "B"];
const TAGS: u64 = 48;
const THREADS: u64 = 4;
const APPENDS: u64 = 1_500;

/// What one call did.
struct Call {
    query: Query,
    after: Option<u64>,
    /// The log's end read just before the call.
    end_seen: u64,
    /// The first position written, or the match named.
    outcome: Result<u64, u64>,
}

fn event(rng: &mut Rng) -> EventData {
    let ty = TYPES[rng.below(2) as usize];
    let first = rng.below(TAGS);
    let second = (first + 1 + rng.below(TAGS - 1)) % TAGS;
    EventData::new(ty, "{}").with_tags([format!("k:{first}"), format!("k:{second}")])
}

fn query(rng: &mut Rng) -> Query {
    let item = |rng: &mut Rng| {
        let tag = QueryItem::new().tags([format!("k:{}", rng.below(TAGS))]);
        if rng.below(2) == 0 {
            tag.types([TYPES[rng.below(2) as usize]])
        } else {
            tag
        }
    };
    let n = 1 + rng.below(2);
    Query::new((0..n).map(|_| item(rng)))
}

/// `after`: mostly the end just read (the recent events), sometimes a
/// little or far further back (past the recent events: the index), or none.
fn after(rng: &mut Rng, end: u64) -> Option<u64> {
    let back = match rng.below(10) {
        0..=5 => 0,
        6 => rng.below(64),
        7 => rng.below(1_500),
        8 => rng.below(5_000),
        _ => return None,
    };
    end.checked_sub(1 + back)
}

fn run(store: &Store, seed: u64) -> Vec<Call> {
    let mut rng = Rng(seed);
    let mut calls = Vec::new();
    for i in 0..APPENDS {
        let stream = format!("s-{seed}-{}", i % 7);
        if rng.below(5) == 0 {
            let written = store.append(&stream, ExpectedVersion::Any, vec![event(&mut rng)]);
            assert!(matches!(written, Ok(Ok(_))), "{written:?}");
            continue;
        }
        let query = query(&mut rng);
        let end_seen = store.position_end();
        let after = after(&mut rng, end_seen);
        let events = (0..1 + rng.below(3)).map(|_| event(&mut rng)).collect();
        let condition = AppendCondition::new(query.clone()).after(after);
        let written = store
            .append_with_condition(vec![(stream, ExpectedVersion::Any, events)], condition)
            .unwrap();
        let outcome = match written {
            Ok(results) => Ok(results[0].first_position),
            Err(AppendRejected::Condition(ConditionFailed { position })) => Err(position),
            Err(other) => panic!("{other:?}"),
        };
        calls.push(Call {
            query,
            after,
            end_seen,
            outcome,
        });
    }
    calls
}

#[test]
fn racing_conditional_appends_decide_as_the_log_says() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .durability(Durability::Buffered)
        .index_buffer_events(97);
    let store = Store::open_with(dir.path(), options).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || run(&store, 0x9E37_79B9_7F4A_7C15 ^ (t + 1)))
        })
        .collect();
    let calls: Vec<Call> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let log = store.read_all(0, usize::MAX).unwrap();
    let end = store.position_end();
    assert_eq!(log.len() as u64, end);
    let (mut written, mut rejected, mut far) = (0, 0, 0);
    for call in &calls {
        let from = call.after.map_or(0, |a| a + 1);
        let first_match = |below: u64| common::first_match_in(&log, &call.query, from, below);
        match call.outcome {
            Ok(first) => {
                written += 1;
                assert_eq!(
                    first_match(first),
                    None,
                    "written at {first}, but {:?} after {:?} matched before it",
                    call.query,
                    call.after
                );
            }
            Err(position) => {
                rejected += 1;
                assert_eq!(
                    first_match(end),
                    Some(position),
                    "rejected for {position}: {:?} after {:?}",
                    call.query,
                    call.after
                );
            }
        }
        far += u64::from(call.end_seen.saturating_sub(from) > 1_100);
    }
    // Both outcomes, and conditions reaching past the recent events, were
    // exercised (figures of this seed: hundreds of each).
    assert!(
        written > 200 && rejected > 200 && far > 200,
        "{written} {rejected} {far}"
    );
    store.verify().unwrap();
}
