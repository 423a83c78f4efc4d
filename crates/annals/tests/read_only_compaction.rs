//! Property: a read-only open stays correct across the owner's
//! compactions (issue 21): after the owner rewrote sealed segments (gap
//! records in place of removed events), the read-only view reads `$all`,
//! streams and categories, verifies, refreshes and follows a subscription
//! without an error, and sees exactly what the owner sees (up to its own
//! end before a refresh). Method: two `Store` handles on one directory in
//! one process — the owner (`Store::open`) and a reader
//! (`Store::open_read_only`) — small segments so that many are sealed, and
//! a bound of two resident segments so that the reader loads segments
//! afresh (by name) after the owner switched them.

use std::ops::ControlFlow;

use annals::{
    CompactionOptions, Direction, EventData, ExpectedVersion, Options, Store, SubscriptionItem,
    SubscriptionOptions,
};

fn options() -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
        .open_segments_max(2)
}

/// What a reader sees of an event: enough to tell a gap, a stale copy or a
/// wrong event apart.
type Seen = (u64, String, u64, String, Vec<u8>);

fn seen(e: &annals::RecordedEvent) -> Seen {
    (
        e.position,
        e.stream.clone(),
        e.version,
        e.event_type.clone(),
        e.data.to_vec(),
    )
}

fn payload(stream: &str, n: u64) -> Vec<u8> {
    format!("{stream}:{n}:{}", "x".repeat(60)).into_bytes()
}

fn append(store: &Store, stream: &str, n: u64) {
    store
        .append(
            stream,
            ExpectedVersion::Any,
            vec![EventData::new("E", payload(stream, n))],
        )
        .unwrap()
        .unwrap();
}

const STREAMS: [&str; 5] = ["order-1", "order-2", "gone-1", "trim-1", "cap-1"];

/// Fills the store: every stream of [`STREAMS`] gets `rounds` events.
fn fill(store: &Store, from: u64, rounds: u64) {
    for n in from..from + rounds {
        for stream in STREAMS {
            if stream != "gone-1" || from == 0 {
                append(store, stream, n);
            }
        }
    }
}

/// Compares every kind of read of `reader` with the owner's, up to the
/// reader's end. `refreshed`: the reader refreshed after the owner's last
/// compaction, and its feed equals the owner's; before that it may still
/// show events the owner removed since (they were visible at its last
/// refresh), but nothing else differs.
fn same_view(owner: &Store, reader: &Store, refreshed: bool) {
    let end = reader.position_end();
    let all_owner: Vec<Seen> = owner
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| e.position < end)
        .map(seen)
        .collect();
    let all_reader: Vec<Seen> = reader
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .map(seen)
        .collect();
    if refreshed {
        assert_eq!(all_reader.len(), all_owner.len(), "read_all differs");
        assert!(all_reader == all_owner, "read_all differs");
    } else {
        let kept: std::collections::BTreeSet<&Seen> = all_reader.iter().collect();
        let lost = all_owner.iter().filter(|e| !kept.contains(e)).count();
        assert_eq!(lost, 0, "the reader lacks events of the owner's feed");
    }
    let all_owner: Vec<Seen> = if refreshed { all_owner } else { all_reader };
    let mut visited = Vec::new();
    reader
        .read_all_with(0, usize::MAX, |e| {
            visited.push(e.position);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        visited,
        all_owner.iter().map(|s| s.0).collect::<Vec<_>>(),
        "read_all_with differs"
    );
    for stream in STREAMS {
        // Max-count keeps the newest of the stream as each view sees it:
        // comparable only at the same end.
        if stream == "cap-1" && end != owner.position_end() {
            continue;
        }
        assert_eq!(
            stream_view(reader, stream, end),
            stream_view(owner, stream, end),
            "stream {stream} differs"
        );
    }
    let want: Vec<Seen> = owner
        .read_category("order", 0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| e.position < end)
        .map(seen)
        .collect();
    let got: Vec<Seen> = reader
        .read_category("order", 0, usize::MAX)
        .unwrap()
        .iter()
        .map(seen)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "category differs");
    reader.verify().unwrap();
}

/// A stream read up to `end`, or its error (a deleted stream's).
fn stream_view(store: &Store, stream: &str, end: u64) -> Result<Vec<Seen>, String> {
    store
        .read_stream(stream, 0, Direction::Forward, usize::MAX)
        .map(|events| {
            events
                .iter()
                .filter(|e| e.position < end)
                .map(seen)
                .collect()
        })
        .map_err(|e| e.to_string())
}

#[test]
fn a_read_only_view_reads_verifies_and_refreshes_across_the_owners_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), options()).unwrap();
    fill(&owner, 0, 150);
    owner
        .delete_stream("gone-1", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    owner.set_truncate_before("trim-1", 120).unwrap();
    owner.set_max_count("cap-1", 5).unwrap();
    fill(&owner, 150, 20);
    let reader = Store::open_read_only_with(dir.path(), options()).unwrap();
    // Some segments resident in the reader (their old mapping), the others
    // not: both kinds meet the switch.
    same_view(&owner, &reader, true);
    let mut subscription = reader.subscribe(SubscriptionOptions::all());
    let report = owner.compact(&CompactionOptions::default()).unwrap();
    assert!(report.removed.total() > 0, "the compaction removed nothing");
    fill(&owner, 170, 20);
    // Before the reader refreshes: its prefix, partly through the new
    // files (segments it loads now), partly through the old (resident).
    same_view(&owner, &reader, false);
    let end = reader.refresh().unwrap();
    assert_eq!(end, owner.position_end());
    same_view(&owner, &reader, true);
    // A second compaction (max-count moves on), then a refresh.
    let report = owner.compact(&CompactionOptions::default()).unwrap();
    assert!(
        report.removed.total() > 0,
        "the second compaction removed nothing"
    );
    same_view(&owner, &reader, false);
    reader.refresh().unwrap();
    same_view(&owner, &reader, true);
    // The live subscription delivers exactly the owner's feed.
    let want: Vec<Seen> = owner
        .read_all(0, usize::MAX)
        .unwrap()
        .iter()
        .filter(|e| !e.stream.starts_with('$'))
        .map(seen)
        .collect();
    let mut got = Vec::new();
    loop {
        match subscription.next().unwrap().unwrap() {
            SubscriptionItem::Event(e) if !e.stream.starts_with('$') => got.push(seen(&e)),
            SubscriptionItem::CaughtUp { .. } => break,
            _ => {}
        }
    }
    assert_eq!(got, want, "the subscription differs");
    // A fresh read-only open agrees too.
    let fresh = Store::open_read_only_with(dir.path(), options()).unwrap();
    same_view(&owner, &fresh, true);
}

/// A store of sealed segments, closed, and a read-only open of it that
/// has read nothing yet (no segment resident).
fn sealed_store(dir: &std::path::Path) -> Store {
    let owner = Store::open_with(dir, options()).unwrap();
    fill(&owner, 0, 60);
    owner.close().unwrap();
    Store::open_read_only_with(dir, options()).unwrap()
}

#[test]
fn a_frame_index_missing_for_a_moment_during_a_switch_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let reader = sealed_store(dir.path());
    // The owner's switch removes the old frame index before it renames
    // the new segment and frame index in: a reader loading the segment
    // then finds none for a few milliseconds.
    let fidx = dir.path().join(format!("{:020}.fidx", 0));
    let aside = dir.path().join("aside");
    std::fs::rename(&fidx, &aside).unwrap();
    let back = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(30));
        std::fs::rename(&aside, &fidx).unwrap();
    });
    let events = reader.read_all(0, usize::MAX).unwrap();
    back.join().unwrap();
    assert_eq!(events.len() as u64, reader.position_end());
    reader.verify().unwrap();
}

#[test]
fn a_frame_index_gone_for_good_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let reader = sealed_store(dir.path());
    std::fs::remove_file(dir.path().join(format!("{:020}.fidx", 0))).unwrap();
    assert!(reader.read_all(0, usize::MAX).is_err());
}

#[test]
fn a_damaged_event_in_a_sealed_segment_is_still_reported_by_a_read_only_open() {
    let dir = tempfile::tempdir().unwrap();
    let reader = sealed_store(dir.path());
    // A byte of an event's data in the middle of the first segment (the
    // payload is 'x's; no switch explains a change there).
    let segment = dir.path().join(format!("{:020}.seg", 0));
    let bytes = std::fs::read(&segment).unwrap();
    let at = bytes
        .windows(8)
        .enumerate()
        .skip(bytes.len() / 3)
        .find(|(_, w)| w == b"xxxxxxxx")
        .map(|(i, _)| i)
        .unwrap();
    drop(bytes);
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(b"y", at as u64).unwrap();
    drop(file);
    let error = reader.read_all(0, usize::MAX).unwrap_err();
    assert!(format!("{error:?}").contains("Corrupt"), "{error:?}");
    assert!(reader.verify().is_err());
}
