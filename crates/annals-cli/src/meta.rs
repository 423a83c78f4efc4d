//! `annals meta DIR STREAM [--max-count N] [--truncate-before V]
//! [--max-age DURATION]`: sets a
//! stream's retention rules (each flag one durable append to
//! `$meta-STREAM`), then prints them as one JSON line; without flags only
//! prints them. An unknown, empty or deleted stream, or a truncate-before
//! past the next version or below the one set, or a bad duration (not N
//! followed by s, m, h or d, or zero), is exit 2 and writes nothing.

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
    max_age: Option<&str>,
) -> Result<(), Failure> {
    // A bad duration writes nothing, not even the other rules.
    let max_age = max_age.map(parse_duration).transpose()?;
    // Printing the rules only reads: read-only, like the other read
    // commands; setting one writes to an existing store.
    let store = if truncate_before.is_none() && max_count.is_none() && max_age.is_none() {
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
    if let Some(age) = max_age {
        store.set_max_age(stream, age).map_err(failure)?;
    }
    if store.stream_version(stream).map_err(failure)? == CurrentVersion::NoStream {
        return Err(Failure::usage(format!("stream {stream} has no events")));
    }
    let metadata = store.stream_metadata(stream).map_err(failure)?;
    let line = json!({
        "stream": stream,
        "truncate_before": metadata.truncate_before,
        "max_count": metadata.max_count,
        "max_age_secs": metadata.max_age_secs,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
}

/// `N` followed by `s`, `m`, `h` or `d` (at least one second, at most
/// about 584 billion years); anything else is a usage error.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, Failure> {
    let bad = || {
        Failure::usage(format!(
            "bad duration {text:?}: expected N followed by s, m, h or d (e.g. 90s, 12h, 30d)"
        ))
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let number = text.get(..text.len() - unit.len_utf8()).ok_or_else(bad)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let secs = count.checked_mul(unit_secs).ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(secs))
}
