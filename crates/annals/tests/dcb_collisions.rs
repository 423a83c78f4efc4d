//! Tag and event-type hash collisions under the Dynamic Consistency
//! Boundary: in this process every secondary key hashes to one of four
//! values (`annals_index::collisions::force`), so each run holds many tags
//! and types under one hash. `read_query` must still return exactly the
//! matching events, and a condition must fail exactly on the first match —
//! never on a colliding tag's event — with runs written, merged and
//! reopened. Method: a filtered scan of `$all` as the model.
//!
//! One test in its own binary: the switch is process-wide and must be set
//! before any store is opened.

use annals::{
    AppendCondition, AppendRejected, ConditionFailed, Durability, EventData, ExpectedVersion,
    Options, Query, QueryItem, RecordedEvent, Store,
};
use annals_index::SecondaryKey;

fn matches(query: &Query, e: &RecordedEvent) -> bool {
    query.items.iter().any(|i| {
        (i.types.is_empty() || i.types.contains(&e.event_type))
            && i.tags.iter().all(|t| e.tags.contains(t))
    })
}

fn queries(tags: &[String]) -> Vec<Query> {
    let mut out: Vec<Query> = tags
        .iter()
        .map(|t| Query::new([QueryItem::new().tags([t.as_str()])]))
        .collect();
    out.push(Query::new([QueryItem::new()
        .types(["T1", "T3"])
        .tags([tags[2].as_str()])]));
    out.push(Query::new([
        QueryItem::new().tags([tags[0].as_str(), tags[5].as_str()]),
        QueryItem::new().types(["T0"]),
    ]));
    // A tag no event carries, sharing its hash with tags that many do.
    out.push(Query::new([QueryItem::new().tags(["never"])]));
    out
}

fn check(store: &Store, tags: &[String]) {
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for query in queries(tags) {
        for from in [0, 7, end / 2] {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from && matches(&query, e))
                .map(|e| e.position)
                .collect();
            let got: Vec<u64> = store
                .read_query(&query, from, usize::MAX)
                .unwrap()
                .events
                .iter()
                .map(|e| e.position)
                .collect();
            assert_eq!(got, want, "{query:?} from {from}");
            // The condition names the first match above `after`, or passes
            // (and then writes a probe, which no query here matches).
            let after = from.checked_sub(1);
            let outcome = store
                .append_with_condition(
                    vec![(
                        "probe".into(),
                        ExpectedVersion::Any,
                        vec![EventData::new("Probe", "{}")],
                    )],
                    AppendCondition::new(query.clone()).after(after),
                )
                .unwrap();
            match want.first() {
                Some(&position) => assert_eq!(
                    outcome,
                    Err(AppendRejected::Condition(ConditionFailed { position })),
                    "{query:?} after {after:?}"
                ),
                None => assert!(outcome.is_ok(), "{query:?} after {after:?}: {outcome:?}"),
            }
        }
    }
}

#[test]
fn colliding_tag_hashes_never_mix_matches_or_conditions_up() {
    annals_index::collisions::force();
    let tags: Vec<String> = (0..12).map(|i| format!("tag:{i}")).collect();
    let hashes: std::collections::HashSet<u64> = tags
        .iter()
        .map(|t| SecondaryKey::tag(t).hash())
        .chain([SecondaryKey::tag("never").hash()])
        .collect();
    assert!(hashes.len() <= 4, "collisions are forced: {hashes:?}");

    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .index_buffer_events(40)
            .durability(Durability::Buffered)
    };
    let write = |store: &Store, salt: usize| {
        for i in 0..300 {
            let event_tags = [
                tags[(i * 5 + salt) % 12].as_str(),
                tags[(i * 7 + 3 + salt) % 12].as_str(),
            ];
            let event_tags = if event_tags[0] == event_tags[1] {
                &event_tags[..1]
            } else {
                &event_tags[..]
            };
            let event = EventData::new(format!("T{}", (i + salt) % 4), "{}")
                .with_tags(event_tags.iter().copied());
            store
                .append(&format!("s-{}", i % 5), ExpectedVersion::Any, vec![event])
                .unwrap()
                .unwrap();
        }
    };
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        write(&store, 0);
        check(&store, &tags);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().secondary.replayed, 0);
    check(&store, &tags);
    write(&store, 1);
    check(&store, &tags);
    store.verify().unwrap();
}
