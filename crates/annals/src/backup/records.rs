//! Whether a destination copy of a sealed segment holds the same event
//! records as the source, checked without reading every byte: a
//! compaction that erased only events with empty data and metadata
//! rewrites a segment to the very same length and layout (only the erased
//! records' flags and checksums change), so the first and last bytes a
//! backup compares cannot tell the two apart. Walking the source's frames,
//! this compares each frame header and event offset table, and the first
//! 8 bytes (`event_crc`, `event_bytes`) of every record: a record that
//! changed in any byte changed its checksum. Reads are bounded by the
//! format's limits; anything that does not parse counts as different (the
//! copy is then made afresh, never trusted).

use std::io;

use annals_segment::format::{
    EVENT_OFFSET_BYTES, FRAME_ALIGN, FRAME_BYTES_MAX, FRAME_EVENTS_MAX, FRAME_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// Reads exactly `buf.len()` bytes at an offset of one file.
pub(super) type ReadAt<'a> = &'a dyn Fn(&mut [u8], u64) -> io::Result<()>;

/// Offsets in a frame header (`docs/FORMAT.md`, "Batch frame").
const FRAME_BYTES_AT: usize = 4;
const EVENT_COUNT_AT: usize = 24;
/// Bytes compared at the start of each record: `event_crc`, `event_bytes`.
const RECORD_HEAD_BYTES: usize = 8;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Reads `n` bytes at `at` from both files; `None` when they differ.
fn both(source: ReadAt<'_>, dest: ReadAt<'_>, at: u64, n: usize) -> io::Result<Option<Vec<u8>>> {
    let (mut ours, mut theirs) = (vec![0u8; n], vec![0u8; n]);
    source(&mut ours, at)?;
    dest(&mut theirs, at)?;
    Ok((ours == theirs).then_some(ours))
}

/// Whether `dest` holds the records of the source's frames in `0..end`
/// (the header and everything else before `end` already compared equal at
/// its ends by the caller). Zero bytes where a frame would start end the
/// walk (the unwritten tail of a segment).
pub(super) fn same_records(source: ReadAt<'_>, dest: ReadAt<'_>, end: u64) -> io::Result<bool> {
    let mut at = SEGMENT_HEADER_BYTES;
    while at + FRAME_HEADER_BYTES as u64 <= end {
        let Some(header) = both(source, dest, at, FRAME_HEADER_BYTES)? else {
            return Ok(false);
        };
        if header.iter().all(|b| *b == 0) {
            return Ok(true);
        }
        let (Some(frame_bytes), Some(count)) = (
            u32_at(&header, FRAME_BYTES_AT),
            u32_at(&header, EVENT_COUNT_AT),
        ) else {
            return Ok(false);
        };
        let table_bytes = count as usize * EVENT_OFFSET_BYTES;
        let plausible = (1..=FRAME_EVENTS_MAX).contains(&count)
            && (frame_bytes as usize) <= FRAME_BYTES_MAX
            && FRAME_HEADER_BYTES + table_bytes <= frame_bytes as usize
            && at + u64::from(frame_bytes) <= end;
        if !plausible {
            return Ok(false);
        }
        let table_at = at + FRAME_HEADER_BYTES as u64;
        let Some(table) = both(source, dest, table_at, table_bytes)? else {
            return Ok(false);
        };
        for entry in table.chunks_exact(EVENT_OFFSET_BYTES) {
            let Some(offset) = u32_at(entry, 0) else {
                return Ok(false);
            };
            if offset as usize + RECORD_HEAD_BYTES > frame_bytes as usize {
                return Ok(false);
            }
            let record_at = at + u64::from(offset);
            if both(source, dest, record_at, RECORD_HEAD_BYTES)?.is_none() {
                return Ok(false);
            }
        }
        at = (at + u64::from(frame_bytes)).next_multiple_of(FRAME_ALIGN);
    }
    Ok(true)
}
