//! Property: a cancelled compaction (`CompactionOptions::cancel`) leaves a
//! valid store: the segments it finished rewriting before the cancel are
//! switched in (they wait for a batch switch, which the cancel does not
//! abandon), the one it was writing is dropped, no temporary file stays,
//! `verify` is clean, every surviving event reads the same, and the next
//! compaction finishes the job. Method: small segments on the real file
//! system; the cancel flag is raised from the progress callback while the
//! second segment is written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{CompactionOptions, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options::default()
        .segment_bytes(8 << 10)
        .index_buffer_events(32)
}

/// `$all` without the deleted stream's events.
type Feed = BTreeMap<u64, (String, u64, Vec<u8>)>;

fn feed(store: &Store) -> Feed {
    store
        .read_all(0, usize::MAX)
        .unwrap()
        .into_iter()
        // `$all` still shows a hard-deleted stream's events until a
        // compaction removes them: only the others are compared.
        .filter(|e| e.stream != "gone")
        .map(|e| (e.position, (e.stream, e.version, e.data.to_vec())))
        .collect()
}

fn fill(store: &Store) {
    for n in 0..150u64 {
        for stream in ["kept", "gone"] {
            let data = format!("DATA<{stream}#{n}>{}", "x".repeat(40)).into_bytes();
            store
                .append(
                    stream,
                    ExpectedVersion::Any,
                    vec![EventData::new("E", data)],
                )
                .unwrap()
                .unwrap();
        }
    }
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    for n in 0..20u64 {
        store
            .append(
                "late",
                ExpectedVersion::Any,
                vec![EventData::new("E", vec![n as u8; 40])],
            )
            .unwrap()
            .unwrap();
    }
}

/// The temporary files in `dir` whose names end with `suffix`.
fn temporaries_ending(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// A compaction's own temporary files (`*.compact.tmp`). While the store
/// is open, the background index writer may hold a `*.tmp` of its own
/// for a moment: only a closed store must have none at all.
fn compaction_temporaries(dir: &std::path::Path) -> Vec<String> {
    temporaries_ending(dir, ".compact.tmp")
}

/// Every temporary file; call with the store closed.
fn temporaries(dir: &std::path::Path) -> Vec<String> {
    temporaries_ending(dir, ".tmp")
}

#[test]
fn a_compaction_cancelled_midway_switches_what_it_finished_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store);
    let kept: Feed = feed(&store);
    let cancel = Arc::new(AtomicBool::new(false));
    let options = CompactionOptions {
        cancel: Some(Arc::clone(&cancel)),
        ..CompactionOptions::default()
    };
    // A sealed segment holds at most 8 KiB: past that, the second one is
    // being written.
    let report = store
        .compact_with_progress(&options, &mut |done, _| {
            if done > 8 << 10 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert!(report.cancelled, "{report:?}");
    assert!(report.segments_rewritten >= 1, "{report:?}");
    let sealed = store.stats().segments - 1;
    assert!(report.segments_examined < sealed, "{report:?} of {sealed}");
    assert!(report.removed.hard_delete > 0, "{report:?}");
    assert_eq!(compaction_temporaries(dir.path()), Vec::<String>::new());
    store.verify().unwrap();
    assert_eq!(feed(&store), kept);

    let rest = store.compact(&CompactionOptions::default()).unwrap();
    assert!(!rest.cancelled);
    assert!(rest.removed.hard_delete > 0, "{rest:?}");
    store.verify().unwrap();
    assert_eq!(feed(&store), kept);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), self::options()).unwrap();
    store.verify().unwrap();
    assert_eq!(feed(&store), kept);
    store.close().unwrap();
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_compaction_cancelled_before_it_starts_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store);
    let kept = feed(&store);
    let options = CompactionOptions {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..CompactionOptions::default()
    };
    let report = store.compact(&options).unwrap();
    assert!(report.cancelled, "{report:?}");
    assert_eq!(report.segments_rewritten, 0, "{report:?}");
    assert_eq!(report.removed.total(), 0, "{report:?}");
    assert_eq!(compaction_temporaries(dir.path()), Vec::<String>::new());
    store.verify().unwrap();
    assert_eq!(feed(&store), kept);
    store.close().unwrap();
    assert_eq!(temporaries(dir.path()), Vec::<String>::new());
}
