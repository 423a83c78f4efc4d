//! Property: a log of many segments holds a bounded number of files and
//! mappings open, whatever is read: open keeps only the active segment's
//! file, a sealed segment is mapped by its first read with its file closed
//! again, at most `open_segments_max` sealed segments stay mapped, and a
//! `Bytes` a read handed out stays valid after its segment was let go.
//! Method: real files (on /dev/shm when there is one: rolls cost no fsync
//! there), 4 KiB segments, the process's open descriptors counted in
//! `/proc/self/fd` and its mappings of the log in `/proc/self/maps`. One
//! test in this binary, so no other test's files are counted.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{LogOptions, Record};
use common::{event, read_all, Owned};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn mappings_of(dir: &std::path::Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_str().unwrap();
    maps.lines().filter(|line| line.contains(dir)).count()
}

#[test]
fn a_log_of_many_segments_holds_a_bounded_number_of_files_and_mappings_open() {
    const SEGMENTS_OPEN_MAX: usize = 8;
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let options = LogOptions {
        segment_bytes: 4096,
        zero_ahead: Some(false),
    };
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let events: Vec<Owned> = (0..900).map(|n| event(n, 1000)).collect();
    {
        let (mut writer, _, _) =
            annals_segment::open_bounded(Arc::clone(&storage), options, SEGMENTS_OPEN_MAX).unwrap();
        for e in &events {
            writer.append(&[&[e.record()] as &[Record<'_>]]).unwrap();
            writer.sync().unwrap();
        }
    }
    let base = open_descriptors();
    let (mut writer, reader, _) =
        annals_segment::open_bounded(Arc::clone(&storage), options, SEGMENTS_OPEN_MAX).unwrap();
    let segments = reader.segments().len();
    assert!(segments >= 250, "{segments} segments");
    let after_open = open_descriptors();
    assert!(
        after_open <= base + 2,
        "open of {segments} segments holds {} files",
        after_open - base
    );
    assert_eq!(reader.open_segments(), 0, "open maps no sealed segment");

    // A `Bytes` of the first event, kept while every other segment is read.
    let mut kept = None;
    reader
        .with_event_shared(0, |record, owner| {
            kept = Some(annals_segment::share(owner, record.data))
        })
        .unwrap();
    assert_eq!(read_all(&reader), events);
    let mut positions: Vec<u64> = (0..events.len() as u64).rev().collect();
    positions.retain(|p| p % 7 != 0);
    let mut seen = 0;
    reader
        .with_events_shared(&positions, |position, record, _| {
            assert_eq!(Owned::from_record(record), events[position as usize]);
            seen += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, positions.len());
    reader.verify().unwrap();
    assert!(reader.open_segments() <= SEGMENTS_OPEN_MAX);
    assert!(
        open_descriptors() <= base + 2,
        "reads hold {} files",
        open_descriptors() - base
    );
    // Each open sealed segment maps its file and its frame index; the
    // active one its file; the kept `Bytes` one more at most.
    let mapped = mappings_of(dir.path());
    assert!(
        mapped <= 2 * SEGMENTS_OPEN_MAX + 2,
        "{mapped} mappings of the log"
    );
    assert_eq!(kept.as_deref(), Some(&events[0].data[..]));

    // Appending and rolling keep within the bound too.
    for n in 900..1200 {
        writer
            .append(&[&[event(n, 1000).record()] as &[Record<'_>]])
            .unwrap();
        writer.sync().unwrap();
    }
    assert!(reader.open_segments() <= SEGMENTS_OPEN_MAX);
    assert!(open_descriptors() <= base + 2);
    assert_eq!(read_all(&reader).len(), 1200);
    assert_eq!(kept.as_deref(), Some(&events[0].data[..]));
}
