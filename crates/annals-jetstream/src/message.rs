//! One event as one JetStream message: the subject, the headers, the
//! payload (the event's data, as is), and back.
//!
//! | header | value |
//! |---|---|
//! | `Annals-Store-Id` | the source store's id (32 hex digits) |
//! | `Annals-Position` | global position, decimal |
//! | `Annals-Stream` | stream name, encoded ([`encode`]) |
//! | `Annals-Version` | version in the stream, decimal |
//! | `Annals-Event-Type` | event type, encoded |
//! | `Annals-Event-Id` | event id, hyphenated UUID |
//! | `Annals-Timestamp-Us` | commit time, µs since the Unix epoch |
//! | `Annals-Append` | place in its atomic append: `whole`, `first`, `middle` or `last` |
//! | `Annals-Metadata` | metadata, encoded; absent when empty |
//! | `Annals-Tags` | the event's tags, each as a subject token ([`token_for`](crate::encoding::token_for)), joined by `,`; absent when none |
//! | `Nats-Msg-Id` | `STORE_ID:POSITION` (JetStream's duplicate window) |

use async_nats::HeaderMap;
use bytes::Bytes;

use annals::{EventId, RecordedEvent, ReplicatedEvent, StoreId};

use crate::encoding::{decode, encode, token_for};
use crate::error::{Error, Result};

pub(crate) const STORE_ID: &str = "Annals-Store-Id";
pub(crate) const POSITION: &str = "Annals-Position";
const STREAM: &str = "Annals-Stream";
const VERSION: &str = "Annals-Version";
const EVENT_TYPE: &str = "Annals-Event-Type";
const EVENT_ID: &str = "Annals-Event-Id";
const TIMESTAMP: &str = "Annals-Timestamp-Us";
const APPEND: &str = "Annals-Append";
const METADATA: &str = "Annals-Metadata";
const TAGS: &str = "Annals-Tags";

/// The headers of the message that carries `event` from store `store`.
pub fn headers(store: StoreId, event: &ReplicatedEvent) -> HeaderMap {
    let e = &event.event;
    let mut headers = HeaderMap::new();
    headers.insert(STORE_ID, store.to_string());
    headers.insert(POSITION, e.position.to_string());
    headers.insert(STREAM, encode(e.stream.as_bytes()));
    headers.insert(VERSION, e.version.to_string());
    headers.insert(EVENT_TYPE, encode(e.event_type.as_bytes()));
    headers.insert(EVENT_ID, e.id.to_string());
    headers.insert(TIMESTAMP, e.timestamp_us.to_string());
    let place = match (event.append_first, event.append_last) {
        (true, true) => "whole",
        (true, false) => "first",
        (false, false) => "middle",
        (false, true) => "last",
    };
    headers.insert(APPEND, place);
    if !e.metadata.is_empty() {
        headers.insert(METADATA, encode(&e.metadata));
    }
    if !e.tags.is_empty() {
        let tags: Vec<String> = e.tags.iter().map(|tag| token_for(tag)).collect();
        headers.insert(TAGS, tags.join(","));
    }
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{store}:{}", e.position),
    );
    headers
}

/// The store id and event a relay's message carries; a typed error for
/// anything else (a message at `sequence` that is not a relay's).
pub fn event_from_message(
    sequence: u64,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Result<(StoreId, ReplicatedEvent)> {
    let bad = |reason: String| Error::BadMessage { sequence, reason };
    let headers = headers.ok_or_else(|| bad("it has no headers".into()))?;
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| v.as_str())
            .ok_or_else(|| bad(format!("header {name} is missing")))
    };
    let number = |name: &str| {
        text(name)?
            .parse::<u64>()
            .map_err(|_| bad(format!("header {name} is not a number")))
    };
    let utf8 = |name: &str| {
        decode(text(name)?)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| bad(format!("header {name} is not encoded UTF-8")))
    };
    let store = parse_store_id(text(STORE_ID)?).ok_or_else(|| bad("bad store id".into()))?;
    let (append_first, append_last) = match text(APPEND)? {
        "whole" => (true, true),
        "first" => (true, false),
        "middle" => (false, false),
        "last" => (false, true),
        other => return Err(bad(format!("header {APPEND} is {other:?}"))),
    };
    let metadata = match headers.get(METADATA) {
        Some(value) => Bytes::from(
            decode(value.as_str()).ok_or_else(|| bad(format!("header {METADATA} is malformed")))?,
        ),
        None => Bytes::new(),
    };
    let tags = match headers.get(TAGS) {
        Some(value) => value
            .as_str()
            .split(',')
            .map(|token| {
                decode(token)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|tag| !tag.is_empty())
                    .ok_or_else(|| bad(format!("header {TAGS} is malformed")))
            })
            .collect::<Result<Vec<String>>>()?,
        None => Vec::new(),
    };
    let event = RecordedEvent {
        stream: utf8(STREAM)?,
        version: number(VERSION)?,
        position: number(POSITION)?,
        id: text(EVENT_ID)?
            .parse::<EventId>()
            .map_err(|e| bad(e.to_string()))?,
        event_type: utf8(EVENT_TYPE)?,
        data: payload,
        metadata,
        timestamp_us: number(TIMESTAMP)?,
        tags,
    };
    Ok((
        store,
        ReplicatedEvent {
            event,
            append_first,
            append_last,
        },
    ))
}

/// A store id as [`StoreId`] prints it (32 hex digits).
pub(crate) fn parse_store_id(text: &str) -> Option<StoreId> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(text, 16).ok().map(StoreId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_headers_exactly() {
        let event = ReplicatedEvent {
            event: RecordedEvent {
                stream: "we.ird *> ü-1".into(),
                version: 7,
                position: 42,
                id: EventId::random(),
                event_type: "Type with\r\nbreak".into(),
                data: Bytes::from_static(b"\0\xffdata"),
                metadata: Bytes::from_static(b" {\"k\": \"v\"}\n"),
                timestamp_us: 1_700_000_000_000_001,
                tags: vec!["student:42".into(), "a,b c%ü".into()],
            },
            append_first: false,
            append_last: true,
        };
        let store = StoreId(0xabc);
        let headers = headers(store, &event);
        let (back_store, back) =
            event_from_message(1, Some(&headers), event.event.data.clone()).unwrap();
        assert_eq!((back_store, back), (store, event));
    }

    #[test]
    fn a_message_that_is_not_a_relays_is_a_typed_error() {
        assert!(event_from_message(3, None, Bytes::new()).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(STORE_ID, "xyz");
        let err = event_from_message(3, Some(&headers), Bytes::new()).unwrap_err();
        assert!(
            matches!(err, Error::BadMessage { sequence: 3, .. }),
            "{err}"
        );
        assert_eq!(parse_store_id(&StoreId(5).to_string()), Some(StoreId(5)));
        assert_eq!(parse_store_id("+0000000000000000000000000000005"), None);
    }
}
