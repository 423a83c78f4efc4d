//! The event record: one event as a frame stores it, checksummed with its
//! segment's salt and its global position; and decoding one.
//!
//! Layout:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    4 | event_crc: CRC-32/IEEE of (salt u64 LE) ‖ (position u64 LE) ‖ bytes 4..event_bytes |
//! |   4 |    4 | event_bytes: whole record (u32) |
//! |   8 |    8 | stream_version (u64) |
//! |  16 |   16 | event id |
//! |  32 |    8 | timestamp, microseconds since the Unix epoch (u64) |
//! |  40 |    2 | flags (u16) |
//! |  42 |    2 | stream_bytes (u16) |
//! |  44 |    2 | type_bytes (u16) |
//! |  46 |    2 | tags_bytes (u16): the tag region (`tags.rs`); zero before tags existed |
//! |  48 |    4 | metadata_bytes (u32) |
//! |  52 |    4 | data_bytes (u32) |
//! |  56 |    … | stream (UTF-8), type (UTF-8), tags, metadata, data |

use super::tags::{check_tags, Tags, TAGS_BYTES_MAX};
use super::{
    get_u16, get_u32, get_u64, le, put, FrameFault, EVENT_BYTES_MAX, EVENT_HEADER_BYTES,
    EVENT_TYPE_BYTES_MAX, STREAM_BYTES_MAX,
};
use crate::error::{Error, Result};

// Offsets.
const EV_CRC: usize = 0;
const EV_BYTES: usize = 4;
const EV_VERSION: usize = 8;
const EV_ID: usize = 16;
const EV_TIMESTAMP: usize = 32;
const EV_FLAGS: usize = 40;
const EV_STREAM_BYTES: usize = 42;
const EV_TYPE_BYTES: usize = 44;
const EV_TAGS_BYTES: usize = 46;
const EV_METADATA_BYTES: usize = 48;
const EV_DATA_BYTES: usize = 52;

const _: () = assert!(EV_DATA_BYTES + 4 == EVENT_HEADER_BYTES);

/// One event as stored: borrowed on both the write and the read side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Stream name (UTF-8, 1..=[`STREAM_BYTES_MAX`] bytes).
    pub stream: &'a str,
    /// Version of the event in its stream.
    pub stream_version: u64,
    /// 16-byte event id.
    pub id: [u8; 16],
    /// Microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Flags, opaque to the segment log.
    pub flags: u16,
    /// Event type (UTF-8, 1..=[`EVENT_TYPE_BYTES_MAX`] bytes).
    pub event_type: &'a str,
    /// Tags ([`Tags::EMPTY`] for none).
    pub tags: Tags<'a>,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Data bytes.
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Size of the encoded record, checked against every limit.
    pub fn encoded_bytes(&self) -> Result<usize> {
        if self.stream.is_empty() || self.stream.len() > STREAM_BYTES_MAX {
            return Err(Error::Invalid(format!(
                "stream name must be 1..={STREAM_BYTES_MAX} bytes, got {}",
                self.stream.len()
            )));
        }
        if self.event_type.is_empty() || self.event_type.len() > EVENT_TYPE_BYTES_MAX {
            return Err(Error::Invalid(format!(
                "event type must be 1..={EVENT_TYPE_BYTES_MAX} bytes, got {}",
                self.event_type.len()
            )));
        }
        if self.tags.as_bytes().len() > TAGS_BYTES_MAX || check_tags(self.tags.as_bytes()).is_err()
        {
            return Err(Error::Invalid("malformed tag region".into()));
        }
        let total = EVENT_HEADER_BYTES
            .saturating_add(self.stream.len())
            .saturating_add(self.event_type.len())
            .saturating_add(self.tags.as_bytes().len())
            .saturating_add(self.metadata.len())
            .saturating_add(self.data.len());
        if total > EVENT_BYTES_MAX {
            return Err(Error::Invalid(format!(
                "event of {total} bytes exceeds the limit of {EVENT_BYTES_MAX}"
            )));
        }
        Ok(total)
    }

    /// Appends the encoded record to `out`. The caller has checked
    /// [`Record::encoded_bytes`].
    pub(super) fn encode_into(&self, out: &mut Vec<u8>, salt: u64, position: u64, total: usize) {
        let start = out.len();
        out.resize(start + EVENT_HEADER_BYTES, 0);
        let head = out.get_mut(start..).unwrap_or_default();
        put(head, EV_BYTES, &(total as u32).to_le_bytes());
        put(head, EV_VERSION, &self.stream_version.to_le_bytes());
        put(head, EV_ID, &self.id);
        put(head, EV_TIMESTAMP, &self.timestamp_us.to_le_bytes());
        put(head, EV_FLAGS, &self.flags.to_le_bytes());
        put(
            head,
            EV_STREAM_BYTES,
            &(self.stream.len() as u16).to_le_bytes(),
        );
        put(
            head,
            EV_TYPE_BYTES,
            &(self.event_type.len() as u16).to_le_bytes(),
        );
        put(
            head,
            EV_TAGS_BYTES,
            &(self.tags.as_bytes().len() as u16).to_le_bytes(),
        );
        put(
            head,
            EV_METADATA_BYTES,
            &(self.metadata.len() as u32).to_le_bytes(),
        );
        put(head, EV_DATA_BYTES, &(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(self.event_type.as_bytes());
        out.extend_from_slice(self.tags.as_bytes());
        out.extend_from_slice(self.metadata);
        out.extend_from_slice(self.data);
        let crc = event_crc(salt, position, out.get(start + 4..).unwrap_or_default());
        put(
            out.get_mut(start..).unwrap_or_default(),
            EV_CRC,
            &crc.to_le_bytes(),
        );
    }
}

fn event_crc(salt: u64, position: u64, body: &[u8]) -> u32 {
    SaltedCrc::new(salt).event_crc(position, body)
}

/// The checksum state after a segment's salt, the first 8 bytes every event
/// checksum of that segment covers: computed once per frame (or segment)
/// instead of once per event. The checksum of an event is then this state
/// updated with its position and its bytes, the same CRC-32 over the same
/// bytes as one pass over salt ‖ position ‖ body.
#[derive(Clone)]
pub(crate) struct SaltedCrc {
    hasher: crc32fast::Hasher,
    salt: u64,
}

impl SaltedCrc {
    /// The state after `salt`.
    pub(crate) fn new(salt: u64) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&salt.to_le_bytes());
        SaltedCrc { hasher, salt }
    }

    /// The salt this state was made from.
    pub(crate) fn salt(&self) -> u64 {
        self.salt
    }

    /// The checksum of the event at `position` whose bytes after the
    /// checksum field are `body`.
    #[inline]
    pub(crate) fn event_crc(&self, position: u64, body: &[u8]) -> u32 {
        let mut hasher = self.hasher.clone();
        hasher.update(&position.to_le_bytes());
        hasher.update(body);
        hasher.finalize()
    }
}

/// Decodes the event record at the start of `bytes` (the rest of the frame),
/// verifying its checksum first. Returns the record and its size.
pub fn decode_record(
    bytes: &[u8],
    salt: u64,
    position: u64,
) -> Result<(Record<'_>, usize), FrameFault> {
    let (record, size) = decode_record_of(bytes, salt, position, None)?;
    Ok((record.ok_or(FrameFault::StreamNotUtf8)?, size))
}

/// [`decode_record`] for a reader that wants only the events of `stream`:
/// the record is `None` when (its checksum verified) it belongs to another
/// stream. A record of `stream` borrows the caller's name instead of
/// checking its own bytes for UTF-8 again (they are the same bytes).
pub fn decode_record_of<'a>(
    bytes: &'a [u8],
    salt: u64,
    position: u64,
    stream: Option<&'a str>,
) -> Result<(Option<Record<'a>>, usize), FrameFault> {
    decode_record_salted(bytes, &SaltedCrc::new(salt), position, stream)
}

/// [`decode_record_of`] with the salt's checksum state computed by the
/// caller (once per frame, `decode_frame_into`, or once per segment, a
/// scan: `decode_frame_salted_into`).
#[inline]
pub(crate) fn decode_record_salted<'a>(
    bytes: &'a [u8],
    salt: &SaltedCrc,
    position: u64,
    stream: Option<&'a str>,
) -> Result<(Option<Record<'a>>, usize), FrameFault> {
    let size = get_u32(bytes, EV_BYTES).ok_or(FrameFault::TruncatedEventHeader)? as usize;
    if !(EVENT_HEADER_BYTES..=EVENT_BYTES_MAX).contains(&size) {
        return Err(FrameFault::EventLengthOutOfRange);
    }
    let record = bytes.get(..size).ok_or(FrameFault::EventPastFrameEnd)?;
    let stored = get_u32(record, EV_CRC).ok_or(FrameFault::TruncatedEventHeader)?;
    if salt.event_crc(position, record.get(4..).unwrap_or_default()) != stored {
        return Err(FrameFault::EventChecksum);
    }
    let stream_len = usize::from(get_u16(record, EV_STREAM_BYTES).unwrap_or(0));
    let type_len = usize::from(get_u16(record, EV_TYPE_BYTES).unwrap_or(0));
    let tags_len = usize::from(get_u16(record, EV_TAGS_BYTES).unwrap_or(0));
    let metadata_len = get_u32(record, EV_METADATA_BYTES).unwrap_or(0) as usize;
    let data_len = get_u32(record, EV_DATA_BYTES).unwrap_or(0) as usize;
    let stream_end = EVENT_HEADER_BYTES + stream_len;
    let type_end = stream_end + type_len;
    let tags_end = type_end + tags_len;
    let metadata_end = tags_end.saturating_add(metadata_len);
    let data_end = metadata_end.saturating_add(data_len);
    if data_end != size {
        return Err(FrameFault::EventFieldLengths);
    }
    let (stream, event_type) = match stream {
        Some(wanted) => {
            let stream_bytes = record
                .get(EVENT_HEADER_BYTES..stream_end)
                .unwrap_or_default();
            if wanted.as_bytes() != stream_bytes {
                return Ok((None, size));
            }
            let event_type =
                std::str::from_utf8(record.get(stream_end..type_end).unwrap_or_default())
                    .map_err(|_| FrameFault::TypeNotUtf8)?;
            (wanted, event_type)
        }
        None => names(record, stream_end, type_end)?,
    };
    let tags = Tags::from_encoded(record.get(type_end..tags_end).unwrap_or_default())?;
    let record = Record {
        stream,
        stream_version: get_u64(record, EV_VERSION).unwrap_or(0),
        id: le::<16>(record, EV_ID).unwrap_or_default(),
        timestamp_us: get_u64(record, EV_TIMESTAMP).unwrap_or(0),
        flags: get_u16(record, EV_FLAGS).unwrap_or(0),
        event_type,
        tags,
        metadata: record.get(tags_end..metadata_end).unwrap_or_default(),
        data: record.get(metadata_end..data_end).unwrap_or_default(),
    };
    Ok((Some(record), size))
}

/// The stream name and the event type, which sit side by side in `record`
/// (`EVENT_HEADER_BYTES..stream_end`, `stream_end..type_end`), checked for
/// UTF-8 in one pass: both are UTF-8 exactly when their concatenation is
/// and the split between them falls on a character boundary. On a fault,
/// the stream is blamed if it is not UTF-8 by itself, else the type (the
/// faults a check of each in turn reports).
#[inline]
fn names(record: &[u8], stream_end: usize, type_end: usize) -> Result<(&str, &str), FrameFault> {
    let both = record.get(EVENT_HEADER_BYTES..type_end).unwrap_or_default();
    let split = stream_end - EVENT_HEADER_BYTES;
    if let Some(names) = std::str::from_utf8(both)
        .ok()
        .and_then(|both| both.split_at_checked(split))
    {
        return Ok(names);
    }
    match std::str::from_utf8(both.get(..split).unwrap_or_default()) {
        Err(_) => Err(FrameFault::StreamNotUtf8),
        Ok(_) => Err(FrameFault::TypeNotUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of stream `stream` and type `event_type` at `position`,
    /// encoded, then its name bytes replaced by `names` (same length) and
    /// its checksum recomputed: bytes only a hostile writer produces.
    fn with_names(
        stream: &str,
        event_type: &str,
        names: &[u8],
        salt: u64,
        position: u64,
    ) -> Vec<u8> {
        with_names_and_tags(stream, event_type, Tags::EMPTY, names, salt, position)
    }

    /// [`with_names`] of a record with `tags`.
    fn with_names_and_tags(
        stream: &str,
        event_type: &str,
        tags: Tags<'_>,
        names: &[u8],
        salt: u64,
        position: u64,
    ) -> Vec<u8> {
        let record = Record {
            stream,
            stream_version: 3,
            id: [7; 16],
            timestamp_us: 11,
            flags: 0,
            event_type,
            tags,
            metadata: b"m",
            data: b"data",
        };
        let total = record.encoded_bytes().unwrap();
        let mut out = Vec::new();
        record.encode_into(&mut out, salt, position, total);
        out[EVENT_HEADER_BYTES..EVENT_HEADER_BYTES + names.len()].copy_from_slice(names);
        let crc = event_crc(salt, position, &out[4..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn the_salted_checksum_is_the_checksum_of_salt_position_and_body() {
        let body = (0..=255u8).cycle().take(1000).collect::<Vec<_>>();
        for len in [0, 1, 7, 15, 16, 17, 63, 64, 127, 128, 200, 255, 256, 1000] {
            let (salt, position) = (0x0123_4567_89ab_cdef_u64, 987_654_321_u64 + len as u64);
            let mut whole = salt.to_le_bytes().to_vec();
            whole.extend_from_slice(&position.to_le_bytes());
            whole.extend_from_slice(&body[..len]);
            assert_eq!(
                SaltedCrc::new(salt).event_crc(position, &body[..len]),
                crc32fast::hash(&whole),
                "{len} bytes"
            );
        }
    }

    /// A type ending in a lead byte that a 128-byte tag's length byte
    /// (0x80, a continuation byte) completes is UTF-8 only together with
    /// the tag region beside it, and is refused, by a reader of every
    /// stream and by a reader of one; the same record with a good type
    /// reads its tags back.
    #[test]
    fn a_type_completed_by_the_tag_region_is_not_utf8() {
        let (salt, position) = (5, 9);
        let long = "x".repeat(crate::format::TAG_BYTES_MAX);
        let mut region = Vec::new();
        crate::format::encode_tags(&[long.as_str(), "é"], &mut region).unwrap();
        let tags = Tags::from_encoded(&region).unwrap();
        let bad = with_names_and_tags("s", "ab", tags, &[b's', b'a', 0xC3], salt, position);
        assert_eq!(
            decode_record(&bad, salt, position).map(|_| ()),
            Err(FrameFault::TypeNotUtf8)
        );
        assert_eq!(
            decode_record_of(&bad, salt, position, Some("s")).map(|_| ()),
            Err(FrameFault::TypeNotUtf8)
        );
        let good = with_names_and_tags("s", "ab", tags, b"sab", salt, position);
        for stream in [None, Some("s")] {
            let (record, _) = decode_record_of(&good, salt, position, stream).unwrap();
            let record = record.unwrap();
            assert_eq!(record.tags.iter().collect::<Vec<_>>(), [long.as_str(), "é"]);
            assert_eq!((record.stream, record.event_type), ("s", "ab"));
        }
    }

    #[test]
    fn names_are_checked_for_utf8_each_by_itself() {
        let (salt, position) = (5, 9);
        let decode = |bytes: &[u8]| {
            decode_record(bytes, salt, position)
                .map(|(r, _)| (r.stream.to_owned(), r.event_type.to_owned()))
        };
        // Valid names decode, multi-byte characters included.
        let ok = with_names("é", "ü", "éü".as_bytes(), salt, position);
        assert_eq!(decode(&ok), Ok(("é".to_owned(), "ü".to_owned())));
        // "é" split between the stream and the type: their concatenation is
        // UTF-8, but neither is by itself. The stream is blamed.
        let split = with_names("a", "b", &[0xc3, 0xa9], salt, position);
        assert_eq!(decode(&split), Err(FrameFault::StreamNotUtf8));
        let split = with_names("ab", "cd", &[b'a', 0xc3, 0xa9, b'd'], salt, position);
        assert_eq!(decode(&split), Err(FrameFault::StreamNotUtf8));
        // A valid stream and a bad type: the type is blamed.
        let bad_type = with_names("a", "bc", &[b'a', 0xc3, b'c'], salt, position);
        assert_eq!(decode(&bad_type), Err(FrameFault::TypeNotUtf8));
        let bad_type = with_names("a", "b", &[b'a', 0xff], salt, position);
        assert_eq!(decode(&bad_type), Err(FrameFault::TypeNotUtf8));
        // Both bad: the stream, as a check of each in turn reports.
        let both = with_names("a", "b", &[0xff, 0xff], salt, position);
        assert_eq!(decode(&both), Err(FrameFault::StreamNotUtf8));
        // A reader of one stream checks the type too.
        assert_eq!(
            decode_record_of(&bad_type, salt, position, Some("a")).map(|(r, _)| r.is_some()),
            Err(FrameFault::TypeNotUtf8)
        );
        // And none of it passes without the right salt or position.
        assert_eq!(
            decode_record(&ok, salt + 1, position).map(|(r, _)| r.stream),
            Err(FrameFault::EventChecksum)
        );
    }
}
