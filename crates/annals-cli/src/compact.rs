//! `annals compact DIR [--throttle BYTES_PER_SEC]`: compacts the store's
//! sealed segments (removes what the streams' rules hide; see
//! `docs/COMPACTION.md`), with a progress bar on stderr and the report as
//! one JSON line on stdout.

use std::io::Write;
use std::path::Path;

use annals::CompactionOptions;
use serde_json::json;

use crate::commands::open_existing;
use crate::Failure;

/// Runs `annals compact`.
pub fn run(dir: &Path, throttle: Option<u64>) -> Result<(), Failure> {
    if throttle == Some(0) {
        return Err(Failure::usage("--throttle must be at least 1 byte/s"));
    }
    let store = open_existing(dir)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("compact {bar:40} {bytes}/{total_bytes} ({eta})")
            .map_err(|e| Failure::error(e.to_string()))?,
    );
    let options = CompactionOptions {
        throttle_bytes_per_sec: throttle,
        ..CompactionOptions::default()
    };
    let report = store.compact_with_progress(&options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    store.close()?;
    let removed = report.removed;
    let line = json!({
        "segments_examined": report.segments_examined,
        "segments_rewritten": report.segments_rewritten,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "removed": {
            "max_count": removed.max_count,
            "max_age": removed.max_age,
            "truncate_before": removed.truncate_before,
            "soft_delete": removed.soft_delete,
            "hard_delete": removed.hard_delete,
            "total": removed.total(),
        },
        "snapshots_removed": report.snapshots_removed,
        "segments_merged": report.segments_merged,
        "files_removed": report.files_removed,
        "cancelled": report.cancelled,
        "seconds": report.elapsed.as_secs_f64(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
}
