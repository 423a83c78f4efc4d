//! The on-disk format of a segment file. `docs/FORMAT.md` is the spec; the
//! tables below repeat it and every offset is a `const`.
//!
//! Segment header (64 bytes, at offset 0):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    8 | magic `ANNALSEG` |
//! |   8 |    4 | format version (u32) |
//! |  12 |    4 | reserved, zero |
//! |  16 |    8 | position_first: global position of the first event (u64) |
//! |  24 |    8 | salt: random per segment (u64) |
//! |  32 |    8 | segment_bytes: preallocated size (u64) |
//! |  40 |   20 | reserved, zero |
//! |  60 |    4 | header_crc: CRC-32/IEEE of bytes 0..60 |
//!
//! Batch frame (starts 8-byte aligned, padded with zeros to 8 bytes):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    4 | header_crc: CRC-32/IEEE of (frame offset in segment, u64 LE) ‖ bytes 4..48 |
//! |   4 |    4 | frame_bytes: header + events, without padding (u32) |
//! |   8 |    8 | salt: must equal the segment's salt |
//! |  16 |    8 | position_first (u64) |
//! |  24 |    4 | event_count (u32, ≥ 1) |
//! |  28 |    4 | flags, zero |
//! |  32 |    8 | synced_before: segment offset the writer knew durable when writing this frame |
//! |  40 |    8 | reserved, zero |
//! |  48 | 4·n | event offset table: each event's offset from the frame start (u32) |
//! | 48+4n |  … | events, packed |
//!
//! Event record:
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
//! |  46 |    2 | reserved, zero |
//! |  48 |    4 | metadata_bytes (u32) |
//! |  52 |    4 | data_bytes (u32) |
//! |  56 |    … | stream (UTF-8), type (UTF-8), metadata, data |

use crate::error::{Error, Result};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ANNALSEG";
/// The segment format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
/// Size of a frame header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: u64 = 8;
/// Size of an event record's fixed part.
pub const EVENT_HEADER_BYTES: usize = 56;
/// Size of one entry of a frame's event offset table.
pub const EVENT_OFFSET_BYTES: usize = 4;

/// Longest stream name, in bytes.
pub const STREAM_BYTES_MAX: usize = 1024;
/// Longest event type, in bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 256;
/// Largest event record (header, names, metadata and data).
pub const EVENT_BYTES_MAX: usize = 4 << 20;
/// Largest frame (one atomic append).
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Most events in one frame.
pub const FRAME_EVENTS_MAX: u32 = 1 << 20;
/// Smallest allowed segment size.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest allowed segment size.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;

const _: () = assert!((FRAME_HEADER_BYTES as u64).is_multiple_of(FRAME_ALIGN));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(EVENT_BYTES_MAX + FRAME_HEADER_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(STREAM_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(EVENT_TYPE_BYTES_MAX <= u16::MAX as usize);

// Segment header offsets.
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = 8;
const SH_POSITION_FIRST: usize = 16;
const SH_SALT: usize = 24;
const SH_SEGMENT_BYTES: usize = 32;
const SH_CRC: usize = 60;

// Frame header offsets.
const FH_CRC: usize = 0;
const FH_FRAME_BYTES: usize = 4;
const FH_SALT: usize = 8;
const FH_POSITION_FIRST: usize = 16;
const FH_EVENT_COUNT: usize = 24;
const FH_SYNCED_BEFORE: usize = 32;

// Event record offsets.
const EV_CRC: usize = 0;
const EV_BYTES: usize = 4;
const EV_VERSION: usize = 8;
const EV_ID: usize = 16;
const EV_TIMESTAMP: usize = 32;
const EV_FLAGS: usize = 40;
const EV_STREAM_BYTES: usize = 42;
const EV_TYPE_BYTES: usize = 44;
const EV_METADATA_BYTES: usize = 48;
const EV_DATA_BYTES: usize = 52;

const _: () = assert!(EV_DATA_BYTES + 4 == EVENT_HEADER_BYTES);
const _: () = assert!(FH_SYNCED_BEFORE + 16 == FRAME_HEADER_BYTES);
const _: () = assert!(SH_CRC + 4 == SEGMENT_HEADER_BYTES as usize);

/// Reads a little-endian integer of `N` bytes at `at`; `None` if out of bounds.
fn le<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn get_u16(bytes: &[u8], at: usize) -> Option<u16> {
    le::<2>(bytes, at).map(u16::from_le_bytes)
}
/// The little-endian `u32` at `at`, if `bytes` holds it.
pub fn get_u32(bytes: &[u8], at: usize) -> Option<u32> {
    le::<4>(bytes, at).map(u32::from_le_bytes)
}
/// The little-endian `u64` at `at`, if `bytes` holds it.
pub fn get_u64(bytes: &[u8], at: usize) -> Option<u64> {
    le::<8>(bytes, at).map(u64::from_le_bytes)
}
fn put(buf: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + value.len()) {
        dst.copy_from_slice(value);
    }
}

/// Rounds `n` up to the frame alignment.
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Global position of the first event in the segment.
    pub position_first: u64,
    /// Random value that every frame of the segment repeats.
    pub salt: u64,
    /// Preallocated size of the segment file.
    pub segment_bytes: u64,
}

/// Why a segment header did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Every byte is zero: a file whose creation did not complete.
    Zeroed,
    /// Wrong magic or checksum.
    Invalid(&'static str),
    /// A format version this build does not know.
    UnsupportedVersion(u32),
}

impl SegmentHeader {
    /// Encodes the 64-byte header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut buf = [0u8; SEGMENT_HEADER_BYTES as usize];
        put(&mut buf, SH_MAGIC, &SEGMENT_MAGIC);
        put(&mut buf, SH_VERSION, &SEGMENT_FORMAT_VERSION.to_le_bytes());
        put(
            &mut buf,
            SH_POSITION_FIRST,
            &self.position_first.to_le_bytes(),
        );
        put(&mut buf, SH_SALT, &self.salt.to_le_bytes());
        put(
            &mut buf,
            SH_SEGMENT_BYTES,
            &self.segment_bytes.to_le_bytes(),
        );
        let crc = crc32fast::hash(buf.get(..SH_CRC).unwrap_or_default());
        put(&mut buf, SH_CRC, &crc.to_le_bytes());
        buf
    }

    /// Decodes and verifies a header: checksum first, then the fields.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(head) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
            return Err(if bytes.iter().all(|b| *b == 0) {
                HeaderError::Zeroed
            } else {
                HeaderError::Invalid("file shorter than a segment header")
            });
        };
        if head.iter().all(|b| *b == 0) {
            return Err(HeaderError::Zeroed);
        }
        let crc_stored = get_u32(head, SH_CRC).ok_or(HeaderError::Invalid("short header"))?;
        if crc32fast::hash(head.get(..SH_CRC).unwrap_or_default()) != crc_stored {
            return Err(HeaderError::Invalid("segment header checksum mismatch"));
        }
        if head.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(HeaderError::Invalid("bad segment magic"));
        }
        let version = get_u32(head, SH_VERSION).unwrap_or(0);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let header = SegmentHeader {
            position_first: get_u64(head, SH_POSITION_FIRST).unwrap_or(0),
            salt: get_u64(head, SH_SALT).unwrap_or(0),
            segment_bytes: get_u64(head, SH_SEGMENT_BYTES).unwrap_or(0),
        };
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes) {
            return Err(HeaderError::Invalid("segment size out of range"));
        }
        Ok(header)
    }
}

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
        let total = EVENT_HEADER_BYTES
            .saturating_add(self.stream.len())
            .saturating_add(self.event_type.len())
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
    fn encode_into(&self, out: &mut Vec<u8>, salt: u64, position: u64, total: usize) {
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
            EV_METADATA_BYTES,
            &(self.metadata.len() as u32).to_le_bytes(),
        );
        put(head, EV_DATA_BYTES, &(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(self.event_type.as_bytes());
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

fn frame_header_crc(offset: u64, header_tail: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(header_tail);
    hasher.finalize()
}

/// Size of the frame holding `records`, checked against every limit.
pub fn frame_bytes(records: &[Record<'_>]) -> Result<usize> {
    if records.is_empty() {
        return Err(Error::Invalid("a frame needs at least one event".into()));
    }
    if records.len() > FRAME_EVENTS_MAX as usize {
        return Err(Error::Invalid(format!(
            "{} events exceed the limit of {FRAME_EVENTS_MAX} per append",
            records.len()
        )));
    }
    let mut total = FRAME_HEADER_BYTES;
    for record in records {
        total = total
            .saturating_add(EVENT_OFFSET_BYTES)
            .saturating_add(record.encoded_bytes()?);
    }
    if total > FRAME_BYTES_MAX {
        return Err(Error::Invalid(format!(
            "append of {total} bytes exceeds the limit of {FRAME_BYTES_MAX}"
        )));
    }
    Ok(total)
}

/// Where a frame goes: what binds it to its place.
#[derive(Debug, Clone, Copy)]
pub struct FramePlace {
    /// The segment's salt.
    pub salt: u64,
    /// Offset of the frame in its segment.
    pub offset: u64,
    /// Global position of the first event.
    pub position_first: u64,
    /// Segment offset known durable when the frame is written.
    pub synced_before: u64,
}

/// Appends one frame, padded to [`FRAME_ALIGN`], to `out`. Returns the
/// unpadded frame size. Fails, leaving `out` unchanged, if a limit is broken.
pub fn encode_frame(out: &mut Vec<u8>, place: FramePlace, records: &[Record<'_>]) -> Result<usize> {
    let total = frame_bytes(records)?;
    let start = out.len();
    out.reserve(align_up(total as u64) as usize);
    out.resize(start + FRAME_HEADER_BYTES, 0);
    {
        let head = out.get_mut(start..).unwrap_or_default();
        put(head, FH_FRAME_BYTES, &(total as u32).to_le_bytes());
        put(head, FH_SALT, &place.salt.to_le_bytes());
        put(head, FH_POSITION_FIRST, &place.position_first.to_le_bytes());
        put(head, FH_EVENT_COUNT, &(records.len() as u32).to_le_bytes());
        put(head, FH_SYNCED_BEFORE, &place.synced_before.to_le_bytes());
        let crc = frame_header_crc(
            place.offset,
            head.get(4..FRAME_HEADER_BYTES).unwrap_or_default(),
        );
        put(head, FH_CRC, &crc.to_le_bytes());
    }
    let table = start + FRAME_HEADER_BYTES;
    out.resize(table + records.len() * EVENT_OFFSET_BYTES, 0);
    for (i, record) in records.iter().enumerate() {
        let bytes = record.encoded_bytes()?;
        let offset = (out.len() - start) as u32;
        put(out, table + i * EVENT_OFFSET_BYTES, &offset.to_le_bytes());
        record.encode_into(out, place.salt, place.position_first + i as u64, bytes);
    }
    debug_assert_eq!(out.len() - start, total);
    out.resize(start + align_up(total as u64) as usize, 0);
    Ok(total)
}

/// A frame header that passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Frame size without padding.
    pub frame_bytes: u32,
    /// Global position of the first event.
    pub position_first: u64,
    /// Number of events.
    pub event_count: u32,
    /// Segment offset the writer knew durable when it wrote this frame.
    pub synced_before: u64,
}

impl FrameHeader {
    /// One past the last position in the frame.
    pub fn position_end(&self) -> u64 {
        self.position_first + u64::from(self.event_count)
    }

    /// Size including alignment padding.
    pub fn padded_bytes(&self) -> u64 {
        align_up(u64::from(self.frame_bytes))
    }
}

/// Why bytes at an offset are not a valid frame (or event of a frame).
///
/// Its [`Display`](std::fmt::Display) text is the reason a corruption
/// error ([`Error::Corrupt`]) gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameFault {
    /// Fewer bytes than a frame header remain.
    TruncatedFrameHeader,
    /// The frame header's CRC (bound to the frame's offset) does not match.
    FrameHeaderChecksum,
    /// The frame's salt is not its segment's: bytes of another segment or file.
    FrameSaltMismatch,
    /// `frame_bytes` is below the smallest frame or above [`FRAME_BYTES_MAX`].
    FrameLengthOutOfRange,
    /// `event_count` is zero or above [`FRAME_EVENTS_MAX`].
    EventCountOutOfRange,
    /// `frame_bytes` cannot hold `event_count` offset entries and event headers.
    FrameTooShortForEvents,
    /// `position_first + event_count` overflows a `u64`.
    FramePositionOverflow,
    /// The frame's length reaches past the bytes the segment holds.
    FramePastSegmentEnd,
    /// Fewer bytes than the frame's length remain.
    TruncatedFrame,
    /// An offset table entry does not point where its event starts.
    OffsetTableMismatch,
    /// The events do not end where the frame's length says.
    FrameLengthMismatch,
    /// The alignment padding after the frame holds a non-zero byte.
    PaddingNotZero,
    /// A valid frame whose first position is not the one after the frame before it (recovery's scan).
    PositionOutOfSequence,
    /// A valid frame of a sealed segment that reaches into the next segment's positions (recovery's scan).
    PastNextSegment,
    /// Fewer bytes than an event header remain.
    TruncatedEventHeader,
    /// `event_bytes` is below [`EVENT_HEADER_BYTES`] or above [`EVENT_BYTES_MAX`].
    EventLengthOutOfRange,
    /// The event's length reaches past the end of its frame.
    EventPastFrameEnd,
    /// The event's CRC (bound to the segment's salt and the event's position) does not match.
    EventChecksum,
    /// The header's field lengths do not add up to `event_bytes`.
    EventFieldLengths,
    /// The stream name is not UTF-8.
    StreamNotUtf8,
    /// The event type is not UTF-8.
    TypeNotUtf8,
    /// The position asked for is not one of the frame's.
    PositionNotInFrame,
    /// The frame's bytes end before the position's offset table entry.
    TruncatedOffsetTable,
    /// An offset table entry points at or before its own entry (a point read through [`locate_event`]).
    EventOffsetBelowEntry,
    /// An offset table entry points before the frame's first event (a read through [`decode_event_in_frame`]).
    EventOffsetInFrameHeader,
    /// An offset table entry points past the end of its frame.
    EventOffsetPastFrameEnd,
}

impl FrameFault {
    /// The reason as text, as corruption errors give it.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameFault::TruncatedFrameHeader => "truncated frame header",
            FrameFault::FrameHeaderChecksum => "frame header checksum mismatch",
            FrameFault::FrameSaltMismatch => "frame salt does not match its segment",
            FrameFault::FrameLengthOutOfRange => "frame length out of range",
            FrameFault::EventCountOutOfRange => "frame event count out of range",
            FrameFault::FrameTooShortForEvents => "frame too short for its event count",
            FrameFault::FramePositionOverflow => "frame position overflows",
            FrameFault::FramePastSegmentEnd => "frame runs past the end of the segment",
            FrameFault::TruncatedFrame => "truncated frame",
            FrameFault::OffsetTableMismatch => "event offset table does not match the events",
            FrameFault::FrameLengthMismatch => "frame length does not match its events",
            FrameFault::PaddingNotZero => "frame padding is not zero",
            FrameFault::PositionOutOfSequence => "frame position out of sequence",
            FrameFault::PastNextSegment => "frame runs past the next segment's first position",
            FrameFault::TruncatedEventHeader => "truncated event header",
            FrameFault::EventLengthOutOfRange => "event length out of range",
            FrameFault::EventPastFrameEnd => "event runs past the end of its frame",
            FrameFault::EventChecksum => "event checksum mismatch",
            FrameFault::EventFieldLengths => "event field lengths do not add up",
            FrameFault::StreamNotUtf8 => "stream name is not UTF-8",
            FrameFault::TypeNotUtf8 => "event type is not UTF-8",
            FrameFault::PositionNotInFrame => "position not in this frame",
            FrameFault::TruncatedOffsetTable => "truncated event offset table",
            FrameFault::EventOffsetBelowEntry => {
                "event offset points into the frame's header or offset table"
            }
            FrameFault::EventOffsetInFrameHeader => "event offset points into the frame header",
            FrameFault::EventOffsetPastFrameEnd => "event offset past the end of its frame",
        }
    }
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FrameFault {}

/// Decodes the frame header at the start of `bytes`, which sit at `offset` in
/// a segment salted with `salt`. The checksum is verified before any field
/// is used; then every field is bounded.
pub fn decode_frame_header(
    bytes: &[u8],
    offset: u64,
    salt: u64,
) -> Result<FrameHeader, FrameFault> {
    let head = bytes
        .get(..FRAME_HEADER_BYTES)
        .ok_or(FrameFault::TruncatedFrameHeader)?;
    let stored = get_u32(head, FH_CRC).ok_or(FrameFault::TruncatedFrameHeader)?;
    if frame_header_crc(offset, head.get(4..).unwrap_or_default()) != stored {
        return Err(FrameFault::FrameHeaderChecksum);
    }
    if get_u64(head, FH_SALT) != Some(salt) {
        return Err(FrameFault::FrameSaltMismatch);
    }
    let header = FrameHeader {
        frame_bytes: get_u32(head, FH_FRAME_BYTES).unwrap_or(0),
        position_first: get_u64(head, FH_POSITION_FIRST).unwrap_or(0),
        event_count: get_u32(head, FH_EVENT_COUNT).unwrap_or(0),
        synced_before: get_u64(head, FH_SYNCED_BEFORE).unwrap_or(0),
    };
    let size = header.frame_bytes as usize;
    if !(FRAME_HEADER_BYTES + EVENT_OFFSET_BYTES + EVENT_HEADER_BYTES..=FRAME_BYTES_MAX)
        .contains(&size)
    {
        return Err(FrameFault::FrameLengthOutOfRange);
    }
    if header.event_count == 0 || header.event_count > FRAME_EVENTS_MAX {
        return Err(FrameFault::EventCountOutOfRange);
    }
    let per_event = (EVENT_OFFSET_BYTES + EVENT_HEADER_BYTES) as u64;
    if FRAME_HEADER_BYTES as u64 + u64::from(header.event_count) * per_event > size as u64 {
        return Err(FrameFault::FrameTooShortForEvents);
    }
    if header
        .position_first
        .checked_add(u64::from(header.event_count))
        .is_none()
    {
        return Err(FrameFault::FramePositionOverflow);
    }
    if bytes.len() < size {
        return Err(FrameFault::FramePastSegmentEnd);
    }
    Ok(header)
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
    let metadata_len = get_u32(record, EV_METADATA_BYTES).unwrap_or(0) as usize;
    let data_len = get_u32(record, EV_DATA_BYTES).unwrap_or(0) as usize;
    let stream_end = EVENT_HEADER_BYTES + stream_len;
    let type_end = stream_end + type_len;
    let metadata_end = type_end.saturating_add(metadata_len);
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
    let record = Record {
        stream,
        stream_version: get_u64(record, EV_VERSION).unwrap_or(0),
        id: le::<16>(record, EV_ID).unwrap_or_default(),
        timestamp_us: get_u64(record, EV_TIMESTAMP).unwrap_or(0),
        flags: get_u16(record, EV_FLAGS).unwrap_or(0),
        event_type,
        metadata: record.get(type_end..metadata_end).unwrap_or_default(),
        data: record.get(metadata_end..data_end).unwrap_or_default(),
    };
    Ok((Some(record), size))
}

/// Decodes and verifies a whole frame: the header, then every event, that
/// the offset table points at each event in turn, and that the padding after
/// the frame is zero.
pub fn decode_frame<'a>(
    bytes: &'a [u8],
    offset: u64,
    salt: u64,
) -> Result<(FrameHeader, Vec<Record<'a>>), FrameFault> {
    let header = decode_frame_header(bytes, offset, salt)?;
    let frame = bytes
        .get(..header.frame_bytes as usize)
        .ok_or(FrameFault::TruncatedFrame)?;
    let count = header.event_count as usize;
    let mut records = Vec::with_capacity(count.min(1024));
    let mut at = FRAME_HEADER_BYTES + count * EVENT_OFFSET_BYTES;
    for i in 0..count {
        if event_offset(frame, i) != Some(at) {
            return Err(FrameFault::OffsetTableMismatch);
        }
        let rest = frame.get(at..).ok_or(FrameFault::EventPastFrameEnd)?;
        let (record, size) = decode_record(rest, salt, header.position_first + i as u64)?;
        records.push(record);
        at += size;
    }
    if at != frame.len() {
        return Err(FrameFault::FrameLengthMismatch);
    }
    // Padding is not under any checksum: it must be zero. (Bytes past the
    // end of `bytes` read as zero: a file is extended with zeros.)
    let padded = header.padded_bytes() as usize;
    let padding = bytes
        .get(frame.len()..padded.min(bytes.len()))
        .unwrap_or_default();
    if padding.iter().any(|b| *b != 0) {
        return Err(FrameFault::PaddingNotZero);
    }
    Ok((header, records))
}

/// Where the event at `position` starts in a frame, found through the
/// frame's offset table alone, without decoding the frame header: the
/// caller knows the frame's first position from a verified frame index.
/// `frame` holds the bytes from the frame's start up to where the next frame
/// starts. Reads one table entry; the event itself is not touched.
///
/// The table has no checksum of its own and the header is not consulted: a
/// damaged entry lands on bytes whose checksum (bound to the segment's salt
/// and to `position`) cannot match, which [`decode_record`] reports.
pub fn locate_event(frame: &[u8], position_first: u64, position: u64) -> Result<usize, FrameFault> {
    let i = position
        .checked_sub(position_first)
        .and_then(|i| usize::try_from(i).ok())
        .filter(|i| *i < FRAME_EVENTS_MAX as usize)
        .ok_or(FrameFault::PositionNotInFrame)?;
    let at = event_offset(frame, i).ok_or(FrameFault::TruncatedOffsetTable)?;
    if at < FRAME_HEADER_BYTES + (i + 1) * EVENT_OFFSET_BYTES {
        return Err(FrameFault::EventOffsetBelowEntry);
    }
    if at >= frame.len() {
        return Err(FrameFault::EventOffsetPastFrameEnd);
    }
    Ok(at)
}

/// The event at `position` of a frame, located by [`locate_event`] and
/// decoded by [`decode_record`] (checksum first): what point reads use.
/// Everything the returned record holds is verified; the frame header is
/// not read (a scan or `verify` checks it).
pub fn decode_event_at(
    frame: &[u8],
    salt: u64,
    position_first: u64,
    position: u64,
) -> Result<Record<'_>, FrameFault> {
    let at = locate_event(frame, position_first, position)?;
    let rest = frame.get(at..).unwrap_or_default();
    decode_record(rest, salt, position).map(|(record, _)| record)
}

/// Entry `i` of a frame's event offset table.
/// Where event `i` of the frame at the start of `frame` starts, from the
/// frame's offset table (not checked against the events: a full decode
/// does that).
pub fn event_offset(frame: &[u8], i: usize) -> Option<usize> {
    get_u32(frame, FRAME_HEADER_BYTES + i * EVENT_OFFSET_BYTES).map(|o| o as usize)
}

/// Finds and verifies the event at `position` inside the frame at the start
/// of `bytes`: the frame header, then the offset table entry, then the
/// event's own checksum. The table has no checksum of its own: a damaged
/// entry lands on bytes whose checksum (bound to `position`) cannot match.
pub fn decode_event_in_frame<'a>(
    bytes: &'a [u8],
    offset: u64,
    salt: u64,
    position: u64,
) -> Result<Record<'a>, FrameFault> {
    let header = decode_frame_header(bytes, offset, salt)?;
    if position < header.position_first || position >= header.position_end() {
        return Err(FrameFault::PositionNotInFrame);
    }
    let frame = bytes
        .get(..header.frame_bytes as usize)
        .ok_or(FrameFault::TruncatedFrame)?;
    let i = (position - header.position_first) as usize;
    let at = event_offset(frame, i).ok_or(FrameFault::TruncatedOffsetTable)?;
    let events_start = FRAME_HEADER_BYTES + header.event_count as usize * EVENT_OFFSET_BYTES;
    if at < events_start {
        return Err(FrameFault::EventOffsetInFrameHeader);
    }
    let rest = frame.get(at..).ok_or(FrameFault::EventOffsetPastFrameEnd)?;
    decode_record(rest, salt, position).map(|(record, _)| record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_reads_as_the_reason_corruption_errors_give() {
        let record = Record {
            stream: "s",
            stream_version: 0,
            id: [1; 16],
            timestamp_us: 2,
            flags: 0,
            event_type: "t",
            metadata: b"",
            data: b"d",
        };
        let place = FramePlace {
            salt: 7,
            offset: 64,
            position_first: 0,
            synced_before: 64,
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, place, &[record]).unwrap();
        assert_eq!(
            decode_frame_header(&frame, 64, 8),
            Err(FrameFault::FrameSaltMismatch)
        );
        frame[FH_POSITION_FIRST] ^= 1;
        let fault = decode_frame(&frame, 64, 7).unwrap_err();
        assert_eq!(fault, FrameFault::FrameHeaderChecksum);
        assert_eq!(fault.to_string(), "frame header checksum mismatch");
        assert_eq!(
            Error::corrupt("f", 64, fault.as_str()).to_string(),
            "corrupt log: f at offset 64: frame header checksum mismatch"
        );
        assert_eq!(
            decode_event_at(&frame, 7, 1, 0).unwrap_err().to_string(),
            "position not in this frame"
        );
    }
}
