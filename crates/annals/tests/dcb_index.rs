//! Property: the tag index (the secondary index's `Tag` keys) answers
//! `read_query` and conditional appends exactly as a filtered scan of
//! `$all` would — while runs are written and merged, after reopen (persisted:
//! nothing replayed), after a crash (only the tail after the checkpoint
//! replayed), after a run file is damaged (verify finds it; a query or a
//! condition check rebuilds it) and after `rebuild_index`. Method: random
//! tagged stores, every query shape against the scan.

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage, Storage};
use annals::{
    AppendCondition, AppendRejected, ConditionFailed, Durability, EventData, ExpectedVersion,
    Options, Query, QueryItem, Store,
};

mod common;
use common::Rng;

const TYPES: [&str; 3] = ["Subscribed", "Left", "Noted"];

fn fill(store: &Store, rng: &mut Rng, appends: usize) {
    for _ in 0..appends {
        let events = (0..1 + rng.below(4))
            .map(|_| {
                let tags: Vec<String> = (0..rng.below(3))
                    .map(|k| {
                        format!(
                            "{}:{}",
                            ["student", "course"][k as usize % 2],
                            rng.below(12)
                        )
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                EventData::new(TYPES[rng.below(3) as usize], "{}").with_tags(tags)
            })
            .collect();
        let stream = format!("s-{}", rng.below(30));
        store
            .append(&stream, ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
}

fn queries() -> Vec<Query> {
    vec![
        Query::new([QueryItem::new().tags(["course:3"])]),
        Query::new([QueryItem::new()
            .types(["Subscribed"])
            .tags(["course:3", "student:1"])]),
        Query::new([
            QueryItem::new().types(["Left"]).tags(["student:2"]),
            QueryItem::new()
                .types(["Noted", "Subscribed"])
                .tags(["course:7"]),
        ]),
        Query::new([QueryItem::new().types(["Left"])]),
        Query::new([QueryItem::new().tags(["course:99"])]),
    ]
}

fn check_against_scan(store: &Store, rng: &mut Rng) {
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for round in 0..6 {
        let from = if round == 0 { 0 } else { rng.below(end + 2) };
        let max = if round % 2 == 0 {
            usize::MAX
        } else {
            1 + rng.below(40) as usize
        };
        for query in queries() {
            let matches = |e: &&annals::RecordedEvent| {
                query.items.iter().any(|i| {
                    (i.types.is_empty() || i.types.contains(&e.event_type))
                        && i.tags.iter().all(|t| e.tags.contains(t))
                })
            };
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from)
                .filter(matches)
                .map(|e| e.position)
                .take(max)
                .collect();
            let read = store.read_query(&query, from, max).unwrap();
            let got: Vec<u64> = read.events.iter().map(|e| e.position).collect();
            assert_eq!(got, want, "{query:?} from {from} max {max}");
            // The condition check finds the first match after a position.
            let after = from.checked_sub(1);
            let first = all
                .iter()
                .filter(|e| after.is_none_or(|a| e.position > a))
                .find(matches)
                .map(|e| e.position);
            let condition = AppendCondition::new(query.clone()).after(after);
            let event = EventData::new("Probe", "{}");
            let result = store
                .append_with_condition(
                    vec![("probe".into(), ExpectedVersion::Any, vec![event])],
                    condition,
                )
                .unwrap();
            match first {
                Some(position) => assert_eq!(
                    result,
                    Err(AppendRejected::Condition(ConditionFailed { position }))
                ),
                None => assert!(result.is_ok(), "{result:?}"),
            }
        }
    }
}

fn options() -> Options {
    Options::default()
        .index_buffer_events(64)
        .durability(Durability::Buffered)
}

fn secondary_runs(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("secondary-") && n.ends_with(".sidx"))
        .collect();
    names.sort();
    names
}

#[test]
fn tag_queries_equal_a_filtered_scan_while_runs_are_written_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let store = Store::open_with(dir.path(), options()).unwrap();
    for _ in 0..3 {
        fill(&store, &mut rng, 300);
        check_against_scan(&store, &mut rng);
    }
    store.verify().unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.index_report().secondary.clone();
    assert_eq!(
        (report.checkpoint, report.replayed),
        (store.position_end(), 0),
        "{report:?}"
    );
    assert!(!secondary_runs(dir.path()).is_empty());
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
}

#[test]
fn after_a_crash_tag_queries_still_equal_the_scan() {
    let mem = MemStorage::new();
    let mut rng = Rng(99);
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    fill(&store, &mut rng, 250);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mem
        .handle()
        .list()
        .unwrap()
        .iter()
        .any(|n| n.starts_with("secondary-"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no secondary run written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let image = mem.crash_image(5, CrashMode::TearUnsynced);
    drop(store);
    let store = Store::open_storage(Arc::new(image), options()).unwrap();
    let report = store.index_report().secondary.clone();
    assert!(report.checkpoint > 0, "{report:?}");
    assert_eq!(report.replayed, store.position_end() - report.checkpoint);
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
}

#[test]
fn a_damaged_tag_run_is_found_by_verify_and_rebuilt_by_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &mut rng, 400);
    drop(store);
    let flip = |dir: &std::path::Path| {
        let name = secondary_runs(dir)
            .first()
            .expect("a secondary run")
            .clone();
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4096 + 100] ^= 0x10;
        std::fs::write(&path, bytes).unwrap();
        name
    };
    let damaged = flip(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let error = store.verify().unwrap_err();
    assert!(format!("{error:?}").contains(&damaged), "{error:?}");
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
    drop(store);
    flip(dir.path());
    let store = Store::rebuild_index(dir.path(), options(), &mut |_, _| {}).unwrap();
    store.verify().unwrap();
    check_against_scan(&store, &mut rng);
}
