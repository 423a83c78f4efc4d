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
    // salt ‖ position in one update: two 8-byte updates each took the
    // slow path for short inputs (measured on stream reads).
    let mut head = [0u8; 16];
    put(&mut head, 0, &salt.to_le_bytes());
    put(&mut head, 8, &position.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    hasher.update(body);
    hasher.finalize()
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
    let size = get_u32(bytes, EV_BYTES).ok_or(FrameFault::TruncatedEventHeader)? as usize;
    if !(EVENT_HEADER_BYTES..=EVENT_BYTES_MAX).contains(&size) {
        return Err(FrameFault::EventLengthOutOfRange);
    }
    let record = bytes.get(..size).ok_or(FrameFault::EventPastFrameEnd)?;
    let stored = get_u32(record, EV_CRC).ok_or(FrameFault::TruncatedEventHeader)?;
    if event_crc(salt, position, record.get(4..).unwrap_or_default()) != stored {
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
    let stream_bytes = record
        .get(EVENT_HEADER_BYTES..stream_end)
        .unwrap_or_default();
    let stream = match stream {
        Some(wanted) if wanted.as_bytes() == stream_bytes => wanted,
        Some(_) => return Ok((None, size)),
        None => std::str::from_utf8(stream_bytes).map_err(|_| FrameFault::StreamNotUtf8)?,
    };
    let event_type = std::str::from_utf8(record.get(stream_end..type_end).unwrap_or_default())
        .map_err(|_| FrameFault::TypeNotUtf8)?;
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
