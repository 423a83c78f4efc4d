//! Property: an incremental backup into a destination that holds a copy of
//! a sealed segment a compaction has since rewritten to the very same
//! length (it erased only events with empty data and metadata: only their
//! flags and checksums changed) replaces that copy: the backup then reads
//! exactly as the source, the erased events gone.
//! Method: real directories, backed up once, compacted, backed up again
//! into the same destination, with and without hard links.

use annals::{BackupOptions, CompactionOptions, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .index_buffer_events(1000)
}

type Feed = Vec<(u64, String, u64, Vec<u8>)>;

fn feed(store: &Store) -> Feed {
    store
        .read_all(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.stream, e.version, e.data.to_vec()))
        .collect()
}

fn same_length_rewrite_is_backed_up(link: bool) {
    let source = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("copy");
    let store = Store::open_with(source.path(), options()).unwrap();
    // The erased events lie far from both ends of the first segment (a
    // backup compares its first and last 4 KiB anyway).
    for n in 0..600u64 {
        let (stream, event) = if (100..120).contains(&n) {
            // Empty data and metadata: its gap record is exactly as long.
            ("gone", EventData::new("Empty", Vec::new()))
        } else {
            let data = format!("keep-{n}-{}", "q".repeat(60));
            ("keep", EventData::new("Kept", data))
        };
        store
            .append(stream, ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
    }
    store
        .delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    let mut backup = BackupOptions::default();
    backup.link = link;
    store.backup_with(&dest, &backup, &mut |_, _| {}).unwrap();

    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.removed.hard_delete > 0, "{report:?}");
    assert_eq!(report.bytes_after, report.bytes_before, "{report:?}");
    assert!(report.segments_rewritten > 0, "{report:?}");
    let compacted = feed(&store);
    assert!(compacted.iter().any(|e| e.1 == "keep"));

    store.backup_with(&dest, &backup, &mut |_, _| {}).unwrap();
    store.close().unwrap();
    let copy = Store::open_with(&dest, options()).unwrap();
    copy.verify().unwrap();
    let read = feed(&copy);
    let stale: Vec<u64> = read
        .iter()
        .filter(|e| !compacted.contains(e))
        .map(|e| e.0)
        .collect();
    assert!(
        stale.is_empty(),
        "link {link}: the copy still reads erased positions {stale:?}"
    );
    assert_eq!(read, compacted, "link: {link}");
    copy.close().unwrap();
}

#[test]
fn a_segment_compacted_to_the_same_length_is_copied_again() {
    same_length_rewrite_is_backed_up(false);
}

#[test]
fn a_linked_segment_compacted_to_the_same_length_is_replaced() {
    same_length_rewrite_is_backed_up(true);
}
