//! Events going in and coming out.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// A 16-byte event id, shown as a UUID. Ids make retries idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// A new random id (UUID version 4).
    pub fn random() -> Self {
        EventId(uuid::Uuid::new_v4().into_bytes())
    }

    /// A new time-ordered id (UUID version 7: milliseconds since the Unix
    /// epoch in the first 48 bits, big-endian, then a counter and random
    /// bits). Ids made later in this process sort after ids made earlier,
    /// also within one millisecond (the `uuid` crate's monotonic counter),
    /// which lets the duplicate check of an append skip every index file
    /// whose ids are all older without reading it. What [`EventData::new`]
    /// uses.
    pub fn time_ordered() -> Self {
        EventId(uuid::Uuid::now_v7().into_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(id: uuid::Uuid) -> Self {
        EventId(id.into_bytes())
    }
}

impl From<EventId> for uuid::Uuid {
    fn from(id: EventId) -> Self {
        uuid::Uuid::from_bytes(id.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// The text was not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID: {0:?}")]
pub struct ParseEventIdError(pub String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    /// Parses a UUID: hyphenated (`8-4-4-4-12` hex digits) or 32 hex digits
    /// (also the braced and `urn:uuid:` forms), by the `uuid` crate.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(text)
            .map(EventId::from)
            .map_err(|_| ParseEventIdError(text.to_owned()))
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    /// Its id; retrying an append with the same ids is idempotent.
    pub id: EventId,
    /// Its type, e.g. `OrderPlaced`. Types starting with `$` are reserved.
    pub event_type: String,
    /// The payload.
    pub data: Bytes,
    /// Free-form metadata.
    pub metadata: Bytes,
    /// Tags (e.g. `student:42`): at most [`TAGS_MAX`](crate::TAGS_MAX),
    /// each 1..=[`TAG_BYTES_MAX`](crate::TAG_BYTES_MAX) bytes, none twice.
    /// What queries ([`Query`](crate::Query)) select events by.
    pub tags: Vec<String>,
}

impl EventData {
    /// An event with a fresh id ([`EventId::time_ordered`]) and no
    /// metadata.
    pub fn new(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        EventData {
            id: EventId::time_ordered(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: Bytes::new(),
            tags: Vec::new(),
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Sets the tags (checked when appended).
    pub fn with_tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one tag (checked when appended).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// An event read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: String,
    /// Its version in that stream, from 0.
    pub version: u64,
    /// Its position in the global feed, from 0.
    pub position: u64,
    /// Its id.
    pub id: EventId,
    /// Its type. `$stream-deleted` marks a deleted stream's tombstone.
    pub event_type: String,
    /// The payload.
    pub data: Bytes,
    /// The metadata.
    pub metadata: Bytes,
    /// Its tags, in the order they were given (none for events written
    /// before tags existed).
    pub tags: Vec<String>,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
}

impl RecordedEvent {
    /// Whether this is the tombstone written by a stream delete.
    pub fn is_tombstone(&self) -> bool {
        self.event_type == crate::TOMBSTONE_TYPE
    }

    /// From a verified record; data and metadata share `owner` (the mapped
    /// segment) instead of being copied.
    pub(crate) fn from_record(
        position: u64,
        record: annals_segment::Record<'_>,
        owner: &Bytes,
    ) -> Self {
        EventRef::new(position, record, owner).to_recorded()
    }
}

/// An event borrowed from the log while a visitor runs
/// ([`Store::read_stream_with`](crate::Store::read_stream_with)): its
/// fields point into the mapped segment (or, for a query read, into the
/// query cache's verified copy), so visiting costs no copy and no
/// allocation. [`to_recorded`](EventRef::to_recorded) keeps one.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    /// The stream it belongs to.
    pub stream: &'a str,
    /// Its version in that stream, from 0.
    pub version: u64,
    /// Its position in the global feed, from 0.
    pub position: u64,
    /// Its id.
    pub id: EventId,
    /// Its type. `$stream-deleted` marks a deleted stream's tombstone.
    pub event_type: &'a str,
    /// The payload.
    pub data: &'a [u8],
    /// The metadata.
    pub metadata: &'a [u8],
    /// Its tags.
    pub tags: annals_segment::Tags<'a>,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The mapped segment the slices live in.
    owner: &'a Bytes,
}

impl fmt::Debug for EventRef<'_> {
    /// Like `RecordedEvent`'s; the mapped segment behind it is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("stream", &self.stream)
            .field("version", &self.version)
            .field("position", &self.position)
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("data", &Bytes::copy_from_slice(self.data))
            .field("metadata", &Bytes::copy_from_slice(self.metadata))
            .field("tags", &self.tags.iter().collect::<Vec<_>>())
            .field("timestamp_us", &self.timestamp_us)
            .finish()
    }
}

impl<'a> EventRef<'a> {
    /// From a verified record at `position`, whose slices live in `owner`.
    pub(crate) fn new(position: u64, record: annals_segment::Record<'a>, owner: &'a Bytes) -> Self {
        EventRef {
            stream: record.stream,
            version: record.stream_version,
            position,
            id: EventId(record.id),
            event_type: record.event_type,
            data: record.data,
            metadata: record.metadata,
            tags: record.tags,
            timestamp_us: record.timestamp_us,
            owner,
        }
    }

    /// An owned copy of the event; data and metadata share the mapped
    /// segment (or the query cache's copy, which they keep alive until
    /// dropped, outside the cache's budget) instead of being copied.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            stream: self.stream.to_owned(),
            version: self.version,
            position: self.position,
            id: self.id,
            event_type: self.event_type.to_owned(),
            data: annals_segment::share(self.owner, self.data),
            metadata: annals_segment::share(self.owner, self.metadata),
            tags: self.tags.iter().map(str::to_owned).collect(),
            timestamp_us: self.timestamp_us,
        }
    }

    /// Whether this is the tombstone written by a stream delete.
    pub fn is_tombstone(&self) -> bool {
        self.event_type == crate::TOMBSTONE_TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_event_prints_its_fields_not_the_segment_behind_it() {
        let segment = Bytes::from(vec![b'x'; 1 << 16]);
        let record = annals_segment::Record {
            stream: "order-1",
            stream_version: 3,
            id: [7; 16],
            timestamp_us: 5,
            flags: 0,
            event_type: "Placed",
            tags: annals_segment::Tags::EMPTY,
            metadata: &[],
            data: &segment[10..14],
        };
        let event = EventRef::new(42, record, &segment);
        let text = format!("{event:?}");
        assert!(
            text.contains("order-1") && text.contains("Placed"),
            "{text}"
        );
        assert!(text.len() < 400, "{} bytes: {text}", text.len());
        let owned = event.to_recorded();
        assert_eq!((owned.version, owned.position), (3, 42));
        assert_eq!(&owned.data[..], b"xxxx");
        assert_eq!(
            owned.data.as_ptr(),
            segment[10..].as_ptr(),
            "shared, not copied"
        );
    }

    #[test]
    fn ids_print_and_parse_as_uuids() {
        let id = EventId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<EventId>().unwrap(), id);
        assert_eq!(text.replace('-', "").parse::<EventId>().unwrap(), id);
        assert_ne!(EventId::random(), id);
        for bad in [
            "",
            "xyz",
            "0123456789abcdef0123456789abcdeg",
            "0123456789-abcdef0123456789abcdef0",
            // Regression: signs were accepted by the hand-written parser
            // (`u8::from_str_radix` takes a leading `+`).
            "+0+0+0+0-+0+0-+0+0-+0+0-+0+0+0+0+0+0",
            "+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0+0",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_ordered_ids_are_uuid_v7_and_sort_by_creation_time() {
        let first = EventId::time_ordered();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let second = EventId::time_ordered();
        assert!(second > first, "{first} then {second}");
        for id in [first, second] {
            assert_eq!(id.0[6] >> 4, 7, "version 7: {id}");
            assert_eq!(id.0[8] >> 6, 0b10, "RFC 4122 variant: {id}");
            let mut ms = [0u8; 8];
            ms[2..].copy_from_slice(&id.0[..6]);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let ms = u64::from_be_bytes(ms);
            assert!(ms <= now && now - ms < 60_000, "{ms} vs {now}");
        }
        assert_ne!(EventId::time_ordered(), EventId::time_ordered());
        assert_eq!(EventData::new("T", "x").id.0[6] >> 4, 7);
    }

    #[test]
    fn time_ordered_ids_are_monotonic_within_one_millisecond() {
        // Regression: the hand-written v7 filled the bits after the
        // millisecond at random, so ids made in the same millisecond
        // sorted in random order.
        let ids: Vec<EventId> = (0..10_000).map(|_| EventId::time_ordered()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
    }
}
