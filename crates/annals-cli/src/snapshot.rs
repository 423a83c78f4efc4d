//! `annals snapshot` (save a snapshot read from stdin) and `annals load`
//! (the newest snapshot, then the events after it).
//!
//! Exit codes: an unknown, empty or deleted stream, an empty type or an
//! oversize snapshot is bad input (2); a snapshot at a version the stream has
//! not reached is a conflict with the stream's version (3). Nothing is
//! written in either case.

use std::io::{Read, Write};
use std::path::Path;

use annals::{Error, Snapshot};
use serde_json::{json, Value};

use crate::commands::{open, open_existing};
use crate::json::{event_line, rfc3339_us};
use crate::Failure;

/// How an error of these commands maps to an exit code.
fn failure(error: Error) -> Failure {
    match error {
        Error::StreamNotFound(_) | Error::StreamDeleted(_) => Failure::usage(error.to_string()),
        Error::SnapshotAhead { .. } => Failure::conflict(error.to_string()),
        other => other.into(),
    }
}

fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))
}

/// `annals snapshot DIR STREAM --version V [--type T]`: the snapshot's
/// bytes are all of stdin, stored as they are.
pub fn save(dir: &Path, stream: &str, version: u64, snapshot_type: &str) -> Result<(), Failure> {
    let limit = annals::SNAPSHOT_BYTES_MAX as u64 + 1;
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|e| Failure::usage(format!("stdin: {e}")))?;
    if data.len() as u64 >= limit {
        return Err(Failure::usage(format!(
            "a snapshot may hold at most {} bytes",
            annals::SNAPSHOT_BYTES_MAX
        )));
    }
    let store = open_existing(dir)?;
    store
        .save_snapshot(stream, version, snapshot_type, &data)
        .map_err(failure)?;
    print_line(
        &json!({
            "stream": stream,
            "version": version,
            "type": snapshot_type,
            "bytes": data.len(),
        })
        .to_string(),
    )
}

/// `annals load DIR STREAM`: one line `{"stream", "snapshot": … | null}`,
/// then each event after the snapshot as `annals read` prints it.
pub fn load(dir: &Path, stream: &str) -> Result<(), Failure> {
    let store = open(dir, false)?;
    if store.stream_version(stream).map_err(failure)? == annals::CurrentVersion::NoStream {
        return Err(Failure::usage(format!("stream {stream} has no events")));
    }
    let aggregate = store.load_aggregate(stream).map_err(failure)?;
    let snapshot = aggregate
        .snapshot
        .as_ref()
        .map_or(Value::Null, snapshot_value);
    print_line(&json!({ "stream": stream, "snapshot": snapshot }).to_string())?;
    for event in &aggregate.events {
        print_line(&event_line(event))?;
    }
    Ok(())
}

/// A snapshot as JSON: its data as the JSON value it holds (`"encoding":
/// "json"`), else as text (`"utf-8"`), else as lowercase hex (`"hex"`).
fn snapshot_value(snapshot: &Snapshot) -> Value {
    let (encoding, data) = match std::str::from_utf8(&snapshot.data) {
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) if !text.trim().is_empty() => ("json", value),
            _ => ("utf-8", Value::String(text.to_owned())),
        },
        Err(_) => ("hex", Value::String(hex(&snapshot.data))),
    };
    json!({
        "version": snapshot.version,
        "type": snapshot.snapshot_type,
        "saved": rfc3339_us(snapshot.saved_us),
        "bytes": snapshot.data.len(),
        "encoding": encoding,
        "data": data,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(data: &[u8]) -> Value {
        snapshot_value(&Snapshot {
            stream: "s".into(),
            version: 1,
            snapshot_type: "T".into(),
            data: data.to_vec().into(),
            saved_us: 0,
        })
    }

    #[test]
    fn data_is_json_then_text_then_hex() {
        assert_eq!(encoded(br#"{"a":1}"#)["encoding"], "json");
        assert_eq!(encoded(br#"{"a":1}"#)["data"]["a"], 1);
        assert_eq!(encoded(b"plain text")["encoding"], "utf-8");
        assert_eq!(encoded(b"")["encoding"], "utf-8");
        assert_eq!(encoded(&[0xff, 0x00, 0x10])["data"], "ff0010");
        assert_eq!(encoded(&[0xff, 0x00, 0x10])["encoding"], "hex");
    }
}
