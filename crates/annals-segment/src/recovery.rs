//! Opening a log: find the segments, trust the sealed ones through their
//! verified frame indexes (rebuilding any that is missing or damaged by a
//! strict scan), and scan the active segment to its end.
//!
//! The policy (RELIABILITY.md): the first invalid frame of the active segment
//! ends the log and is truncated, unless a valid frame follows it that was
//! written *after* the writer knew the invalid frame's bytes to be durable
//! (its `synced_before` is past the invalid offset). Then the damage is in
//! acknowledged data and the open fails with `Corrupt`. Damage in a sealed
//! segment, a gap between segments and a missing segment are `Corrupt` too.

use std::sync::Arc;

use crate::clean::CleanMarker;
use crate::error::{Error, Result};
use crate::evidence::{self, Evidence};
use crate::format::{
    FrameFault, HeaderError, SegmentHeader, FRAME_ALIGN, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::frame_index::{FrameEntry, FrameIndex, SealedSummary};
use crate::segment::{frame_index_file_name, parse_segment_file_name, Segment};
use crate::storage::{Storage, StorageFile};
use crate::window::FileWindow;

/// What recovery did on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A torn tail that was cut: (segment file, offset where the log now ends).
    pub truncated: Option<(String, u64)>,
    /// Frame index files rebuilt by scanning their sealed segment.
    pub frame_indexes_rebuilt: usize,
    /// Files removed: leftovers of interrupted operations.
    pub removed: Vec<String>,
    /// The log had been closed cleanly: the active segment's preallocated
    /// tail was not read.
    pub clean_close: bool,
}

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    pub(crate) write_offset: u64,
    pub(crate) position_end: u64,
    pub(crate) report: RecoveryReport,
}

struct Scan {
    frames: Vec<FrameEntry>,
    data_end: u64,
    position_end: u64,
    fault: Option<(u64, FrameFault)>,
}

/// Scans frames from the start of a segment until the first invalid one, or
/// until `position_limit` is reached. Reads with `pread` (`window.rs`),
/// never through a mapping.
fn scan_frames(
    window: &mut FileWindow<'_>,
    header: &SegmentHeader,
    position_limit: Option<u64>,
) -> Result<Scan> {
    let mut scan = Scan {
        frames: Vec::new(),
        data_end: SEGMENT_HEADER_BYTES,
        position_end: header.position_first,
        fault: None,
    };
    loop {
        if position_limit.is_some_and(|limit| scan.position_end >= limit) {
            return Ok(scan);
        }
        let offset = scan.data_end;
        let fault = match window.frame(offset, header.salt)? {
            Ok(frame) if frame.position_first != scan.position_end => {
                FrameFault::PositionOutOfSequence
            }
            Ok(frame) if position_limit.is_some_and(|limit| frame.position_end() > limit) => {
                FrameFault::PastNextSegment
            }
            Ok(frame) => {
                scan.frames.push(FrameEntry {
                    position_first: frame.position_first,
                    offset,
                });
                scan.data_end = offset + frame.padded_bytes();
                scan.position_end = frame.position_end();
                continue;
            }
            Err(reason) => reason,
        };
        scan.fault = Some((offset, fault));
        return Ok(scan);
    }
}

/// Whether a valid frame written after `fault_offset` was known durable
/// follows it. Candidates are only frame-aligned offsets whose salt matches;
/// a candidate counts only if its header checksum (bound to its offset)
/// verifies. This never accepts bytes as data: it only refuses to truncate.
fn durable_frame_after(
    window: &mut FileWindow<'_>,
    header: &SegmentHeader,
    fault_offset: u64,
) -> Result<Option<u64>> {
    let salt = header.salt.to_le_bytes();
    let mut offset = fault_offset + FRAME_ALIGN;
    while offset.saturating_add(FRAME_HEADER_BYTES as u64) <= window.len() {
        // Reads a window of 1 MiB at a time; a candidate's header (the rest
        // of the file at most, as before) is decoded from what it holds.
        let bytes = window.at(offset, FRAME_HEADER_BYTES)?;
        if bytes.get(8..16) == Some(&salt[..]) {
            // `decode_frame_header` also checks that the frame fits in the
            // rest of the file.
            if let Ok(frame) = window.frame_header(offset, header.salt)? {
                if frame.synced_before > fault_offset {
                    return Ok(Some(offset));
                }
            }
        }
        offset += FRAME_ALIGN;
    }
    Ok(None)
}

pub(crate) fn read_header(
    file: &dyn StorageFile,
    name: &str,
) -> Result<Result<SegmentHeader, HeaderError>> {
    let len = file.len().map_err(|e| Error::io("stat", name, e))?;
    let mut buf = vec![0u8; len.min(SEGMENT_HEADER_BYTES) as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io("read", name, e))?;
    Ok(SegmentHeader::decode(&buf))
}

fn header_error(name: &str, error: HeaderError) -> Error {
    match error {
        HeaderError::UnsupportedVersion(version) => Error::UnsupportedVersion {
            file: name.to_owned(),
            version,
        },
        HeaderError::Zeroed => Error::corrupt(name, 0, "segment header is all zeros"),
        HeaderError::Invalid(reason) => Error::corrupt(name, 0, reason),
    }
}

/// Opens every segment of the log. Returns `None` when there is none.
/// Refuses ([`Error::Missing`]) a log that ends before what `external` or
/// the log's own files vouch for (`evidence.rs`); the clean-close marker is
/// removed only once the log is accepted.
///
/// `read_only`: change nothing (`read_only.rs`). No temp file or marker is
/// removed, a sealed segment without a usable frame index gets one in
/// memory only, and the bytes after the active segment's last valid frame
/// are "not written yet" (another process may be writing them) rather than
/// a tail to cut; damage followed by a durable frame is still refused.
pub(crate) fn recover(
    storage: &dyn Storage,
    external: &[Evidence],
    read_only: bool,
) -> Result<Option<Recovered>> {
    let mut report = RecoveryReport::default();
    let marker_file = crate::clean::read(storage)?;
    let clean = marker_file.flatten();
    let mut opened = open_segments(storage, &mut report, read_only)?;
    drop_merge_leftovers(storage, &mut opened, &mut report, read_only)?;
    let Some((active_name, active_header)) = opened.pop() else {
        evidence::check_without_segments(&evidence::gather_without_segments(
            storage, external, clean,
        ))?;
        if marker_file.is_some() && !read_only {
            crate::clean::remove(storage)?;
        }
        return Ok(None);
    };
    let vouched = evidence::gather(storage, external, clean, &active_header);

    let mut segments = Vec::with_capacity(opened.len() + 1);
    let next_firsts: Vec<u64> = opened
        .iter()
        .skip(1)
        .map(|(_, h)| h.position_first)
        .chain(std::iter::once(active_header.position_first))
        .collect();
    for ((name, header), next_first) in opened.into_iter().zip(next_firsts) {
        segments.push(Arc::new(open_sealed(
            storage,
            name,
            header,
            next_first,
            &mut report,
            read_only,
        )?));
    }
    // Only the active segment's file stays open (sealed ones are opened
    // when read: `resident.rs`).
    let active_file = storage
        .open(&active_name)
        .map_err(|e| Error::io("open", active_name.clone(), e))?;
    let (active, write_offset, position_end) = open_active(
        storage,
        active_name,
        active_header,
        active_file,
        clean,
        &vouched,
        &mut report,
        read_only,
    )?;
    if marker_file.is_some() && !read_only {
        crate::clean::remove(storage)?;
    }
    segments.push(Arc::new(active));
    Ok(Some(Recovered {
        segments,
        write_offset,
        position_end,
        report,
    }))
}

/// A segment file with its verified header (the file is closed again: a
/// store may have more segments than the process may open files).
type OpenedSegment = (String, SegmentHeader);

/// Removes leftover temp files, then opens every segment in position order
/// and checks its header. A last segment whose header is all zeros is a
/// creation that did not complete (nothing in it was acknowledged): removed.
fn open_segments(
    storage: &dyn Storage,
    report: &mut RecoveryReport,
    read_only: bool,
) -> Result<Vec<OpenedSegment>> {
    let names = storage
        .list()
        .map_err(|e| Error::io("list", storage.describe(), e))?;
    for name in names.iter().filter(|n| n.ends_with(".tmp") && !read_only) {
        storage
            .remove(name)
            .map_err(|e| Error::io("remove", name.clone(), e))?;
        report.removed.push(name.clone());
    }
    let mut firsts: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    firsts.sort_unstable();

    let mut opened = Vec::with_capacity(firsts.len());
    for (i, &first) in firsts.iter().enumerate() {
        let name = crate::segment::segment_file_name(first);
        let file = storage
            .open(&name)
            .map_err(|e| Error::io("open", name.clone(), e))?;
        match read_header(file.as_ref(), &name)? {
            Ok(header) if header.position_first == first => opened.push((name, header)),
            Ok(_) => {
                return Err(Error::corrupt(
                    &name,
                    16,
                    "header position differs from the file name",
                ))
            }
            // Read-only: the last segment's header not written yet is a
            // segment the owner is creating (it writes the header in place,
            // then syncs): not yet part of the log.
            Err(_) if read_only && i + 1 == firsts.len() => {}
            Err(HeaderError::Zeroed) if i + 1 == firsts.len() => {
                drop(file);
                storage
                    .remove(&name)
                    .map_err(|e| Error::io("remove", name.clone(), e))?;
                storage
                    .sync_dir()
                    .map_err(|e| Error::io("fsync dir", storage.describe(), e))?;
                report.removed.push(name);
            }
            Err(error) => return Err(header_error(&name, error)),
        }
    }
    if let Some((name, header)) = opened.first() {
        if header.position_first != 0 {
            return Err(Error::corrupt(
                name,
                16,
                format!(
                    "segments before this one are missing: positions 0..{} are in no file ({} does not exist)",
                    header.position_first,
                    crate::segment::segment_file_name(0)
                ),
            ));
        }
    }
    Ok(opened)
}

/// The open rule for a merge a crash interrupted (`merge.rs`;
/// `docs/FORMAT.md`, "Merging segments"): a sealed segment whose whole
/// range the frames of a segment before it cover is a leftover of a merge
/// (the merged file was renamed in, the crash came before the absorbed
/// files were removed), and is removed with its frame index (a read-only
/// open leaves the files and only skips them). The covering segment's end
/// is read from its frame index when that ends exactly at the next
/// segment (the usual case: no merge left anything); otherwise from a
/// scan of its frames. A segment is removed only when valid frames cover
/// it wholly and end exactly where a later segment starts; anything else
/// is left for `open_sealed` to judge (and report as damage).
fn drop_merge_leftovers(
    storage: &dyn Storage,
    opened: &mut Vec<OpenedSegment>,
    report: &mut RecoveryReport,
    read_only: bool,
) -> Result<()> {
    let Some(last_first) = opened.last().map(|(_, h)| h.position_first) else {
        return Ok(());
    };
    let mut i = 0;
    while i + 1 < opened.len() {
        let (Some((name, header)), Some((_, next))) = (opened.get(i), opened.get(i + 1)) else {
            break;
        };
        let next_first = next.position_first;
        let end = covered_end(storage, name, header, next_first, last_first)?;
        if end > next_first {
            let covered = opened
                .iter()
                .skip(i + 1)
                .take_while(|(_, h)| h.position_first < end)
                .count();
            let boundary = opened
                .get(i + 1 + covered)
                .is_some_and(|(_, h)| h.position_first == end);
            if boundary {
                let leftovers: Vec<OpenedSegment> = opened.drain(i + 1..i + 1 + covered).collect();
                if !read_only {
                    // Frame indexes first, as the merge does: a `.fidx`
                    // never outlives its segment file.
                    let indexes = leftovers
                        .iter()
                        .map(|(_, h)| frame_index_file_name(h.position_first));
                    remove_durably(storage, indexes, report)?;
                    let names = leftovers.iter().map(|(name, _)| name.clone());
                    remove_durably(storage, names, report)?;
                }
            }
        }
        i += 1;
    }
    Ok(())
}

/// Removes `names` (those that exist), then `fsync`s the directory.
fn remove_durably(
    storage: &dyn Storage,
    names: impl Iterator<Item = String>,
    report: &mut RecoveryReport,
) -> Result<()> {
    for name in names {
        match storage.remove(&name) {
            Ok(()) => report.removed.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", name, e)),
        }
    }
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))
}

/// Where the frames of the sealed segment `name` end (a position): its
/// frame index's end if that equals `next_first`, else a scan's (up to
/// `limit`, the last segment's first position).
fn covered_end(
    storage: &dyn Storage,
    name: &str,
    header: &SegmentHeader,
    next_first: u64,
    limit: u64,
) -> Result<u64> {
    let index_name = frame_index_file_name(header.position_first);
    if let Ok(index_file) = storage.open(&index_name) {
        if let Ok(map) = index_file.map() {
            if let Ok((_, summary)) = FrameIndex::decode(map, &index_name, header) {
                if summary.position_end == next_first {
                    return Ok(next_first);
                }
            }
        }
    }
    let file = match storage.open(name) {
        Ok(file) => file,
        // Gone under a read-only view: the next attempt lists again.
        Err(e) => return Err(Error::io("open", name, e)),
    };
    let scan = scan_frames(
        &mut FileWindow::new(file.as_ref(), name)?,
        header,
        Some(limit),
    )?;
    Ok(scan.position_end)
}

/// A sealed segment: its frame index file if it verifies, else a strict scan
/// that must reach exactly the next segment's first position.
fn open_sealed(
    storage: &dyn Storage,
    name: String,
    header: SegmentHeader,
    next_first: u64,
    report: &mut RecoveryReport,
    read_only: bool,
) -> Result<Segment> {
    let index_name = frame_index_file_name(header.position_first);
    let mut indexed = None;
    if let Ok(index_file) = storage.open(&index_name) {
        let loaded = index_file
            .map()
            .map_err(|e| Error::io("mmap", index_name.clone(), e))
            .and_then(|index_map| FrameIndex::decode(index_map, &index_name, &header));
        if let Ok((frames, summary)) = loaded {
            indexed = Some(summary);
            // (`decode` bounds `data_end` by the header's segment size; a file
            // cut shorter reads as `Corrupt`, never past its mapping.)
            if summary.position_end == next_first {
                // Opened and mapped by its first read.
                return Ok(Segment::sealed(header, summary.data_end, frames.len()));
            }
        }
    }
    let file = storage
        .open(&name)
        .map_err(|e| Error::io("open", name.clone(), e))?;
    let scan = scan_frames(
        &mut FileWindow::new(file.as_ref(), &name)?,
        &header,
        Some(next_first),
    )?;
    if scan.position_end != next_first {
        let summary = SealedSummary {
            position_end: scan.position_end,
            data_end: scan.data_end,
        };
        evidence::check_gap(&name, summary, indexed, next_first)?;
        let (offset, reason) = scan.fault.map_or_else(
            || (scan.data_end, "segment ends early".to_owned()),
            |(offset, fault)| (offset, fault.to_string()),
        );
        return Err(Error::corrupt(
            &name,
            offset,
            format!(
                "sealed segment ends at position {} before the next segment's {next_first} ({reason}); positions {}..{next_first} are in no valid frame ({} does not exist)",
                scan.position_end,
                scan.position_end,
                crate::segment::segment_file_name(scan.position_end)
            ),
        ));
    }
    let summary = SealedSummary {
        position_end: scan.position_end,
        data_end: scan.data_end,
    };
    if read_only {
        // Its frame index lives in memory (and the file stays open): a
        // read-only open writes no `.fidx`.
        return Ok(Segment::new(
            header,
            file,
            None,
            FrameIndex::Memory(scan.frames),
            summary.data_end,
        ));
    }
    let bytes = FrameIndex::Memory(scan.frames).encode(&header, summary);
    let frames = write_frame_index(storage, &header, &bytes)?;
    report.frame_indexes_rebuilt += 1;
    Ok(Segment::sealed(header, summary.data_end, frames.len()))
}

/// The active segment: scan to the first invalid frame and decide between a
/// torn tail (truncate) and corruption (refuse).
#[expect(
    clippy::too_many_arguments,
    reason = "one more than the limit: the read-only flag; a struct of them would be built only to be taken apart here"
)]
fn open_active(
    storage: &dyn Storage,
    name: String,
    header: SegmentHeader,
    file: Arc<dyn StorageFile>,
    clean: Option<CleanMarker>,
    vouched: &evidence::Gathered,
    report: &mut RecoveryReport,
    read_only: bool,
) -> Result<(Segment, u64, u64)> {
    if let Some(marker) = clean {
        if let Some(opened) = open_active_clean(storage, &header, &file, marker)? {
            report.clean_close = true;
            return Ok(opened);
        }
    }
    // The tail is read with `pread`: a mapping would allocate every page
    // of a sparse tail it touched (tmpfs: a SIGBUS once the filesystem is
    // full).
    let mut window = FileWindow::new(file.as_ref(), &name)?;
    let scan = scan_frames(&mut window, &header, None)?;
    // Closed cleanly, and the scan stops exactly where it was closed: the
    // tail has not been written since, so there is nothing to check in it.
    let closed_here = CleanMarker {
        position_first: header.position_first,
        salt: header.salt,
        data_end: scan.data_end,
        position_end: scan.position_end,
    };
    report.clean_close = clean == Some(closed_here);
    let mut cut_to = None;
    let mut end = evidence::LogEnd {
        segment: &name,
        data_end: scan.data_end,
        position_end: scan.position_end,
        fault: None,
        successor_existed: vouched.successor_existed,
    };
    if let Some((offset, reason)) = scan.fault.filter(|_| !report.clean_close) {
        if let Some(dirty_end) = window.dirty_end(offset)? {
            let later = durable_frame_after(&mut window, &header, offset)?;
            // A read-only view races a live owner: the scan read this
            // frame's bytes before the owner's `write` of them had landed,
            // and later bytes after it. Read afresh, the frame is whole:
            // the view ends here, and a refresh goes on from it.
            let stale = read_only
                && later.is_some()
                && FileWindow::new(file.as_ref(), &name)?
                    .frame(offset, header.salt)?
                    .is_ok();
            match later {
                Some(_) if stale => {}
                Some(later) => {
                    return Err(Error::corrupt(
                        &name,
                        offset,
                        format!("{reason}, followed by a valid frame at offset {later} written after this one was durable"),
                    ));
                }
                None => {
                    cut_to = Some(dirty_end);
                    end.fault = Some((offset, reason.to_string()));
                }
            }
        }
    }
    // Before anything is cut: a log that ends short of what its files
    // vouch for is refused, the evidence left in place.
    evidence::check(&end, &vouched.evidence)?;
    drop(window);
    // The torn tail is cut by overwriting it with zeros (what a tail past
    // the last frame holds), never by shortening the file: a mapping of it
    // (a `Bytes` a reader kept) must never lose a page.
    if read_only {
        let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
        let frames = FrameIndex::Memory(scan.frames);
        let segment = Segment::new(header, file, Some(map), frames, scan.data_end);
        return Ok((segment, scan.data_end, scan.position_end));
    }
    if let Some(dirty_end) = cut_to {
        crate::window::zero_range(file.as_ref(), &name, scan.data_end, dirty_end)?;
        report.truncated = Some((name.clone(), scan.data_end));
    }
    // What recovery accepted may sit only in the page cache (the process was
    // killed before its fsync): make it durable before anything builds on it.
    file.sync_all()
        .map_err(|e| Error::io("fsync", name.clone(), e))?;
    let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
    let segment = Segment::new(
        header,
        file,
        Some(map),
        FrameIndex::Memory(scan.frames),
        scan.data_end,
    );
    Ok((segment, scan.data_end, scan.position_end))
}

/// A cleanly closed active segment opened from the frame index written at
/// close, reading no frame — if the index verifies and ends exactly where
/// the marker says the log ends. `None`: open it the long way.
fn open_active_clean(
    storage: &dyn Storage,
    header: &SegmentHeader,
    file: &Arc<dyn StorageFile>,
    marker: CleanMarker,
) -> Result<Option<(Segment, u64, u64)>> {
    if (marker.position_first, marker.salt) != (header.position_first, header.salt) {
        return Ok(None);
    }
    let name = frame_index_file_name(header.position_first);
    let Ok(index_file) = storage.open(&name) else {
        return Ok(None);
    };
    let Ok(map) = index_file.map() else {
        return Ok(None);
    };
    let Ok((index, summary)) = FrameIndex::decode(map, &name, header) else {
        return Ok(None);
    };
    if (summary.position_end, summary.data_end) != (marker.position_end, marker.data_end) {
        return Ok(None);
    }
    // The active segment keeps growing: its frames live on the heap.
    let frames: Vec<FrameEntry> = (0..index.len()).filter_map(|i| index.get(i)).collect();
    let len = file.len().map_err(|e| Error::io("stat", &name, e))?;
    // The file may be shorter than the segment (allocated in steps), never
    // shorter than its frames.
    if len < marker.data_end || frames.len() != index.len() {
        return Ok(None);
    }
    let segment_name = crate::segment::segment_file_name(header.position_first);
    let map = file.map().map_err(|e| Error::io("mmap", segment_name, e))?;
    let segment = Segment::new(
        *header,
        Arc::clone(file),
        Some(map),
        FrameIndex::Memory(frames),
        marker.data_end,
    );
    Ok(Some((segment, marker.data_end, marker.position_end)))
}

/// Writes a sealed segment's frame index file (temp file, fsync, rename) and
/// returns the mapped, verified index. The file is derived data: if the
/// rename is lost in a crash, the next open rebuilds it.
pub(crate) fn write_frame_index(
    storage: &dyn Storage,
    header: &SegmentHeader,
    bytes: &[u8],
) -> Result<FrameIndex> {
    let name = frame_index_file_name(header.position_first);
    let tmp = format!("{name}.tmp");
    let _ = storage.remove(&tmp);
    let file = storage
        .create(&tmp)
        .map_err(|e| Error::io("create", tmp.clone(), e))?;
    file.write_all_at(bytes, 0)
        .map_err(|e| Error::io("write", tmp.clone(), e))?;
    file.sync_data()
        .map_err(|e| Error::io("fsync", tmp.clone(), e))?;
    drop(file);
    storage
        .rename(&tmp, &name)
        .map_err(|e| Error::io("rename", tmp.clone(), e))?;
    let file = storage
        .open(&name)
        .map_err(|e| Error::io("open", name.clone(), e))?;
    let map = file.map().map_err(|e| Error::io("mmap", name.clone(), e))?;
    FrameIndex::decode(map, &name, header).map(|(index, _)| index)
}
