//! How a cqrs-es event and snapshot are laid out in Annals (documented in
//! docs/CQRS-ES.md, "Encoding"), and the checks a batch passes before it is
//! written.
//!
//! An event: Annals event type = cqrs-es event type; data = the payload as
//! JSON; metadata = the JSON object
//! `{"event_version": <string>, "metadata": <cqrs-es metadata>}`. The
//! aggregate type, id and sequence are not stored in the event: they are
//! the stream name and version.
//!
//! A snapshot: an Annals snapshot of type [`SNAPSHOT_TYPE`] at the version
//! of the last event it folds in, whose data is the JSON object
//! `{"current_snapshot": <n>, "aggregate": <the aggregate>}`.

use annals::{EventData, EventRef, RecordedEvent};
use cqrs_es::persist::SerializedEvent;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::naming;

/// The Annals snapshot type of every snapshot this backend saves.
pub const SNAPSHOT_TYPE: &str = "cqrs-es.v1";

const EVENT_VERSION_KEY: &str = "event_version";
const METADATA_KEY: &str = "metadata";
const COUNTER_KEY: &str = "current_snapshot";
const AGGREGATE_KEY: &str = "aggregate";

/// Checks that `events` are one aggregate's run of consecutive sequences
/// (the first at least 1) of type `aggregate_type`, and returns the first
/// sequence and the aggregate id. `None` for no events.
pub fn check_batch<'a>(
    aggregate_type: &str,
    events: &'a [SerializedEvent],
) -> Result<Option<(usize, &'a str)>, Error> {
    let Some(first) = events.first() else {
        return Ok(None);
    };
    if first.sequence == 0 {
        return Err(Error::Batch("sequences start at 1, not 0".into()));
    }
    for (offset, event) in events.iter().enumerate() {
        if event.aggregate_type != aggregate_type {
            return Err(Error::Batch(format!(
                "event of aggregate type {:?} in a batch of {aggregate_type:?}",
                event.aggregate_type
            )));
        }
        if event.aggregate_id != first.aggregate_id {
            return Err(Error::Batch(format!(
                "events of aggregates {:?} and {:?} in one batch",
                first.aggregate_id, event.aggregate_id
            )));
        }
        let wanted = first.sequence.checked_add(offset);
        if wanted != Some(event.sequence) {
            return Err(Error::Batch(format!(
                "sequence {} where {} was due (sequences of a batch are consecutive)",
                event.sequence,
                wanted.map_or_else(|| "none".into(), |w| w.to_string())
            )));
        }
    }
    Ok(Some((first.sequence, first.aggregate_id.as_str())))
}

/// The Annals event of a cqrs-es event (a fresh, time-ordered id).
pub fn encode_event(event: &SerializedEvent) -> Result<EventData, Error> {
    let data = serde_json::to_vec(&event.payload).map_err(Error::Encode)?;
    let mut metadata = Map::new();
    metadata.insert(
        EVENT_VERSION_KEY.into(),
        Value::String(event.event_version.clone()),
    );
    metadata.insert(METADATA_KEY.into(), event.metadata.clone());
    let metadata = serde_json::to_vec(&Value::Object(metadata)).map_err(Error::Encode)?;
    Ok(EventData::new(event.event_type.clone(), data).with_metadata(metadata))
}

/// The fields of a stored event that decoding reads, borrowed from an
/// [`EventRef`] (stream reads) or a [`RecordedEvent`] (category reads).
pub struct Stored<'a> {
    stream: &'a str,
    version: u64,
    event_type: &'a str,
    data: &'a [u8],
    metadata: &'a [u8],
}

impl<'a> From<&EventRef<'a>> for Stored<'a> {
    fn from(event: &EventRef<'a>) -> Self {
        Stored {
            stream: event.stream,
            version: event.version,
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
        }
    }
}

impl<'a> From<&'a RecordedEvent> for Stored<'a> {
    fn from(event: &'a RecordedEvent) -> Self {
        Stored {
            stream: &event.stream,
            version: event.version,
            event_type: &event.event_type,
            data: &event.data,
            metadata: &event.metadata,
        }
    }
}

/// The cqrs-es event of an Annals event of `aggregate_type`'s category.
pub fn decode_event(aggregate_type: &str, event: Stored<'_>) -> Result<SerializedEvent, Error> {
    let fail = |reason: String| Error::Stored {
        what: "event",
        stream: event.stream.to_owned(),
        version: event.version,
        reason,
    };
    let aggregate_id = naming::aggregate_id_of(aggregate_type, event.stream)
        .ok_or_else(|| fail(format!("not a stream of aggregate type {aggregate_type}")))?;
    let sequence = naming::sequence_of(event.version)
        .ok_or_else(|| fail("its version does not fit a sequence".into()))?;
    let payload: Value = serde_json::from_slice(event.data)
        .map_err(|error| fail(format!("payload is not JSON: {error}")))?;
    let metadata: Value = serde_json::from_slice(event.metadata)
        .map_err(|error| fail(format!("metadata is not JSON: {error}")))?;
    let Value::Object(mut metadata) = metadata else {
        return Err(fail("metadata is not a JSON object".into()));
    };
    let Some(Value::String(event_version)) = metadata.remove(EVENT_VERSION_KEY) else {
        return Err(fail(format!(
            "metadata has no string {EVENT_VERSION_KEY:?}"
        )));
    };
    let Some(cqrs_metadata) = metadata.remove(METADATA_KEY) else {
        return Err(fail(format!("metadata has no {METADATA_KEY:?}")));
    };
    if let Some(key) = metadata.keys().next() {
        return Err(fail(format!("metadata has an unknown key {key:?}")));
    }
    Ok(SerializedEvent {
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        aggregate_type: aggregate_type.to_owned(),
        event_type: event.event_type.to_owned(),
        event_version,
        payload,
        metadata: cqrs_metadata,
    })
}

/// The data of an Annals snapshot holding `aggregate` as snapshot number
/// `current_snapshot`.
pub fn encode_snapshot(aggregate: &Value, current_snapshot: usize) -> Result<Vec<u8>, Error> {
    let mut object = Map::new();
    object.insert(COUNTER_KEY.into(), Value::from(current_snapshot));
    object.insert(AGGREGATE_KEY.into(), aggregate.clone());
    serde_json::to_vec(&Value::Object(object)).map_err(Error::Encode)
}

/// The aggregate and the snapshot number in a snapshot's data; `Err`
/// holds why it does not decode.
pub fn decode_snapshot(snapshot_type: &str, data: &[u8]) -> Result<(Value, usize), String> {
    if snapshot_type != SNAPSHOT_TYPE {
        return Err(format!(
            "snapshot type {snapshot_type:?}, not {SNAPSHOT_TYPE:?}"
        ));
    }
    let value: Value = serde_json::from_slice(data).map_err(|error| error.to_string())?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".into());
    };
    let counter = object
        .remove(COUNTER_KEY)
        .and_then(|counter| counter.as_u64())
        .and_then(|counter| usize::try_from(counter).ok())
        .ok_or_else(|| format!("no unsigned {COUNTER_KEY:?}"))?;
    let aggregate = object
        .remove(AGGREGATE_KEY)
        .ok_or_else(|| format!("no {AGGREGATE_KEY:?}"))?;
    Ok((aggregate, counter))
}
