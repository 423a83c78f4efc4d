//! The category and event-type indexes: what they answer equals a
//! filtered scan of `$all` — for random stores, random start positions and
//! limits, while runs are written and merged, across reopen, after a crash
//! (only the tail after the secondary checkpoint is replayed), and after a
//! secondary run file is damaged (verify finds it; a read rebuilds it).

use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage, Storage};
use annals::{Durability, EventData, ExpectedVersion, Options, RecordedEvent, Store};

mod common;
use common::Rng;

const CATEGORIES: [&str; 5] = ["order", "user", "cart", "ship", "pay"];
const TYPES: [&str; 4] = ["Created", "Updated", "Deleted", "Noted"];

/// Appends `appends` random appends of 1 to 4 events to streams of random
/// categories (some streams have none), of random types.
fn fill(store: &Store, rng: &mut Rng, appends: usize) {
    for _ in 0..appends {
        let n = rng.below(40);
        let stream = match rng.below(10) {
            0 => format!("solo{n}"),
            _ => format!("{}-{n}", CATEGORIES[rng.below(5) as usize]),
        };
        let events = (0..1 + rng.below(4))
            .map(|_| EventData::new(TYPES[rng.below(4) as usize], "{}"))
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Every category and type (and pairs of types), from random positions
/// with random limits, against a filtered `read_all`.
fn check_against_scan(store: &Store, rng: &mut Rng) {
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for round in 0..12 {
        let from = if round == 0 { 0 } else { rng.below(end + 2) };
        let max = match round % 3 {
            0 => usize::MAX,
            _ => 1 + rng.below(50) as usize,
        };
        for category in CATEGORIES.iter().chain(&["solo0", "none"]) {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from)
                .filter(|e| annals::category_of(&e.stream) == Some(category))
                .map(|e| e.position)
                .take(max)
                .collect();
            let got = store.read_category(category, from, max).unwrap();
            assert_eq!(positions(&got), want, "category {category} from {from}");
            assert!(got.iter().all(|e| e.data.as_ref() == b"{}"));
        }
        let type_sets: [&[&str]; 4] = [
            &["Created"],
            &["Updated", "Noted"],
            &["Deleted", "Missing"],
            &["Missing"],
        ];
        for types in type_sets {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from)
                .filter(|e| types.contains(&e.event_type.as_str()))
                .map(|e| e.position)
                .take(max)
                .collect();
            let got = store.read_event_types(types, from, max).unwrap();
            assert_eq!(positions(&got), want, "types {types:?} from {from}");
        }
    }
}

/// Small buffers (many runs, merged); buffered appends (the in-memory
/// storage's fsync costs grow with the log).
fn options() -> Options {
    Options::default()
        .index_buffer_events(64)
        .durability(Durability::Buffered)
}

#[test]
fn reads_equal_a_filtered_scan_while_runs_are_written_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let store = Store::open_with(dir.path(), options()).unwrap();
    for _ in 0..4 {
        fill(&store, &mut rng, 300);
        check_against_scan(&store, &mut rng);
    }
    store.verify().unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.index_report().secondary.clone();
    let end = store.position_end();
    // Closing persisted everything: nothing to replay.
    assert_eq!((report.checkpoint, report.replayed), (end, 0), "{report:?}");
    assert!(report.discarded.is_empty());
    let runs: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("secondary-"))
        .collect();
    // Merged: each run over three times the next, not one per buffer.
    assert!((1..=8).contains(&runs.len()), "{runs:?}");
    check_against_scan(&store, &mut rng);
    fill(&store, &mut rng, 200);
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
}

#[test]
fn after_a_crash_only_the_tail_after_the_secondary_checkpoint_is_replayed() {
    let mem = MemStorage::new();
    let mut rng = Rng(42);
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    fill(&store, &mut rng, 250);
    // The persister writes secondary runs up to the stream index's
    // checkpoint; wait until some exist.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mem
        .handle()
        .list()
        .unwrap()
        .iter()
        .any(|n| n.starts_with("secondary-") && n.ends_with(".sidx"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no secondary run written"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let image = mem.crash_image(3, CrashMode::TearUnsynced);
    drop(store);
    let store = Store::open_storage(Arc::new(image), options()).unwrap();
    let report = store.index_report().secondary.clone();
    let end = store.position_end();
    assert!(report.checkpoint > 0, "{report:?}");
    assert_eq!(report.replayed, end - report.checkpoint, "{report:?}");
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
}

/// Flips one byte of an entry page of the first secondary run file.
fn damage_first_secondary_run(dir: &std::path::Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("secondary-") && n.ends_with(".sidx"))
        .collect();
    names.sort();
    let name = names.first().expect("a secondary run").clone();
    let path = dir.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096 + 100] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    name
}

#[test]
fn a_damaged_secondary_run_is_found_by_verify_and_rebuilt_by_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store, &mut rng, 400);
    drop(store);
    let damaged = damage_first_secondary_run(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let error = store.verify().unwrap_err();
    assert!(matches!(error, annals::Error::IndexDamaged(_)), "{error}");
    assert!(format!("{error:?}").contains(&damaged), "{error:?}");
    // Reads meet the damage, rebuild the run from the log, and answer.
    check_against_scan(&store, &mut rng);
    store.verify().unwrap();
    drop(store);
    // Rebuilding the whole index removes and rewrites the secondary runs.
    damage_first_secondary_run(dir.path());
    let store = Store::rebuild_index(dir.path(), options(), &mut |_, _| {}).unwrap();
    let report = store.index_report().secondary.clone();
    assert_eq!(
        (report.checkpoint, report.replayed),
        (0, store.position_end())
    );
    store.verify().unwrap();
    check_against_scan(&store, &mut rng);
}

#[test]
fn an_empty_type_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let none: [&str; 0] = [];
    assert!(matches!(
        store.read_event_types(&none, 0, 10),
        Err(annals::Error::InvalidInput(_))
    ));
}

/// Postings out of order behind valid page checksums (found by the
/// `secondary_pages` fuzz target: a category read returned an event out of
/// position order, and then again): a read meets them, the run is broken
/// and rebuilt from the log, and the read answers what a scan does.
#[test]
fn postings_out_of_order_behind_valid_checksums_are_rebuilt_by_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for n in 0..300u64 {
        let stream = format!("{}-{}", ["order", "user"][(n % 2) as usize], n % 7);
        let event = EventData::new(TYPES[(n % 4) as usize], "{}");
        store
            .append(&stream, ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
    }
    drop(store);
    // In the first run, the first two entries of category `order` on one
    // page swap positions; the page's checksum is recomputed.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("secondary-") && n.ends_with(".sidx"))
        .collect();
    names.sort();
    let path = dir.path().join(names.first().expect("a secondary run"));
    let mut bytes = std::fs::read(&path).unwrap();
    let salt = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    let hash = annals_index::SecondaryKey::category("order").hash();
    let of_order = |page: &[u8], k: usize| page[k * 16..k * 16 + 8] == hash.to_le_bytes();
    let (number, first) = (1..bytes.len() / 4096)
        .flat_map(|n| (0..254).map(move |k| (n, k)))
        .find(|&(n, k)| {
            let page = &bytes[n * 4096..(n + 1) * 4096];
            of_order(page, k) && of_order(page, k + 1)
        })
        .expect("two entries of `order` on one page");
    let page = &mut bytes[number * 4096..(number + 1) * 4096];
    let (a, b) = (first * 16 + 8, (first + 1) * 16 + 8);
    let (pa, pb) = (page[a..a + 8].to_vec(), page[b..b + 8].to_vec());
    page[a..a + 8].copy_from_slice(&pb);
    page[b..b + 8].copy_from_slice(&pa);
    let crc = annals_index::page_crc(salt, number as u64, &page[..4092]);
    page[4092..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    let error = store.verify().unwrap_err();
    assert!(matches!(error, annals::Error::IndexDamaged(_)), "{error}");
    let want: Vec<u64> = store
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| e.stream.starts_with("order-"))
        .map(|e| e.position)
        .collect();
    let got = store.read_category("order", 0, usize::MAX).unwrap();
    assert_eq!(positions(&got), want);
    store.verify().unwrap();
}
