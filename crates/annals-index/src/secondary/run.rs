//! Secondary run files: every secondary entry of one contiguous range of
//! global positions `[start, end)`, sorted by (hash, position), in
//! checksummed 4 KiB pages (the byte layout is in `docs/FORMAT.md`,
//! "Secondary index runs").
//!
//! | page | bytes | what |
//! |---|---|---|
//! | 0 | 0..8 | magic `ANNALSSX` |
//! | 0 | 8..12 | format version (u32 LE) |
//! | 0 | 16..24, 24..32 | start, end (u64 LE) |
//! | 0 | 32..40 | salt (u64 LE) |
//! | 0 | 40..48 | entries (u64 LE) |
//! | 1.. | 16 per entry, 255 a page | hash (u64 LE), position (u64 LE) |
//!
//! Every page ends in `page_crc(salt, page, payload)` (CRC-32/IEEE); a page
//! is verified the first time it is read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use annals_segment::format;
use annals_segment::storage::{Mapping, Storage};

use super::SecondaryEntry;
use crate::run::{page_crc, PAGE_BYTES, POSITION_LIMIT};
use crate::Error;

const PAYLOAD_BYTES: usize = PAGE_BYTES - 4;
const ENTRY_BYTES: usize = 16;
const ENTRIES_PER_PAGE: usize = PAYLOAD_BYTES / ENTRY_BYTES;
const MAGIC: &[u8; 8] = b"ANNALSSX";
const FORMAT_VERSION: u32 = 1;
const _: () = assert!(ENTRIES_PER_PAGE == 255);

/// The file name of the secondary run covering `[start, end)`.
pub fn secondary_file_name(start: u64, end: u64) -> String {
    format!("secondary-{start:016x}-{end:016x}.sidx")
}

/// The range of a secondary run file name, if `name` is one.
pub fn parse_secondary_file_name(name: &str) -> Option<(u64, u64)> {
    let middle = name.strip_prefix("secondary-")?.strip_suffix(".sidx")?;
    let (start, end) = middle.split_once('-')?;
    if start.len() != 16 || end.len() != 16 {
        return None;
    }
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    format::get_u64(bytes, at).unwrap_or_default()
}

/// The (hash, position) in slot `k` of a page's payload.
#[inline]
fn slot(page: &[u8], k: usize) -> (u64, u64) {
    let at = k * ENTRY_BYTES;
    match page.get(at..at + ENTRY_BYTES) {
        Some(&[h0, h1, h2, h3, h4, h5, h6, h7, p0, p1, p2, p3, p4, p5, p6, p7]) => (
            u64::from_le_bytes([h0, h1, h2, h3, h4, h5, h6, h7]),
            u64::from_le_bytes([p0, p1, p2, p3, p4, p5, p6, p7]),
        ),
        // Past the payload (not reached: slots are below 255).
        _ => (u64::MAX, u64::MAX),
    }
}

/// An open, immutable secondary run.
pub struct SecondaryRun {
    name: String,
    map: Mapping,
    start: u64,
    end: u64,
    salt: u64,
    entries: u64,
    /// One bit per page: verified already.
    verified: Box<[AtomicU64]>,
    broken: AtomicBool,
}

impl std::fmt::Debug for SecondaryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryRun")
            .field("name", &self.name)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl SecondaryRun {
    /// Writes the run `[start, end)` from `entries` (sorted, each unique,
    /// every position in the range) durably: a temporary file, `fsync`,
    /// rename, directory `fsync`. Returns the opened run.
    pub fn write(
        storage: &Arc<dyn Storage>,
        start: u64,
        end: u64,
        entries: &[SecondaryEntry],
    ) -> Result<SecondaryRun, Error> {
        if start >= end || end > POSITION_LIMIT {
            return Err(Error::invalid(format!(
                "a secondary run cannot cover {start}..{end}"
            )));
        }
        let in_range = entries.iter().all(|e| (start..end).contains(&e.position));
        if !in_range || !entries.windows(2).all(|w| w.first() < w.get(1)) {
            return Err(Error::invalid(format!(
                "secondary run {start}..{end}: entries unsorted or out of range"
            )));
        }
        let name = secondary_file_name(start, end);
        let temp = format!("{name}.tmp");
        let salt = annals_segment::random_u64();
        let pages = 1 + entries.len().div_ceil(ENTRIES_PER_PAGE);
        let mut bytes = vec![0u8; pages * PAGE_BYTES];
        let mut header = [0u8; PAYLOAD_BYTES];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&start.to_le_bytes());
        header[24..32].copy_from_slice(&end.to_le_bytes());
        header[32..40].copy_from_slice(&salt.to_le_bytes());
        header[40..48].copy_from_slice(&(entries.len() as u64).to_le_bytes());
        let chunks = std::iter::once(&header[..]).map(<[u8]>::to_vec).chain(
            entries.chunks(ENTRIES_PER_PAGE).map(|chunk| {
                let mut payload = vec![0u8; PAYLOAD_BYTES];
                for (slot, entry) in payload.chunks_exact_mut(ENTRY_BYTES).zip(chunk) {
                    let (hash, position) = slot.split_at_mut(8);
                    hash.copy_from_slice(&entry.hash.to_le_bytes());
                    position.copy_from_slice(&entry.position.to_le_bytes());
                }
                payload
            }),
        );
        for ((page, payload), out) in chunks.enumerate().zip(bytes.chunks_exact_mut(PAGE_BYTES)) {
            let crc = page_crc(salt, page as u64, &payload);
            let (payload_out, crc_out) = out.split_at_mut(PAYLOAD_BYTES);
            payload_out.copy_from_slice(&payload);
            crc_out.copy_from_slice(&crc.to_le_bytes());
        }
        // A temporary file left by a crash is removed first (only then:
        // the common case costs no removal).
        let file = match storage.create(&temp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                storage
                    .remove(&temp)
                    .map_err(|e| Error::io("remove", temp.clone(), e))?;
                storage.create(&temp)
            }
            other => other,
        }
        .map_err(|e| Error::io("create", temp.clone(), e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| Error::io("write", temp.clone(), e))?;
        file.sync_all()
            .map_err(|e| Error::io("fsync", temp.clone(), e))?;
        drop(file);
        storage
            .rename(&temp, &name)
            .map_err(|e| Error::io("rename", temp.clone(), e))?;
        storage
            .sync_dir()
            .map_err(|e| Error::io("fsync dir", storage.describe(), e))?;
        SecondaryRun::open(storage, &name)
    }

    /// Opens a secondary run file, verifying its header page and its size
    /// (the other pages are verified when first read).
    pub fn open(storage: &Arc<dyn Storage>, name: &str) -> Result<SecondaryRun, Error> {
        let corrupt = |offset: u64, reason: String| Error::corrupt(name, offset, reason);
        let (start, end) = parse_secondary_file_name(name)
            .ok_or_else(|| corrupt(0, "not a secondary run file name".into()))?;
        let file = storage.open(name).map_err(|e| Error::io("open", name, e))?;
        let map = file.map().map_err(|e| Error::io("mmap", name, e))?;
        let bytes = map.bytes();
        let first = bytes
            .get(..PAGE_BYTES)
            .ok_or_else(|| corrupt(0, format!("{} bytes: no header page", bytes.len())))?;
        let (payload, crc) = first.split_at(PAYLOAD_BYTES);
        if payload.get(..8) != Some(MAGIC.as_slice()) {
            return Err(corrupt(0, "bad magic".into()));
        }
        let salt = le_u64(payload, 32);
        if format::get_u32(crc, 0) != Some(page_crc(salt, 0, payload)) {
            return Err(corrupt(0, "header page checksum mismatch".into()));
        }
        let version = format::get_u32(payload, 8).unwrap_or_default();
        if version != FORMAT_VERSION {
            return Err(Error::Storage(annals_segment::Error::UnsupportedVersion {
                file: name.to_owned(),
                version,
            }));
        }
        let entries = le_u64(payload, 40);
        if (le_u64(payload, 16), le_u64(payload, 24)) != (start, end) || end > POSITION_LIMIT {
            return Err(corrupt(
                16,
                format!("header disagrees with the name {start}..{end}"),
            ));
        }
        let pages = 1 + entries.div_ceil(ENTRIES_PER_PAGE as u64);
        if bytes.len() as u64 != pages.saturating_mul(PAGE_BYTES as u64) {
            return Err(corrupt(
                0,
                format!("{} bytes for {entries} entries", bytes.len()),
            ));
        }
        let verified = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(SecondaryRun {
            name: name.to_owned(),
            map,
            start,
            end,
            salt,
            entries,
            verified,
            broken: AtomicBool::new(false),
        })
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First position covered.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last position covered.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Positions covered.
    pub fn events(&self) -> u64 {
        self.end - self.start
    }

    /// Entries held.
    pub fn entry_count(&self) -> u64 {
        self.entries
    }

    /// Size of the file.
    pub fn file_bytes(&self) -> u64 {
        self.map.bytes().len() as u64
    }

    /// Whether a page failed its checksum (the run must be rebuilt).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    fn damaged(&self, offset: u64, reason: impl Into<String>) -> Error {
        self.broken.store(true, Ordering::Release);
        Error::corrupt(&self.name, offset, reason)
    }

    /// Why entry `entry`, at `position`, cannot be where it is.
    fn misplaced(&self, entry: u64, position: u64) -> String {
        if (self.start..self.end).contains(&position) {
            format!("entry {entry} out of order: position {position}")
        } else {
            format!("entry {entry} points at position {position}, outside the run")
        }
    }

    /// The payload of page `page`, verified on first use.
    fn page(&self, page: u64) -> Result<&[u8], Error> {
        let offset = page as usize * PAGE_BYTES;
        let bytes = self
            .map
            .bytes()
            .get(offset..offset + PAGE_BYTES)
            .ok_or_else(|| self.damaged(offset as u64, "page out of range"))?;
        let (payload, crc) = bytes.split_at(PAYLOAD_BYTES);
        let word = self.verified.get((page / 64) as usize);
        let bit = 1u64 << (page % 64);
        if word.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            return Ok(payload);
        }
        if format::get_u32(crc, 0) != Some(page_crc(self.salt, page, payload)) {
            return Err(self.damaged(offset as u64, "secondary index page checksum mismatch"));
        }
        if let Some(word) = word {
            word.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(payload)
    }

    /// The `i`th entry, in (hash, position) order.
    pub fn entry(&self, i: u64) -> Result<SecondaryEntry, Error> {
        if i >= self.entries {
            return Err(Error::corrupt(&self.name, 0, "entry out of range"));
        }
        let page = self.page(1 + i / ENTRIES_PER_PAGE as u64)?;
        let at = (i % ENTRIES_PER_PAGE as u64) as usize * ENTRY_BYTES;
        let entry = SecondaryEntry {
            hash: le_u64(page, at),
            position: le_u64(page, at + 8),
        };
        if !(self.start..self.end).contains(&entry.position) {
            return Err(self.damaged(
                0,
                format!(
                    "entry points at position {}, outside the run",
                    entry.position
                ),
            ));
        }
        Ok(entry)
    }

    /// Index of the first entry at or after `(hash, position)`: a binary
    /// search over the pages by their first entries, then one within the
    /// page found (its payload read as a slice, not entry by entry).
    pub fn seek(&self, hash: u64, position: u64) -> Result<u64, Error> {
        let target = (hash, position);
        let per_page = ENTRIES_PER_PAGE as u64;
        let pages = self.entries.div_ceil(per_page);
        // The first data page whose first entry is at or after the target:
        // the answer lies in the page before it (or is where it starts).
        let (mut low, mut high) = (0u64, pages);
        while low < high {
            let mid = low + (high - low) / 2;
            let page = self.page(1 + mid)?;
            if slot(page, 0) < target {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let Some(before) = low.checked_sub(1) else {
            return Ok(0);
        };
        let page = self.page(1 + before)?;
        let first = before * per_page;
        let in_page = (self.entries - first).min(per_page) as usize;
        let (mut low, mut high) = (1usize, in_page);
        while low < high {
            let mid = low + (high - low) / 2;
            if slot(page, mid) < target {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Ok(first + low as u64)
    }

    /// Up to `max` positions with key hash `hash` from `from` (inclusive),
    /// in increasing order.
    pub fn positions(&self, hash: u64, from: u64, max: usize) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        self.extend_positions(hash, from, max, &mut out)?;
        Ok(out)
    }

    /// Appends to `out` up to `max` positions with key hash `hash` from
    /// `from` (inclusive), in increasing order (what
    /// [`positions`](SecondaryRun::positions) returns, without a vector of
    /// its own): each page is checked once, its entries read as a slice.
    ///
    /// A position outside the run, below `from`, or not above the one
    /// before it is an entry out of order: the run is broken (an error,
    /// never positions out of order or twice, which readers would hand on
    /// as they are). After an error `out` is as it was.
    pub fn extend_positions(
        &self,
        hash: u64,
        from: u64,
        max: usize,
        out: &mut Vec<u64>,
    ) -> Result<(), Error> {
        if from >= self.end || max == 0 {
            return Ok(());
        }
        let begin = out.len();
        if let Err(error) = self.take_positions(hash, from, max, out) {
            out.truncate(begin);
            return Err(error);
        }
        let taken = out.get(begin..).unwrap_or_default();
        // After the copy, in one branch-free pass (that loop is a category
        // read's): increasing, and within `max(from, start)..end`.
        let rising = taken
            .iter()
            .zip(taken.iter().skip(1))
            .fold(true, |rising, (a, b)| rising & (a < b));
        let within = |p: Option<&u64>| p.is_none_or(|&p| p >= from.max(self.start) && p < self.end);
        if rising && within(taken.first()) && within(taken.last()) {
            return Ok(());
        }
        let mut floor = from.max(self.start);
        let bad = taken.iter().position(|&p| {
            let bad = p < floor || p >= self.end;
            floor = p.saturating_add(1);
            bad
        });
        let (k, position) = bad
            .and_then(|k| Some((k, *taken.get(k)?)))
            .unwrap_or_default();
        out.truncate(begin);
        let entry = self.seek(hash, from)?.saturating_add(k as u64);
        Err(self.damaged(0, self.misplaced(entry, position)))
    }

    /// The loop of [`extend_positions`](SecondaryRun::extend_positions):
    /// the positions of the entries of `hash` from the first at or after
    /// `(hash, from)`, as they are.
    fn take_positions(
        &self,
        hash: u64,
        from: u64,
        max: usize,
        out: &mut Vec<u64>,
    ) -> Result<(), Error> {
        let per_page = ENTRIES_PER_PAGE as u64;
        let (mut i, mut left) = (self.seek(hash, from)?, max);
        while left > 0 && i < self.entries {
            let page = self.page(1 + i / per_page)?;
            let first = (i % per_page) as usize;
            let in_page = (self.entries - (i - first as u64)).min(per_page) as usize;
            for k in first..in_page {
                let (entry_hash, position) = slot(page, k);
                if entry_hash != hash {
                    return Ok(());
                }
                if out.len() == out.capacity() {
                    // Room for a page's worth at once, not one doubling at
                    // a time (never more than asked for).
                    out.reserve(left.min(ENTRIES_PER_PAGE));
                }
                out.push(position);
                left -= 1;
                if left == 0 {
                    return Ok(());
                }
            }
            i += (in_page - first) as u64;
        }
        Ok(())
    }

    /// How many entries of key hash `hash` hold a position from `from`
    /// (inclusive) on: a binary search for the first, then a galloping
    /// search for the last, so O(log n + log count) entries are read.
    pub fn count(&self, hash: u64, from: u64) -> Result<u64, Error> {
        if from >= self.end {
            return Ok(0);
        }
        let first = self.seek(hash, from)?;
        let of_hash =
            |i: u64| -> Result<bool, Error> { Ok(i < self.entries && self.entry(i)?.hash == hash) };
        if !of_hash(first)? {
            return Ok(0);
        }
        // Invariant: `first + low` is of the hash, `first + high` is not.
        let (mut low, mut high) = (0u64, 1u64);
        while of_hash(first.saturating_add(high))? {
            low = high;
            high = high.saturating_mul(2);
        }
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if of_hash(first + mid)? {
                low = mid;
            } else {
                high = mid;
            }
        }
        Ok(low + 1)
    }

    /// Up to `max` positions with key hash `hash` below `below`, newest
    /// first. A position not below the one after it (or `below`) is an
    /// entry out of order: the run is broken.
    pub fn positions_backward(&self, hash: u64, below: u64, max: usize) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        let mut ceiling = below.min(self.end);
        let mut i = self.seek(hash, ceiling)?;
        while out.len() < max && i > 0 {
            i -= 1;
            let entry = self.entry(i)?;
            if entry.hash != hash {
                break;
            }
            if entry.position >= ceiling {
                return Err(self.damaged(
                    0,
                    format!("entry {i} out of order: position {}", entry.position),
                ));
            }
            ceiling = entry.position;
            out.push(entry.position);
        }
        Ok(out)
    }

    /// Reads every page: checksums, order (each entry above the one before)
    /// and range. Returns the entries.
    pub fn verify(&self) -> Result<Vec<SecondaryEntry>, Error> {
        let mut out = Vec::with_capacity(usize::try_from(self.entries).unwrap_or(0));
        for i in 0..self.entries {
            let entry = self.entry(i)?;
            if out.last().is_some_and(|last| *last >= entry) {
                return Err(self.damaged(0, format!("entry {i} out of order")));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_segment::storage::MemStorage;

    fn entries(start: u64, end: u64) -> Vec<SecondaryEntry> {
        let mut v: Vec<_> = (start..end)
            .flat_map(|p| {
                [
                    SecondaryEntry {
                        hash: p % 7,
                        position: p,
                    },
                    SecondaryEntry {
                        hash: 100 + p % 3,
                        position: p,
                    },
                ]
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_written_run_reads_back_searches_and_verifies() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let all = entries(5, 2000);
        let run = SecondaryRun::write(&storage, 5, 2000, &all).unwrap();
        let run = SecondaryRun::open(&storage, run.name()).unwrap();
        assert_eq!(run.verify().unwrap(), all);
        let want: Vec<u64> = (5..2000)
            .filter(|p| p % 7 == 3 && *p >= 500)
            .take(10)
            .collect();
        assert_eq!(run.positions(3, 500, 10).unwrap(), want);
        let back: Vec<u64> = (5..500).rev().filter(|p| p % 3 == 1).take(4).collect();
        assert_eq!(run.positions_backward(101, 500, 4).unwrap(), back);
        assert!(run.positions(42, 0, 10).unwrap().is_empty());
        for (hash, from) in [(3, 500), (3, 0), (101, 1999), (101, 2000), (42, 0), (0, 7)] {
            let want = all
                .iter()
                .filter(|e| e.hash == hash && e.position >= from)
                .count() as u64;
            assert_eq!(run.count(hash, from).unwrap(), want, "{hash} from {from}");
        }
        assert!(SecondaryRun::write(&storage, 5, 10, &entries(5, 11)).is_err());
    }

    /// The page-then-slot search and the page-at-a-time reads answer what
    /// a search of the sorted entries does: for keys within one page,
    /// across many pages, absent keys (before, between and after every
    /// key), every `from` and several `max`, on runs of one to many pages
    /// (a last page partly filled).
    #[test]
    fn seek_positions_and_count_equal_a_search_of_the_entries() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        for (run_events, keys) in [(1u64, 1u64), (100, 3), (700, 2), (3000, 40), (1500, 1000)] {
            let start = 10;
            let end = start + run_events;
            // Hashes 2, 4, 6, …: odd hashes are absent, between present ones.
            let mut all: Vec<SecondaryEntry> = (start..end)
                .flat_map(|p| {
                    let a = 2 * (1 + next() % keys);
                    let b = 2 * (1 + next() % keys);
                    [a, b].map(|hash| SecondaryEntry { hash, position: p })
                })
                .collect();
            all.sort_unstable();
            all.dedup();
            let run = SecondaryRun::write(&storage, start, end, &all).unwrap();
            let hashes: Vec<u64> = (0..=2 * keys + 2).chain([u64::MAX]).collect();
            let froms = [
                0,
                start,
                start + 1,
                start + run_events / 2,
                end - 1,
                end,
                end + 5,
            ];
            for &hash in &hashes {
                for &from in &froms {
                    let want_seek = all.partition_point(|e| (e.hash, e.position) < (hash, from));
                    assert_eq!(
                        run.seek(hash, from).unwrap(),
                        want_seek as u64,
                        "{hash} {from}"
                    );
                    let of_key: Vec<u64> = all
                        .iter()
                        .filter(|e| e.hash == hash && e.position >= from && from < end)
                        .map(|e| e.position)
                        .collect();
                    for max in [0, 1, 7, 255, 256, usize::MAX] {
                        let want: Vec<u64> = of_key.iter().copied().take(max).collect();
                        assert_eq!(run.positions(hash, from, max).unwrap(), want);
                        let mut out = vec![1, 2];
                        run.extend_positions(hash, from, max, &mut out).unwrap();
                        assert_eq!(out[2..], want[..], "{hash} from {from} max {max}");
                    }
                    assert_eq!(run.count(hash, from).unwrap(), of_key.len() as u64);
                }
            }
            storage.remove(run.name()).unwrap();
        }
    }

    /// Postings out of order behind a valid checksum (found by the
    /// `secondary_pages` fuzz target: a position raised past the next one
    /// of its key was handed out, out of order and then again): reading
    /// them forward or backward is an error that marks the run broken,
    /// never positions out of order or twice.
    #[test]
    fn postings_out_of_order_are_an_error_and_mark_the_run_broken() {
        let storage = MemStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.handle());
        let all = entries(0, 1000);
        let name = SecondaryRun::write(&shared, 0, 1000, &all)
            .unwrap()
            .name()
            .to_owned();
        let clean = storage.read_file(&name).unwrap();
        let salt = u64::from_le_bytes(clean[32..40].try_into().unwrap());
        // Entries 10 and 11 (on page 1) are of one key, positions rising.
        let (a, b) = (all[10], all[11]);
        assert!(a.hash == b.hash && a.position < b.position);
        // A swap of the two, and the first raised to the second (twice).
        for (first, second) in [(b.position, a.position), (b.position, b.position)] {
            let mut bytes = clean.clone();
            let page = &mut bytes[PAGE_BYTES..2 * PAGE_BYTES];
            page[10 * 16 + 8..10 * 16 + 16].copy_from_slice(&first.to_le_bytes());
            page[11 * 16 + 8..11 * 16 + 16].copy_from_slice(&second.to_le_bytes());
            let crc = page_crc(salt, 1, &page[..PAYLOAD_BYTES]);
            page[PAYLOAD_BYTES..].copy_from_slice(&crc.to_le_bytes());
            storage.write_file(&name, &bytes);
            let run = SecondaryRun::open(&shared, &name).unwrap();
            let mut out = vec![1, 2];
            let error = run
                .extend_positions(a.hash, 0, usize::MAX, &mut out)
                .unwrap_err();
            assert!(error.is_corruption() && run.is_broken(), "{error}");
            assert_eq!(out, [1, 2], "left as it was");
            let run = SecondaryRun::open(&shared, &name).unwrap();
            let error = run
                .positions_backward(a.hash, 1000, usize::MAX)
                .unwrap_err();
            assert!(error.is_corruption() && run.is_broken(), "{error}");
            let run = SecondaryRun::open(&shared, &name).unwrap();
            // From past the swapped pair: they are not read.
            let later = run.positions(a.hash, b.position + 1, 3).unwrap();
            assert!(later.windows(2).all(|w| w[0] < w[1]) && !run.is_broken());
        }
    }

    #[test]
    fn a_damaged_page_is_an_error_and_marks_the_run_broken() {
        let storage = MemStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.handle());
        let run = SecondaryRun::write(&shared, 0, 1000, &entries(0, 1000)).unwrap();
        let name = run.name().to_owned();
        drop(run);
        let mut bytes = storage.read_file(&name).unwrap();
        bytes[PAGE_BYTES * 2 + 7] ^= 1;
        storage.write_file(&name, &bytes);
        let run = SecondaryRun::open(&shared, &name).unwrap();
        assert!(run.verify().unwrap_err().is_corruption());
        assert!(run.is_broken());
    }
}
