//! Property: recovery compares the log's end with what vouches for it —
//! evidence the caller passes (index runs), the clean-close marker, frame
//! indexes — and refuses with `Missing` before cutting anything, leaving
//! every file (the marker included) in place; a marker naming the last
//! segment is the last word, so a caller's claim past it is not evidence.
//! Method: the memory backend, crash images, bytes changed by hand.

mod common;

use std::sync::Arc;

use annals_segment::storage::{CrashMode, MemStorage, Storage};
use annals_segment::{Error, Evidence, EvidenceKind, LogOptions, CLEAN_FILE_NAME};
use common::*;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 64 << 10,
        ..Default::default()
    }
}

fn run(end: u64) -> Evidence {
    Evidence {
        kind: EvidenceKind::IndexRun,
        file: format!("index-{:016x}-{end:016x}.run", 0),
        position_end: end,
    }
}

fn files(storage: &MemStorage) -> Vec<(String, Vec<u8>)> {
    let mut names = storage.list().unwrap();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = storage.read_file(&n).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn a_caller_claim_past_the_end_is_refused_and_nothing_changes() {
    let storage = MemStorage::new();
    let (mut writer, _, _) = annals_segment::open(Arc::new(storage.handle()), options()).unwrap();
    for k in 0..10 {
        append_sync(&mut writer, &[event(k, 40)]);
    }
    let image = storage.crash_image(0, CrashMode::DropUnsynced);
    drop(writer);
    let before = files(&image);
    let opened =
        annals_segment::open_with_evidence(Arc::new(image.handle()), options(), &[run(12)]);
    match opened {
        Err(Error::Missing {
            position_first: 10,
            position_end: 12,
            ref evidence,
            ..
        }) => assert_eq!(evidence, &vec![run(12)]),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(files(&image), before);
    // A claim the log meets is no reason to refuse.
    let (_, reader, _) =
        annals_segment::open_with_evidence(Arc::new(image.handle()), options(), &[run(10)])
            .unwrap();
    assert_eq!(reader.position_end(), 10);
}

#[test]
fn a_marker_naming_the_last_segment_outranks_a_claim_past_it_and_stays_while_refusing() {
    let storage = MemStorage::new();
    let (mut writer, _, _) = annals_segment::open(Arc::new(storage.handle()), options()).unwrap();
    for k in 0..10 {
        append_sync(&mut writer, &[event(k, 40)]);
    }
    writer.close_clean().unwrap();
    drop(writer);
    // Another log's run reaching past this one's marker is not evidence.
    let image = storage.crash_image(0, CrashMode::DropUnsynced);
    let (_, reader, report) =
        annals_segment::open_with_evidence(Arc::new(image), options(), &[run(50)]).unwrap();
    assert!(report.clean_close);
    assert_eq!(reader.position_end(), 10);

    // The marker vouches for the last frame: damaged, it is refused, and
    // the marker is still there for the next look.
    let image = storage.crash_image(0, CrashMode::DropUnsynced);
    image
        .remove(&annals_segment::frame_index_file_name(0))
        .unwrap();
    let segment = annals_segment::segment_file_name(0);
    let mut bytes = image.read_file(&segment).unwrap();
    let last_nonzero = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[last_nonzero - 10] ^= 0x01;
    image.write_file(&segment, &bytes);
    let opened = annals_segment::open(Arc::new(image.handle()), options());
    match opened {
        Err(Error::Missing {
            ref file,
            position_first: 9,
            position_end: 10,
            ref evidence,
            ..
        }) => {
            assert_eq!(file, &segment);
            assert_eq!(evidence[0].kind, EvidenceKind::CleanMarker);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(image.read_file(CLEAN_FILE_NAME).is_some(), "marker removed");
}
