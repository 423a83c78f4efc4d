//! Compaction's segment-level step: rewriting one sealed segment with some
//! of its events *erased* and switching the log to the new file, crash-safe
//! at every step, while readers go on reading.
//!
//! An erased event keeps its place: its record is rewritten as a *gap
//! record* — the same position, stream, version, id, timestamp, type and
//! flags, with [`RECORD_ERASED_FLAG`] set and no metadata and no data. So
//! frames stay dense (the frame index, the offset tables, recovery and every
//! positional read work unchanged), surviving records keep their exact
//! bytes (same salt, same position: the same checksum), and only the
//! payloads are gone. The store's readers step over gap records
//! (`docs/FORMAT.md`, "Compaction").
//!
//! The switch (`docs/FORMAT.md` spells it out): new segment and frame index
//! under temporary names → `fsync` each → remove the old frame index →
//! `fsync` dir → rename the new segment over the old name → `fsync` dir →
//! rename the new frame index → `fsync` dir. A batch of segments
//! ([`LogReader::switch_rewritten`]) takes each step for all of them before
//! the directory `fsync` that ends it: each segment still goes through the
//! steps in order, and the batch pays three directory `fsync`s, not three
//! per segment. Every crash image holds, for
//! the segment's name, either the old or the new file, each whole and
//! valid, and at most a frame index that matches it; temporary files are
//! removed by the next open. Nothing is truncated: a mapping of the old
//! file stays valid after the rename unlinks it, and the old `Segment` is
//! pinned resident so that readers that hold it keep its mapping.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, Record};
use crate::frame_index::{FrameIndex, SealedSummary};
use crate::reader::LogReader;

use crate::rewrite_out::RewriteOut;
use crate::segment::{frame_bytes_at, frame_index_file_name, Resident, Segment};
use crate::storage::Storage;

/// Record flag bit 3: the event was erased by a compaction (its metadata
/// and data are gone; the record keeps its place). Readers of the store
/// skip it.
pub const RECORD_ERASED_FLAG: u16 = 1 << 3;

/// A sealed segment, as compaction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// File name.
    pub name: String,
    /// Its first position.
    pub position_first: u64,
    /// One past its last position (the next segment's first).
    pub position_end: u64,
    /// Bytes holding frames, header included.
    pub data_bytes: u64,
    /// The size its header allows (`segment_bytes`): a merge into it must
    /// fit.
    pub segment_bytes: u64,
}

/// What rewriting one segment did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentRewrite {
    /// Bytes holding frames before (header included).
    pub bytes_before: u64,
    /// Bytes holding frames after.
    pub bytes_after: u64,
    /// Events newly erased.
    pub events_erased: u64,
    /// Where every event of each moved frame starts now: (the frame's
    /// first position, one offset per event); frames before the first
    /// change keep their offsets and are not listed. What derived data
    /// that keeps offsets needs to follow the move.
    pub offsets: Vec<(u64, Vec<u32>)>,
}

/// A segment written again under temporary names, `fsync`ed, not switched
/// in yet ([`LogReader::switch_rewritten`]).
#[derive(Debug)]
pub struct PreparedRewrite {
    segment: Arc<Segment>,
    resident: Arc<Resident>,
    tmp: String,
    index_name: String,
    index_tmp: String,
    data_end: u64,
    frame_count: usize,
    rewrite: SegmentRewrite,
}

impl PreparedRewrite {
    /// What the rewrite does once switched in.
    pub fn rewrite(&self) -> &SegmentRewrite {
        &self.rewrite
    }
}

/// How preparing a segment rewrite ended.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing to erase: nothing was written.
    Unchanged,
    /// Written and `fsync`ed under temporary names.
    Ready(PreparedRewrite),
    /// The pacing callback asked to stop: nothing is left behind.
    Cancelled,
}

/// How a segment rewrite ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteOutcome {
    /// Nothing to erase: the segment was left alone.
    Unchanged,
    /// The segment was rewritten and the log switched to it.
    Rewritten(SegmentRewrite),
    /// The pacing callback asked to stop: nothing was switched (the
    /// temporary file is removed).
    Cancelled,
}

impl LogReader {
    /// The sealed segments (every one but the active), oldest first.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let segments = self.shared.segments.read();
        segments
            .windows(2)
            .filter_map(|pair| match pair {
                [segment, next] => Some(SealedSegment {
                    name: segment.name.clone(),
                    position_first: segment.header.position_first,
                    position_end: next.header.position_first,
                    data_bytes: segment.written(),
                    segment_bytes: segment.header.segment_bytes,
                }),
                _ => None,
            })
            .collect()
    }

    /// Writes the sealed segment starting at `position_first` again, with
    /// each event for which `erase(position, record)` says so erased (an
    /// event already erased stays so; `erase` is called once per event, in
    /// order), under temporary names, `fsync`ed: ready for
    /// [`switch_rewritten`](LogReader::switch_rewritten). One pass: each
    /// frame is verified once; nothing is written before the first frame
    /// that loses an event (a segment that loses none is left alone);
    /// frames that lose nothing are copied verbatim (only a moved frame's
    /// header is rebased) and only frames that hold a new gap are encoded
    /// afresh (`rewrite_out.rs`). `pace` is called with the bytes written
    /// after each chunk; `Break` cancels (the temporary file is removed).
    ///
    /// Readers are never stopped: one that holds the old segment keeps its
    /// mapping; reads after the switch see the new file. Not for a
    /// read-only log, nor for two callers at once on one segment (the store
    /// runs one compaction at a time).
    pub fn prepare_rewrite(
        &self,
        position_first: u64,
        erase: &mut dyn FnMut(u64, &Record<'_>) -> bool,
        pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<Prepared> {
        let (segment, position_end) = self.sealed_segment(position_first)?;
        let resident = self.shared.residents.get(&segment)?;
        let written = segment.written();
        let map = resident.mapping(&segment.name, written)?;
        let bytes = map.bytes();
        let frame_count = resident.frames.read().len();
        let salt = segment.header.salt;
        let storage = self.shared.residents.storage();
        let tmp = format!("{}.compact.tmp", segment.name);
        let mut out: Option<RewriteOut> = None;
        let mut erased_count = 0u64;
        let mut gaps = Vec::new();
        let mut cancelled = false;
        for i in 0..frame_count {
            let entry = resident
                .frame(i)
                .ok_or_else(|| Error::corrupt(&segment.name, 0, "frame index ends early"))?;
            let (header, records) =
                format::decode_frame(frame_bytes_at(bytes, entry.offset), entry.offset, salt)
                    .map_err(|r| Error::corrupt(&segment.name, entry.offset, r.as_str()))?;
            gaps.clear();
            for (k, record) in records.iter().enumerate() {
                let position = header.position_first + k as u64;
                if record.flags & RECORD_ERASED_FLAG == 0 && erase(position, record) {
                    gaps.push(k);
                }
            }
            if gaps.is_empty() {
                if let Some(out) = out.as_mut() {
                    let frame = frame_bytes_at(bytes, entry.offset)
                        .get(..header.frame_bytes as usize)
                        .unwrap_or_default();
                    out.copy_frame(frame, &header, entry.offset)?;
                }
            } else {
                erased_count += gaps.len() as u64;
                let writer = match out.as_mut() {
                    Some(writer) => writer,
                    None => {
                        // The first change: everything before it is copied
                        // as it is, at the same offsets.
                        let prefix = usize::try_from(entry.offset)
                            .ok()
                            .and_then(|end| bytes.get(..end))
                            .ok_or_else(|| {
                                Error::corrupt(
                                    &segment.name,
                                    entry.offset,
                                    "frame past the mapping",
                                )
                            })?;
                        let entries = (0..i).filter_map(|j| resident.frame(j)).collect();
                        let (started, flow) =
                            RewriteOut::start(storage, tmp.clone(), salt, prefix, entries, pace)?;
                        let writer = out.insert(started);
                        if flow.is_break() {
                            cancelled = true;
                            break;
                        }
                        writer
                    }
                };
                let kept: Vec<Record<'_>> = records
                    .iter()
                    .enumerate()
                    .map(|(k, record)| {
                        if gaps.binary_search(&k).is_ok() {
                            gap_record(record)
                        } else {
                            *record
                        }
                    })
                    .collect();
                writer.encode_frame(header.position_first, &kept)?;
            }
            if let Some(writer) = out.as_mut() {
                if writer.flush(i + 1 == frame_count, pace)?.is_break() {
                    cancelled = true;
                    break;
                }
            }
        }
        let Some(out) = out else {
            return Ok(Prepared::Unchanged);
        };
        if cancelled {
            drop(out);
            let _ = storage.remove(&tmp);
            return Ok(Prepared::Cancelled);
        }
        let (data_end, entries, offsets) = match out.finish() {
            Ok(done) => done,
            Err(e) => {
                let _ = storage.remove(&tmp);
                return Err(e);
            }
        };
        let index = FrameIndex::Memory(entries);
        let summary = SealedSummary {
            position_end,
            data_end,
        };
        let index_bytes = index.encode(&segment.header, summary);
        let index_name = frame_index_file_name(position_first);
        let index_tmp = format!("{index_name}.compact.tmp");
        if let Err(e) = write_synced(storage.as_ref(), &index_tmp, &index_bytes) {
            let _ = storage.remove(&tmp);
            let _ = storage.remove(&index_tmp);
            return Err(e);
        }
        Ok(Prepared::Ready(PreparedRewrite {
            segment,
            resident,
            tmp,
            index_name,
            index_tmp,
            data_end,
            frame_count,
            rewrite: SegmentRewrite {
                bytes_before: written,
                bytes_after: data_end,
                events_erased: erased_count,
                offsets,
            },
        }))
    }

    /// Switches the log to rewritten segments, all at once (see the module
    /// comment: the three directory `fsync`s of the protocol are shared by
    /// the batch); returns what each rewrite did, in order. On an error,
    /// the files of the batch not switched yet stay for the next open to
    /// remove (it finds each segment whole, old or new).
    pub fn switch_rewritten(&self, batch: Vec<PreparedRewrite>) -> Result<Vec<SegmentRewrite>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let storage = self.shared.residents.storage();
        for ready in &batch {
            // From here on the old segment must stay readable as it is:
            // pinned resident, its mapping held, never reloaded by name.
            self.shared
                .residents
                .pin(&ready.segment, Arc::clone(&ready.resident));
            // Before the name changes hands: `verify` reads a replaced
            // segment through its pinned mapping, never by name.
            ready.segment.replaced.store(true, Ordering::Release);
        }
        switch_files(storage.as_ref(), &batch)?;
        let mut done = Vec::with_capacity(batch.len());
        for ready in batch {
            let header = ready.segment.header;
            let replacement = Arc::new(Segment::sealed(header, ready.data_end, ready.frame_count));
            replacement.moved.store(true, Ordering::Relaxed);
            {
                let mut segments = self.shared.segments.write();
                if let Some(slot) = segments
                    .iter_mut()
                    .find(|s| s.header.position_first == header.position_first)
                {
                    *slot = replacement;
                    self.shared.count_replacement();
                }
            }
            done.push(ready.rewrite);
        }
        Ok(done)
    }

    /// Removes the temporary files of rewrites not switched (cancelled).
    pub fn abandon_rewritten(&self, batch: Vec<PreparedRewrite>) {
        let storage = self.shared.residents.storage();
        for ready in batch {
            let _ = storage.remove(&ready.tmp);
            let _ = storage.remove(&ready.index_tmp);
        }
    }

    /// [`prepare_rewrite`](LogReader::prepare_rewrite) and
    /// [`switch_rewritten`](LogReader::switch_rewritten) of one segment.
    pub fn rewrite_sealed(
        &self,
        position_first: u64,
        erase: &mut dyn FnMut(u64, &Record<'_>) -> bool,
        pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<RewriteOutcome> {
        match self.prepare_rewrite(position_first, erase, pace)? {
            Prepared::Unchanged => Ok(RewriteOutcome::Unchanged),
            Prepared::Cancelled => Ok(RewriteOutcome::Cancelled),
            Prepared::Ready(ready) => {
                let mut done = self.switch_rewritten(vec![ready])?;
                Ok(done
                    .pop()
                    .map_or(RewriteOutcome::Unchanged, RewriteOutcome::Rewritten))
            }
        }
    }

    /// The sealed segment starting at `position_first` and its end.
    fn sealed_segment(&self, position_first: u64) -> Result<(Arc<Segment>, u64)> {
        let segments = self.shared.segments.read();
        let i = segments
            .iter()
            .position(|s| s.header.position_first == position_first)
            .ok_or_else(|| Error::Invalid(format!("no segment starts at {position_first}")))?;
        let next = segments.get(i + 1).ok_or_else(|| {
            Error::Invalid(format!("the segment at {position_first} is the active one"))
        })?;
        let segment = segments
            .get(i)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("no segment starts at {position_first}")))?;
        Ok((segment, next.header.position_first))
    }
}

/// `record` as a gap record: no metadata, no data, flagged erased.
fn gap_record<'a>(record: &Record<'a>) -> Record<'a> {
    Record {
        flags: record.flags | RECORD_ERASED_FLAG,
        metadata: &[],
        data: &[],
        ..*record
    }
}

/// Creates `name` (replacing a leftover), writes `bytes`, `fsync`s it.
pub(crate) fn write_synced(storage: &dyn Storage, name: &str, bytes: &[u8]) -> Result<()> {
    let _ = storage.remove(name);
    let file = storage
        .create(name)
        .map_err(|e| Error::io("create", name, e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", name, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", name, e))
}

/// The crash-safe switch of a batch of segments to their rewritten files:
/// every old frame index removed → `fsync` dir → every segment renamed over
/// its old name → `fsync` dir → every new frame index renamed → `fsync`
/// dir. Each segment goes through the steps of the one-segment protocol in
/// order, so every crash image is valid for each (module comment).
fn switch_files(storage: &dyn Storage, batch: &[PreparedRewrite]) -> Result<()> {
    let sync_dir = || {
        storage
            .sync_dir()
            .map_err(|e| Error::io("fsync dir", storage.describe(), e))
    };
    for ready in batch {
        match storage.remove(&ready.index_name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", ready.index_name.clone(), e)),
        }
    }
    sync_dir()?;
    for ready in batch {
        storage
            .rename(&ready.tmp, &ready.segment.name)
            .map_err(|e| Error::io("rename", ready.tmp.clone(), e))?;
    }
    sync_dir()?;
    for ready in batch {
        storage
            .rename(&ready.index_tmp, &ready.index_name)
            .map_err(|e| Error::io("rename", ready.index_tmp.clone(), e))?;
    }
    sync_dir()
}
