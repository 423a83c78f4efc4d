//! `annals meta DIR STREAM [--max-count N] [--truncate-before V]`: sets a
//! stream's retention rules (each flag one durable append to
//! `$meta-STREAM`), then prints them as one JSON line; without flags only
//! prints them. An unknown, empty or deleted stream, or a truncate-before
//! past the next version or below the one set, is exit 2 and writes
//! nothing.

use std::io::Write;
use std::path::Path;

use annals::{CurrentVersion, Error};
use serde_json::json;

use crate::commands::{open, open_existing};
use crate::Failure;

fn failure(error: Error) -> Failure {
    match error {
        Error::StreamNotFound(_) | Error::StreamDeleted(_) => Failure::usage(error.to_string()),
        other => other.into(),
    }
}

/// `annals meta`.
pub fn run(
    dir: &Path,
    stream: &str,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
) -> Result<(), Failure> {
    // Printing the rules only reads: read-only, like the other read
    // commands; setting one writes to an existing store.
    let store = if truncate_before.is_none() && max_count.is_none() {
        open(dir, false)?
    } else {
        open_existing(dir)?
    };
    if let Some(version) = truncate_before {
        store
            .set_truncate_before(stream, version)
            .map_err(failure)?;
    }
    if let Some(count) = max_count {
        store.set_max_count(stream, count).map_err(failure)?;
    }
    if store.stream_version(stream).map_err(failure)? == CurrentVersion::NoStream {
        return Err(Failure::usage(format!("stream {stream} has no events")));
    }
    let metadata = store.stream_metadata(stream).map_err(failure)?;
    let line = json!({
        "stream": stream,
        "truncate_before": metadata.truncate_before,
        "max_count": metadata.max_count,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
}
