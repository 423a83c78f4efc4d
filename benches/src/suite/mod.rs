//! The standard workloads, each run on Annals, on SQLite and (where it
//! applies) on the plain-file ceiling, one after another in one process:
//! the suite's configuration and [`run_suite`]. `cargo bench --bench
//! write_path` and `annals-bench` (which `annals bench` runs) both run these.
//!
//! [`report`] holds the figures, comparisons, medians and the table;
//! [`writes`] the write workloads; [`reads`] the read workloads; [`open`]
//! the open times.

use std::time::Duration;

pub mod backup;
pub mod open;
pub mod reads;
pub mod report;
pub mod writes;

pub use reads::build_read_stores;
pub use report::{table, Comparison, Figure};
pub use writes::{
    annals_bulk, annals_commands, annals_single, frame_bytes, plain_commits, sqlite_bulk,
    sqlite_commands, sqlite_single,
};

use report::in_rounds;

/// Bytes of data per event in every workload.
pub const DATA_BYTES: usize = 128;

/// Sizes and durations of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Seconds per timed write measurement.
    pub seconds: f64,
    /// Streams of the read workloads' store (100 events each).
    pub read_streams: u64,
    /// Run the write workloads.
    pub writes: bool,
    /// Run the read workloads.
    pub reads: bool,
    /// Rounds of each write workload: every system runs once per round,
    /// one after another, and each figure is the median over the rounds
    /// (this disk's speed drifts ~2x over minutes: one measurement of each
    /// system, minutes apart, can put a ratio anywhere).
    pub rounds: usize,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            seconds: 3.0,
            read_streams: 10_000,
            writes: true,
            reads: true,
            rounds: 1,
        }
    }
}

/// Runs the suite, calling `step` with a description before each workload.
pub fn run_suite(config: &SuiteConfig, step: &mut dyn FnMut(&str)) -> Vec<Comparison> {
    let mut out = Vec::new();
    let secs = Duration::from_secs_f64(config.seconds);
    if config.writes {
        let rounds = config.rounds.max(1);
        let mut step_round = |what: &str, round: usize| {
            if rounds == 1 {
                step(what);
            } else {
                step(&format!("{what} (round {}/{rounds})", round + 1));
            }
        };
        for threads in [1usize, 8, 64] {
            let runs = in_rounds(rounds, |round| {
                step_round(&format!("single-event appends, {threads} threads"), round);
                let a = annals_single(threads, secs);
                let p = plain_commits(threads, secs, frame_bytes(1, "writer-10", "Benchmarked"));
                let s = sqlite_single(threads, secs);
                [a, s, p].map(|m| Figure::rate(&m, None))
            });
            out.push(Comparison::from_rounds(
                format!("durable single-event appends, {threads} threads"),
                &runs,
                0,
                1,
                2,
            ));
        }
        let runs = in_rounds(rounds, |round| {
            step_round("command handling, 8 threads", round);
            let a = annals_commands(8, secs);
            let p = plain_commits(8, secs, frame_bytes(2, "agg-1-100", "Handled"));
            let s = sqlite_commands(8, secs);
            [a, s, p].map(|m| Figure::rate(&m, None))
        });
        out.push(Comparison::from_rounds(
            "commands: 8 threads, 1-3 events, exact expectation".into(),
            &runs,
            0,
            1,
            2,
        ));
        let runs = in_rounds(rounds, |round| {
            step_round("bulk appends, 100 x 128 B", round);
            let a = annals_bulk(secs, true);
            let p = plain_commits(1, secs, frame_bytes(100, "bulk-1000", "Bulk"));
            let s = sqlite_bulk(secs);
            step_round("bulk appends, zero-ahead off", round);
            let off = annals_bulk(secs, false);
            [a, s, p, off].map(|m| Figure::rate(&m, Some(100.0)))
        });
        for (annals, label) in [(0, ""), (3, " (zero-ahead off)")] {
            out.push(Comparison::from_rounds(
                format!("bulk: 1 writer, 100 x 128 B per append{label}"),
                &runs,
                annals,
                1,
                2,
            ));
        }
    }
    if config.reads {
        out.extend(reads::read_workloads(config.read_streams, step));
    }
    out
}
