//! Property: a scan reads a segment's frame index a chunk of entries at a
//! time (one lock per chunk, `reader.rs`), and still visits every event
//! exactly once, in order, from any start — on both sides of every chunk
//! boundary, in the active segment and after reopen (a sealed, mapped
//! frame index) — and while the writer keeps appending frames to the index
//! it reads. Method: segments of many more frames than a chunk (256),
//! scans from the frames on both sides of every boundary, and a reader thread
//! scanning from 0 while a writer appends and publishes frame by frame.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals_segment::{LogReader, Record};
use common::*;

/// Frames per scan chunk in `reader.rs` (what the boundaries are built on).
const CHUNK: u64 = 256;

/// The positions a scan from `from` visits, and checks each event's bytes.
fn scan_from(reader: &LogReader, from: u64, events: &[Owned]) -> Vec<u64> {
    let mut seen = Vec::new();
    reader
        .scan(from, |position, record: Record<'_>| {
            assert_eq!(
                Owned::from_record(record),
                events[position as usize],
                "event at {position}"
            );
            seen.push(position);
            ControlFlow::Continue(())
        })
        .unwrap();
    seen
}

/// Where a scan may start: the first and last positions, and the first
/// positions of the frames on both sides of every chunk boundary of every
/// segment's frame index (`frame_firsts`: each frame's first position, in
/// order, a segment's frames counted from its own first).
fn starts(frame_firsts: &[Vec<u64>], total: u64) -> Vec<u64> {
    let mut starts = vec![0, 1, total - 1];
    for firsts in frame_firsts {
        for boundary in (CHUNK as usize..firsts.len()).step_by(CHUNK as usize) {
            for f in boundary - 1..=boundary + 1 {
                if let Some(&first) = firsts.get(f) {
                    // The frame's first event, and one inside it.
                    starts.extend([first, first + 1]);
                }
            }
        }
    }
    starts.retain(|p| *p < total);
    starts
}

/// Each segment's frames' first positions.
fn frame_firsts(reader: &LogReader, firsts: &[u64]) -> Vec<Vec<u64>> {
    let segments = reader.segments();
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let end = segments.get(i + 1).map_or(u64::MAX, |n| n.position_first);
            firsts
                .iter()
                .copied()
                .filter(|p| (s.position_first..end).contains(p))
                .collect()
        })
        .collect()
}

#[test]
fn scans_cross_frame_index_chunks_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 1 << 20;
    let (mut writer, reader) = open_fs(dir.path(), segment_bytes).unwrap();
    let (mut events, mut firsts) = (Vec::new(), Vec::new());
    // Single-event frames (one frame index entry per position), then
    // two-event frames, ~740 bytes an event: the first segment rolls
    // after more than four chunks of frames.
    for k in 0..1500u64 {
        let n = events.len() as u64;
        let batch: Vec<Owned> = (0..1 + u64::from(k >= 700))
            .map(|i| event(n + i, 600))
            .collect();
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        firsts.push(writer.append(&[&records]).unwrap()[0]);
        events.extend(batch);
    }
    writer.sync().unwrap();
    let segments = reader.segments();
    assert!(segments.len() >= 2, "{} segments", segments.len());
    assert!(
        segments[0].frame_count > 4 * CHUNK as usize,
        "{} frames in the first segment",
        segments[0].frame_count
    );
    let total = events.len() as u64;
    let check = |reader: &LogReader, total: u64, events: &[Owned], firsts: &[u64]| {
        for from in starts(&frame_firsts(reader, firsts), total) {
            assert_eq!(
                scan_from(reader, from, events),
                (from..total).collect::<Vec<_>>(),
                "scan from {from}"
            );
        }
    };
    check(&reader, total, &events, &firsts);
    // Stopped by the visitor right after a boundary.
    let mut seen = Vec::new();
    reader
        .scan(CHUNK - 2, |position, _| {
            seen.push(position);
            if position == CHUNK + 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, (CHUNK - 2..=CHUNK + 1).collect::<Vec<_>>());

    // Reopened: the first segment is sealed, its frame index read from
    // its file (mapped), and the active one is appended to.
    drop(writer);
    let (mut writer, reader) = open_fs(dir.path(), segment_bytes).unwrap();
    let extra = event(total, 600);
    firsts.push(append_sync(&mut writer, std::slice::from_ref(&extra)));
    events.push(extra);
    check(&reader, events.len() as u64, &events, &firsts);
}

#[test]
fn a_scan_while_frames_are_appended_sees_a_dense_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader) = open_fs(dir.path(), 16 << 20).unwrap();
    let events: Arc<Vec<Owned>> = Arc::new((0..2000u64).map(|n| event(n, 16)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (reader, events, done) = (reader.clone(), Arc::clone(&events), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut scans, mut longest) = (0u64, 0u64);
            loop {
                let finished = done.load(Ordering::Acquire);
                let seen = scan_from(&reader, 0, &events);
                let count = seen.len() as u64;
                assert_eq!(seen, (0..count).collect::<Vec<_>>(), "dense from 0");
                assert!(count >= longest, "a later scan saw less");
                longest = count;
                scans += 1;
                if finished {
                    return (scans, longest);
                }
            }
        })
    };
    for e in events.iter() {
        let records = [e.record()];
        writer.append(&[&records]).unwrap();
        writer.publish().unwrap();
    }
    writer.sync().unwrap();
    done.store(true, Ordering::Release);
    let (scans, longest) = scanner.join().unwrap();
    assert_eq!(longest, events.len() as u64);
    assert!(scans >= 1);
}
