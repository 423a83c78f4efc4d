//! Property: thousands of frames over many small segments survive reopen,
//! and reading from any position returns the right event. Also: simulated
//! crashes (MemStorage images that drop, tear or garble unsynced bytes)
//! always recover a prefix that holds every synced event. Method: real files
//! and the crash-simulating backend, seeded.

mod common;

use std::ops::ControlFlow;
use std::sync::Arc;

use annals_segment::storage::{CrashMode, MemStorage, Storage};
use annals_segment::{LogOptions, Record};
use common::*;

#[test]
fn thousands_of_frames_over_many_segments_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _) = open_fs(dir.path(), 16 << 10).unwrap();
    let mut events = Vec::new();
    for k in 0..3000u64 {
        let batch: Vec<Owned> = (0..1 + k % 4)
            .map(|i| event(events.len() as u64 + i, (k % 97) as usize))
            .collect();
        append_sync(&mut writer, &batch);
        events.extend(batch);
    }
    drop(writer);
    let (_, reader) = open_fs(dir.path(), 16 << 10).unwrap();
    assert!(
        reader.segments().len() > 50,
        "{} segments",
        reader.segments().len()
    );
    assert_eq!(reader.verify().unwrap(), events.len() as u64);
    assert_eq!(read_all(&reader), events);
    for position in (0..events.len() as u64).step_by(37) {
        let got = reader
            .with_event(position, Owned::from_record)
            .unwrap()
            .unwrap();
        assert_eq!(got, events[position as usize]);
        let mut first = None;
        reader
            .scan(position, |p, record| {
                first = Some((p, Owned::from_record(record)));
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(first, Some((position, events[position as usize].clone())));
    }
    assert!(reader
        .with_event(events.len() as u64, |_| ())
        .unwrap()
        .is_none());

    // Many positions in one call, spread over every segment, in any order
    // (ascending, descending, repeated): the events at those positions.
    let n = events.len() as u64;
    let ascending: Vec<u64> = (0..n).step_by(7).collect();
    let descending: Vec<u64> = ascending.iter().rev().copied().collect();
    let mixed: Vec<u64> = (0..500u64).map(|k| (k * 7919) % n).collect();
    // Every position, both ways: consecutive events share frames (1–4
    // events each here), which a read locates once.
    let every: Vec<u64> = (0..n).collect();
    let every_back: Vec<u64> = (0..n).rev().collect();
    for positions in [&ascending, &descending, &mixed, &every, &every_back] {
        let mut got = Vec::new();
        reader
            .with_events_shared(positions, |p, record, _| {
                got.push((p, Owned::from_record(record)));
                ControlFlow::Continue(())
            })
            .unwrap();
        let expected: Vec<(u64, Owned)> = positions
            .iter()
            .map(|p| (*p, events[*p as usize].clone()))
            .collect();
        assert_eq!(got, expected);
    }
    // A reader of one stream: that stream's records, `None` for the rest,
    // located through the frame index or at the offsets a scan reported.
    let stream = events[mixed[0] as usize].stream.clone();
    let mut located = Vec::new();
    reader
        .scan_located(0, |p, offset, _, _| {
            assert_eq!(p, located.len() as u64);
            located.push(offset);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(located.len() as u64, n);
    let offsets: Vec<Option<u32>> = mixed.iter().map(|p| Some(located[*p as usize])).collect();
    let some_known: Vec<Option<u32>> = offsets
        .iter()
        .enumerate()
        .map(|(i, o)| o.filter(|_| i % 3 == 0))
        .collect();
    let expected: Vec<(u64, Option<Owned>)> = mixed
        .iter()
        .map(|p| {
            let event = &events[*p as usize];
            (*p, (event.stream == stream).then(|| event.clone()))
        })
        .collect();
    for offsets in [&[][..], &offsets, &some_known] {
        let mut got = Vec::new();
        reader
            .with_stream_events(&mixed, offsets, &stream, |p, record, _| {
                got.push((p, record.map(Owned::from_record)));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(got, expected);
    }
    assert!(expected.iter().any(|(_, r)| r.is_none()));
    assert!(expected.iter().any(|(_, r)| r.is_some()));
    // A wrong offset finds bytes whose checksum (bound to the position)
    // cannot match: an error, never another event.
    for wrong in [0, 8, located[0] + 8, located[1], u32::MAX] {
        let mut offsets = offsets.clone();
        offsets[5] = Some(wrong);
        let result = reader.with_stream_events(&mixed, &offsets, &stream, |_, _, _| {
            ControlFlow::Continue(())
        });
        assert!(
            matches!(result, Err(annals_segment::Error::Corrupt { .. })),
            "{wrong}: {result:?}"
        );
    }
    assert!(reader
        .with_stream_events(&mixed, &offsets[1..], &stream, |_, _, _| {
            ControlFlow::Continue(())
        })
        .is_err());
    // `Break` stops it; a position past the end is an error.
    let mut visited = 0;
    reader
        .with_events_shared(&ascending, |_, _, _| {
            visited += 1;
            if visited == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(visited, 3);
    assert!(reader
        .with_events_shared(&[0, n], |_, _, _| ControlFlow::Continue(()))
        .is_err());
}

#[test]
fn one_group_of_many_batches_is_one_frame_with_one_write() {
    let storage = Arc::new(MemStorage::new());
    let (mut writer, reader, _) = annals_segment::open(
        storage.clone(),
        LogOptions {
            segment_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let batches: Vec<Vec<Owned>> = (0..10u64).map(|k| vec![event(k, 50)]).collect();
    let records: Vec<Vec<Record<'_>>> = batches
        .iter()
        .map(|b| b.iter().map(Owned::record).collect())
        .collect();
    let refs: Vec<&[Record<'_>]> = records.iter().map(Vec::as_slice).collect();
    let firsts = writer.append(&refs).unwrap();
    assert_eq!(firsts, (0..10).collect::<Vec<u64>>());
    assert_eq!(reader.position_end(), 0, "nothing is visible before sync");
    writer.sync().unwrap();
    assert_eq!(reader.position_end(), 10);
    assert_eq!(reader.segments()[0].frame_count, 1);
}

#[test]
fn simulated_crashes_recover_a_prefix_holding_every_synced_event() {
    let mut recovered_total = 0u64;
    for seed in 0..150u64 {
        let storage = MemStorage::new();
        let (mut writer, _, _) = annals_segment::open(
            Arc::new(storage.handle()),
            LogOptions {
                segment_bytes: 8192,
                ..Default::default()
            },
        )
        .unwrap();
        let mut events = Vec::new();
        let mut synced = 0usize;
        for k in 0..40u64 {
            let batch: Vec<Owned> = (0..1 + (k + seed) % 3)
                .map(|i| event(events.len() as u64 + i, ((k * 31 + seed) % 300) as usize))
                .collect();
            let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
            writer.append(&[&records]).unwrap();
            events.extend(batch);
            if (k + seed) % 3 == 0 {
                writer.sync().unwrap();
                synced = events.len();
            }
        }
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = storage.crash_image(seed, mode);
        let (mut writer, reader, _) = annals_segment::open(
            Arc::new(image.handle()),
            LogOptions {
                segment_bytes: 8192,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let got = read_all(&reader);
        assert!(
            got.len() >= synced,
            "seed {seed}: lost synced events ({} < {synced})",
            got.len()
        );
        assert_eq!(
            got[..],
            events[..got.len()],
            "seed {seed}: recovered log is not a prefix"
        );
        recovered_total += got.len() as u64;
        // The recovered log takes new appends and a second crash keeps them.
        let extra = vec![event(9999, 40)];
        append_sync(&mut writer, &extra);
        drop((writer, reader));
        let again = image.crash_image(seed + 1, mode);
        let (_, reader, _) = annals_segment::open(
            Arc::new(again),
            LogOptions {
                segment_bytes: 8192,
                ..Default::default()
            },
        )
        .unwrap();
        let after = read_all(&reader);
        assert_eq!(after[..got.len()], got[..]);
        assert_eq!(after[got.len()..], extra[..]);
    }
    assert!(recovered_total > 0);
}

#[test]
fn a_second_handle_cannot_take_the_lock() {
    let storage = MemStorage::new();
    let first = storage.handle();
    first.try_lock().unwrap();
    assert_eq!(
        storage.handle().try_lock().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    drop(first);
    storage.handle().try_lock().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let a = annals_segment::storage::FsStorage::open(dir.path()).unwrap();
    a.try_lock().unwrap();
    let b = annals_segment::storage::FsStorage::open(dir.path()).unwrap();
    assert_eq!(
        b.try_lock().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

/// Regression: a snapshot mapping (memory backend) taken before later frames
/// were written must not be used to read them. Segments are preallocated, so
/// the stale snapshot is full length and was wrongly trusted; reads failed
/// with `Corrupt` at the new frame's offset.
#[test]
fn regression_snapshot_mapping_sees_frames_written_after_it() {
    let storage = Arc::new(MemStorage::new());
    let (mut writer, reader, _) = annals_segment::open(
        storage,
        LogOptions {
            segment_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = Vec::new();
    for k in 0..20u64 {
        let batch = vec![event(k, 30)];
        append_sync(&mut writer, &batch);
        events.extend(batch);
        // Read after every append: each read maps what was there then.
        let got = reader.with_event(k, Owned::from_record).unwrap().unwrap();
        assert_eq!(got, events[k as usize]);
        assert_eq!(read_all(&reader), events);
    }
    assert_eq!(reader.verify().unwrap(), 20);
}

/// A clean close lets the next open skip reading the preallocated tail;
/// the marker is consumed by that open, so a crash afterwards gets the
/// full check again; and a log that was not closed cleanly never trusts it.
#[test]
fn a_clean_close_is_trusted_once_and_a_crash_never() {
    let storage = MemStorage::new();
    let options = LogOptions {
        segment_bytes: 64 << 10,
        ..Default::default()
    };
    let (mut writer, _, report) =
        annals_segment::open(Arc::new(storage.handle()), options).unwrap();
    assert!(!report.clean_close);
    let events: Vec<Owned> = (0..30).map(|k| event(k, 40)).collect();
    for e in &events {
        append_sync(&mut writer, std::slice::from_ref(e));
    }
    writer.close_clean().unwrap();
    drop(writer);
    assert!(storage.read_file(annals_segment::CLEAN_FILE_NAME).is_some());

    let (mut writer, reader, report) =
        annals_segment::open(Arc::new(storage.handle()), options).unwrap();
    assert!(report.clean_close);
    assert!(
        storage.read_file(annals_segment::CLEAN_FILE_NAME).is_none(),
        "the marker outlived the open"
    );
    assert_eq!(read_all(&reader), events);
    // Written after the clean open, then a crash: no marker, full recovery.
    let more = vec![event(100, 40)];
    append_sync(&mut writer, &more);
    let image = storage.crash_image(3, CrashMode::TearUnsynced);
    drop((writer, reader));
    let (_, reader, report) = annals_segment::open(Arc::new(image), options).unwrap();
    assert!(!report.clean_close);
    assert_eq!(read_all(&reader).len(), 31);
}

/// Regression: sealing a segment took its frame index out while the frame
/// index file was written, so a concurrent read of a position in that
/// segment found no frame and reported `Corrupt`. Readers race many rolls.
#[test]
fn regression_reads_during_a_roll_never_see_a_missing_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open_fs(dir.path(), 4096).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (reader, stop) = (reader.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut k = t as u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let end = reader.position_end();
                    if end == 0 {
                        continue;
                    }
                    // Mostly the newest positions: the segment being sealed.
                    k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let position = end - 1 - (k >> 33) % end.min(8);
                    let got = reader.with_event(position, Owned::from_record);
                    assert!(
                        matches!(got, Ok(Some(_))),
                        "read of {position} failed: {got:?}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for k in 0..3000u64 {
        append_sync(&mut writer, &[event(k, 200)]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(
        reader.segments().len() > 100 && reads > 1000,
        "{} segments, {reads} reads",
        reader.segments().len()
    );
}

/// A clean close writes the active segment's frame index; the next open
/// takes the frames from it and reads no frame (shown by damage it does not
/// see at open but a read does). If the index is damaged or missing, open
/// scans the segment as before.
#[test]
fn a_clean_open_reads_no_frame_and_falls_back_to_a_scan_without_a_good_index() {
    let storage = MemStorage::new();
    let options = LogOptions {
        segment_bytes: 64 << 10,
        ..Default::default()
    };
    let (mut writer, _, _) = annals_segment::open(Arc::new(storage.handle()), options).unwrap();
    let events: Vec<Owned> = (0..30).map(|k| event(k, 40)).collect();
    for e in &events {
        append_sync(&mut writer, std::slice::from_ref(e));
    }
    writer.close_clean().unwrap();
    drop(writer);
    let segment = annals_segment::segment_file_name(0);
    let index = annals_segment::frame_index_file_name(0);
    assert!(
        storage.read_file(&index).is_some(),
        "close wrote the active frame index"
    );
    let damaged = |also_index: bool| {
        let image = storage.crash_image(0, CrashMode::DropUnsynced);
        let mut bytes = image.read_file(&segment).unwrap();
        bytes[64 + 48 + 4 + 56 + 5] ^= 0x04; // inside the first event
        image.write_file(&segment, &bytes);
        if also_index {
            let mut bytes = image.read_file(&index).unwrap();
            bytes[70] ^= 0x01;
            image.write_file(&index, &bytes);
        }
        image
    };

    let (_, reader, report) = annals_segment::open(Arc::new(damaged(false)), options).unwrap();
    assert!(report.clean_close);
    assert!(matches!(
        reader.with_event(0, Owned::from_record),
        Err(annals_segment::Error::Corrupt { .. })
    ));
    assert_eq!(
        reader.with_event(29, Owned::from_record).unwrap(),
        Some(events[29].clone())
    );

    // A damaged index: the scan runs and finds the damaged frame.
    let opened = annals_segment::open(Arc::new(damaged(true)), options);
    assert!(
        matches!(opened, Err(annals_segment::Error::Corrupt { .. })),
        "{:?}",
        opened.map(|_| ())
    );

    // No index: the scan runs, checks the marker, and all is there.
    let image = storage.crash_image(0, CrashMode::DropUnsynced);
    image.remove(&index).unwrap();
    let (_, reader, report) = annals_segment::open(Arc::new(image), options).unwrap();
    assert!(report.clean_close);
    assert_eq!(read_all(&reader), events);
}
