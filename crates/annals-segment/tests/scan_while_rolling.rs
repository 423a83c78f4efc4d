//! Property: a scan up to the published end of a log whose writer is
//! appending and rolling to new segments never reports corruption.
//!
//! Regression: a scan that ran out of the active segment's frames exactly
//! at its `end` still compared where it stopped with where the next listed
//! segment starts. Between the two steps the writer could push the frames
//! of a new append into that segment (frames past `end`) and roll: the
//! next segment then started past where the scan stopped, and the scan
//! failed with `Corrupt { "segment ends at position P but the next starts
//! at Q" }` although it had read everything up to `end` (a store's
//! `read_query` under compaction, Buffered durability, on tmpfs under CPU
//! load: `crates/annals/tests/dcb_compaction_race.rs`).
//!
//! Method: the race needs a scanner to lose its core between the two steps
//! while the writer appends and rolls. Every append here pushes a frame
//! into the segment holding the last published event and rolls in the
//! same call: it is three one-event frames, small, large, small, of which
//! a 4 KiB segment holds two small ones or one large one (and no two
//! events fit one frame), so each append ends with a small frame alone in
//! a new segment, where the next append's first frame still fits. More
//! scanner threads than cores scan from the last published position again
//! and again; the writer sleeps between appends, so each wakeup preempts
//! a scanner wherever it is in its scan, and appends and rolls before it
//! goes on. Rounds of a fresh in-memory log keep memory bounded. Without
//! the fix this failed in 15 of 15 runs on 2 cores (within 0.2 to 1.4 s),
//! and in 5 of 5 pinned to one core; with it, 0 of 10.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use annals_segment::storage::{MemStorage, Storage};
use annals_segment::{LogOptions, LogReader, LogWriter, Record};
use common::{event, Owned};

/// How long the threads race in all.
const RACE: Duration = Duration::from_secs(3);
/// Appends per round (each makes two segments of 4 KiB).
const ROUND_APPENDS: u64 = 50;
/// Data bytes of a small and of a large event: a 4 KiB segment holds two
/// small frames or one large one, and a small and a large event do not
/// fit one frame.
const SMALL_BYTES: usize = 900;
const LARGE_BYTES: usize = 3_000;

#[test]
fn regression_a_scan_to_the_end_never_reports_a_gap_while_the_writer_rolls() {
    // More scanners than cores, so that every core is scanning when the
    // writer wakes (bounded, so that a large machine runs a small test).
    let scanners = std::thread::available_parallelism()
        .map_or(4, |n| n.get() + 2)
        .min(10);
    // The log of the round under way (a fresh one each round).
    let current: Arc<RwLock<Option<LogReader>>> = Arc::new(RwLock::new(None));
    let round = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let scanning: Vec<_> = (0..scanners)
        .map(|_| {
            let (current, round, stop) =
                (Arc::clone(&current), Arc::clone(&round), Arc::clone(&stop));
            std::thread::spawn(move || scan_rounds(&current, &round, &stop))
        })
        .collect();
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < RACE && !scanning.iter().any(|t| t.is_finished()) {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let options = LogOptions {
            segment_bytes: 4096,
            zero_ahead: Some(false),
        };
        let (mut writer, reader, _) = annals_segment::open(storage, options).unwrap();
        *current.write().unwrap() = Some(reader.clone());
        round.fetch_add(1, Ordering::Release);
        append_round(&mut writer);
        // Every append rolled twice, the first time just after pushing a
        // frame into the segment a scan to the end holds: the race had
        // its chances.
        let segments = reader.segments().len() as u64;
        assert!(
            segments > 2 * ROUND_APPENDS,
            "{segments} segments: the frames are not laid out as planned"
        );
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let scans: u64 = scanning.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{rounds} rounds, {scans} scans by {scanners} scanners");
}

/// Appends [`ROUND_APPENDS`] times, publishing each.
fn append_round(writer: &mut LogWriter) {
    for k in 0..ROUND_APPENDS {
        let n = 3 * k;
        let events = [
            event(n, SMALL_BYTES),
            event(n + 1, LARGE_BYTES),
            event(n + 2, SMALL_BYTES),
        ];
        let records: Vec<Record<'_>> = events.iter().map(Owned::record).collect();
        let batches: Vec<&[Record<'_>]> = records.chunks(1).collect();
        writer.append(&batches).unwrap();
        writer.publish().unwrap();
        // Waking from a sleep, the writer takes a core from a scanner at
        // whatever point of its scan it is (the scheduler's wakeup
        // preemption), and appends and rolls before that scanner goes on.
        std::thread::sleep(Duration::from_micros(1));
    }
}

/// Scans the current round's log from its last published position, again
/// and again, until `stop`. Returns how many scans were made.
fn scan_rounds(current: &RwLock<Option<LogReader>>, round: &AtomicU64, stop: &AtomicBool) -> u64 {
    let mut scans = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let this_round = round.load(Ordering::Acquire);
        let Some(reader) = current.read().unwrap().clone() else {
            std::thread::yield_now();
            continue;
        };
        while round.load(Ordering::Relaxed) == this_round && !stop.load(Ordering::Relaxed) {
            let end = reader.position_end();
            if end == 0 {
                std::thread::yield_now();
                continue;
            }
            let from = end - 1;
            let mut next = from;
            reader
                .scan(from, |position, _| {
                    assert_eq!(position, next, "positions skipped");
                    next += 1;
                    ControlFlow::Continue(())
                })
                .unwrap_or_else(|e| panic!("scan from {from}: {e}"));
            assert!(next >= end, "the scan stopped at {next}, before {end}");
            scans += 1;
        }
    }
    scans
}
