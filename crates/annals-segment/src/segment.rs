//! One segment file as the readers and the writer share it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::format::{self, Record, SegmentHeader};
use crate::frame_index::{FrameEntry, FrameIndex};
use crate::storage::{Mapping, StorageFile};

/// File name of the segment whose first position is `position_first`.
pub fn segment_file_name(position_first: u64) -> String {
    format!("{position_first:020}.seg")
}

/// File name of the frame index of the segment starting at `position_first`.
pub fn frame_index_file_name(position_first: u64) -> String {
    format!("{position_first:020}.fidx")
}

/// Parses a segment file name back into its first position.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A segment: its header, its file, its mapping and where its frames are.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) header: SegmentHeader,
    pub(crate) file: Arc<dyn StorageFile>,
    /// The mapping, and how far the segment was written when it was made;
    /// `None` until first needed (a sealed segment opened from its frame
    /// index is mapped by its first read, so open costs no `mmap` per
    /// segment).
    mapping: RwLock<Option<(Mapping, u64)>>,
    /// Offset after the last frame written (not necessarily durable).
    written: AtomicU64,
    pub(crate) frames: RwLock<FrameIndex>,
}

impl Segment {
    /// A segment whose frames end at `written`, mapped now or (`None`) on
    /// first use.
    pub(crate) fn new(
        header: SegmentHeader,
        file: Arc<dyn StorageFile>,
        mapping: Option<Mapping>,
        frames: FrameIndex,
        written: u64,
    ) -> Self {
        Segment {
            name: segment_file_name(header.position_first),
            header,
            file,
            mapping: RwLock::new(mapping.map(|m| (m, written))),
            written: AtomicU64::new(written),
            frames: RwLock::new(frames),
        }
    }

    /// Records that frames now reach `offset` (the writer, after a write).
    pub(crate) fn set_written(&self, offset: u64) {
        self.written.store(offset, Ordering::Release);
    }

    /// Offset after the last frame written.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// A mapping that shows every frame written so far. Live mappings (real
    /// `mmap`) always do; a snapshot mapping (test backends) is replaced
    /// when frames were written after it was taken.
    pub(crate) fn mapping(&self) -> Result<Mapping> {
        let written = self.written();
        if let Some((map, mapped_at)) = &*self.mapping.read() {
            if map.is_live() || *mapped_at >= written {
                return Ok(map.clone());
            }
        }
        self.remap(written)
    }

    /// Maps the file afresh.
    pub(crate) fn remap(&self, written: u64) -> Result<Mapping> {
        let fresh = self
            .file
            .map()
            .map_err(|e| Error::io("mmap", self.name.clone(), e))?;
        *self.mapping.write() = Some((fresh.clone(), written));
        Ok(fresh)
    }

    pub(crate) fn frame(&self, i: usize) -> Option<FrameEntry> {
        self.frames.read().get(i)
    }

    /// Decodes the event at `position`, which the caller knows is durable
    /// and inside this segment.
    pub(crate) fn with_event<R>(
        &self,
        position: u64,
        visit: impl FnOnce(Record<'_>, &bytes::Bytes) -> R,
    ) -> Result<R> {
        let entry = {
            let frames = self.frames.read();
            frames.find(position).and_then(|i| frames.get(i))
        };
        let entry = entry.ok_or_else(|| {
            Error::corrupt(&self.name, 0, format!("no frame holds position {position}"))
        })?;
        let map = self.mapping()?;
        let bytes = frame_bytes_at(map.bytes(), entry.offset);
        let record = format::decode_event_in_frame(bytes, entry.offset, self.header.salt, position)
            .map_err(|reason| Error::corrupt(&self.name, entry.offset, reason))?;
        Ok(visit(record, map.shared()))
    }
}

/// The bytes from `offset` on (empty when out of range).
pub(crate) fn frame_bytes_at(bytes: &[u8], offset: u64) -> &[u8] {
    usize::try_from(offset)
        .ok()
        .and_then(|at| bytes.get(at..))
        .unwrap_or_default()
}
