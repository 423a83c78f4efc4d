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

use annals_segment::{LogReader, Record};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::store::QueryCacheStats;

mod entry;
#[cfg(test)]
mod tests;

use entry::{Cached, ENTRY_OVERHEAD};

/// Budget bytes per slot.
const BYTES_PER_SLOT: usize = 512;

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
