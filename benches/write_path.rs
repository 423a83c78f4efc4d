//! The write path at the disk's limit: concurrent durable appends on Annals,
//! the plain file (`write` + `fdatasync` per commit, the ceiling) and SQLite
//! (WAL, synchronous=FULL, the check in `BEGIN IMMEDIATE`), in one run.
//! A custom harness (not criterion): what matters here is commits/s under
//! concurrency and latency percentiles, which criterion does not measure.
//! The workloads live in `annals_benches::suite` (shared with `annals-bench`).
//!
//! `cargo bench -p annals-benches --bench write_path` (ANNALS_BENCH_SECS
//! sets seconds per measurement, default 4).

use annals_benches::suite::{run_suite, table, SuiteConfig};

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = std::env::var("ANNALS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let config = SuiteConfig {
        seconds,
        reads: false,
        ..SuiteConfig::default()
    };
    let rows = run_suite(&config, &mut |step| eprintln!("running: {step}"));
    print!("{}", table(&rows));
    for row in &rows {
        if let Some(bytes) = row.annals.device_bytes_per_event {
            let plain = row
                .ceiling
                .and_then(|c| c.device_bytes_per_event)
                .unwrap_or(0.0);
            let sqlite = row
                .sqlite
                .and_then(|c| c.device_bytes_per_event)
                .unwrap_or(0.0);
            println!("{:<52} device bytes/event: annals {bytes:.0}, plain {plain:.0}, sqlite {sqlite:.0}", row.workload);
        }
    }
}
