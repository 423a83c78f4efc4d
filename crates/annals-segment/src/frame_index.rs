//! Where each frame of a segment starts: a sorted list of
//! (first position, offset) pairs, so locating a position is a binary search
//! and never a scan from the start of the log. Kept in memory for the active
//! segment and persisted beside each sealed segment (`.fidx`, mapped on open).
//!
//! Frame index file:
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    8 | magic `ANNALFIX` |
//! |   8 |    4 | format version (u32) |
//! |  12 |    4 | reserved, zero |
//! |  16 |    8 | position_first of the segment |
//! |  24 |    8 | salt of the segment |
//! |  32 |    8 | frame_count |
//! |  40 |    8 | position_end: one past the segment's last position |
//! |  48 |    8 | data_end: segment offset after the last frame (padded) |
//! |  56 |    4 | reserved, zero |
//! |  60 |    4 | crc: CRC-32/IEEE of bytes 0..60 ‖ entries |
//! |  64 |  16n | entries: (position_first u64, offset u64) per frame |

use crate::error::{Error, Result};
use crate::format::{get_u32, get_u64, SegmentHeader};
use crate::storage::Mapping;

/// Magic at the start of a frame index file.
pub const FRAME_INDEX_MAGIC: [u8; 8] = *b"ANNALFIX";
/// Frame index format version.
pub const FRAME_INDEX_FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const ENTRY_BYTES: usize = 16;

/// One frame's first position and segment offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    /// Global position of the frame's first event.
    pub position_first: u64,
    /// Offset of the frame in its segment.
    pub offset: u64,
}

/// Summary of a sealed segment, stored in its frame index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSummary {
    /// One past the last position.
    pub position_end: u64,
    /// Segment offset after the last frame.
    pub data_end: u64,
}

/// The frame locations of one segment.
#[derive(Debug)]
pub enum FrameIndex {
    /// Entries on the heap (the active segment).
    Memory(Vec<FrameEntry>),
    /// Entries read from a mapped, verified frame index file.
    Mapped {
        /// The mapped file.
        map: Mapping,
        /// Number of entries.
        count: usize,
    },
}

impl FrameIndex {
    /// Number of frames.
    pub fn len(&self) -> usize {
        match self {
            FrameIndex::Memory(entries) => entries.len(),
            FrameIndex::Mapped { count, .. } => *count,
        }
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th frame.
    pub fn get(&self, i: usize) -> Option<FrameEntry> {
        match self {
            FrameIndex::Memory(entries) => entries.get(i).copied(),
            FrameIndex::Mapped { map, count } => {
                if i >= *count {
                    return None;
                }
                let at = HEADER_BYTES + i * ENTRY_BYTES;
                let bytes = map.bytes();
                Some(FrameEntry {
                    position_first: get_u64(bytes, at)?,
                    offset: get_u64(bytes, at + 8)?,
                })
            }
        }
    }

    /// Index of the frame that holds `position`: the last frame whose first
    /// position is ≤ `position`.
    pub fn find(&self, position: u64) -> Option<usize> {
        match self {
            FrameIndex::Memory(entries) => last_at_most(entries.len(), position, |i| {
                entries.get(i).map_or(u64::MAX, |e| e.position_first)
            }),
            FrameIndex::Mapped { map, count } => {
                let bytes = map.bytes();
                last_at_most(*count, position, |i| {
                    get_u64(bytes, HEADER_BYTES + i * ENTRY_BYTES).unwrap_or(u64::MAX)
                })
            }
        }
    }

    /// Appends an entry (active segment only).
    pub fn push(&mut self, entry: FrameEntry) {
        if let FrameIndex::Memory(entries) = self {
            entries.push(entry);
        }
    }

    /// Encodes the index of a sealed segment as a frame index file.
    pub fn encode(&self, header: &SegmentHeader, summary: SealedSummary) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.len() * ENTRY_BYTES);
        out.extend_from_slice(&FRAME_INDEX_MAGIC);
        out.extend_from_slice(&FRAME_INDEX_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&header.position_first.to_le_bytes());
        out.extend_from_slice(&header.salt.to_le_bytes());
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        out.extend_from_slice(&summary.position_end.to_le_bytes());
        out.extend_from_slice(&summary.data_end.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // crc placeholder
        for entry in (0..self.len()).filter_map(|i| self.get(i)) {
            out.extend_from_slice(&entry.position_first.to_le_bytes());
            out.extend_from_slice(&entry.offset.to_le_bytes());
        }
        let crc = index_crc(&out);
        if let Some(slot) = out.get_mut(60..64) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Verifies a mapped frame index file against its segment's header:
    /// checksum first, then every field, then that entries are ordered and
    /// inside the segment.
    pub fn decode(
        map: Mapping,
        file: &str,
        header: &SegmentHeader,
    ) -> Result<(FrameIndex, SealedSummary)> {
        let bytes = map.bytes();
        let corrupt = |offset: u64, reason: &str| Error::corrupt(file, offset, reason);
        if bytes.len() < HEADER_BYTES {
            return Err(corrupt(0, "frame index shorter than its header"));
        }
        let stored = get_u32(bytes, 60).unwrap_or(0);
        if index_crc(bytes) != stored {
            return Err(corrupt(0, "frame index checksum mismatch"));
        }
        if bytes.get(..8) != Some(&FRAME_INDEX_MAGIC[..]) {
            return Err(corrupt(0, "bad frame index magic"));
        }
        let version = get_u32(bytes, 8).unwrap_or(0);
        if version != FRAME_INDEX_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: file.to_owned(),
                version,
            });
        }
        if get_u64(bytes, 16) != Some(header.position_first)
            || get_u64(bytes, 24) != Some(header.salt)
        {
            return Err(corrupt(16, "frame index belongs to another segment"));
        }
        let count = get_u64(bytes, 32).unwrap_or(u64::MAX);
        let summary = SealedSummary {
            position_end: get_u64(bytes, 40).unwrap_or(0),
            data_end: get_u64(bytes, 48).unwrap_or(0),
        };
        let expected_len = (count as u128) * ENTRY_BYTES as u128 + HEADER_BYTES as u128;
        if expected_len != bytes.len() as u128 || count == 0 {
            return Err(corrupt(
                32,
                "frame index entry count does not match its length",
            ));
        }
        if summary.data_end > header.segment_bytes || summary.position_end <= header.position_first
        {
            return Err(corrupt(40, "frame index summary out of range"));
        }
        let index = FrameIndex::Mapped {
            map: map.clone(),
            count: count as usize,
        };
        let mut previous: Option<FrameEntry> = None;
        for i in 0..index.len() {
            let entry = index.get(i).ok_or_else(|| corrupt(64, "short entry"))?;
            let ordered = match previous {
                None => entry.position_first == header.position_first,
                Some(prev) => {
                    entry.position_first > prev.position_first && entry.offset > prev.offset
                }
            };
            if !ordered
                || entry.offset >= summary.data_end
                || entry.position_first >= summary.position_end
            {
                return Err(corrupt(
                    (HEADER_BYTES + i * ENTRY_BYTES) as u64,
                    "frame index entry out of order",
                ));
            }
            previous = Some(entry);
        }
        Ok((index, summary))
    }
}

fn index_crc(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes.get(..60).unwrap_or_default());
    hasher.update(bytes.get(HEADER_BYTES..).unwrap_or_default());
    hasher.finalize()
}

/// The last `i < len` with `first(i) ≤ key` (`first` ascending). Frames
/// hold similar numbers of events, so the position's share of the
/// segment's range guesses the frame within a few entries (an exact hit
/// when appends are of one size); the search gallops from the guess to a
/// bracket, then halves it without branching on the data (a read locates
/// events at unrelated positions, where a branchy search mispredicts about
/// every other step). However skewed the frames, this is at most about
/// twice a plain binary search's probes; ordered entries are all it
/// relies on to be right, and nothing here can panic or loop without end
/// on disordered ones.
fn last_at_most(len: usize, key: u64, first: impl Fn(usize) -> u64) -> Option<usize> {
    let last = len.checked_sub(1)?;
    let low = first(0);
    if key < low {
        return None;
    }
    let high = first(last);
    if key >= high {
        return Some(last);
    }
    // Here `low ≤ key < high`, so `last ≥ 1` and `high > low`: the guess
    // is in `0..last`.
    let span = high.saturating_sub(low).max(1);
    // 64-bit arithmetic when it cannot overflow (a 128-bit division is a
    // call costing more than the probes it saves).
    let share = match (key - low).checked_mul(last as u64) {
        Some(product) => product / span,
        None => u64::try_from(u128::from(key - low) * last as u128 / u128::from(span)).unwrap_or(0),
    };
    let guess = usize::try_from(share).unwrap_or(0).min(last - 1);
    // A bracket `lo < hi` with `first(lo) ≤ key < first(hi)`.
    let (mut lo, mut hi) = if first(guess) <= key {
        let (mut lo, mut step) = (guess, 1usize);
        loop {
            let next = lo.saturating_add(step);
            if next >= last || first(next) > key {
                break (lo, next.min(last));
            }
            lo = next;
            step = step.saturating_mul(2);
        }
    } else {
        let (mut hi, mut step) = (guess, 1usize);
        loop {
            let next = hi.saturating_sub(step);
            if next == 0 || first(next) <= key {
                break (next, hi);
            }
            hi = next;
            step = step.saturating_mul(2);
        }
    };
    while hi - lo > 1 {
        let half = (hi - lo) / 2;
        let mid = lo + half;
        // Arithmetic, not a branch: the compiler keeps it branch-free.
        let at_most = usize::from(first(mid) <= key);
        lo += half * at_most;
        hi -= (hi - mid) * (1 - at_most);
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_finds_the_last_entry_not_past_the_key() {
        for len in 0..40usize {
            // Ascending first positions with gaps; duplicates never occur in
            // a frame index, but the search must still return the last one.
            let firsts: Vec<u64> = (0..len as u64).map(|i| 10 + i * 3 + i % 2).collect();
            for key in 0..(20 + 4 * len as u64) {
                let linear = firsts.iter().rposition(|f| *f <= key);
                let found = last_at_most(len, key, |i| firsts[i]);
                assert_eq!(found, linear, "len {len} key {key}");
            }
        }
        assert_eq!(last_at_most(3, u64::MAX, |_| u64::MAX), Some(2));
        assert_eq!(last_at_most(3, 5, |_| 5), Some(2));
    }

    /// Frames of very unequal sizes (the guess lands far from the frame)
    /// and of equal sizes (it lands on it): the search equals a linear one,
    /// and its probes stay within twice a binary search's (plus the two
    /// ends and the guess).
    #[test]
    fn the_guessing_search_is_right_and_bounded_on_skewed_frames() {
        let layouts: Vec<Vec<u64>> = vec![
            (0..500u64).map(|i| i * 1000).collect(),
            (0..500u64).map(|i| i * i * i).collect(),
            (0..60u64).map(|i| (1u64 << i) - 1).collect(),
            (0..500u64)
                .map(|i| if i < 490 { i } else { 1_000_000 + i })
                .collect(),
            (0..500u64)
                .map(|i| if i < 10 { i * 100_000 } else { 1_000_000 + i })
                .collect(),
        ];
        for firsts in layouts {
            let len = firsts.len();
            let end = firsts[len - 1] + 10;
            let keys = (0..2_000u64)
                .map(|k| k * (end / 2_000).max(1))
                .chain(firsts.iter().flat_map(|&f| [f.saturating_sub(1), f, f + 1]));
            let bound = 2 * (usize::BITS - len.leading_zeros()) as usize + 3;
            for key in keys {
                let probes = std::cell::Cell::new(0usize);
                let found = last_at_most(len, key, |i| {
                    probes.set(probes.get() + 1);
                    firsts[i]
                });
                assert_eq!(found, firsts.iter().rposition(|f| *f <= key), "key {key}");
                assert!(probes.get() <= bound, "key {key}: {} probes", probes.get());
            }
        }
    }
}
