//! A read-only open of the log: for another process while the owner
//! writes, for the CLI's read commands, for read-only media. Nothing is
//! written, created, removed or locked (see `docs/ARCHITECTURE.md`,
//! "Read-only opens"). The view is a prefix of the log: whole frames up to
//! the last valid frame of the active segment; the bytes after it are "not
//! written yet" (the owner may be writing them). [`ReadOnlyLog::refresh`]
//! extends the view to what the owner has written since, across its
//! segment rolls.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file_ids::FileIds;
use crate::format::SEGMENT_HEADER_BYTES;
use crate::frame_index::{FrameEntry, FrameIndex};
use crate::reader::{LogReader, PublishedLog};
use crate::recovery::{self, RecoveryReport};
use crate::resident::ResidentSet;
use crate::segment::{frame_index_file_name, parse_segment_file_name, segment_file_name, Segment};
use crate::storage::Storage;
use crate::window::FileWindow;

/// How many times an open is retried when it found the log damaged or
/// short. Against a live owner both can be races, not damage: the owner
/// rolled to a new segment between the listing and the checks (an index
/// run may then vouch for positions in a segment the listing did not
/// hold), or the scan read a frame while the owner's `write` of it was
/// still copying into the page cache and then read a later frame written
/// after it (seen: `annals stats` beside `annals stress` on a 10M-event
/// store reported "frame header checksum mismatch, followed by a valid
/// frame … written after this one was durable"), or the owner's merge
/// removed a segment file between the listing and its open. Real damage
/// is found on every attempt and reported after the last.
const OPEN_ATTEMPTS: usize = 8;

/// The least a refresh reads at the end of the active segment.
const REFRESH_READ_BYTES: usize = 16 << 10;

/// The read-only side of a log: what [`ReadOnlyLog::refresh`] needs to
/// extend the view. Readers use the [`LogReader`] returned with it.
#[derive(Debug)]
pub struct ReadOnlyLog {
    storage: Arc<dyn Storage>,
    shared: Arc<PublishedLog>,
}

/// Opens the log in `storage` read-only. Returns the log (for
/// [`ReadOnlyLog::refresh`]), a reader of the prefix found, and what was
/// found. `evidence`: index runs and other files that vouch for the log's
/// end, as for a writable open; a log ending before them is refused.
pub fn open_read_only(
    storage: Arc<dyn Storage>,
    open_segments_max: usize,
    evidence: &[crate::Evidence],
) -> Result<(ReadOnlyLog, LogReader, RecoveryReport)> {
    // Before recovery opens them (`file_ids.rs`).
    let files = FileIds::new(Arc::clone(&storage));
    for first in storage
        .list()
        .map_err(|e| Error::io("list", storage.describe(), e))?
        .iter()
        .filter_map(|name| parse_segment_file_name(name))
    {
        files.note(first);
    }
    let mut attempt = 0;
    let recovered = loop {
        match recovery::recover(storage.as_ref(), evidence, true) {
            Ok(recovered) => break recovered,
            Err(error) => {
                attempt += 1;
                // A file gone between the listing and its open: the
                // owner's merge removed a segment it absorbed.
                let vanished = matches!(&error, Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound);
                if !(attempt < OPEN_ATTEMPTS
                    && (vanished || matches!(error, Error::Missing { .. } | Error::Corrupt { .. })))
                {
                    return Err(error);
                }
            }
        }
    };
    let (segments, position_end, report) = match recovered {
        Some(r) => (r.segments, r.position_end, r.report),
        None => (Vec::new(), 0, RecoveryReport::default()),
    };
    // The owner's compactions may rewrite any sealed segment
    // (`resident.rs` loads the file as it is now): an offset this process
    // took from an index run or a scan may point into the other layout,
    // so it is a hint, checked by the event's checksum and else found
    // through the frame index (`segment.rs`).
    for segment in &segments {
        segment.moved.store(true, Ordering::Relaxed);
    }
    let shared = Arc::new(PublishedLog {
        segments: parking_lot::RwLock::new(segments),
        visible_end: position_end.into(),
        residents: ResidentSet::following(Arc::clone(&storage), open_segments_max, files),
    });
    let reader = LogReader {
        shared: Arc::clone(&shared),
    };
    Ok((ReadOnlyLog { storage, shared }, reader, report))
}

impl ReadOnlyLog {
    /// Finds the frames written since the view's end: scans the active
    /// segment from there, and follows the owner into the segments it
    /// created since. Returns the new end (one past the last position
    /// found) without publishing it: readers see it after
    /// [`ReadOnlyLog::publish`] (the store indexes it first).
    ///
    /// The owner creates the segment named after position `p` only after
    /// it sealed the previous one exactly at `p`; so once a scan ends at
    /// `p` and that file exists, the previous segment is complete.
    /// Costs one `pread` of the frame header at the end, and one `open`
    /// that fails, when nothing was written.
    pub fn refresh(&self) -> Result<u64> {
        let mut end = self.shared.visible_end.load(Ordering::Acquire);
        // Bounded: each pass either moves to a newer segment or returns.
        loop {
            let active = self.shared.segments.read().last().cloned();
            if let Some(active) = &active {
                end = self.scan_active(active, end)?;
            }
            if active.is_some_and(|a| a.header.position_first == end) || !self.open_next(end)? {
                // An empty active segment, or none after it: the end.
                // Then every segment before the active one is sealed:
                // look for the owner's compactions among them.
                self.switch_replaced();
                return Ok(end);
            }
        }
    }

    /// Drops the segments whose file the owner replaced since this log
    /// opened it (`file_ids.rs`) for a segment that is not resident: the
    /// next read loads the file under the name (`resident.rs`). Readers
    /// that hold the old one keep its mapping until they end.
    fn switch_replaced(&self) {
        let Some(files) = self.shared.residents.file_ids() else {
            return;
        };
        if !files.dir_changed() {
            return;
        }
        // Merges first: a merged file has more frames than the segment it
        // replaced, which the rewrite check below would not take.
        self.shared.follow_merges();
        let candidates: Vec<Arc<Segment>> = {
            let segments = self.shared.segments.read();
            let sealed = segments.len().saturating_sub(1);
            segments.iter().take(sealed).cloned().collect()
        };
        for old in candidates {
            if !files.replaced(old.header.position_first) {
                continue;
            }
            // Where its frames end now (what `segments()` and a backup
            // through this log use), from the new frame index; without
            // one yet (a switch under way) the next refresh looks again.
            let Some(data_end) = self.data_end_now(&old) else {
                continue;
            };
            let fresh = Segment::sealed(old.header, data_end, old.frame_count());
            fresh.moved.store(true, Ordering::Relaxed);
            let fresh = Arc::new(fresh);
            let mut segments = self.shared.segments.write();
            if let Some(slot) = segments.iter_mut().find(|s| Arc::ptr_eq(s, &old)) {
                *slot = fresh;
                self.shared.count_replacement();
            }
        }
    }

    /// Makes positions up to `end` (found by [`ReadOnlyLog::refresh`])
    /// visible to readers.
    pub fn publish(&self, end: u64) {
        self.shared.visible_end.fetch_max(end, Ordering::AcqRel);
    }

    /// The data end the frame index under `segment`'s name gives, if it
    /// is there, verifies and has the segment's frame count.
    fn data_end_now(&self, segment: &Segment) -> Option<u64> {
        let name = frame_index_file_name(segment.header.position_first);
        let map = self.storage.open(&name).ok()?.map().ok()?;
        let (frames, summary) = FrameIndex::decode(map, &name, &segment.header).ok()?;
        (frames.len() == segment.frame_count()).then_some(summary.data_end)
    }

    /// Scans the active segment from the end of its known frames, adds
    /// the valid ones to its frame index, and returns the log's new end.
    fn scan_active(&self, active: &Arc<Segment>, from_position: u64) -> Result<u64> {
        let resident = active
            .resident()
            .ok_or_else(|| Error::corrupt(&active.name, 0, "the active segment is not open"))?;
        let file = resident
            .file()
            .cloned()
            .ok_or_else(|| Error::corrupt(&active.name, 0, "the active segment is not open"))?;
        let mut offset = active.written();
        let mut position_end = from_position;
        let mut found = Vec::new();
        {
            let mut window =
                FileWindow::with_reads_of(file.as_ref(), &active.name, REFRESH_READ_BYTES)?;
            while offset < window.len() {
                match window.frame(offset, active.header.salt)? {
                    Ok(frame) if frame.position_first == position_end => {
                        found.push(FrameEntry {
                            position_first: frame.position_first,
                            offset,
                        });
                        offset += frame.padded_bytes();
                        position_end = frame.position_end();
                    }
                    // Not written yet (or damage a full open or `verify`
                    // reports): the view ends here.
                    _ => break,
                }
            }
        }
        if !found.is_empty() {
            let mut frames = resident.frames.write();
            for entry in found {
                frames.push(entry);
            }
            drop(frames);
            active.set_written(offset);
        }
        Ok(position_end)
    }

    /// Opens the segment the owner created at `first`. `false`: there is
    /// none, or its header is not written yet (try again at the next
    /// refresh).
    fn open_next(&self, first: u64) -> Result<bool> {
        let name = segment_file_name(first);
        if let Some(files) = self.shared.residents.file_ids() {
            // Before the open (`file_ids.rs`).
            files.note(first);
        }
        let file = match self.storage.open(&name) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", name.clone(), e)),
        };
        let Ok(header) = recovery::read_header(file.as_ref(), &name)? else {
            return Ok(false);
        };
        if header.position_first != first {
            return Err(Error::corrupt(
                &name,
                16,
                "header position differs from the file name",
            ));
        }
        let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
        let segment = Segment::new(
            header,
            file,
            Some(map),
            FrameIndex::Memory(Vec::new()),
            SEGMENT_HEADER_BYTES,
        );
        segment.moved.store(true, Ordering::Relaxed);
        self.shared.segments.write().push(Arc::new(segment));
        Ok(true)
    }
}
