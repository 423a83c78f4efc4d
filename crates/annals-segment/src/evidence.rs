//! Evidence of durability: files of a store that vouch the log once held
//! every position below some end, durably. Recovery compares the end it
//! finds with the furthest of these, and refuses to open a log that ends
//! before them ([`Error::Missing`]) instead of cutting or accepting less.
//!
//! What vouches, and why it may be believed:
//!
//! - an **index run** `index-S-E.run` (given by the caller: the segment log
//!   knows nothing of the index): a run is written only for positions the
//!   log had made durable (the store freezes its buffer after a sync);
//! - the **clean-close marker**: written after the final `fdatasync`, it
//!   names the active segment and the log's end. While it names a segment
//!   that exists, nothing was written after it, so it is the last word on
//!   where the log ends: a run reaching past it belongs to another log and
//!   is not evidence (the index discards it, as before). A marker naming a
//!   later segment than the last one present vouches for that segment;
//! - a **frame index** (`.fidx`) of the last segment: written after the
//!   segment was synced up to the end it records (at a seal, or of the
//!   active segment at a clean close). One whose segment file is gone
//!   vouches that the segment existed and held at least its first position;
//! - the **next segment**: a sealed segment must hold every position below
//!   the first position of the segment after it.
//!
//! Nothing here is ever removed while a refusal is reported: the evidence
//! stays for the operator (and `annals repair`) to judge.

use std::fmt;

use crate::clean::{CleanMarker, CLEAN_FILE_NAME};
use crate::error::Error;
use crate::format::SegmentHeader;
use crate::frame_index::{FrameIndex, SealedSummary};
use crate::segment::{frame_index_file_name, segment_file_name};
use crate::storage::Storage;

/// What kind of file vouches for a log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EvidenceKind {
    /// An index run, written only for positions already durable in the log.
    IndexRun,
    /// The clean-close marker (`CLEAN`), written after the final sync.
    CleanMarker,
    /// A segment's frame index file (`.fidx`), written after the segment
    /// was synced up to the end it records.
    FrameIndex,
    /// A later segment file: every position below its first must be in
    /// the segments before it.
    NextSegment,
}

impl EvidenceKind {
    /// A short name, as the CLI's JSON reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::IndexRun => "index run",
            EvidenceKind::CleanMarker => "clean-close marker",
            EvidenceKind::FrameIndex => "frame index",
            EvidenceKind::NextSegment => "next segment",
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file of the store that vouches the log held every position below
/// `position_end`, durably.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Evidence {
    /// What the file is.
    pub kind: EvidenceKind,
    /// The file, relative to the store directory.
    pub file: String,
    /// One past the last position it vouches for.
    pub position_end: u64,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}: positions below {})",
            self.file, self.kind, self.position_end
        )
    }
}

/// The evidence named in an [`Error::Missing`], comma-separated.
pub(crate) fn describe(evidence: &[Evidence]) -> String {
    let parts: Vec<String> = evidence.iter().map(Evidence::to_string).collect();
    parts.join(", ")
}

/// What vouches for a log, and whether a segment after its last one is
/// known to have existed.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub(crate) evidence: Vec<Evidence>,
    /// The marker or a frame index names a segment after the last one.
    pub(crate) successor_existed: bool,
}

/// Everything that vouches for a log whose last segment has `active` as
/// its header, besides the frames themselves: `external` (index runs the
/// caller found), the clean-close marker and frame index files. A marker
/// that names `active` makes every other claim past it void (see the
/// module comment).
pub(crate) fn gather(
    storage: &dyn Storage,
    external: &[Evidence],
    marker: Option<CleanMarker>,
    active: &SegmentHeader,
) -> Gathered {
    let mut found = Gathered::default();
    if let Some(marker) = marker {
        let claim = Evidence {
            kind: EvidenceKind::CleanMarker,
            file: CLEAN_FILE_NAME.to_owned(),
            position_end: marker.position_end,
        };
        if (marker.position_first, marker.salt) == (active.position_first, active.salt) {
            found.evidence.push(claim);
            return found;
        }
        if marker.position_first > active.position_first {
            found.evidence.push(claim);
            found.successor_existed = true;
        }
    }
    found.evidence.extend(external.iter().cloned());
    if let Some(end) = frame_index_end(storage, active) {
        found.evidence.push(Evidence {
            kind: EvidenceKind::FrameIndex,
            file: frame_index_file_name(active.position_first),
            position_end: end,
        });
    }
    let orphans = orphan_frame_indexes(storage, active.position_first);
    found.successor_existed |= !orphans.is_empty();
    found.evidence.extend(orphans);
    found
}

/// Evidence for a store with no segment file at all.
pub(crate) fn gather_without_segments(
    storage: &dyn Storage,
    external: &[Evidence],
    marker: Option<CleanMarker>,
) -> Vec<Evidence> {
    let mut found: Vec<Evidence> = external.to_vec();
    if let Some(marker) = marker {
        found.push(Evidence {
            kind: EvidenceKind::CleanMarker,
            file: CLEAN_FILE_NAME.to_owned(),
            position_end: marker.position_end,
        });
    }
    let mut orphans = orphan_frame_indexes(storage, 0);
    if storage.open(&frame_index_file_name(0)).is_ok() {
        orphans.push(Evidence {
            kind: EvidenceKind::FrameIndex,
            file: frame_index_file_name(0),
            position_end: 1,
        });
    }
    found.extend(orphans);
    found
}

/// The end recorded by the last segment's frame index file, if it
/// verifies against the segment's header.
fn frame_index_end(storage: &dyn Storage, header: &SegmentHeader) -> Option<u64> {
    let name = frame_index_file_name(header.position_first);
    let file = storage.open(&name).ok()?;
    let map = file.map().ok()?;
    let (_, summary) = FrameIndex::decode(map, &name, header).ok()?;
    Some(summary.position_end)
}

/// Frame index files of segments after `after` whose segment file is
/// gone: each vouches that its segment held at least its first position.
fn orphan_frame_indexes(storage: &dyn Storage, after: u64) -> Vec<Evidence> {
    let Ok(names) = storage.list() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|name| {
            let digits = name.strip_suffix(".fidx")?;
            if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let first: u64 = digits.parse().ok()?;
            let segment = segment_file_name(first);
            (first > after && !names.contains(&segment)).then(|| Evidence {
                kind: EvidenceKind::FrameIndex,
                file: name.clone(),
                position_end: first.saturating_add(1),
            })
        })
        .collect()
}

/// Where the log was found to end, for an [`Error::Missing`].
pub(crate) struct LogEnd<'a> {
    /// The last segment file present.
    pub(crate) segment: &'a str,
    /// Offset in it after the last valid frame.
    pub(crate) data_end: u64,
    /// One past the last position found.
    pub(crate) position_end: u64,
    /// What stopped the scan there (`None`: zeros, the log just ends).
    pub(crate) fault: Option<(u64, String)>,
    /// A segment after `segment` is known to have existed.
    pub(crate) successor_existed: bool,
}

/// [`Error::Missing`] if `evidence` vouches for positions past `end`.
pub(crate) fn check(end: &LogEnd<'_>, evidence: &[Evidence]) -> Result<(), Error> {
    let mut vouching: Vec<Evidence> = evidence
        .iter()
        .filter(|e| e.position_end > end.position_end)
        .cloned()
        .collect();
    let Some(position_end) = vouching.iter().map(|e| e.position_end).max() else {
        return Ok(());
    };
    vouching.sort_by(|a, b| (b.position_end, &a.file).cmp(&(a.position_end, &b.file)));
    let (file, offset, found) = match &end.fault {
        Some((offset, reason)) => (
            end.segment.to_owned(),
            *offset,
            format!(
                "the frame at offset {offset} of {} is invalid: {reason}",
                end.segment
            ),
        ),
        None => {
            let successor = segment_file_name(end.position_end);
            let found = format!(
                "the log ends at offset {} of {} (zeros after it), and {successor} does not exist",
                end.data_end, end.segment
            );
            if end.successor_existed {
                (successor, 0, found)
            } else {
                (end.segment.to_owned(), end.data_end, found)
            }
        }
    };
    Err(Error::Missing {
        file,
        offset,
        position_first: end.position_end,
        position_end,
        found,
        evidence: vouching,
    })
}

/// [`Error::Missing`] for a sealed segment `name` that ends (`scanned`,
/// its frames valid up to there) before `next_first`, the first position of
/// the segment after it, exactly where its own frame index (`indexed`)
/// says it ends: the segment is whole and the file that held the positions
/// in between is gone. Without a frame index that agrees, the short
/// segment may itself be damaged, and the caller reports it as corrupt.
pub(crate) fn check_gap(
    name: &str,
    scanned: SealedSummary,
    indexed: Option<SealedSummary>,
    next_first: u64,
) -> Result<(), Error> {
    if indexed != Some(scanned) || scanned.position_end >= next_first {
        return Ok(());
    }
    let missing = segment_file_name(scanned.position_end);
    Err(Error::Missing {
        file: missing.clone(),
        offset: 0,
        position_first: scanned.position_end,
        position_end: next_first,
        found: format!(
            "{name} ends at offset {} at position {} as its frame index says, and {missing} does not exist",
            scanned.data_end, scanned.position_end
        ),
        evidence: vec![Evidence {
            kind: EvidenceKind::NextSegment,
            file: segment_file_name(next_first),
            position_end: next_first,
        }],
    })
}

/// [`Error::Missing`] for a store whose segment files are all gone.
pub(crate) fn check_without_segments(evidence: &[Evidence]) -> Result<(), Error> {
    let end = LogEnd {
        segment: "(no segment)",
        data_end: 0,
        position_end: 0,
        fault: None,
        successor_existed: true,
    };
    match check(&end, evidence) {
        Err(Error::Missing {
            file,
            offset,
            position_first,
            position_end,
            evidence,
            ..
        }) => Err(Error::Missing {
            file,
            offset,
            position_first,
            position_end,
            found: "the store has no segment file".to_owned(),
            evidence,
        }),
        other => other,
    }
}
