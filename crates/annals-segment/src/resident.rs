//! The bounded set of sealed segments kept open: mapped, with their frame
//! index mapped beside them.
//!
//! Open no longer keeps a file or a mapping per segment (a store of 1,000
//! segments stopped opening at the usual limit of 1,024 open files, and
//! `vm.max_map_count` capped mappings). A sealed segment is made resident
//! by its first read — open the segment file, map it, close it again; the
//! same for its `.fidx` — so a resident segment holds two mappings and no
//! file descriptor. At most `capacity` sealed segments are resident; one
//! more lets go of the one the clock hand finds not read since its last
//! pass (CLOCK, second chance: a read only sets a flag, no lock is taken on
//! a hit). The model is lsm-tree's `descriptor_table.rs`: readers clone an
//! `Arc` of what they use, so letting go never closes or unmaps anything a
//! read (or a `Bytes` handed out by one) still holds; the mapping goes when
//! the last of them does.
//!
//! The active segment is always resident (its writer holds its file) and
//! is not counted; the writer hands a segment to the set when it seals it.
//!
//! A read-only log (`read_only.rs`) follows another process, whose
//! compactions switch sealed segments to rewritten files (`rewrite.rs`)
//! that this process never hears of. Its set loads a segment *as it is
//! now* ([`ResidentSet::load`]): the file under the segment's name with the
//! frame index that matches it, waiting out the moment of a switch when
//! the old frame index is gone and the new one not yet renamed in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::file_ids::FileIds;
use crate::format::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::frame_index::FrameIndex;
use crate::segment::{frame_index_file_name, Resident, Segment};
use crate::storage::Storage;

/// Default for how many sealed segments stay resident.
pub const OPEN_SEGMENTS_DEFAULT: usize = 1024;

/// The sealed segments resident now, in clock order.
#[derive(Debug)]
pub(crate) struct ResidentSet {
    storage: Arc<dyn Storage>,
    capacity: usize,
    ring: Mutex<VecDeque<Arc<Segment>>>,
    /// The log is read-only, beside an owner that may rewrite sealed
    /// segments (see the module comment): the inodes it opened.
    follows_owner: Option<FileIds>,
    /// How many times a segment was replaced by another file
    /// ([`LogReader::replacements`](crate::LogReader::replacements)).
    replacements: AtomicU64,
}

/// How many times a read-only log looks again at a segment whose files
/// do not match each other (an owner's switch under way) before it
/// reports what it found. The waits double from 1 ms: about 1 s in all,
/// for a switch that takes two directory `fsync`s.
const SWITCH_ATTEMPTS: u32 = 10;

impl ResidentSet {
    /// A set of at most `capacity` (at least 1) sealed segments of `storage`.
    pub(crate) fn new(storage: Arc<dyn Storage>, capacity: usize) -> Self {
        ResidentSet {
            storage,
            capacity: capacity.max(1),
            ring: Mutex::new(VecDeque::new()),
            follows_owner: None,
            replacements: AtomicU64::new(0),
        }
    }

    /// [`ResidentSet::new`] for a read-only log beside an owner that may
    /// switch its sealed segments to rewritten files.
    /// `files` records the inodes it opens.
    pub(crate) fn following(storage: Arc<dyn Storage>, capacity: usize, files: FileIds) -> Self {
        ResidentSet {
            follows_owner: Some(files),
            ..Self::new(storage, capacity)
        }
    }

    /// Counts a replacement of a segment by another file (after the list
    /// or the load changed: a reader that loads the new count sees it).
    pub(crate) fn count_replacement(&self) {
        self.replacements.fetch_add(1, Ordering::AcqRel);
    }

    /// The count of replacements.
    pub(crate) fn replacements(&self) -> u64 {
        self.replacements.load(Ordering::Acquire)
    }

    /// The inodes of a read-only log's segments (`None` for the owner's).
    pub(crate) fn file_ids(&self) -> Option<&FileIds> {
        self.follows_owner.as_ref()
    }

    /// What a read of `segment` needs: its resident state, made resident
    /// now if it is not.
    pub(crate) fn get(&self, segment: &Arc<Segment>) -> Result<Arc<Resident>> {
        if let Some(resident) = segment.resident() {
            // Written only when clear: concurrent readers of a hot segment
            // do not bounce its cache line.
            if !segment.used.load(Ordering::Relaxed) {
                segment.used.store(true, Ordering::Relaxed);
            }
            return Ok(resident);
        }
        let resident = {
            let mut slot = segment.resident_slot().write();
            if let Some(resident) = &*slot {
                return Ok(Arc::clone(resident));
            }
            let resident = Arc::new(self.load(segment)?);
            *slot = Some(Arc::clone(&resident));
            resident
        };
        // The slot's lock is not held here: letting go takes the ring's
        // lock, then a slot's.
        self.admit(segment);
        Ok(resident)
    }

    /// Counts `segment` (just made resident, or just sealed by the writer)
    /// in the set, letting go of others beyond the capacity.
    pub(crate) fn admit(&self, segment: &Arc<Segment>) {
        let mut ring = self.ring.lock();
        segment.used.store(true, Ordering::Relaxed);
        ring.push_back(Arc::clone(segment));
        // Each segment is passed over at most once (its flag cleared), so
        // this ends within two turns of the ring.
        let mut passes = 2 * ring.len();
        while ring.len() > self.capacity && passes > 0 {
            passes -= 1;
            let Some(oldest) = ring.pop_front() else {
                break;
            };
            if oldest.used.swap(false, Ordering::Relaxed) {
                ring.push_back(oldest);
            } else {
                // Reads holding its `Arc<Resident>` keep it until they end.
                *oldest.resident_slot().write() = None;
            }
        }
    }

    /// Keeps `segment` resident with `resident` for as long as anything
    /// holds it: out of the clock ring, so never let go (compaction pins a
    /// segment it replaces, `rewrite.rs`).
    pub(crate) fn pin(&self, segment: &Arc<Segment>, resident: Arc<Resident>) {
        let mut ring = self.ring.lock();
        ring.retain(|s| !Arc::ptr_eq(s, segment));
        *segment.resident_slot().write() = Some(resident);
    }

    /// The storage the segments live in.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// How many sealed segments are resident.
    pub(crate) fn len(&self) -> usize {
        self.ring.lock().len()
    }

    /// Reads a sealed segment's state from its files, as they are now (not
    /// kept: `verify` reads every segment afresh without flooding the set).
    ///
    /// A read-only log accepts a segment the owner rewrote since this log
    /// was opened (same header and frames, smaller: gap records), and
    /// waits out a switch under way; what is still wrong after
    /// [`SWITCH_ATTEMPTS`] is reported as for the owner.
    pub(crate) fn load(&self, segment: &Segment) -> Result<Resident> {
        if let Some(files) = &self.follows_owner {
            let mut wait = std::time::Duration::from_millis(1);
            let mut new_file = false;
            for _ in 0..SWITCH_ATTEMPTS {
                // Before the open: `file_ids.rs`.
                new_file |= files.note(segment.header.position_first);
                if let Some(resident) = self.load_current(segment)? {
                    if new_file {
                        // Perhaps the owner's rewrite of what this view
                        // read before (and what a cache of its records
                        // holds): counted before any read of it returns.
                        self.count_replacement();
                    }
                    return Ok(resident);
                }
                std::thread::sleep(wait);
                wait = wait
                    .saturating_mul(2)
                    .min(std::time::Duration::from_millis(200));
            }
        }
        self.load_as_verified(segment)
    }

    /// A read-only log's load: the segment file under its name and the
    /// frame index that describes that file. `None`: the two do not match
    /// (the frame index is missing, or belongs to the other file of a
    /// switch under way); look again. Errors are what no switch explains.
    fn load_current(&self, segment: &Segment) -> Result<Option<Resident>> {
        let name = &segment.name;
        let file = self
            .storage
            .open(name)
            .map_err(|e| Error::io("open", name.clone(), e))?;
        let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
        drop(file);
        let bytes = map.bytes();
        // A rewrite keeps the header: another one is not this segment.
        match SegmentHeader::decode(
            bytes
                .get(..SEGMENT_HEADER_BYTES as usize)
                .unwrap_or_default(),
        ) {
            Ok(header) if header == segment.header => {}
            _ => {
                return Err(Error::corrupt(
                    name,
                    0,
                    "segment header differs from the one verified when the log was opened",
                ))
            }
        }
        let index_name = frame_index_file_name(segment.header.position_first);
        let index_map = match self.storage.open(&index_name) {
            Ok(index_file) => index_file
                .map()
                .map_err(|e| Error::io("mmap", index_name.clone(), e))?,
            // Removed by a switch before the new one is renamed in.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", index_name, e)),
        };
        let (frames, summary) = FrameIndex::decode(index_map, &index_name, &segment.header)?;
        // A rewrite keeps every frame (and its positions) in place.
        if frames.len() != segment.frames_sealed() {
            return Err(Error::corrupt(
                &index_name,
                0,
                "frame index differs from the one verified when the log was opened",
            ));
        }
        // The index describes this file if its last frame is there, with
        // its position, ending where the index says the data ends (the
        // frame header's checksum binds its offset and the salt).
        let last = frames.len().checked_sub(1).and_then(|i| frames.get(i));
        let matches = last.is_some_and(|entry| {
            let at = usize::try_from(entry.offset).unwrap_or(usize::MAX);
            format::decode_frame_header(
                bytes.get(at..).unwrap_or_default(),
                entry.offset,
                segment.header.salt,
            )
            .is_ok_and(|frame| {
                frame.position_first == entry.position_first
                    && frame.position_end() == summary.position_end
                    && entry.offset.saturating_add(frame.padded_bytes()) == summary.data_end
                    && bytes.len() as u64 >= summary.data_end
            })
        });
        if !matches {
            return Ok(None);
        }
        // Mapped as covering the segment's frames as first verified: a
        // rewritten file is shorter (`written` stays, as readers holding
        // the old mapping still need it), and every read is bounded by
        // the mapping's length.
        Ok(Some(Resident::sealed(map, segment.written(), frames)))
    }

    /// The owner's load: the files must be the ones verified at open.
    fn load_as_verified(&self, segment: &Segment) -> Result<Resident> {
        let name = &segment.name;
        let written = segment.written();
        let file = self
            .storage
            .open(name)
            .map_err(|e| Error::io("open", name.clone(), e))?;
        let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
        drop(file);
        if (map.bytes().len() as u64) < written {
            return Err(Error::corrupt(
                name,
                map.bytes().len() as u64,
                format!("segment file ends before its last frame ends at {written}"),
            ));
        }
        let index_name = frame_index_file_name(segment.header.position_first);
        let index_file = self
            .storage
            .open(&index_name)
            .map_err(|e| Error::io("open", index_name.clone(), e))?;
        let index_map = index_file
            .map()
            .map_err(|e| Error::io("mmap", index_name.clone(), e))?;
        drop(index_file);
        let (frames, summary) = FrameIndex::decode(index_map, &index_name, &segment.header)?;
        if summary.data_end != written || frames.len() != segment.frames_sealed() {
            return Err(Error::corrupt(
                &index_name,
                0,
                "frame index differs from the one verified when the log was opened",
            ));
        }
        Ok(Resident::sealed(map, written, frames))
    }
}
