//! One segment file as the readers and the writer share it.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::format::{self, Record, SegmentHeader};
use crate::frame_index::{FrameEntry, FrameIndex};
use crate::prefetch;
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

/// A segment: its header, how far it is written, and — while it is
/// resident — its file, mapping and frame index.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) header: SegmentHeader,
    /// What a read needs: always there for the active segment; for a
    /// sealed one, from its first read until the log's resident set
    /// (`resident.rs`) lets go of it. Readers clone the `Arc`, so letting
    /// go never pulls a mapping or a frame index from under a read.
    resident: RwLock<Option<Arc<Resident>>>,
    /// Offset after the last frame written (not necessarily durable).
    written: AtomicU64,
    /// Number of frames of a sealed segment (from its verified frame
    /// index), known without making it resident.
    frames_sealed: AtomicUsize,
    /// Read since the resident set's clock hand last passed it.
    pub(crate) used: AtomicBool,
    /// A compaction switched the log to a rewritten file of this segment
    /// (`rewrite.rs`): this object stays pinned resident for the readers
    /// that still hold it, and its files are never opened by name again.
    pub(crate) replaced: AtomicBool,
    /// This is a compaction's rewrite of the segment, made while this
    /// process had derived data (index offsets) of the file it replaced:
    /// an offset a caller gives may point into the old layout, and is then
    /// a hint (the frame index finds the event). Elsewhere a wrong offset
    /// is an error: after a reopen, every offset was rebuilt for the new
    /// layout (`rewrite.rs`; the store's `COMPACTING` marker).
    pub(crate) moved: AtomicBool,
}

/// A segment's open state: its file (the active segment only: a sealed
/// one is mapped and its file closed again), its mapping, its frames.
#[derive(Debug)]
pub(crate) struct Resident {
    file: Option<Arc<dyn StorageFile>>,
    /// The mapping, and how far the segment was written when it was made;
    /// `None` until first needed.
    mapping: RwLock<Option<(Mapping, u64)>>,
    pub(crate) frames: RwLock<FrameIndex>,
}

impl Resident {
    /// A sealed segment's state: its mapping (covering `written`) and its
    /// frame index.
    pub(crate) fn sealed(map: Mapping, written: u64, frames: FrameIndex) -> Self {
        Resident {
            file: None,
            mapping: RwLock::new(Some((map, written))),
            frames: RwLock::new(frames),
        }
    }

    /// A mapping that shows every frame written so far (`written`). A live
    /// mapping (real `mmap`) does while it covers them: the file may have
    /// grown since it was mapped (`allocation.rs`), and a page past the
    /// end of the file as mapped must not be touched; a snapshot mapping
    /// (test backends) is replaced when frames were written after it was
    /// taken.
    pub(crate) fn mapping(&self, name: &str, written: u64) -> Result<Mapping> {
        if let Some((map, mapped_at)) = &*self.mapping.read() {
            let covers = u64::try_from(map.bytes().len()).unwrap_or(u64::MAX) >= written;
            if (map.is_live() && covers) || *mapped_at >= written {
                return Ok(map.clone());
            }
        }
        self.remap(name, written)
    }

    /// Maps the file afresh (the active segment; a sealed one's mapping
    /// never needs it, and without a file this is an error).
    pub(crate) fn remap(&self, name: &str, written: u64) -> Result<Mapping> {
        let Some(file) = &self.file else {
            return Err(Error::corrupt(
                name,
                written,
                "the mapping of a sealed segment does not cover its frames",
            ));
        };
        let fresh = file.map().map_err(|e| Error::io("mmap", name, e))?;
        *self.mapping.write() = Some((fresh.clone(), written));
        Ok(fresh)
    }

    pub(crate) fn frame(&self, i: usize) -> Option<FrameEntry> {
        self.frames.read().get(i)
    }

    /// Replaces `out` with the entries of frames `first..first + max` that
    /// exist now, read under one lock of the frame index: a scan takes the
    /// lock once per chunk instead of once per frame (the writer takes it
    /// for every frame it appends, so many readers taking it per frame
    /// bounce its cache line between cores). Entries never change once
    /// pushed, so a chunk stays true while the index grows.
    pub(crate) fn frames_into(&self, first: usize, max: usize, out: &mut Vec<FrameEntry>) {
        out.clear();
        let frames = self.frames.read();
        let last = first.saturating_add(max).min(frames.len());
        out.extend((first..last).map_while(|i| frames.get(i)));
    }

    /// Whether this is the active segment's state (it holds the file).
    pub(crate) fn is_active(&self) -> bool {
        self.file.is_some()
    }

    /// The open file (the active segment's).
    pub(crate) fn file(&self) -> Option<&Arc<dyn StorageFile>> {
        self.file.as_ref()
    }
}

impl Segment {
    /// The active segment (or one recovery opened fully): resident, with
    /// its file, frames ending at `written`, mapped now or (`None`) on
    /// first use.
    pub(crate) fn new(
        header: SegmentHeader,
        file: Arc<dyn StorageFile>,
        mapping: Option<Mapping>,
        frames: FrameIndex,
        written: u64,
    ) -> Self {
        let resident = Resident {
            file: Some(file),
            mapping: RwLock::new(mapping.map(|m| (m, written))),
            frames: RwLock::new(frames),
        };
        Segment {
            name: segment_file_name(header.position_first),
            header,
            resident: RwLock::new(Some(Arc::new(resident))),
            written: AtomicU64::new(written),
            frames_sealed: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            moved: AtomicBool::new(false),
        }
    }

    /// A sealed segment verified at open, not resident: no file is open
    /// and nothing is mapped until it is read.
    pub(crate) fn sealed(header: SegmentHeader, written: u64, frame_count: usize) -> Self {
        Segment {
            name: segment_file_name(header.position_first),
            header,
            resident: RwLock::new(None),
            written: AtomicU64::new(written),
            frames_sealed: AtomicUsize::new(frame_count),
            used: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            moved: AtomicBool::new(false),
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

    /// Its open state, if resident (it never is for a sealed segment not
    /// read since it was let go).
    pub(crate) fn resident(&self) -> Option<Arc<Resident>> {
        self.resident.read().clone()
    }

    /// The slot the resident set fills and empties.
    pub(crate) fn resident_slot(&self) -> &RwLock<Option<Arc<Resident>>> {
        &self.resident
    }

    /// Its open file: the active segment's (`None` once sealed).
    pub(crate) fn file(&self) -> Option<Arc<dyn StorageFile>> {
        self.resident.read().as_ref().and_then(|r| r.file.clone())
    }

    /// The writer sealed it: from now on it is read through `sealed`
    /// (mapping and frame index file), and its file handle is let go once
    /// no read holds the old state.
    pub(crate) fn seal(&self, sealed: Resident) {
        let count = sealed.frames.read().len();
        self.frames_sealed.store(count, Ordering::Release);
        *self.resident.write() = Some(Arc::new(sealed));
    }

    /// Number of frames of a sealed segment, as its frame index said when
    /// verified at open or written at seal (0 for the active segment).
    pub(crate) fn frames_sealed(&self) -> usize {
        self.frames_sealed.load(Ordering::Acquire)
    }

    /// Number of frames.
    pub(crate) fn frame_count(&self) -> usize {
        match self.resident() {
            Some(resident) => resident.frames.read().len(),
            None => self.frames_sealed.load(Ordering::Acquire),
        }
    }

    /// Decodes the events at `positions` (durable, inside this segment), in
    /// the order given, calling `visit` for each until it breaks.
    ///
    /// Positions are taken [`LOCATE_BATCH`] at a time, in three passes: find
    /// each one's frame (frame index, under one hold of its lock) and
    /// prefetch its offset table entry; read the entries and prefetch the
    /// events; then verify, decode and visit. An event scattered through a
    /// large log costs two cache (and TLB) misses before its bytes can be
    /// checked; the passes let the misses of a whole batch overlap instead
    /// of paying them one after another. The lock is not held while
    /// decoding, so a long read never holds up the writer, and the mapping
    /// is taken once per call.
    ///
    /// With `stream`, an event of another stream is visited as `None`
    /// (after its checksum is verified). `offsets` (empty, or one per
    /// position) gives where events start when the caller knows it: those
    /// skip the frame index and the offset table.
    pub(crate) fn with_events(
        &self,
        resident: &Resident,
        positions: &[u64],
        offsets: &[Option<u32>],
        stream: Option<&str>,
        visit: &mut VisitEvents<'_>,
    ) -> Result<ControlFlow<()>> {
        let map = resident.mapping(&self.name, self.written())?;
        let bytes = map.bytes();
        let written = usize::try_from(self.written())
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let mut spots = [Spot::default(); LOCATE_BATCH];
        // The checksum's salted state, computed once for the whole batch.
        let salted = format::SaltedCrc::new(self.header.salt);
        // The frame of the previous position: events of one append share a
        // frame, and the next position is often in it.
        let mut last: Option<FrameSpan> = None;
        for (k, chunk) in positions.chunks(LOCATE_BATCH).enumerate() {
            let spots = spots.get_mut(..chunk.len()).unwrap_or_default();
            let known = |i: usize| offsets.get(k * LOCATE_BATCH + i).copied().flatten();
            // Pass 1: events whose offsets are known are placed at once;
            // the others' frames are found and their table entries fetched.
            let mut frames_needed = false;
            for (i, (spot, &position)) in spots.iter_mut().zip(chunk).enumerate() {
                *spot = match known(i) {
                    Some(offset) => Spot::at(position, offset as usize, written),
                    None => {
                        frames_needed = true;
                        Spot::default()
                    }
                };
            }
            if frames_needed {
                let index = resident.frames.read();
                for (i, (spot, &position)) in spots.iter_mut().zip(chunk).enumerate() {
                    if known(i).is_some() {
                        continue;
                    }
                    let frame = match last {
                        Some(last) if (last.first..last.next).contains(&position) => last,
                        _ => self.frame_of(&index, written, position)?,
                    };
                    last = Some(frame);
                    *spot = Spot::in_frame(position, frame);
                    let entry = usize::try_from(position.saturating_sub(frame.first))
                        .unwrap_or(usize::MAX)
                        .saturating_mul(format::EVENT_OFFSET_BYTES);
                    let table = frame.start.saturating_add(FRAME_TABLE);
                    prefetch(bytes, table.saturating_add(entry));
                }
            }
            // Pass 2: read the table entries; fetch every event.
            for spot in spots.iter_mut() {
                if let Some(frame) = spot.frame {
                    let frame_bytes = bytes.get(frame.start..frame.end).unwrap_or_default();
                    let at = format::locate_event(frame_bytes, frame.first, spot.position)
                        .map_err(|reason| {
                            Error::corrupt(&self.name, frame.start as u64, reason.as_str())
                        })?;
                    spot.event = frame.start + at;
                }
                for line in 0..PREFETCH_LINES {
                    prefetch(bytes, spot.event.saturating_add(line * 64));
                }
            }
            // Pass 3: verify, decode, visit.
            for spot in spots.iter_mut() {
                let rest = bytes.get(spot.event..spot.end).unwrap_or_default();
                let decoded = format::decode_record_salted(rest, &salted, spot.position, stream);
                let decoded = match decoded {
                    // An offset the caller gave into a segment a compaction
                    // rewrote in this process is a hint (`rewrite.rs`). The checksum,
                    // bound to the position, failed: find it through the
                    // frame index instead.
                    Err(_) if spot.frame.is_none() && self.moved.load(Ordering::Relaxed) => {
                        let frame =
                            self.frame_of(&resident.frames.read(), written, spot.position)?;
                        *spot = Spot::in_frame(spot.position, frame);
                        let frame_bytes = bytes.get(frame.start..frame.end).unwrap_or_default();
                        let at = format::locate_event(frame_bytes, frame.first, spot.position)
                            .map_err(|reason| {
                                Error::corrupt(&self.name, frame.start as u64, reason.as_str())
                            })?;
                        spot.event = frame.start + at;
                        let rest = bytes.get(spot.event..spot.end).unwrap_or_default();
                        format::decode_record_salted(rest, &salted, spot.position, stream)
                    }
                    other => other,
                };
                let (record, _) = decoded.map_err(|reason| {
                    Error::corrupt(&self.name, spot.reported(), reason.as_str())
                })?;
                if visit(spot.position, record, map.shared()).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The frame that holds `position`, through the frame index.
    fn frame_of(&self, frames: &FrameIndex, written: usize, position: u64) -> Result<FrameSpan> {
        let no_frame =
            || Error::corrupt(&self.name, 0, format!("no frame holds position {position}"));
        let i = frames.find(position).ok_or_else(no_frame)?;
        let entry = frames.get(i).ok_or_else(no_frame)?;
        let next = frames.get(i + 1);
        let offset = |o: u64| usize::try_from(o).unwrap_or(usize::MAX);
        Ok(FrameSpan {
            first: entry.position_first,
            next: next.map_or(u64::MAX, |n| n.position_first),
            start: offset(entry.offset),
            end: next.map_or(written, |n| offset(n.offset)).min(written),
        })
    }
}

/// One frame as a read sees it.
#[derive(Debug, Clone, Copy)]
struct FrameSpan {
    /// Its first position.
    first: u64,
    /// The next frame's first position (`u64::MAX` for the last frame).
    next: u64,
    /// Where its bytes start in the segment.
    start: usize,
    /// Where its bytes end: the next frame, or the written end.
    end: usize,
}

/// What a batch read calls for each position: the record (`None` for
/// another stream's when reading one stream), and the buffer it lives in.
pub(crate) type VisitEvents<'a> =
    dyn FnMut(u64, Option<Record<'_>>, &bytes::Bytes) -> ControlFlow<()> + 'a;

/// How many events a read locates before decoding them.
const LOCATE_BATCH: usize = 32;

/// Where a frame's event offset table starts.
const FRAME_TABLE: usize = format::FRAME_HEADER_BYTES;

/// Cache lines of each event fetched ahead of decoding it (a small event
/// fits in three; the checksum's sequential pass brings in the rest).
const PREFETCH_LINES: usize = 3;

/// Where one event to read lies in its segment's mapping.
#[derive(Debug, Clone, Copy, Default)]
struct Spot {
    position: u64,
    /// Its frame, when the event is found through the frame index.
    frame: Option<FrameSpan>,
    /// Where the event starts (once known).
    event: usize,
    /// How far its bytes may reach: its frame's end, or the written end.
    end: usize,
}

impl Spot {
    /// An event whose offset the caller gave.
    fn at(position: u64, event: usize, written: usize) -> Self {
        Spot {
            position,
            frame: None,
            event,
            end: written,
        }
    }

    /// An event to locate through `frame`'s offset table.
    fn in_frame(position: u64, frame: FrameSpan) -> Self {
        Spot {
            position,
            frame: Some(frame),
            event: frame.start,
            end: frame.end,
        }
    }

    /// The offset an error names: the frame's, else the event's.
    fn reported(&self) -> u64 {
        self.frame.map_or(self.event, |f| f.start) as u64
    }
}

/// The bytes from `offset` on (empty when out of range).
pub(crate) fn frame_bytes_at(bytes: &[u8], offset: u64) -> &[u8] {
    usize::try_from(offset)
        .ok()
        .and_then(|at| bytes.get(at..))
        .unwrap_or_default()
}
