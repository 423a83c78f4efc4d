//! Property: `read_query` and conditional appends never diverge from a plain
//! in-memory model of (type, tags) per position, through random appends
//! (plain and conditional), query reads, reopens and crashes (images that
//! drop, tear or garble unsynced bytes). Method: proptest over the memory
//! backend with small segments.

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    AppendCondition, AppendRejected, ConditionFailed, EventData, ExpectedVersion, Options, Query,
    QueryItem, Store,
};
use proptest::prelude::*;

const TYPES: [&str; 3] = ["A", "B", "C"];
const TAGS: [&str; 4] = ["t:0", "t:1", "t:2", "t:3"];

/// Items of (types bitmask, tags bitmask); an empty types mask is any type.
type QuerySpec = Vec<(u8, u8)>;

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: u8,
        event_type: u8,
        tags: u8,
        condition: Option<(QuerySpec, Option<u8>)>,
    },
    Read {
        query: QuerySpec,
        from: u8,
        max: u8,
    },
    Reopen,
    Crash {
        seed: u64,
        mode: u8,
    },
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    proptest::collection::vec((0u8..8, 0u8..16), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..3, 0u8..16, proptest::option::of((query_spec(), proptest::option::of(0u8..6))))
            .prop_map(|(stream, event_type, tags, condition)| Op::Append { stream, event_type, tags, condition }),
        3 => (query_spec(), 0u8..40, 0u8..8).prop_map(|(query, from, max)| Op::Read { query, from, max }),
        1 => Just(Op::Reopen),
        1 => (any::<u64>(), 0u8..3).prop_map(|(seed, mode)| Op::Crash { seed, mode }),
    ]
}

fn pick<'a>(mask: u8, names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn query_of(spec: &QuerySpec) -> Query {
    Query::new(spec.iter().map(|&(types, tags)| {
        QueryItem::new()
            .types(pick(types, &TYPES))
            .tags(pick(tags, &TAGS))
    }))
}

/// The model's own reading of matching (not the library's): bitmasks.
fn model_matches(spec: &QuerySpec, event: (u8, u8)) -> bool {
    spec.iter()
        .any(|&(types, tags)| (types == 0 || types & (1 << event.0) != 0) && event.1 & tags == tags)
}

fn run(ops: Vec<Op>) {
    let options = || {
        Options::default()
            .segment_bytes(8 << 10)
            .index_buffer_events(16)
    };
    let mut mem = MemStorage::new();
    let mut store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
    // Per position: (type index, tags bitmask).
    let mut model: Vec<(u8, u8)> = Vec::new();
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append {
                stream,
                event_type,
                tags,
                condition,
            } => {
                let event = EventData::new(TYPES[usize::from(event_type)], "{}")
                    .with_tags(pick(tags, &TAGS));
                let appends = vec![(format!("s-{stream}"), ExpectedVersion::Any, vec![event])];
                let end = model.len() as u64;
                match condition {
                    None => {
                        let got = s
                            .append_with_condition(appends, AppendCondition::new(Query::default()));
                        assert_eq!(got.unwrap().unwrap()[0].first_position, end);
                        model.push((event_type, tags));
                    }
                    Some((spec, back)) => {
                        let after = back.and_then(|b| end.checked_sub(1 + u64::from(b)));
                        let want = (0..end)
                            .filter(|&p| after.is_none_or(|a| p > a))
                            .find(|&p| model_matches(&spec, model[p as usize]));
                        let condition = AppendCondition::new(query_of(&spec)).after(after);
                        let got = s.append_with_condition(appends, condition).unwrap();
                        match want {
                            Some(position) => assert_eq!(
                                got,
                                Err(AppendRejected::Condition(ConditionFailed { position }))
                            ),
                            None => {
                                assert_eq!(got.unwrap()[0].first_position, end);
                                model.push((event_type, tags));
                            }
                        }
                    }
                }
            }
            Op::Read { query, from, max } => {
                let (from, max) = (u64::from(from), usize::from(max));
                let read = s.read_query(&query_of(&query), from, max).unwrap();
                let want: Vec<u64> = (from..model.len() as u64)
                    .filter(|&p| model_matches(&query, model[p as usize]))
                    .take(max)
                    .collect();
                let got: Vec<u64> = read.events.iter().map(|e| e.position).collect();
                assert_eq!(got, want);
                for e in &read.events {
                    let (t, tags) = model[e.position as usize];
                    assert_eq!(e.event_type, TYPES[usize::from(t)]);
                    assert_eq!(e.tags, pick(tags, &TAGS));
                }
                let end = model.len() as u64;
                let covered = if max > 0 && want.len() == max {
                    want.last().copied()
                } else {
                    from.min(end)
                        .max(if max > 0 { end } else { 0 })
                        .checked_sub(1)
                };
                assert_eq!(read.read_up_to, covered, "from {from} max {max} end {end}");
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
            }
            Op::Crash { seed, mode } => {
                let mode = [
                    CrashMode::DropUnsynced,
                    CrashMode::TearUnsynced,
                    CrashMode::GarbleUnsynced,
                ][usize::from(mode)];
                let image = mem.crash_image(seed, mode);
                drop(store.take());
                mem = image;
                store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
            }
        }
    }
    let s = store.as_ref().unwrap();
    assert_eq!(s.position_end(), model.len() as u64);
    s.verify().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn queries_and_conditions_never_diverge_from_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
