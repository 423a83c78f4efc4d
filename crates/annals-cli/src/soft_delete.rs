//! `annals delete DIR STREAM --soft`: the stream reads as empty from now on
//! and takes appends again, its versions continuing. Prints one JSON line:
//! the stream, the first version reads see from now on, and where the
//! metadata event was written. An unknown, empty or hard-deleted stream is
//! exit 2; a wrong `--expected` exit 3; neither writes anything.

use std::io::Write;
use std::path::Path;

use annals::Error;
use serde_json::json;

use crate::commands::{open_existing, parse_expected};
use crate::Failure;

/// `annals delete --soft`.
pub fn run(dir: &Path, stream: &str, expected: &str) -> Result<(), Failure> {
    let expected = parse_expected(expected)?;
    let store = open_existing(dir)?;
    let result = match store.soft_delete_stream(stream, expected) {
        Ok(result) => result,
        Err(error @ (Error::StreamNotFound(_) | Error::StreamDeleted(_))) => {
            return Err(Failure::usage(error.to_string()))
        }
        Err(other) => return Err(other.into()),
    };
    match result {
        Ok(written) => {
            let line = json!({
                "stream": stream,
                "soft_deleted": true,
                "reads_from_version": written.truncate_before,
                "meta_stream": written.written.stream,
                "position": written.written.first_position,
            });
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
        }
        Err(conflict) => Err(Failure::conflict(conflict.to_string())),
    }
}
