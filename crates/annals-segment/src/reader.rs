//! Reading the log: one event at a position, or every event from a position
//! forward. Readers see only what the writer published: what it made
//! durable, or, if it chose to [`publish`](crate::LogWriter::publish)
//! before a sync, what it wrote.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::format::{self, Record};
use crate::frame_index::FrameIndex;
use crate::resident::ResidentSet;
use crate::segment::{frame_bytes_at, frame_index_file_name, Segment, VisitEvents};

/// Frame index entries a scan copies under one lock of the index.
const FRAME_ENTRIES_CHUNK: usize = 256;

/// The log as the writer publishes it to every reader: the segments and
/// the end readers may see.
#[derive(Debug)]
pub(crate) struct PublishedLog {
    /// Segments ordered by first position; the last one is active.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    /// One past the last position readers may see: published after the
    /// `fdatasync`, or after the `write` when the writer was told to publish
    /// unsynced frames (so not necessarily durable).
    pub(crate) visible_end: AtomicU64,
    /// The sealed segments kept open (`resident.rs`); it also counts the
    /// replacements of segments by other files (see
    /// [`LogReader::replacements`]), since a read-only view's load of a
    /// segment may be one.
    pub(crate) residents: ResidentSet,
}

impl PublishedLog {
    /// Counts a replacement of listed segments, after the list changed
    /// (the caller holds or has released the list's write lock): a reader
    /// that loads the new count sees the new list.
    pub(crate) fn count_replacement(&self) {
        self.residents.count_replacement();
    }

    /// The segment that holds `position`.
    fn segment_for(&self, position: u64) -> Option<Arc<Segment>> {
        let segments = self.segments.read();
        let i = segments.partition_point(|s| s.header.position_first <= position);
        segments.get(i.checked_sub(1)?).cloned()
    }

    /// A read-only log follows the owner's merges (`merge.rs`): every
    /// sealed segment whose frame index under its name now ends past the
    /// next segment's first position, exactly at a later segment's first,
    /// is the merged file of a run; it takes the run's place in the list
    /// (loaded by name at its next read) and the absorbed segments leave
    /// it (readers that hold them keep their mappings). Returns whether
    /// the list changed. The owner's log (which merges itself) and
    /// storage without inodes never change here.
    pub(crate) fn follow_merges(&self) -> bool {
        if self.residents.file_ids().is_none() {
            return false;
        }
        let storage = self.residents.storage();
        let list: Vec<Arc<Segment>> = self.segments.read().clone();
        let mut changed = false;
        for pair in list.windows(2) {
            let [segment, next] = pair else {
                continue;
            };
            let next_first = next.header.position_first;
            let name = frame_index_file_name(segment.header.position_first);
            let decoded = storage
                .open(&name)
                .ok()
                .and_then(|file| file.map().ok())
                .and_then(|map| FrameIndex::decode(map, &name, &segment.header).ok());
            let Some((frames, summary)) = decoded else {
                continue;
            };
            let end = summary.position_end;
            // The run ends at a segment this view lists, or past the last
            // one (the view's own active segment, which the owner sealed
            // and merged since: the view keeps reading it through its
            // open file until a refresh moves it on).
            let active = list.last().map_or(0, |s| s.header.position_first);
            let listed = list.iter().any(|s| s.header.position_first == end);
            if end <= next_first || !(listed || end > active) {
                continue;
            }
            let fresh = Segment::sealed(segment.header, summary.data_end, frames.len());
            fresh.moved.store(true, Ordering::Relaxed);
            let fresh = Arc::new(fresh);
            let mut segments = self.segments.write();
            let from = segment.header.position_first;
            if let Some(slot) = segments.iter_mut().find(|s| Arc::ptr_eq(s, segment)) {
                *slot = fresh;
                segments.retain(|s| {
                    let first = s.header.position_first;
                    first <= from || first >= end || first == active
                });
                changed = true;
                self.count_replacement();
            }
        }
        changed
    }

    /// [`follow_merges`](PublishedLog::follow_merges) after a read failed:
    /// a merge under way may not have its frame index in place yet (the
    /// absorbed files go just before it), so this looks again for about a
    /// second. `false` at once for the owner's log.
    fn follow_merges_after_error(&self) -> bool {
        if self.residents.file_ids().is_none() {
            return false;
        }
        let mut wait = std::time::Duration::from_millis(1);
        for _ in 0..10 {
            if self.follow_merges() {
                return true;
            }
            std::thread::sleep(wait);
            wait = wait
                .saturating_mul(2)
                .min(std::time::Duration::from_millis(200));
        }
        false
    }
}

/// How many times [`LogReader::verify`] starts again in a read-only view
/// whose owner merged segments while it ran.
const VERIFY_ATTEMPTS: u32 = 8;

/// Facts about one segment, for `stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File name.
    pub name: String,
    /// First global position.
    pub position_first: u64,
    /// Number of frames.
    pub frame_count: usize,
    /// Preallocated size in bytes.
    pub segment_bytes: u64,
    /// Bytes holding frames (header included), as written so far.
    pub data_bytes: u64,
}

/// A cheap, cloneable handle for reading the log from any thread.
#[derive(Debug, Clone)]
pub struct LogReader {
    pub(crate) shared: Arc<PublishedLog>,
}

impl LogReader {
    /// One past the last position readers may see (the number of events in
    /// the log as published: durable, unless the writer publishes unsynced
    /// frames).
    pub fn position_end(&self) -> u64 {
        self.shared.visible_end.load(Ordering::Acquire)
    }

    /// A count that grows each time a segment of the log is replaced by
    /// another file: a compaction's rewrite (which may erase events), a
    /// merge, or a read-only view following the owner's — at its refresh,
    /// or when it loads a sealed segment whose file may not be the one it
    /// read before (a file under the segment's name never seen, or another
    /// than last time). Records read while it held one value may differ
    /// from what the log holds once it holds another; a cache of records
    /// read keeps the value it loaded *before* reading them and drops them
    /// when it changed. A reader that loads a value sees every replacement
    /// it counts.
    pub fn replacements(&self) -> u64 {
        self.shared.residents.replacements()
    }

    /// Calls `visit` with the event at `position`, after verifying its
    /// checksum. `Ok(None)` if the position is not (yet) visible.
    pub fn with_event<R>(
        &self,
        position: u64,
        visit: impl FnOnce(Record<'_>) -> R,
    ) -> Result<Option<R>> {
        self.with_event_shared(position, |record, _| visit(record))
    }

    /// Like [`with_event`](LogReader::with_event), also passing the buffer
    /// the record's slices live in, so the caller can keep parts of it
    /// without copying ([`share`](crate::share)).
    pub fn with_event_shared<R>(
        &self,
        position: u64,
        visit: impl FnOnce(Record<'_>, &bytes::Bytes) -> R,
    ) -> Result<Option<R>> {
        if position >= self.position_end() {
            return Ok(None);
        }
        let mut visit = Some(visit);
        let mut out = None;
        self.with_events_shared(&[position], |_, record, owner| {
            out = visit.take().map(|visit| visit(record, owner));
            ControlFlow::Break(())
        })?;
        Ok(out)
    }

    /// Calls `visit(position, record, buffer)` for the event at each of
    /// `positions`, in the order given, after verifying its checksum, until
    /// `visit` returns `Break`. Every position must be visible (below
    /// [`position_end`](LogReader::position_end)). Reading many events in
    /// one call is cheaper than one at a time: the segment's mapping and
    /// locks are taken once per batch, not once per event.
    pub fn with_events_shared(
        &self,
        positions: &[u64],
        mut visit: impl FnMut(u64, Record<'_>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        self.read_events(positions, &[], None, &mut |position, record, owner| {
            // Without a stream to select, every record is decoded.
            record.map_or(ControlFlow::Continue(()), |record| {
                visit(position, record, owner)
            })
        })
    }

    /// Like [`with_events_shared`](LogReader::with_events_shared) for a
    /// reader of one stream's events: `visit` gets `None` for an event at
    /// one of `positions` that belongs to another stream (its checksum
    /// verified), and a record of `stream` otherwise. A per-stream index that
    /// keys streams by a hash of their name hands out such positions when
    /// two names share a hash.
    ///
    /// `offsets`, if not empty, holds for each position where its event
    /// starts in its segment (as [`scan_located`](LogReader::scan_located)
    /// reported it), or `None` where that is not known: a known offset is
    /// read directly, without the frame index and the frame's offset table.
    /// The event's checksum binds it to its position, so a wrong offset is
    /// an error ([`Error::Corrupt`]), never another event.
    pub fn with_stream_events(
        &self,
        positions: &[u64],
        offsets: &[Option<u32>],
        stream: &str,
        mut visit: impl FnMut(u64, Option<Record<'_>>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        if !offsets.is_empty() && offsets.len() != positions.len() {
            return Err(Error::Invalid(format!(
                "{} offsets for {} positions",
                offsets.len(),
                positions.len()
            )));
        }
        self.read_events(positions, offsets, Some(stream), &mut visit)
    }

    fn read_events(
        &self,
        positions: &[u64],
        mut offsets: &[Option<u32>],
        stream: Option<&str>,
        visit: &mut VisitEvents<'_>,
    ) -> Result<()> {
        let end = self.position_end();
        let mut rest = positions;
        while let Some(&first) = rest.first() {
            if first >= end {
                return Err(Error::Invalid(format!(
                    "position {first} is not in the log, which ends at {end}"
                )));
            }
            let (segment, segment_end) = {
                let segments = self.shared.segments.read();
                let i = segments.partition_point(|s| s.header.position_first <= first);
                let segment = i
                    .checked_sub(1)
                    .and_then(|i| segments.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        Error::corrupt("", 0, format!("no segment holds position {first}"))
                    })?;
                let next = segments
                    .get(i)
                    .map_or(u64::MAX, |s| s.header.position_first);
                (segment, next.min(end))
            };
            let here = segment.header.position_first..segment_end;
            let count = rest
                .iter()
                .position(|p| !here.contains(p))
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(count);
            let (group_offsets, offsets_tail) = offsets.split_at(count.min(offsets.len()));
            let resident = match self.shared.residents.get(&segment) {
                Ok(resident) => resident,
                // A read-only view whose segment the owner merged away.
                Err(_) if self.shared.follow_merges_after_error() => continue,
                Err(e) => return Err(e),
            };
            if segment
                .with_events(&resident, group, group_offsets, stream, visit)?
                .is_break()
            {
                return Ok(());
            }
            rest = tail;
            offsets = offsets_tail;
        }
        Ok(())
    }

    /// Calls `visit(position, record)` for every visible event from `from`
    /// on, in position order, until it returns `Break`. Every frame is fully
    /// verified before any of its events is visited.
    pub fn scan(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, Record<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_shared(from, |position, record, _| visit(position, record))
    }

    /// Like [`scan`](LogReader::scan), also passing the buffer the record's
    /// slices live in, so the caller can keep parts of it without copying.
    pub fn scan_shared(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, Record<'_>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_located(from, |position, _, record, owner| {
            visit(position, record, owner)
        })
    }

    /// Like [`scan_shared`](LogReader::scan_shared), also passing where each
    /// event starts in its segment file (what an index keeps to read the
    /// event again without the frame index: see
    /// [`with_stream_events`](LogReader::with_stream_events)).
    pub fn scan_located(
        &self,
        from: u64,
        visit: impl FnMut(u64, u32, Record<'_>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        self.scan_located_until(from, self.position_end(), visit)
    }

    /// [`scan_located`](LogReader::scan_located) up to `end`, which may be
    /// past the published end: a read-only store indexes what a refresh
    /// found before it publishes it (`read_only.rs`), so that a reader of
    /// the feed never sees an event that a stream read cannot.
    pub fn scan_located_until(
        &self,
        from: u64,
        end: u64,
        mut visit: impl FnMut(u64, u32, Record<'_>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut position = from;
        while position < end {
            let Some(segment) = self.shared.segment_for(position) else {
                return Err(Error::corrupt(
                    "",
                    0,
                    format!("no segment holds position {position}"),
                ));
            };
            let resident = match self.shared.residents.get(&segment) {
                Ok(resident) => resident,
                // A read-only view whose segment the owner merged away.
                Err(_) if self.shared.follow_merges_after_error() => continue,
                Err(e) => return Err(e),
            };
            let start = resident.frames.read().find(position);
            let Some(mut i) = start else {
                return Err(Error::corrupt(
                    &segment.name,
                    0,
                    format!("no frame holds position {position}"),
                ));
            };
            let map = resident.mapping(&segment.name, segment.written())?;
            // One buffer for the events of every frame of the segment, and
            // the salt's share of their checksums, once.
            let mut records = Vec::new();
            let salted = format::SaltedCrc::new(segment.header.salt);
            // Frame entries, a chunk at a time (one lock each).
            let mut chunk = Vec::new();
            let mut next_entry = 0usize;
            loop {
                if next_entry == chunk.len() {
                    resident.frames_into(i, FRAME_ENTRIES_CHUNK, &mut chunk);
                    next_entry = 0;
                }
                let Some(&entry) = chunk.get(next_entry) else {
                    break;
                };
                next_entry += 1;
                if entry.position_first >= end {
                    return Ok(());
                }
                let bytes = frame_bytes_at(map.bytes(), entry.offset);
                let header =
                    format::decode_frame_salted_into(bytes, entry.offset, &salted, &mut records)
                        .map_err(|reason| {
                            Error::corrupt(&segment.name, entry.offset, reason.as_str())
                        })?;
                if header.position_first != entry.position_first {
                    return Err(Error::corrupt(
                        &segment.name,
                        entry.offset,
                        "frame position differs from its index entry",
                    ));
                }
                for (k, record) in records.drain(..).enumerate() {
                    let p = header.position_first + k as u64;
                    if p >= position {
                        // `decode_frame` checked the table against the events.
                        let at = format::event_offset(bytes, k)
                            .and_then(|at| u32::try_from(entry.offset + at as u64).ok())
                            .unwrap_or(u32::MAX);
                        if visit(p, at, record, map.shared()).is_break() {
                            return Ok(());
                        }
                        position = p + 1;
                    }
                }
                i += 1;
            }
            // The segment is exhausted. At `end` the scan is done: this
            // may be the active segment, into which the writer pushed
            // frames past `end` and then rolled, since the scan found no
            // more frames (the next segment then starts past `position`,
            // and that is no gap: the scan never read those frames).
            if position >= end {
                return Ok(());
            }
            // Before `end`, the next one starts at `position`.
            let next_first = {
                let segments = self.shared.segments.read();
                segments
                    .iter()
                    .find(|s| s.header.position_first > segment.header.position_first)
                    .map(|s| s.header.position_first)
            };
            match next_first {
                Some(first) if first == position => {}
                // A merge replaced the segment this scan held: the merged
                // file holds `position` now (the list stays dense).
                Some(_)
                    if self
                        .shared
                        .segment_for(position)
                        .is_some_and(|s| !Arc::ptr_eq(&s, &segment)) => {}
                Some(first) => {
                    return Err(Error::corrupt(
                        &segment.name,
                        0,
                        format!(
                            "segment ends at position {position} but the next starts at {first}"
                        ),
                    ))
                }
                None if position < end => {
                    return Err(Error::corrupt(
                        &segment.name,
                        0,
                        format!("log ends at {position}, durable end is {end}"),
                    ))
                }
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// How many sealed segments are open (mapped, with their frame index)
    /// now: at most the bound the log was opened with
    /// ([`open_bounded`](crate::open_bounded)).
    pub fn open_segments(&self) -> usize {
        self.shared.residents.len()
    }

    /// Segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared
            .segments
            .read()
            .iter()
            .map(|s| SegmentInfo {
                name: s.name.clone(),
                position_first: s.header.position_first,
                frame_count: s.frame_count(),
                segment_bytes: s.header.segment_bytes,
                data_bytes: s.written(),
            })
            .collect()
    }

    /// Reads every frame of every segment from disk and verifies every
    /// checksum and the density of positions. Returns the number of events.
    ///
    /// In a read-only view, a failure that the owner's merge explains (a
    /// merged file holds more frames than the view knew, an absorbed file
    /// is gone: the view then follows the merge) starts the check again on
    /// the segments as they are now, up to `VERIFY_ATTEMPTS` times; real
    /// damage fails every attempt and is reported.
    pub fn verify(&self) -> Result<u64> {
        let mut attempt = 1;
        loop {
            match self.verify_once() {
                Err(_) if attempt < VERIFY_ATTEMPTS && self.shared.follow_merges_after_error() => {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    fn verify_once(&self) -> Result<u64> {
        // A read-only view checks the files as they are now.
        self.shared.follow_merges();
        let following = self.shared.residents.file_ids().is_some();
        let segments: Vec<Arc<Segment>> = self.shared.segments.read().clone();
        let end = self.position_end();
        let mut position = segments.first().map_or(0, |s| s.header.position_first);
        for segment in &segments {
            // A fresh mapping: verify reads what is in the file now. A
            // sealed segment is read from its files afresh and not kept
            // (verify would otherwise push every other segment out of the
            // resident set).
            // A segment a compaction replaced while this ran is read
            // through the mapping it pinned (its name holds the new file).
            let pinned = segment.replaced.load(std::sync::atomic::Ordering::Acquire);
            let resident = match segment.resident().filter(|r| r.is_active() || pinned) {
                Some(active) if !pinned => {
                    active.remap(&segment.name, segment.written())?;
                    active
                }
                Some(pinned) => pinned,
                None => Arc::new(self.shared.residents.load(segment)?),
            };
            let frame_count = resident.frames.read().len();
            let map = resident.mapping(&segment.name, segment.written())?;
            let mut records = Vec::new();
            for i in 0..frame_count {
                let Some(entry) = resident.frame(i) else {
                    break;
                };
                if entry.position_first >= end {
                    break;
                }
                let bytes = frame_bytes_at(map.bytes(), entry.offset);
                let header = format::decode_frame_into(
                    bytes,
                    entry.offset,
                    segment.header.salt,
                    &mut records,
                )
                .map_err(|reason| Error::corrupt(&segment.name, entry.offset, reason.as_str()))?;
                // A read-only view whose active segment the owner merged
                // (`follow_merges`): its frames were verified through the
                // merged file already.
                if header.position_first < position
                    && header.position_end() <= position
                    && following
                {
                    continue;
                }
                if header.position_first != position {
                    return Err(Error::corrupt(
                        &segment.name,
                        entry.offset,
                        format!(
                            "frame starts at position {} where {position} was expected",
                            header.position_first
                        ),
                    ));
                }
                position = header.position_end();
            }
        }
        if position != end {
            return Err(Error::corrupt(
                "",
                0,
                format!("log holds {position} events, durable end is {end}"),
            ));
        }
        Ok(position)
    }
}
