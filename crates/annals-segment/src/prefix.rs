//! Which bytes of which segment files hold the log's positions `0..end`:
//! what a backup copies. A prefix always ends at a frame boundary (the
//! published end does), so the bytes of each file are a prefix of it, and
//! a copy of them opens as a log ending exactly at `end`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_BYTES};
use crate::reader::LogReader;
use crate::segment::Segment;

/// One segment file's share of a log prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixPart {
    /// The segment file's name.
    pub name: String,
    /// Its first position.
    pub position_first: u64,
    /// How many of its bytes (from offset 0) the prefix holds.
    pub bytes: u64,
    /// Whether the whole segment is in the prefix and another segment
    /// follows it there (so its `.fidx` file describes exactly these bytes).
    pub sealed: bool,
}

impl LogReader {
    /// The files and byte counts that hold positions `0..end` (`end` at
    /// most [`LogReader::position_end`]), oldest first.
    pub fn prefix(&self, end: u64) -> Result<Vec<PrefixPart>> {
        if end > self.position_end() {
            return Err(Error::Invalid(format!(
                "position {end} is past the log's end {}",
                self.position_end()
            )));
        }
        let segments = self.shared.segments.read().clone();
        let mut parts = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let first = segment.header.position_first;
            // A segment starting at `end` holds nothing of the prefix
            // (unless the prefix is empty: the copy still needs a segment).
            if first > end || (first == end && end != 0) {
                break;
            }
            let next_first = segments.get(i + 1).map(|s| s.header.position_first);
            let whole = next_first.is_some_and(|next| next <= end);
            let bytes = if whole {
                segment.written()
            } else if end == first {
                SEGMENT_HEADER_BYTES
            } else {
                self.offset_after(segment, end - 1)?
            };
            parts.push(PrefixPart {
                name: segment.name.clone(),
                position_first: first,
                bytes,
                sealed: whole,
            });
        }
        // The last part becomes the copy's active segment: its `.fidx`
        // (if any) is not part of the prefix.
        if let Some(last) = parts.last_mut() {
            last.sealed = false;
        }
        Ok(parts)
    }

    /// The offset just after the frame holding `position` in `segment`.
    fn offset_after(&self, segment: &Arc<Segment>, position: u64) -> Result<u64> {
        let resident = self.shared.residents.get(segment)?;
        // One guard for both lookups: a second read lock taken while the
        // first is alive waits behind a writer waiting for the first (the
        // lock is fair; the writer takes it for every append) — a deadlock.
        let frame = {
            let frames = resident.frames.read();
            frames.find(position).and_then(|i| frames.get(i))
        };
        let frame = frame.ok_or_else(|| {
            Error::corrupt(
                &segment.name,
                0,
                format!("no frame holds position {position}"),
            )
        })?;
        let map = resident.mapping(&segment.name, segment.written())?;
        let at = usize::try_from(frame.offset).unwrap_or(usize::MAX);
        let head = map.bytes().get(at..).unwrap_or_default();
        let header = format::decode_frame_header(head, frame.offset, segment.header.salt)
            .map_err(|fault| Error::corrupt(&segment.name, frame.offset, fault.to_string()))?;
        Ok(frame.offset + header.padded_bytes())
    }
}
