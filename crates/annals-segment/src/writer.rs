//! The single writer of the log: encodes frames, writes a whole batch of
//! them with one `write`, makes them durable with one `fdatasync`, rolls to
//! a new preallocated segment when the active one is full, and refuses all
//! further writes once a write or fsync has failed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::allocation::{self, Allocation};
use crate::error::{Error, Result};
use crate::format::{self, align_up, FramePlace, Record, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::frame_index::{FrameEntry, FrameIndex, SealedSummary};
use crate::reader::{LogReader, PublishedLog};
use crate::recovery::{self, RecoveryReport};
use crate::resident::ResidentSet;
use crate::segment::{segment_file_name, Resident, Segment};
use crate::storage::{Storage, StorageFile};
use crate::zero::ZeroAhead;
use crate::LogOptions;

/// The one writer of a log. Not `Clone`: there is exactly one.
#[derive(Debug)]
pub struct LogWriter {
    storage: Arc<dyn Storage>,
    shared: Arc<PublishedLog>,
    options: LogOptions,
    active: Arc<Segment>,
    /// The active segment's open state (file, frames), never let go while
    /// it is active.
    active_state: Arc<Resident>,
    /// Next free offset in the active segment.
    write_offset: u64,
    /// Offset up to which the active segment is known durable.
    synced_offset: u64,
    /// Position of the next event to be written.
    position_next: u64,
    poisoned: bool,
    buf: Vec<u8>,
    pending: Vec<FrameEntry>,
    /// Byte offset in its segment of each event of the last `append`.
    located: Vec<u32>,
    /// Zero-fills the active segment ahead of `write_offset` (dropped, and
    /// its thread joined, with the writer).
    zero: Option<ZeroAhead>,
    /// How far the active segment's file is allocated, and how it grows.
    allocation: Allocation,
}

/// Opens (creating if needed) the log in `storage`, recovering from
/// whatever a crash left. The caller must hold the directory lock.
pub fn open(
    storage: Arc<dyn Storage>,
    options: LogOptions,
) -> Result<(LogWriter, LogReader, RecoveryReport)> {
    open_with(storage, options, crate::OPEN_SEGMENTS_DEFAULT, &[])
}

/// Like [`open`], keeping at most `open_segments_max` sealed segments open
/// (mapped, with their frame index) at once; others are opened when read
/// (`resident.rs`). No file descriptor is held for a sealed segment.
pub fn open_bounded(
    storage: Arc<dyn Storage>,
    options: LogOptions,
    open_segments_max: usize,
) -> Result<(LogWriter, LogReader, RecoveryReport)> {
    open_with(storage, options, open_segments_max, &[])
}

/// [`open`], also refusing ([`Error::Missing`]) a log that ends before any
/// of `evidence` (files the caller found that vouch for durable
/// positions, such as index runs) — besides the log's own evidence, which
/// [`open`] checks too.
pub fn open_with_evidence(
    storage: Arc<dyn Storage>,
    options: LogOptions,
    evidence: &[crate::Evidence],
) -> Result<(LogWriter, LogReader, RecoveryReport)> {
    open_with(storage, options, crate::OPEN_SEGMENTS_DEFAULT, evidence)
}

/// Opens the log with every choice: at most `open_segments_max` sealed
/// segments open at once ([`open_bounded`]) and the caller's `evidence`
/// of durable positions ([`open_with_evidence`]).
pub fn open_with(
    storage: Arc<dyn Storage>,
    options: LogOptions,
    open_segments_max: usize,
    evidence: &[crate::Evidence],
) -> Result<(LogWriter, LogReader, RecoveryReport)> {
    options.validate()?;
    let recovered = recovery::recover(storage.as_ref(), evidence, false)?;
    let (segments, write_offset, position_next, report) = match recovered {
        Some(r) => (r.segments, r.write_offset, r.position_end, r.report),
        None => {
            let (first, _) = create_segment(storage.as_ref(), 0, options.segment_bytes)?;
            (
                vec![first],
                SEGMENT_HEADER_BYTES,
                0,
                RecoveryReport::default(),
            )
        }
    };
    let active = segments
        .last()
        .cloned()
        .ok_or_else(|| Error::corrupt(storage.describe(), 0, "no active segment"))?;
    let active_state = active
        .resident()
        .filter(|r| r.file().is_some())
        .ok_or_else(|| Error::corrupt(&active.name, 0, "the active segment is not open"))?;
    let allocated = active_state
        .file()
        .map_or(Ok(0), |f| f.len())
        .map_err(|e| Error::io("stat", active.name.clone(), e))?;
    let allocation = Allocation::of(storage.as_ref(), allocated, active.header.segment_bytes);
    let shared = Arc::new(PublishedLog {
        segments: parking_lot::RwLock::new(segments),
        visible_end: position_next.into(),
        residents: ResidentSet::new(Arc::clone(&storage), open_segments_max),
    });
    let zero = options
        .zero_ahead
        .unwrap_or_else(|| storage.zero_fill_helps())
        .then(|| ZeroAhead::start(Arc::clone(&active), options.segment_bytes, write_offset));
    let writer = LogWriter {
        storage,
        shared: Arc::clone(&shared),
        options,
        active,
        active_state,
        write_offset,
        synced_offset: write_offset,
        position_next,
        poisoned: false,
        buf: Vec::new(),
        pending: Vec::new(),
        located: Vec::new(),
        zero,
        allocation,
    };
    Ok((writer, LogReader { shared }, report))
}

/// Creates a segment durably: create → allocate (all of it, or a first
/// step: `allocation.rs`) → header → fsync file → fsync directory. Only
/// then may anything in it be acknowledged. A filesystem too full for the
/// allocation is an [`Error::Io`] (ENOSPC) here, and the new file is
/// removed again.
fn create_segment(
    storage: &dyn Storage,
    position_first: u64,
    segment_bytes: u64,
) -> Result<(Arc<Segment>, Allocation)> {
    let name = segment_file_name(position_first);
    let header = SegmentHeader {
        position_first,
        salt: crate::random_u64(),
        segment_bytes,
    };
    let file = storage
        .create(&name)
        .map_err(|e| Error::io("create", name.clone(), e))?;
    let mut allocation = Allocation::of(storage, 0, segment_bytes);
    let first = if allocation.in_steps {
        allocation::STEP_MIN.min(segment_bytes)
    } else {
        segment_bytes
    };
    if let Err(error) = allocation.ensure(file.as_ref(), &name, first) {
        // Nothing in it: a zero-length segment last in the log would be
        // removed by the next open anyway.
        drop(file);
        let _ = storage.remove(&name);
        return Err(error);
    }
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write", name.clone(), e))?;
    file.sync_all()
        .map_err(|e| Error::io("fsync", name.clone(), e))?;
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))?;
    let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
    let segment = Arc::new(Segment::new(
        header,
        file,
        Some(map),
        FrameIndex::Memory(Vec::new()),
        SEGMENT_HEADER_BYTES,
    ));
    Ok((segment, allocation))
}

impl LogWriter {
    /// The active segment's file.
    fn active_file(&self) -> Result<Arc<dyn StorageFile>> {
        self.active_state
            .file()
            .cloned()
            .ok_or_else(|| Error::corrupt(&self.active.name, 0, "the active segment is not open"))
    }

    /// A reader on the same log.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Position the next appended event will get (written, maybe not durable).
    pub fn position_next(&self) -> u64 {
        self.position_next
    }

    /// Whether an earlier failure poisoned the writer.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Largest frame this log accepts: the format limit, or what fits in an
    /// empty segment if that is smaller — of the size new segments get, and
    /// of the active segment's own size (a log opened with another segment
    /// size than it was written with keeps each segment within the size
    /// its header gives; the active one may be smaller).
    pub fn frame_bytes_max(&self) -> usize {
        let segment_bytes = self
            .options
            .segment_bytes
            .min(self.active.header.segment_bytes);
        let room = segment_bytes.saturating_sub(SEGMENT_HEADER_BYTES);
        format::FRAME_BYTES_MAX.min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    /// Checks that `records` would make a valid frame; returns its size.
    pub fn check_batch(&self, records: &[Record<'_>]) -> Result<usize> {
        let bytes = format::frame_bytes(records)?;
        if bytes > self.frame_bytes_max() {
            return Err(Error::Invalid(format!(
                "append of {bytes} bytes does not fit in a segment of {} bytes",
                self.options.segment_bytes
            )));
        }
        Ok(bytes)
    }

    /// Appends the batches, in order, as few frames as the limits allow
    /// (usually one: a group commit is one frame, so one `write` holds one
    /// frame and a torn write can only ever tear the last frame). A batch is
    /// never split across frames, so each batch is atomic. Returns each
    /// batch's first position. Nothing is durable or visible to readers
    /// until [`sync`].
    ///
    /// Every batch is checked before anything is written: an invalid batch
    /// fails the call and writes nothing.
    ///
    /// [`sync`]: LogWriter::sync
    pub fn append(&mut self, batches: &[&[Record<'_>]]) -> Result<Vec<u64>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut sizes = Vec::with_capacity(batches.len());
        for batch in batches {
            sizes.push(self.check_batch(batch)? - format::FRAME_HEADER_BYTES);
        }
        let result = self.append_checked(batches, &sizes);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn append_checked(&mut self, batches: &[&[Record<'_>]], sizes: &[usize]) -> Result<Vec<u64>> {
        let mut firsts = Vec::with_capacity(batches.len());
        let mut frame: Vec<Record<'_>> = Vec::new();
        let mut frame_bytes = format::FRAME_HEADER_BYTES;
        let mut cursor = self.position_next;
        self.buf.clear();
        self.pending.clear();
        self.located.clear();
        for (batch, &size) in batches.iter().zip(sizes) {
            let too_many = frame.len() + batch.len() > format::FRAME_EVENTS_MAX as usize;
            if !frame.is_empty() && (frame_bytes + size > self.frame_bytes_max() || too_many) {
                self.emit_frame(&frame, frame_bytes)?;
                frame.clear();
                frame_bytes = format::FRAME_HEADER_BYTES;
            }
            frame.extend_from_slice(batch);
            frame_bytes += size;
            firsts.push(cursor);
            cursor += batch.len() as u64;
        }
        if !frame.is_empty() {
            self.emit_frame(&frame, frame_bytes)?;
        }
        self.flush_buf()?;
        debug_assert_eq!(cursor, self.position_next);
        Ok(firsts)
    }

    /// Encodes one frame of `frame_bytes` (as sized by the caller) into the
    /// write buffer, rolling first if it does not fit in the active segment.
    /// The encoder sizes the frame again and must agree: the check comes in
    /// a pair, not once per step.
    fn emit_frame(&mut self, records: &[Record<'_>], frame_bytes: usize) -> Result<()> {
        let padded = align_up(frame_bytes as u64);
        // The active segment's own size: it may have been created with
        // another size than new segments get now.
        if self.write_offset + self.buf.len() as u64 + padded > self.active.header.segment_bytes {
            self.flush_buf()?;
            self.roll()?;
        }
        let place = FramePlace {
            salt: self.active.header.salt,
            offset: self.write_offset + self.buf.len() as u64,
            position_first: self.position_next,
            synced_before: self.synced_offset,
        };
        let frame_start = self.buf.len();
        let encoded = format::encode_frame(&mut self.buf, place, records)?;
        let frame = self.buf.get(frame_start..).unwrap_or_default();
        for i in 0..records.len() {
            // Always fits: segments are at most 4 GiB (SEGMENT_BYTES_MAX).
            // 0 would mean "unknown" to readers (they use the frame index).
            let offset = format::event_offset(frame, i)
                .and_then(|o| u32::try_from(place.offset + o as u64).ok())
                .unwrap_or(0);
            self.located.push(offset);
        }
        if encoded != frame_bytes {
            // Cannot happen (both sizes come from the same records); if it
            // did, the fit check above was wrong: refuse, and be poisoned.
            return Err(Error::Invalid(format!(
                "frame sized {frame_bytes} bytes but encoded as {encoded}"
            )));
        }
        self.pending.push(FrameEntry {
            position_first: self.position_next,
            offset: place.offset,
        });
        self.position_next += records.len() as u64;
        Ok(())
    }

    /// Writes the buffered frames to the active segment with one `write`.
    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.write_offset + self.buf.len() as u64;
        let file = self.active_file()?;
        self.allocation
            .ensure(file.as_ref(), &self.active.name, end)?;
        if let Some(zero) = &self.zero {
            zero.before_write(end);
        }
        file.write_all_at(&self.buf, self.write_offset)
            .map_err(|e| Error::io("write", self.active.name.clone(), e))?;
        self.write_offset += self.buf.len() as u64;
        self.active.set_written(self.write_offset);
        self.buf.clear();
        let mut frames = self.active_state.frames.write();
        for entry in self.pending.drain(..) {
            frames.push(entry);
        }
        Ok(())
    }

    /// Seals the active segment (fsync, frame index file) and starts a new one.
    fn roll(&mut self) -> Result<()> {
        self.sync_active()?;
        let summary = SealedSummary {
            position_end: self.position_next,
            data_end: self.write_offset,
        };
        // Readers keep using the in-memory index while the file is written
        // (encoded under a read lock; no lock is held across the I/O); only
        // then is it swapped for the mapped one. (Taking it out first made a
        // concurrent read of this segment find no frame.)
        let bytes = self
            .active_state
            .frames
            .read()
            .encode(&self.active.header, summary);
        let mapped =
            recovery::write_frame_index(self.storage.as_ref(), &self.active.header, &bytes)?;
        // Sealed: read from now on through a final mapping and the frame
        // index file, its file handle let go; one of the resident set.
        let map = self
            .active_file()?
            .map()
            .map_err(|e| Error::io("mmap", self.active.name.clone(), e))?;
        self.active
            .seal(Resident::sealed(map, self.write_offset, mapped));
        self.shared.residents.admit(&self.active);
        let (next, allocation) = create_segment(
            self.storage.as_ref(),
            self.position_next,
            self.options.segment_bytes,
        )?;
        self.allocation = allocation;
        self.shared.segments.write().push(Arc::clone(&next));
        if let Some(zero) = &self.zero {
            zero.switch(Arc::clone(&next), SEGMENT_HEADER_BYTES);
        }
        self.active_state = next
            .resident()
            .ok_or_else(|| Error::corrupt(&next.name, 0, "a new segment is not open"))?;
        self.active = next;
        self.write_offset = SEGMENT_HEADER_BYTES;
        self.synced_offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        self.active_file()?
            .sync_data()
            .map_err(|e| Error::io("fdatasync", self.active.name.clone(), e))?;
        self.synced_offset = self.write_offset;
        Ok(())
    }

    /// Syncs, then records a clean close (see `clean.rs`): the next open
    /// will not need to read the active segment's preallocated tail. Call
    /// last; nothing may be appended after it.
    pub fn close_clean(&mut self) -> Result<()> {
        self.sync()?;
        // The active segment's frame index, so that a clean open reads no
        // frame: made durable by the marker's directory fsync, and used
        // only when the marker names exactly this segment and end.
        let summary = crate::frame_index::SealedSummary {
            position_end: self.position_next,
            data_end: self.write_offset,
        };
        if self.position_next > self.active.header.position_first {
            let bytes = self
                .active_state
                .frames
                .read()
                .encode(&self.active.header, summary);
            crate::recovery::write_frame_index(self.storage.as_ref(), &self.active.header, &bytes)?;
        }
        crate::clean::write(
            self.storage.as_ref(),
            crate::clean::CleanMarker {
                position_first: self.active.header.position_first,
                salt: self.active.header.salt,
                data_end: self.write_offset,
                position_end: self.position_next,
            },
        )
    }

    /// The byte offset, in its segment, of each event of the last
    /// [`append`](LogWriter::append), in the order of its records (0 for
    /// one whose offset does not fit 32 bits). The index keeps them so that
    /// a read goes straight to the event.
    pub fn appended_offsets(&self) -> &[u32] {
        &self.located
    }

    /// Lets readers see everything appended so far. Durable only if a
    /// [`sync_unpublished`](LogWriter::sync_unpublished) covered it (stores
    /// that chose OS-buffered durability publish without one; a later
    /// [`sync`](LogWriter::sync) still makes it durable). The store
    /// publishes only once its index holds what it publishes, so that a
    /// reader of the feed never sees an event that a stream read cannot.
    pub fn publish(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.shared
            .visible_end
            .store(self.position_next, Ordering::Release);
        Ok(())
    }

    /// Makes everything appended so far durable with one `fdatasync`,
    /// without letting readers see it yet (see [`publish`](LogWriter::publish)).
    /// A failure poisons the writer: fsync is never retried, because a
    /// failed fsync may have dropped the dirty pages.
    pub fn sync_unpublished(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.synced_offset == self.write_offset {
            return Ok(());
        }
        let result = self.sync_active();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Makes everything appended so far durable, then lets readers see it:
    /// [`sync_unpublished`](LogWriter::sync_unpublished), then
    /// [`publish`](LogWriter::publish).
    pub fn sync(&mut self) -> Result<()> {
        self.sync_unpublished()?;
        self.publish()
    }
}
