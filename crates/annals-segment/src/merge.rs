//! Compaction's merge step: a run of adjacent sealed segments becomes one
//! file, named after the run's first segment, crash-safe at every step,
//! while readers go on reading.
//!
//! The merged file keeps the first segment's header (position, salt,
//! `segment_bytes`) and its frames verbatim at their offsets; the frames of
//! every absorbed segment follow, each verified and encoded afresh with the
//! first segment's salt (every event's checksum is bound to its segment's
//! salt and its position, `docs/FORMAT.md`, "Event record": a record moved
//! into another file is checksummed again; its position, version, flags and
//! bytes of data and metadata do not change). Gap records stay gap records.
//!
//! The switch (`docs/FORMAT.md`, "Merging segments"): merged segment and
//! frame index under temporary names → `fsync` each → remove the frame
//! index of every segment of the run → `fsync` dir → rename the merged
//! segment over the first one's name → `fsync` dir → remove every
//! absorbed segment → `fsync` dir → rename the merged frame index →
//! `fsync` dir. A crash between the rename and the removals leaves
//! absorbed segments whose whole range the first one's frames cover: the
//! open rule (`recovery.rs`, `drop_merge_leftovers`) removes them. Nothing
//! is truncated; the old segments are pinned resident so that readers that
//! hold them keep their mappings after their files are unlinked.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_BYTES};
use crate::frame_index::{FrameIndex, SealedSummary};
use crate::reader::LogReader;
use crate::rewrite_out::RewriteOut;
use crate::segment::{frame_bytes_at, frame_index_file_name, Resident, Segment};
use crate::storage::Storage;

/// What merging a run of segments did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentMerge {
    /// The first position of the merged file (its name).
    pub position_first: u64,
    /// One past its last position.
    pub position_end: u64,
    /// Segment files absorbed (removed): the run's length minus one.
    pub segments_absorbed: u64,
    /// Bytes holding frames of the run's files before (headers included).
    pub bytes_before: u64,
    /// Bytes holding frames of the merged file.
    pub bytes_after: u64,
    /// Where every event of each moved frame (those of the absorbed
    /// segments) starts now in the merged file: (the frame's first
    /// position, one offset per event).
    pub offsets: Vec<(u64, Vec<u32>)>,
}

/// A merged segment written under temporary names, `fsync`ed, not switched
/// in yet ([`LogReader::switch_merged`]).
#[derive(Debug)]
pub struct PreparedMerge {
    /// Every segment of the run, first one first, with its resident state.
    run: Vec<(Arc<Segment>, Arc<Resident>)>,
    tmp: String,
    index_name: String,
    index_tmp: String,
    data_end: u64,
    frame_count: usize,
    merge: SegmentMerge,
}

impl PreparedMerge {
    /// What the merge does once switched in.
    pub fn merge(&self) -> &SegmentMerge {
        &self.merge
    }
}

/// The bytes a merge of segments holding `data_bytes` (each header
/// included) writes: one header, then every segment's frames.
pub fn merged_bytes(data_bytes: &[u64]) -> u64 {
    let frames: u64 = data_bytes
        .iter()
        .map(|b| b.saturating_sub(SEGMENT_HEADER_BYTES))
        .sum();
    SEGMENT_HEADER_BYTES + frames
}

impl LogReader {
    /// Writes the adjacent sealed segments starting at `firsts` (in
    /// order, at least two) as one file named after the first, under
    /// temporary names, `fsync`ed: ready for
    /// [`switch_merged`](LogReader::switch_merged). The merged frames must
    /// fit the first segment's `segment_bytes`. `pace` is called with the
    /// bytes written after each chunk; `Break` cancels (`Ok(None)`; the
    /// temporary file is removed). Not for a read-only log; one merge or
    /// rewrite at a time (the store runs one compaction at a time).
    pub fn prepare_merge(
        &self,
        firsts: &[u64],
        pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<Option<PreparedMerge>> {
        if firsts.len() < 2 {
            return Err(Error::Invalid("a merge needs two segments or more".into()));
        }
        let mut run = Vec::with_capacity(firsts.len());
        let mut position_end = 0;
        for (k, &first) in firsts.iter().enumerate() {
            let (segment, end) = self.sealed_segment_for_merge(first)?;
            if k > 0 && first != position_end {
                return Err(Error::Invalid(format!(
                    "segments to merge are not adjacent at position {first}"
                )));
            }
            position_end = end;
            let resident = self.shared.residents.get(&segment)?;
            run.push((segment, resident));
        }
        let Some((head, head_resident)) = run.first().cloned() else {
            return Err(Error::Invalid("a merge needs two segments or more".into()));
        };
        let sizes: Vec<u64> = run.iter().map(|(s, _)| s.written()).collect();
        let bytes_before: u64 = sizes.iter().sum();
        if merged_bytes(&sizes) > head.header.segment_bytes {
            return Err(Error::Invalid(format!(
                "segments from {} to {position_end} do not fit one segment",
                head.header.position_first
            )));
        }
        let storage = self.shared.residents.storage();
        let tmp = format!("{}.compact.tmp", head.name);
        let head_map = head_resident.mapping(&head.name, head.written())?;
        let prefix = usize::try_from(head.written())
            .ok()
            .and_then(|end| head_map.bytes().get(..end))
            .ok_or_else(|| Error::corrupt(&head.name, 0, "segment shorter than its frames"))?;
        let entries = {
            let count = head_resident.frames.read().len();
            (0..count).filter_map(|j| head_resident.frame(j)).collect()
        };
        let salt = head.header.salt;
        let (mut out, flow) = RewriteOut::start(storage, tmp.clone(), salt, prefix, entries, pace)?;
        let mut cancelled = flow.is_break();
        'segments: for (segment, resident) in run.iter().skip(1) {
            if cancelled {
                break;
            }
            let map = resident.mapping(&segment.name, segment.written())?;
            let bytes = map.bytes();
            let frame_count = resident.frames.read().len();
            let mut records = Vec::new();
            for i in 0..frame_count {
                let entry = resident
                    .frame(i)
                    .ok_or_else(|| Error::corrupt(&segment.name, 0, "frame index ends early"))?;
                let header = format::decode_frame_into(
                    frame_bytes_at(bytes, entry.offset),
                    entry.offset,
                    segment.header.salt,
                    &mut records,
                )
                .map_err(|r| Error::corrupt(&segment.name, entry.offset, r.as_str()))?;
                // Encoded afresh: the frame header and every event's
                // checksum are bound to the merged file's salt.
                out.encode_frame(header.position_first, &records)?;
                if out.flush(false, pace)?.is_break() {
                    cancelled = true;
                    break 'segments;
                }
            }
        }
        if cancelled {
            drop(out);
            let _ = storage.remove(&tmp);
            return Ok(None);
        }
        let (data_end, entries, offsets) = match out.finish() {
            Ok(done) => done,
            Err(e) => {
                let _ = storage.remove(&tmp);
                return Err(e);
            }
        };
        if data_end > head.header.segment_bytes {
            let _ = storage.remove(&tmp);
            return Err(Error::Invalid(format!(
                "merged segment {} would pass its segment size",
                head.name
            )));
        }
        let frame_count = entries.len();
        let index = FrameIndex::Memory(entries);
        let summary = SealedSummary {
            position_end,
            data_end,
        };
        let index_bytes = index.encode(&head.header, summary);
        let index_name = frame_index_file_name(head.header.position_first);
        let index_tmp = format!("{index_name}.compact.tmp");
        if let Err(e) = crate::rewrite::write_synced(storage.as_ref(), &index_tmp, &index_bytes) {
            let _ = storage.remove(&tmp);
            let _ = storage.remove(&index_tmp);
            return Err(e);
        }
        let merge = SegmentMerge {
            position_first: head.header.position_first,
            position_end,
            segments_absorbed: run.len() as u64 - 1,
            bytes_before,
            bytes_after: data_end,
            offsets,
        };
        Ok(Some(PreparedMerge {
            run,
            tmp,
            index_name,
            index_tmp,
            data_end,
            frame_count,
            merge,
        }))
    }

    /// Switches the log to merged segments, all at once: each step of the
    /// protocol (module comment) is taken for every merge of the batch
    /// before the directory `fsync` that ends it (four for the batch).
    /// Returns what each merge did, in order. On an error, what was not
    /// switched yet is left for the next open (every crash image is valid:
    /// `docs/FORMAT.md`, "Merging segments").
    pub fn switch_merged(&self, batch: Vec<PreparedMerge>) -> Result<Vec<SegmentMerge>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let storage = self.shared.residents.storage();
        for ready in &batch {
            for (segment, resident) in &ready.run {
                // From here on the old files must stay readable as they
                // are: pinned resident, never reloaded by name.
                self.shared.residents.pin(segment, Arc::clone(resident));
                segment.replaced.store(true, Ordering::Release);
            }
        }
        merge_files(storage.as_ref(), &batch)?;
        let mut done = Vec::with_capacity(batch.len());
        for ready in batch {
            let Some((head, _)) = ready.run.first() else {
                continue;
            };
            let header = head.header;
            let replacement = Arc::new(Segment::sealed(header, ready.data_end, ready.frame_count));
            replacement.moved.store(true, Ordering::Relaxed);
            {
                let mut segments = self.shared.segments.write();
                let (from, to) = (header.position_first, ready.merge.position_end);
                // The absorbed segments go; the first one's slot takes the
                // merged file (readers find a position's segment by the
                // first positions: the list stays sorted and dense).
                segments.retain(|s| {
                    let first = s.header.position_first;
                    first <= from || first >= to
                });
                if let Some(slot) = segments
                    .iter_mut()
                    .find(|s| s.header.position_first == from)
                {
                    *slot = replacement;
                }
                self.shared.count_replacement();
            }
            done.push(ready.merge);
        }
        Ok(done)
    }

    /// Removes the temporary files of merges not switched (cancelled).
    pub fn abandon_merged(&self, batch: Vec<PreparedMerge>) {
        let storage = self.shared.residents.storage();
        for ready in batch {
            let _ = storage.remove(&ready.tmp);
            let _ = storage.remove(&ready.index_tmp);
        }
    }

    /// The sealed segment starting at `position_first` and its end.
    fn sealed_segment_for_merge(&self, position_first: u64) -> Result<(Arc<Segment>, u64)> {
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

/// The crash-safe switch of a batch of merges: every frame index of every
/// run removed → `fsync` dir → every merged segment renamed over its first
/// segment's name → `fsync` dir → every absorbed segment removed → `fsync`
/// dir → every merged frame index renamed → `fsync` dir.
fn merge_files(storage: &dyn Storage, batch: &[PreparedMerge]) -> Result<()> {
    let sync_dir = || {
        storage
            .sync_dir()
            .map_err(|e| Error::io("fsync dir", storage.describe(), e))
    };
    let remove = |name: &str| match storage.remove(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", name, e)),
    };
    for ready in batch {
        for (segment, _) in &ready.run {
            remove(&frame_index_file_name(segment.header.position_first))?;
        }
    }
    sync_dir()?;
    for ready in batch {
        let Some((head, _)) = ready.run.first() else {
            continue;
        };
        storage
            .rename(&ready.tmp, &head.name)
            .map_err(|e| Error::io("rename", ready.tmp.clone(), e))?;
    }
    sync_dir()?;
    for ready in batch {
        for (segment, _) in ready.run.iter().skip(1) {
            remove(&segment.name)?;
        }
    }
    sync_dir()?;
    for ready in batch {
        storage
            .rename(&ready.index_tmp, &ready.index_name)
            .map_err(|e| Error::io("rename", ready.index_tmp.clone(), e))?;
    }
    sync_dir()
}
