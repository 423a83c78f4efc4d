//! Property: a compaction that fails at any write, fsync, directory fsync,
//! rename, removal or open — and a crash at that moment — loses nothing and
//! duplicates nothing: the store still reads every event it held (each
//! survivor byte-identical at its position; only events the rules hide may
//! be gone), after reopen from a crash image too; `verify` is clean, no
//! temporary file survives the open, and compacting again finishes the
//! job; the newest snapshot always survives. A failed compaction refuses
//! the next one until reopen.
//! Method: `FaultyStorage` over the crash-simulating `MemStorage`, one
//! fault per run, at every call of each kind until the compaction makes no
//! more calls of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use annals::storage::{CrashMode, Fault, FaultKind, FaultOp, FaultyStorage, MemStorage, Storage};
use annals::{CompactionOptions, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    // Small index buffers: index runs (which keep offsets into segments)
    // exist and are persisted while the compaction runs.
    Options::default()
        .segment_bytes(8 << 10)
        .index_buffer_events(16)
}

/// Stream reads (through index runs, whose offsets a crash may leave
/// stale) agree with `$all`.
fn check_streams(store: &Store, now: &Feed) {
    for stream in ["keep", "trunc"] {
        let read: Vec<(u64, u64, Vec<u8>)> = store
            .read_stream(stream, 0, annals::Direction::Forward, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.position, e.version, e.data.to_vec()))
            .collect();
        let expected: Vec<(u64, u64, Vec<u8>)> = now
            .iter()
            .filter(|(_, e)| e.0 == stream && !hidden(&e.0, e.1, &e.2))
            .map(|(p, e)| (*p, e.1, e.2.clone()))
            .collect();
        assert_eq!(read, expected, "{stream}");
    }
}

type Feed = BTreeMap<u64, (String, u64, Vec<u8>)>;

fn feed(store: &Store) -> Feed {
    let events = store.read_all(0, usize::MAX).unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions repeat or go back"
    );
    events
        .into_iter()
        .map(|e| (e.position, (e.stream, e.version, e.data.to_vec())))
        .collect()
}

/// Whether the rules of [`populate`] hide this event.
fn hidden(stream: &str, version: u64, data: &[u8]) -> bool {
    match stream {
        "hard" => !data.is_empty() || version < 30,
        "trunc" => version < 20,
        _ => false,
    }
}

fn populate(store: &Store) {
    for n in 0..30u64 {
        for stream in ["keep", "hard", "trunc"] {
            let event = EventData::new("Happened", format!("{stream}-{n}-{}", "q".repeat(60)));
            store
                .append(stream, ExpectedVersion::Any, vec![event])
                .unwrap()
                .unwrap();
        }
    }
    // Superseded snapshots: the compaction rewrites the snapshot log too.
    for version in [5, 10, 15] {
        store
            .save_snapshot(
                "keep",
                version,
                "State",
                format!("state@{version}").as_bytes(),
            )
            .unwrap();
    }
    store
        .delete_stream("hard", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    store.set_truncate_before("trunc", 20).unwrap();
    for n in 30..60u64 {
        let event = EventData::new("Happened", format!("keep-{n}-{}", "q".repeat(60)));
        store
            .append("keep", ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
    }
}

/// `now` holds every event of `before` the rules do not hide, identical,
/// and nothing else.
fn check_against(before: &Feed, now: &Feed) {
    for (position, event) in now {
        assert_eq!(
            before.get(position),
            Some(event),
            "changed or new at {position}"
        );
    }
    for (position, (stream, version, data)) in before {
        if !now.contains_key(position) {
            assert!(
                hidden(stream, *version, data),
                "lost {stream}@{version} at {position}"
            );
        }
    }
}

fn run(op: FaultOp, nth: u64) -> bool {
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
    populate(&store);
    let before = feed(&store);
    faulty.inject(Fault {
        op,
        nth,
        persistent: false,
        kind: FaultKind::Eio,
    });
    let result = store.compact(&CompactionOptions::default());
    let injected = faulty.injected() > 0;
    faulty.heal();
    // Still readable in this process, whatever happened.
    check_against(&before, &feed(&store));
    check_streams(&store, &feed(&store));
    if injected && result.is_err() {
        assert!(
            store.compact(&CompactionOptions::default()).is_err(),
            "a compaction after a failed one ({op:?} #{nth}) must be refused until reopen"
        );
    }
    for (seed, mode) in [
        (nth, CrashMode::DropUnsynced),
        (nth + 7, CrashMode::TearUnsynced),
    ] {
        let image = mem.crash_image(seed, mode);
        let reopened = Store::open_storage(Arc::new(image.handle()), options())
            .unwrap_or_else(|e| panic!("{op:?} #{nth} {mode:?}: open failed: {e}"));
        if let Err(e) = reopened.verify() {
            panic!("{op:?} #{nth} {mode:?} (compaction: {result:?}): verify: {e}");
        }
        check_against(&before, &feed(&reopened));
        check_streams(&reopened, &feed(&reopened));
        // The newest snapshot survives whatever happened.
        let snapshot = reopened.load_aggregate("keep").unwrap().snapshot.unwrap();
        assert_eq!(
            (snapshot.version, &snapshot.data[..]),
            (15, &b"state@15"[..])
        );
        let names = image.list().unwrap();
        let active_first = names
            .iter()
            .filter_map(|n| n.strip_suffix(".seg")?.parse::<u64>().ok())
            .max()
            .unwrap();
        assert!(
            // (The reopened store's own index writer may be writing a run
            // through a temporary file of its own meanwhile.)
            !names
                .iter()
                .any(|n| n.ends_with(".compact.tmp") || n == annals::COMPACTING_FILE_NAME),
            "{op:?} #{nth}: orphans left: {names:?}"
        );
        // Compacting again finishes the job.
        reopened.compact(&CompactionOptions::default()).unwrap();
        reopened.verify().unwrap();
        let done = feed(&reopened);
        check_against(&before, &done);
        for (position, (stream, version, data)) in &before {
            if hidden(stream, *version, data) && *position < active_first {
                // In sealed segments: gone now.
                assert!(
                    !done.contains_key(position),
                    "{stream}@{version} still readable"
                );
            }
        }
        reopened.close().unwrap();
    }
    drop(store);
    injected
}

#[test]
fn a_compaction_failing_anywhere_loses_nothing() {
    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::SyncDir,
        FaultOp::Rename,
        FaultOp::Remove,
        FaultOp::Open,
    ] {
        let mut nth = 0;
        while run(op, nth) {
            nth += 1;
            assert!(nth < 400, "{op:?}: the compaction never stops calling");
        }
        assert!(nth > 0, "{op:?}: the compaction made no call of this kind");
        eprintln!("{op:?}: {nth} calls failed in turn");
    }
}
