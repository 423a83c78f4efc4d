//! The batch frame: one atomic append, its header, its event offset table
//! and its events; encoding and verifying one, and finding one event
//! through its offset table.
//!
//! Layout (starts 8-byte aligned, padded with zeros to 8 bytes):
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

use super::record::{decode_record_salted, SaltedCrc};
use super::{
    align_up, decode_record, get_u32, get_u64, put, FrameFault, Record, EVENT_HEADER_BYTES,
    EVENT_OFFSET_BYTES, FRAME_BYTES_MAX, FRAME_EVENTS_MAX, FRAME_HEADER_BYTES,
};
use crate::error::{Error, Result};

// Offsets.
const FH_CRC: usize = 0;
const FH_FRAME_BYTES: usize = 4;
const FH_SALT: usize = 8;
const FH_POSITION_FIRST: usize = 16;
const FH_EVENT_COUNT: usize = 24;
const FH_SYNCED_BEFORE: usize = 32;

const _: () = assert!(FH_SYNCED_BEFORE + 16 == FRAME_HEADER_BYTES);

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

/// Appends one frame, padded to [`FRAME_ALIGN`](super::FRAME_ALIGN), to `out`. Returns the
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

/// Decodes and verifies a whole frame: the header, then every event, that
/// the offset table points at each event in turn, and that the padding after
/// the frame is zero.
pub fn decode_frame<'a>(
    bytes: &'a [u8],
    offset: u64,
    salt: u64,
) -> Result<(FrameHeader, Vec<Record<'a>>), FrameFault> {
    let mut records = Vec::new();
    let header = decode_frame_into(bytes, offset, salt, &mut records)?;
    Ok((header, records))
}

/// [`decode_frame`] into a buffer the caller keeps: `records` is cleared,
/// then holds the frame's events in order, so that a scan reuses one
/// buffer for every frame instead of allocating one per frame. The frame
/// is verified exactly as [`decode_frame`] verifies it, with the same
/// faults; on `Err`, `records` holds the events decoded before the fault
/// and must not be used.
pub fn decode_frame_into<'a>(
    bytes: &'a [u8],
    offset: u64,
    salt: u64,
    records: &mut Vec<Record<'a>>,
) -> Result<FrameHeader, FrameFault> {
    decode_frame_salted_into(bytes, offset, &SaltedCrc::new(salt), records)
}

/// [`decode_frame_into`] with the salt's share of every event checksum
/// computed by the caller, once for all the frames of a segment (a scan of
/// one-event frames would otherwise compute it for every event). The salt
/// the frame must carry is the one `salted` was made from.
pub(crate) fn decode_frame_salted_into<'a>(
    bytes: &'a [u8],
    offset: u64,
    salted: &SaltedCrc,
    records: &mut Vec<Record<'a>>,
) -> Result<FrameHeader, FrameFault> {
    records.clear();
    let header = decode_frame_header(bytes, offset, salted.salt())?;
    let frame = bytes
        .get(..header.frame_bytes as usize)
        .ok_or(FrameFault::TruncatedFrame)?;
    let count = header.event_count as usize;
    records.reserve(count.min(1024));
    let table = frame
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + count * EVENT_OFFSET_BYTES)
        .ok_or(FrameFault::OffsetTableMismatch)?;
    let mut at = table.len() + FRAME_HEADER_BYTES;
    for (i, entry) in table.chunks_exact(EVENT_OFFSET_BYTES).enumerate() {
        if get_u32(entry, 0).map(|o| o as usize) != Some(at) {
            return Err(FrameFault::OffsetTableMismatch);
        }
        let rest = frame.get(at..).ok_or(FrameFault::EventPastFrameEnd)?;
        let (record, size) =
            decode_record_salted(rest, salted, header.position_first + i as u64, None)?;
        records.push(record.ok_or(FrameFault::StreamNotUtf8)?);
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
    Ok(header)
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

/// Where event `i` of the frame at the start of `frame` starts, from the
/// frame's offset table (not checked against the events: a full decode
/// does that).
#[inline]
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
    use crate::format::Tags;

    fn frame(salt: u64, offset: u64) -> Vec<u8> {
        let records: Vec<Record<'_>> = (0..3u64)
            .map(|v| Record {
                stream: "s-1",
                stream_version: v,
                id: [v as u8; 16],
                timestamp_us: 5,
                flags: 0,
                event_type: "T",
                tags: Tags::EMPTY,
                metadata: b"",
                data: b"payload",
            })
            .collect();
        let mut out = Vec::new();
        let place = FramePlace {
            salt,
            offset,
            position_first: 40,
            synced_before: 0,
        };
        encode_frame(&mut out, place, &records).unwrap();
        out
    }

    #[test]
    fn a_salt_state_made_once_decodes_as_the_salt_does() {
        let (salt, offset) = (0xfeed_beef, 64);
        let bytes = frame(salt, offset);
        let (mut by_salt, mut by_state) = (Vec::new(), Vec::new());
        let header = decode_frame_into(&bytes, offset, salt, &mut by_salt).unwrap();
        let salted = SaltedCrc::new(salt);
        // One state for several frames: it is not consumed.
        for _ in 0..2 {
            assert_eq!(
                decode_frame_salted_into(&bytes, offset, &salted, &mut by_state),
                Ok(header)
            );
            assert_eq!(by_state, by_salt);
        }
        // The state of another salt: the header names the wrong segment.
        assert_eq!(
            decode_frame_salted_into(&bytes, offset, &SaltedCrc::new(salt + 1), &mut by_state),
            Err(FrameFault::FrameSaltMismatch)
        );
    }
}
