//! `annals-bench`: the standard workloads on Annals, SQLite and the
//! plain-file ceiling, in one run, as one table (and JSON).
//!
//! `cargo run --release -p annals-benches --bin annals-bench -- [ARGS]`.
//! It lives in the benchmark crate so that the `annals` binary does not
//! link SQLite; `annals bench [ARGS]` runs this executable when it finds it.
//! Exit codes: 0 success · 1 other errors · 2 bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use annals_benches::suite::{run_suite, table, Comparison, Figure, SuiteConfig};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

/// Exit code for errors that are not usage errors.
const EXIT_ERROR: u8 = 1;
/// Exit code for bad usage.
const EXIT_USAGE: u8 = 2;

/// Run the standard workloads on Annals, SQLite and the plain-file
/// ceiling in one run; print one table with the ratios.
#[derive(Parser, Debug)]
#[command(name = "annals-bench", version)]
struct Args {
    /// Seconds per timed write measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds of each write workload, every system once per round; each
    /// figure is the median over the rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Streams (of 100 events each) in the read workloads' store.
    #[arg(long, default_value_t = 10_000)]
    streams: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the write workloads.
    #[arg(long, conflicts_with = "reads_only")]
    writes_only: bool,
    /// Only the read workloads.
    #[arg(long)]
    reads_only: bool,
    /// Only the backup workloads (issue 21): backup throughput beside
    /// `cp`, writers' commits/s alone and during backups.
    #[arg(long, conflicts_with_all = ["reads_only", "writes_only"])]
    backup: bool,
    /// MB of events in the backup workloads' stores.
    #[arg(long, default_value_t = 300)]
    backup_mb: u64,
    /// The paced backup's rate in the backup workloads, MB/s.
    #[arg(long, default_value_t = 32)]
    backup_rate_mb: u64,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }
}

/// What to run.
struct Plan {
    /// Seconds per timed write measurement.
    seconds: f64,
    /// Rounds of each write workload (figures are medians over them).
    rounds: usize,
    /// Streams of the read workloads' store.
    streams: u64,
    /// Run the write workloads.
    writes: bool,
    /// Run the read workloads.
    reads: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan {
        seconds: args.seconds,
        rounds: args.rounds,
        streams: args.streams,
        writes: !args.reads_only,
        reads: !args.writes_only,
    };
    if args.backup {
        return run_backup(&args);
    }
    match run(plan, args.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("annals-bench: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Runs the suite and prints (and optionally writes) the results.
fn run(plan: Plan, json_file: Option<PathBuf>) -> Result<(), Failure> {
    if plan.seconds <= 0.0 || plan.streams == 0 || plan.rounds == 0 {
        return Err(Failure::usage(
            "--seconds, --rounds and --streams must be positive",
        ));
    }
    let config = SuiteConfig {
        seconds: plan.seconds,
        read_streams: plan.streams,
        writes: plan.writes,
        reads: plan.reads,
        rounds: plan.rounds,
    };
    let steps = if plan.writes {
        6 * plan.rounds as u64
    } else {
        0
    } + if plan.reads { 4 } else { 0 };
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .map_err(|e| Failure::error(e.to_string()))?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut first = true;
    let rows = run_suite(&config, &mut |step| {
        if !first {
            bar.inc(1);
        }
        first = false;
        bar.set_message(step.to_owned());
    });
    bar.finish_and_clear();
    print!("{}", table(&rows));
    if plan.writes && plan.rounds > 1 {
        println!(
            "write rows: medians of {} rounds (the systems one after another in each); ratios: the median of the rounds' ratios",
            plan.rounds
        );
    }
    if let Some(path) = json_file {
        let text = serde_json::to_string_pretty(&to_json(&rows))
            .map_err(|e| Failure::error(e.to_string()))?;
        std::fs::write(&path, text)
            .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `--backup`: the backup workloads only, printed as one table.
fn run_backup(args: &Args) -> ExitCode {
    if args.seconds <= 0.0 || args.rounds == 0 || args.backup_mb == 0 || args.backup_rate_mb == 0 {
        eprintln!(
            "annals-bench: --seconds, --rounds, --backup-mb and --backup-rate-mb must be positive"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let config = annals_benches::suite::backup::BackupConfig {
        store_bytes: args.backup_mb * 1_000_000,
        seconds: args.seconds,
        rounds: args.rounds,
        rate_bytes_per_sec: args.backup_rate_mb << 20,
    };
    let rows = annals_benches::suite::backup::backup_workloads(&config, &mut |step| {
        eprintln!("{step}");
    });
    print!("{}", table(&rows));
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&to_json(&rows))
            .map_err(|e| e.to_string())
            .and_then(|text| std::fs::write(path, text).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("annals-bench: {}: {e}", path.display());
            return ExitCode::from(EXIT_ERROR);
        }
    }
    ExitCode::SUCCESS
}

fn figure(f: Option<Figure>) -> Value {
    match f {
        None => Value::Null,
        Some(f) => json!({
            "value": f.value,
            "p50_us": f.p50_us,
            "p99_us": f.p99_us,
            "p999_us": f.p999_us,
            "device_bytes_per_event": f.device_bytes_per_event,
        }),
    }
}

fn to_json(rows: &[Comparison]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "workload": r.workload,
                    "unit": r.unit,
                    "higher_is_better": r.higher_is_better,
                    "annals": figure(Some(r.annals)),
                    "sqlite": figure(r.sqlite),
                    "ceiling": figure(r.ceiling),
                    "annals_vs_sqlite": r.vs_sqlite(),
                    "annals_vs_ceiling": r.vs_ceiling(),
                    "rounds": r.rounds,
                })
            })
            .collect(),
    )
}
