//! Turning events into the CLI's JSON and back.

use annals::{EventData, EventId, RecordedEvent};
use serde_json::{json, Map, Value};

use crate::Failure;

/// Parses one stdin line into an event.
pub fn event_from_line(line: &str, number: usize) -> Result<EventData, Failure> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Failure::usage(format!("line {number}: not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Failure::usage(format!(
            "line {number}: expected a JSON object"
        )));
    };
    let event_type = match object.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(Failure::usage(format!(
                "line {number}: \"type\" must be a string"
            )))
        }
    };
    let data = object.get("data").cloned().unwrap_or(Value::Null);
    let mut event = EventData::new(event_type, to_bytes(&data));
    match object.get("metadata") {
        None | Some(Value::Null) => {}
        Some(metadata) => event = event.with_metadata(to_bytes(metadata)),
    }
    match object.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            let tags: Option<Vec<&str>> = tags.iter().map(Value::as_str).collect();
            let tags = tags.ok_or_else(|| {
                Failure::usage(format!("line {number}: \"tags\" must be strings"))
            })?;
            event = event.with_tags(tags);
        }
        Some(_) => {
            return Err(Failure::usage(format!(
                "line {number}: \"tags\" must be an array of strings"
            )))
        }
    }
    match object.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => {
            let id: EventId = id
                .parse()
                .map_err(|e| Failure::usage(format!("line {number}: {e}")))?;
            event = event.with_id(id);
        }
        Some(_) => {
            return Err(Failure::usage(format!(
                "line {number}: \"id\" must be a UUID string"
            )))
        }
    }
    Ok(event)
}

/// Compact JSON bytes of a value.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// Stored bytes as JSON: the JSON value they hold, else a string.
fn from_bytes(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// One output line for an event.
pub fn event_line(event: &RecordedEvent) -> String {
    let mut object = Map::new();
    object.insert("stream".into(), json!(event.stream));
    object.insert("version".into(), json!(event.version));
    object.insert("position".into(), json!(event.position));
    object.insert("id".into(), json!(event.id.to_string()));
    object.insert("type".into(), json!(event.event_type));
    object.insert("data".into(), from_bytes(&event.data));
    object.insert("metadata".into(), from_bytes(&event.metadata));
    if !event.tags.is_empty() {
        object.insert("tags".into(), json!(event.tags));
    }
    object.insert("timestamp".into(), json!(rfc3339_us(event.timestamp_us)));
    Value::Object(object).to_string()
}

/// Microseconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_us(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_us(1_795_000_000_123_456),
            "2026-11-18T11:06:40.123456Z"
        );
    }
}
