//! Timing, not a check (ignored by default): how long
//! `SecondaryRun::extend_positions` takes to copy one key's postings out of
//! a run of 2M entries (1M positions, two keys each), medians of 101 calls.
//! It is the inner loop of every category, event-type and query read; this
//! is what an A/B of a change to it compares (docs/PERFORMANCE.md).
//! `cargo test --release -p annals-index --test secondary_postings_timing
//! -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use annals_index::{SecondaryEntry, SecondaryRun};
use annals_segment::storage::{MemStorage, Storage};

#[test]
#[ignore = "timing: run by hand in release"]
fn extend_positions_timing() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let events = 1_000_000u64;
    // Hashes 0..4 hold 250k positions each, 10..1010 hold 1,000 each.
    let mut all: Vec<SecondaryEntry> = (0..events)
        .flat_map(|position| {
            [position % 4, 10 + position % 1000].map(|hash| SecondaryEntry { hash, position })
        })
        .collect();
    all.sort_unstable();
    let run = SecondaryRun::write(&storage, 0, events, &all).unwrap();
    let mut out = Vec::with_capacity(300_000);
    for (what, hash, max) in [
        ("250k postings of one key", 1u64, usize::MAX),
        ("1,000 postings of one key", 510, usize::MAX),
        ("first 1,000 of 250k", 2, 1000),
        ("first 4,096 of 250k", 3, 4096),
    ] {
        let mut micros: Vec<f64> = (0..101)
            .map(|_| {
                out.clear();
                let start = Instant::now();
                run.extend_positions(hash, 0, max, &mut out).unwrap();
                std::hint::black_box(&out);
                start.elapsed().as_nanos() as f64 / 1000.0
            })
            .collect();
        micros.sort_by(f64::total_cmp);
        println!(
            "{what}: median {:.1} us ({} positions)",
            micros[50],
            out.len()
        );
    }
}
