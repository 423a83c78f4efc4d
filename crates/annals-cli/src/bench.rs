//! `annals bench`: the standard workloads on Annals, SQLite and the
//! plain-file ceiling, in one run, as one table (and JSON).

use std::path::PathBuf;
use std::time::Duration;

use annals_benches::suite::{run_suite, table, Comparison, Figure, SuiteConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::Failure;

/// What to run.
pub struct Plan {
    /// Seconds per timed write measurement.
    pub seconds: f64,
    /// Rounds of each write workload (figures are medians over them).
    pub rounds: usize,
    /// Streams of the read workloads' store.
    pub streams: u64,
    /// Run the write workloads.
    pub writes: bool,
    /// Run the read workloads.
    pub reads: bool,
}

/// Runs the suite and prints (and optionally writes) the results.
pub fn run(plan: Plan, json_file: Option<PathBuf>) -> Result<(), Failure> {
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
