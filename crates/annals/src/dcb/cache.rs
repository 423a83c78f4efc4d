//! The query cache ([`Options::query_cache_bytes`](crate::Options::query_cache_bytes)):
//! copies of the events [`Store::read_query`](crate::Store::read_query)
//! read, verified, kept in memory, so that reading a query again — the
//! decide loop of a [`Query`](crate::Query) whose events every command
//! reads — skips finding, checksumming and decoding them in the log.
//!
//! **What it trusts.** An event enters the cache only after its record's
//! checksum and every field were verified as they are for any read; the
//! copy lives on the heap, not in the mapped log, so a page of the log
//! evicted and read again from a disk that changed in between is never
//! used unverified: it is what a buffer pool does (SQLite's page cache,
//! RocksDB's block cache), and `docs/GUARANTEES.md` ("Every byte read is
//! checksummed") holds.
//!
//! **What it forgets.** A position's event changes only when compaction
//! rewrites its segment (an erased event becomes a gap record); a merge or
//! a read-only view following the owner also replaces segments.
//! [`LogReader::replacements`] counts them all: each entry keeps the count
//! its reader loaded *before* reading the event, and is used only while
//! the count is unchanged. So after `compact` returns, no read serves an
//! erased payload from the cache, as none serves it from the log.
//!
//! **Its shape.** Direct-mapped: a position has one slot (a hash of the
//! position picks it), and a new event takes the slot from the one there.
//! A read holds the table's read lock (recursively: a visitor may read
//! again) for its whole batch, and a hit borrows its entry: no lock, no
//! reference count, no list to reorder per event. Copies go in with
//! `try_write`, never waited for: while reads hold the table they wait in
//! a bounded queue for the next read that finds it free, so no read is
//! ever stalled or deadlocked by another's copies. An event is copied at
//! its second read: the first only notes its position in its slot (a
//! doorkeeper), so a read of events never read again — a catch-up, a
//! student seen once — copies nothing. Memory: the entries' bytes stay
//! within the budget, the slots take 16 bytes per 512 of budget, and at
//! most 4,096 copies (an eighth of the budget) wait. An event larger than a 64th of the budget is
//! not kept.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use annals_segment::{LogReader, Record, Tags};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::store::QueryCacheStats;

/// Budget bytes per slot.
const BYTES_PER_SLOT: usize = 512;

/// What an entry costs besides its names and body: the entry itself and
/// the three allocations' headers.
const ENTRY_OVERHEAD: usize = 160;

/// Most copies waiting for the table's write lock (see
/// [`QueryCache::keep`]), in count and in bytes (this share of the
/// budget); more are dropped.
const PENDING_MAX: usize = 4096;
const PENDING_SHARE: usize = 8;

/// Verified copies of events by position (see the module comment).
pub(crate) struct QueryCache {
    /// Read-locked for a whole batch of lookups (a hit borrows its entry:
    /// no count to take and drop per event); write-locked only by
    /// `try_write`, never waited for, so no read, nested or not, can be
    /// stalled or deadlocked by a writer.
    table: RwLock<Table>,
    /// Copies made while the table was read-locked by another read.
    pending: Mutex<Pending>,
    /// The count of replacements (plus one; 0: none) whose older entries
    /// are still to be dropped (they are never served; this frees them).
    stale_before: AtomicU64,
    /// Per slot, the last position (plus one; 0: none) a read missed
    /// there: an event is copied at its second read (a doorkeeper), so
    /// reads of events never read again copy nothing.
    seen: Box<[AtomicU64]>,
    /// `64 - log2(slots)`: a position's slot is the top bits of its hash.
    shift: u32,
    budget: usize,
    /// Events served from the cache, and read from the log through it
    /// (added once per read, not per event).
    hits: AtomicU64,
    misses: AtomicU64,
    /// Copies put in the table.
    kept: AtomicU64,
    /// The highest count of replacements a read loaded or a
    /// [`forget_stale`](QueryCache::forget_stale) was told of: a copy read
    /// under a lower one is never put in the table (no read loading a
    /// count now would be served it).
    latest: AtomicU64,
}

/// Copies waiting for the table, and the bytes they hold.
#[derive(Default)]
struct Pending {
    copies: Vec<Cached>,
    bytes: usize,
}

/// The entries, how many, and the bytes they hold.
struct Table {
    slots: Box<[Option<Box<Cached>>]>,
    entries: usize,
    used: usize,
}

impl std::fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache")
            .field("slots", &self.seen.len())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// One event, as its record was verified: its text (the stream's name,
/// the type's, and the tag region when it is text, as nearly every one
/// is), a buffer of the rest (the tag region if it is not text, the
/// metadata, the data) and the fixed fields. Text apart, so that a hit
/// makes no `&str` by checking bytes again.
struct Cached {
    position: u64,
    /// [`LogReader::replacements`] loaded before the event was read.
    replacements: u64,
    text: Box<str>,
    /// Where the stream's name and the type end in `text`.
    stream_end: usize,
    type_end: usize,
    /// Whether the tag region is the rest of `text` (else it starts
    /// `body`).
    tags_in_text: bool,
    body: Bytes,
    /// Where the tag region (if in `body`) ends in `body`, and the
    /// metadata's length after it.
    tags_end: usize,
    metadata_len: usize,
    stream_version: u64,
    id: [u8; 16],
    timestamp_us: u64,
    flags: u16,
}

impl Cached {
    fn new(position: u64, replacements: u64, record: &Record<'_>) -> Cached {
        let tags_text = record.tags.to_text();
        let tags_bytes = if tags_text.is_some() {
            &[][..]
        } else {
            record.tags.as_bytes()
        };
        let mut text = String::with_capacity(
            record.stream.len() + record.event_type.len() + tags_text.map_or(0, str::len),
        );
        text.push_str(record.stream);
        text.push_str(record.event_type);
        text.push_str(tags_text.unwrap_or_default());
        let mut body =
            Vec::with_capacity(tags_bytes.len() + record.metadata.len() + record.data.len());
        body.extend_from_slice(tags_bytes);
        body.extend_from_slice(record.metadata);
        body.extend_from_slice(record.data);
        Cached {
            position,
            replacements,
            text: text.into_boxed_str(),
            stream_end: record.stream.len(),
            type_end: record.stream.len() + record.event_type.len(),
            tags_in_text: tags_text.is_some(),
            body: Bytes::from(body),
            tags_end: tags_bytes.len(),
            metadata_len: record.metadata.len(),
            stream_version: record.stream_version,
            id: record.id,
            timestamp_us: record.timestamp_us,
            flags: record.flags,
        }
    }

    /// Bytes it holds, as the budget counts them.
    fn bytes(&self) -> usize {
        self.text.len() + self.body.len() + ENTRY_OVERHEAD
    }

    /// The record again, borrowed from the copy, whose parts were all
    /// verified when it was read.
    #[inline]
    fn record(&self) -> Result<Record<'_>> {
        self.parts().ok_or_else(|| self.broken())
    }

    /// [`record`](Cached::record), `None` if the offsets do not fit.
    #[inline]
    fn parts(&self) -> Option<Record<'_>> {
        let (names, tags_text) = self.text.split_at_checked(self.type_end)?;
        let (stream, event_type) = names.split_at_checked(self.stream_end)?;
        let (tags, rest) = self.body.split_at_checked(self.tags_end)?;
        let (metadata, data) = rest.split_at_checked(self.metadata_len)?;
        Some(Record {
            stream,
            stream_version: self.stream_version,
            id: self.id,
            timestamp_us: self.timestamp_us,
            flags: self.flags,
            event_type,
            tags: if self.tags_in_text {
                Tags::from_checked_text(tags_text)
            } else {
                Tags::from_checked(tags)
            },
            metadata,
            data,
        })
    }

    /// An entry whose offsets do not fit its buffers (never made so).
    #[cold]
    fn broken(&self) -> Error {
        Error::Internal(format!("query cache entry at {}", self.position))
    }
}

impl Table {
    /// The entry for `position` (in slot `i`) read under `replacements`.
    fn get(&self, i: usize, position: u64, replacements: u64) -> Option<&Cached> {
        self.slots
            .get(i)?
            .as_deref()
            .filter(|c| c.position == position && c.replacements == replacements)
    }

    /// Puts `entry` in slot `i` if the budget allows; whether it did.
    fn put(&mut self, i: usize, entry: Cached, budget: usize) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        let freed = slot.as_ref().map_or(0, |old| old.bytes());
        let used = self
            .used
            .saturating_sub(freed)
            .saturating_add(entry.bytes());
        if used > budget {
            return false;
        }
        if slot.replace(Box::new(entry)).is_none() {
            self.entries += 1;
        }
        self.used = used;
        true
    }

    /// Drops every entry read under another count than `replacements`.
    fn forget_stale(&mut self, replacements: u64) {
        for slot in self.slots.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|c| c.replacements != replacements)
            {
                if let Some(old) = slot.take() {
                    self.used = self.used.saturating_sub(old.bytes());
                    self.entries = self.entries.saturating_sub(1);
                }
            }
        }
    }
}

impl QueryCache {
    /// A cache of about `budget` bytes; `None` for 0.
    pub(crate) fn new(budget: usize) -> Option<QueryCache> {
        if budget == 0 {
            return None;
        }
        // At most 4M slots (64 MiB of them, for a budget of 2 GiB): a
        // larger budget shares them, rather than allocating slots by the
        // gigabyte at open.
        let slots = (budget / BYTES_PER_SLOT)
            .clamp(64, 1 << 22)
            .next_power_of_two();
        Some(QueryCache {
            table: RwLock::new(Table {
                slots: (0..slots).map(|_| None).collect(),
                entries: 0,
                used: 0,
            }),
            pending: Mutex::new(Pending::default()),
            stale_before: AtomicU64::new(0),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            shift: 64 - slots.trailing_zeros(),
            budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            latest: AtomicU64::new(0),
        })
    }

    /// The index of `position`'s slot: the top log2(slots) bits of its
    /// hash (always a slot: `slots.get` of it never misses one).
    fn slot_of(&self, position: u64) -> usize {
        let hash = position.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(hash >> self.shift).unwrap_or(0)
    }

    /// A copy of `record` (at `position`, read under `replacements`) to
    /// keep, if this is its second read since its slot last missed another
    /// position and it is not too large.
    fn admit(&self, position: u64, replacements: u64, record: &Record<'_>) -> Option<Cached> {
        let seen = self.seen.get(self.slot_of(position))?;
        // A hint, not a count: two threads missing one slot at once may
        // each take the other's note away (a copy made one read later).
        let mark = position.wrapping_add(1);
        if seen.load(Ordering::Relaxed) != mark {
            seen.store(mark, Ordering::Relaxed);
            return None;
        }
        let size = record.stream.len()
            + record.event_type.len()
            + record.tags.as_bytes().len()
            + record.metadata.len()
            + record.data.len()
            + ENTRY_OVERHEAD;
        if size > self.budget / 64 {
            return None;
        }
        Some(Cached::new(position, replacements, record))
    }

    /// Puts `copies` (and those waiting) in the table if no read holds it
    /// now; else they wait for the next read that finds it free (at most
    /// [`PENDING_MAX`] of them and an eighth of the budget; more are
    /// dropped: a cache, not a log).
    fn keep(&self, copies: Vec<Cached>) {
        let Some(mut table) = self.table.try_write() else {
            if !copies.is_empty() {
                let mut pending = self.pending.lock();
                for copy in copies {
                    let bytes = pending.bytes.saturating_add(copy.bytes());
                    if pending.copies.len() >= PENDING_MAX || bytes > self.budget / PENDING_SHARE {
                        break;
                    }
                    pending.bytes = bytes;
                    pending.copies.push(copy);
                }
            }
            return;
        };
        if let Some(now) = self.stale_before.swap(0, Ordering::AcqRel).checked_sub(1) {
            table.forget_stale(now);
        }
        let waiting = std::mem::take(&mut *self.pending.lock()).copies;
        let latest = self.latest.load(Ordering::Acquire);
        let mut kept = 0;
        for entry in waiting.into_iter().chain(copies) {
            // Read before a replacement this cache was told of: stale
            // already (a read racing a compaction made it).
            if entry.replacements < latest {
                continue;
            }
            kept += u64::from(table.put(self.slot_of(entry.position), entry, self.budget));
        }
        self.kept.fetch_add(kept, Ordering::Relaxed);
    }

    /// Its figures (see [`QueryCacheStats`]).
    pub(crate) fn stats(&self) -> QueryCacheStats {
        // Recursive: a visitor reading a query may ask for them too.
        let table = self.table.read_recursive();
        QueryCacheStats {
            budget: self.budget as u64,
            entries: table.entries as u64,
            bytes: table.used as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            kept: self.kept.load(Ordering::Relaxed),
        }
    }

    /// After a replacement was counted (now `replacements`): drops the
    /// entries read before it, at once if no read holds the table, else
    /// at the next [`keep`](QueryCache::keep). They are never served
    /// either way; this frees their memory.
    pub(crate) fn forget_stale(&self, replacements: u64) {
        self.latest.fetch_max(replacements, Ordering::AcqRel);
        self.stale_before
            .fetch_max(replacements.saturating_add(1), Ordering::AcqRel);
        self.keep(Vec::new());
    }

    /// Like [`LogReader::with_events_shared`]: calls `visit` with the event
    /// at each of `positions` in order (every one visible), from the
    /// cache where it holds it, else from the log (keeping a copy at the
    /// event's second read), until `visit` breaks.
    pub(crate) fn with_events(
        &self,
        reader: &LogReader,
        positions: &[u64],
        mut visit: impl FnMut(u64, Record<'_>, &Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        // Loaded before any event is read: an entry made under it is never
        // served once a replacement is counted.
        let replacements = reader.replacements();
        if self.latest.load(Ordering::Relaxed) < replacements {
            self.latest.fetch_max(replacements, Ordering::AcqRel);
        }
        let mut copies = Vec::new();
        let (mut hits, mut misses_read) = (0u64, 0u64);
        // A closure, so that an error still counts what was read before it.
        let read = (|| -> Result<()> {
            // Recursive: a visitor may read a query again on this thread.
            let table = self.table.read_recursive();
            let mut misses = Vec::new();
            let mut rest = positions;
            'batch: while !rest.is_empty() {
                misses.clear();
                let mut hit = None;
                while let Some((&position, tail)) = rest.split_first() {
                    rest = tail;
                    match table.get(self.slot_of(position), position, replacements) {
                        Some(found) => {
                            hit = Some(found);
                            break;
                        }
                        None => misses.push(position),
                    }
                }
                if !misses.is_empty() {
                    let mut stopped = false;
                    reader.with_events_shared(&misses, |position, record, owner| {
                        misses_read += 1;
                        if let Some(copy) = self.admit(position, replacements, &record) {
                            if copies.capacity() == 0 {
                                // Room for every miss at once: a copy is
                                // large, and growing one at a time moved
                                // them again and again.
                                copies.reserve(misses.len());
                            }
                            copies.push(copy);
                        }
                        let flow = visit(position, record, owner);
                        stopped = flow.is_break();
                        flow
                    })?;
                    if stopped {
                        break 'batch;
                    }
                }
                if let Some(hit) = hit {
                    hits += 1;
                    if visit(hit.position, hit.record()?, &hit.body).is_break() {
                        break 'batch;
                    }
                }
            }
            Ok(())
        })();
        if hits > 0 {
            self.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses_read > 0 {
            self.misses.fetch_add(misses_read, Ordering::Relaxed);
        }
        read?;
        if !copies.is_empty() || self.stale_before.load(Ordering::Relaxed) != 0 {
            self.keep(copies);
        }
        Ok(())
    }
}

/// Where a query's walk reads its events: the log, through the query
/// cache when the store has one and the read is one to keep.
#[derive(Clone, Copy)]
pub(crate) struct EventSource<'a> {
    pub(crate) reader: &'a LogReader,
    pub(crate) cache: Option<&'a QueryCache>,
}

/// The log alone.
impl<'a> From<&'a LogReader> for EventSource<'a> {
    fn from(reader: &'a LogReader) -> Self {
        EventSource {
            reader,
            cache: None,
        }
    }
}

impl EventSource<'_> {
    /// See [`LogReader::with_events_shared`].
    pub(crate) fn with_events(
        &self,
        positions: &[u64],
        visit: impl FnMut(u64, Record<'_>, &Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        match self.cache {
            Some(cache) => cache.with_events(self.reader, positions, visit),
            None => Ok(self.reader.with_events_shared(positions, visit)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> Record<'_> {
        Record {
            stream: "s-1",
            stream_version: 3,
            id: [7; 16],
            timestamp_us: 11,
            flags: 0,
            event_type: "Changed",
            tags: Tags::EMPTY,
            metadata: b"m",
            data,
        }
    }

    /// Reads `record` twice (the second read copies it) and keeps the copy.
    fn admit(cache: &QueryCache, position: u64, replacements: u64, record: &Record<'_>) {
        assert!(cache.admit(position, replacements, record).is_none());
        let copy = cache.admit(position, replacements, record);
        cache.keep(copy.into_iter().collect());
    }

    fn held(cache: &QueryCache, position: u64, replacements: u64) -> bool {
        let table = cache.table.read();
        table
            .get(cache.slot_of(position), position, replacements)
            .is_some()
    }

    fn used(cache: &QueryCache) -> usize {
        cache.table.read().used
    }

    #[test]
    fn the_entries_stay_within_the_budget_and_a_large_event_is_not_kept() {
        // 2,048 slots, room for 251 entries of 4,171 bytes.
        let budget = 1 << 20;
        let cache = QueryCache::new(budget).unwrap();
        let data = [0x5a; 4000];
        for position in 0..10_000 {
            admit(&cache, position, 0, &record(&data));
            assert!(used(&cache) <= budget);
        }
        let kept = (0..10_000).filter(|&p| held(&cache, p, 0)).count();
        assert!((200..=251).contains(&kept), "{kept} kept");
        let large = vec![1u8; budget / 64];
        admit(&cache, 20_000, 0, &record(&large));
        assert!(!held(&cache, 20_000, 0));
    }

    #[test]
    fn an_entry_read_before_a_replacement_is_not_served_after_it() {
        let cache = QueryCache::new(1 << 20).unwrap();
        admit(&cache, 42, 5, &record(b"payload"));
        {
            let table = cache.table.read();
            let hit = table.get(cache.slot_of(42), 42, 5).unwrap();
            let again = hit.record().unwrap();
            assert_eq!((again.stream, again.event_type), ("s-1", "Changed"));
            assert_eq!((again.metadata, again.data), (&b"m"[..], &b"payload"[..]));
            assert_eq!(
                (again.stream_version, again.id, again.timestamp_us),
                (3, [7; 16], 11)
            );
        }
        assert!(!held(&cache, 42, 6));
        assert!(!held(&cache, 43, 5));
    }

    /// A copy reads back every part of its record: tags kept as text (the
    /// names' buffer) and as bytes (a 128-byte tag: the region is not
    /// UTF-8 as a whole), non-ASCII names and tags, empty parts.
    #[test]
    fn a_copy_reads_back_its_record_whether_its_tags_are_text_or_bytes() {
        let cache = QueryCache::new(1 << 20).unwrap();
        let long = "t".repeat(annals_segment::format::TAG_BYTES_MAX);
        let regions: Vec<Vec<u8>> = [
            vec![],
            vec!["student:42", "café"],
            vec!["a", long.as_str(), "日本"],
        ]
        .iter()
        .map(|tags| {
            let mut region = Vec::new();
            annals_segment::format::encode_tags(tags, &mut region).unwrap();
            region
        })
        .collect();
        for (position, region) in (100u64..).zip(&regions) {
            for (stream, metadata, data) in [("s-ü", &b""[..], &b""[..]), ("s", b"m", b"d")] {
                let original = Record {
                    stream,
                    event_type: "Typé",
                    tags: Tags::from_encoded(region).unwrap(),
                    metadata,
                    data,
                    ..record(b"")
                };
                let position = position * 2 + u64::from(metadata.is_empty());
                admit(&cache, position, 0, &original);
                let table = cache.table.read();
                let hit = table.get(cache.slot_of(position), position, 0).unwrap();
                let again = hit.record().unwrap();
                assert_eq!(again, original, "at {position}");
                assert_eq!(
                    again.tags.iter().collect::<Vec<_>>(),
                    original.tags.iter().collect::<Vec<_>>()
                );
                assert_eq!(hit.tags_in_text, original.tags.to_text().is_some());
            }
        }
    }

    #[test]
    fn forgetting_stale_entries_keeps_the_current_ones_and_frees_the_rest() {
        let cache = QueryCache::new(1 << 20).unwrap();
        for position in 0..100 {
            admit(&cache, position, position % 2, &record(b"payload"));
        }
        let before = used(&cache);
        cache.forget_stale(1);
        assert_eq!((0..100).filter(|&p| held(&cache, p, 1)).count(), 50);
        assert!((0..100).all(|p| !held(&cache, p, 0)));
        assert_eq!(used(&cache) * 2, before);
    }

    #[test]
    fn copies_made_while_another_read_holds_the_table_wait_for_the_next() {
        let cache = QueryCache::new(1 << 20).unwrap();
        assert!(cache.admit(7, 0, &record(b"payload")).is_none());
        let copy = cache.admit(7, 0, &record(b"payload")).unwrap();
        {
            let _reading = cache.table.read();
            cache.keep(vec![copy]);
        }
        assert!(!held(&cache, 7, 0), "kept while the table was read");
        assert_eq!(cache.pending.lock().copies.len(), 1);
        cache.keep(Vec::new());
        assert_eq!(cache.pending.lock().bytes, 0);
        assert!(held(&cache, 7, 0), "the waiting copy is kept next time");
        // A stale-drop asked for while the table is read happens next time.
        {
            let _reading = cache.table.read();
            cache.forget_stale(1);
        }
        assert!(held(&cache, 7, 0));
        cache.keep(Vec::new());
        assert!(!held(&cache, 7, 0));
        assert_eq!(used(&cache), 0);
    }

    #[test]
    fn copies_waiting_for_the_table_stay_within_an_eighth_of_the_budget() {
        let budget = 1 << 20;
        let cache = QueryCache::new(budget).unwrap();
        let data = [0x5a; 4000];
        let _reading = cache.table.read();
        for position in 0..1000 {
            assert!(cache.admit(position, 0, &record(&data)).is_none());
            let copy = cache.admit(position, 0, &record(&data));
            cache.keep(copy.into_iter().collect());
        }
        let pending = cache.pending.lock();
        assert!(pending.bytes <= budget / 8, "{} bytes wait", pending.bytes);
        assert_eq!(pending.copies.len(), budget / 8 / 4171);
    }
}
