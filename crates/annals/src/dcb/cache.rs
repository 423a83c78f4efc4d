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
//! No lists, no reordering on a hit: a lookup is one slot lock and one
//! reference count. An event is copied at its second read: the first only
//! notes its position in its slot (a doorkeeper), so a read of events
//! never read again — a catch-up, a student seen once — copies nothing.
//! Memory: the entries' bytes stay within the budget (give or take one
//! entry per thread inserting at once), and the slots take 24 bytes per
//! 512 of budget. An event larger than a 64th of the budget is
//! not kept.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use annals_segment::{LogReader, Record, Tags};
use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Budget bytes per slot.
const BYTES_PER_SLOT: usize = 512;

/// What an entry costs besides its names and body: the entry itself, its
/// `Arc` and the three allocations' headers.
const ENTRY_OVERHEAD: usize = 160;

/// Verified copies of events by position (see the module comment).
pub(crate) struct QueryCache {
    slots: Box<[Mutex<Option<Arc<Cached>>>]>,
    /// Per slot, the last position (plus one; 0: none) a read missed
    /// there: an event is copied at its second read (a doorkeeper), so
    /// reads of events never read again copy nothing.
    seen: Box<[AtomicU64]>,
    /// `64 - log2(slots)`: a position's slot is the top bits of its hash.
    shift: u32,
    budget: usize,
    used: AtomicUsize,
}

impl std::fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache")
            .field("slots", &self.slots.len())
            .field("budget", &self.budget)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish()
    }
}

/// One event, as its record was verified: its names (the stream's, then
/// the type's), a buffer of the rest (the encoded tags, the metadata, the
/// data) and the fixed fields. Names apart, so that a hit makes no `&str`
/// by checking bytes again.
struct Cached {
    position: u64,
    /// [`LogReader::replacements`] loaded before the event was read.
    replacements: u64,
    names: Box<str>,
    stream_len: usize,
    body: Bytes,
    /// Where the tags and the metadata end in `body`.
    tags_end: usize,
    metadata_end: usize,
    stream_version: u64,
    id: [u8; 16],
    timestamp_us: u64,
    flags: u16,
}

impl Cached {
    fn new(position: u64, replacements: u64, record: &Record<'_>) -> Cached {
        let mut names = String::with_capacity(record.stream.len() + record.event_type.len());
        names.push_str(record.stream);
        names.push_str(record.event_type);
        let tags = record.tags.as_bytes();
        let mut body = Vec::with_capacity(tags.len() + record.metadata.len() + record.data.len());
        body.extend_from_slice(tags);
        body.extend_from_slice(record.metadata);
        body.extend_from_slice(record.data);
        Cached {
            position,
            replacements,
            names: names.into_boxed_str(),
            stream_len: record.stream.len(),
            body: Bytes::from(body),
            tags_end: tags.len(),
            metadata_end: tags.len() + record.metadata.len(),
            stream_version: record.stream_version,
            id: record.id,
            timestamp_us: record.timestamp_us,
            flags: record.flags,
        }
    }

    /// Bytes it holds, as the budget counts them.
    fn bytes(&self) -> usize {
        self.names.len() + self.body.len() + ENTRY_OVERHEAD
    }

    /// The record again, borrowed from the copy, whose parts were all
    /// verified when it was read.
    fn record(&self) -> Result<Record<'_>> {
        let broken = || Error::Internal(format!("query cache entry at {}", self.position));
        let (stream, event_type) = self
            .names
            .split_at_checked(self.stream_len)
            .ok_or_else(broken)?;
        let part = |from: usize, to: usize| self.body.get(from..to).ok_or_else(broken);
        Ok(Record {
            stream,
            stream_version: self.stream_version,
            id: self.id,
            timestamp_us: self.timestamp_us,
            flags: self.flags,
            event_type,
            tags: Tags::from_checked(part(0, self.tags_end)?),
            metadata: part(self.tags_end, self.metadata_end)?,
            data: part(self.metadata_end, self.body.len())?,
        })
    }
}

impl QueryCache {
    /// A cache of about `budget` bytes; `None` for 0.
    pub(crate) fn new(budget: usize) -> Option<QueryCache> {
        if budget == 0 {
            return None;
        }
        let slots = (budget / BYTES_PER_SLOT)
            .clamp(64, 1 << 30)
            .next_power_of_two();
        Some(QueryCache {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            shift: 64 - slots.trailing_zeros(),
            budget,
            used: AtomicUsize::new(0),
        })
    }

    /// The index of `position`'s slot: the top log2(slots) bits of its
    /// hash, so always one (`None` would make every lookup a miss, never a
    /// wrong hit).
    fn slot_of(&self, position: u64) -> Option<usize> {
        let hash = position.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(hash >> self.shift).ok()
    }

    /// The entry for `position` read under `replacements`, if there is one.
    fn get(&self, position: u64, replacements: u64) -> Option<Arc<Cached>> {
        let slot = self.slots.get(self.slot_of(position)?)?.lock();
        slot.as_ref()
            .filter(|c| c.position == position && c.replacements == replacements)
            .map(Arc::clone)
    }

    /// Keeps a copy of `record` (at `position`, read under
    /// `replacements`) if this is its second read since its slot last
    /// missed another position and it fits the budget.
    fn insert(&self, position: u64, replacements: u64, record: &Record<'_>) {
        let Some(i) = self.slot_of(position) else {
            return;
        };
        let (Some(slot), Some(seen)) = (self.slots.get(i), self.seen.get(i)) else {
            return;
        };
        // A hint, not a count: two threads missing one slot at once may
        // each take the other's note away (a copy made one read later).
        let mark = position.wrapping_add(1);
        if seen.load(Ordering::Relaxed) != mark {
            seen.store(mark, Ordering::Relaxed);
            return;
        }
        let size = record.stream.len()
            + record.event_type.len()
            + record.tags.as_bytes().len()
            + record.metadata.len()
            + record.data.len()
            + ENTRY_OVERHEAD;
        if size > self.budget / 64 {
            return;
        }
        let entry = Arc::new(Cached::new(position, replacements, record));
        let mut slot = slot.lock();
        let freed = slot.as_ref().map_or(0, |old| old.bytes());
        let used = self.used.load(Ordering::Relaxed);
        if used.saturating_sub(freed).saturating_add(size) > self.budget {
            return;
        }
        *slot = Some(entry);
        self.used.fetch_add(size, Ordering::Relaxed);
        self.used.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Drops every entry read under another count than `replacements`
    /// (the current one): none of them would be served again.
    pub(crate) fn forget_stale(&self, replacements: u64) {
        for slot in self.slots.iter() {
            let mut slot = slot.lock();
            if slot
                .as_ref()
                .is_some_and(|c| c.replacements != replacements)
            {
                if let Some(old) = slot.take() {
                    self.used.fetch_sub(old.bytes(), Ordering::Relaxed);
                }
            }
        }
    }

    /// Like [`LogReader::with_events_shared`]: calls `visit` with the event
    /// at each of `positions` in order (every one visible), from the
    /// cache where it holds it, else from the log (keeping a copy), until
    /// `visit` breaks.
    pub(crate) fn with_events(
        &self,
        reader: &LogReader,
        positions: &[u64],
        mut visit: impl FnMut(u64, Record<'_>, &Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        // Loaded before any event is read: an entry made under it is
        // dropped once a replacement is counted.
        let replacements = reader.replacements();
        let mut misses = Vec::new();
        let mut rest = positions;
        while !rest.is_empty() {
            misses.clear();
            let mut hit = None;
            while let Some((&position, tail)) = rest.split_first() {
                rest = tail;
                match self.get(position, replacements) {
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
                    self.insert(position, replacements, &record);
                    let flow = visit(position, record, owner);
                    stopped = flow.is_break();
                    flow
                })?;
                if stopped {
                    return Ok(());
                }
            }
            if let Some(hit) = hit {
                if visit(hit.position, hit.record()?, &hit.body).is_break() {
                    return Ok(());
                }
            }
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

impl<'a> EventSource<'a> {
    /// The log alone.
    pub(crate) fn log(reader: &'a LogReader) -> Self {
        EventSource {
            reader,
            cache: None,
        }
    }

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

    /// Reads `record` twice: the second read keeps it.
    fn admit(cache: &QueryCache, position: u64, replacements: u64, record: &Record<'_>) {
        cache.insert(position, replacements, record);
        cache.insert(position, replacements, record);
    }

    #[test]
    fn the_entries_stay_within_the_budget_and_a_large_event_is_not_kept() {
        // 2,048 slots, room for 251 entries of 4,171 bytes.
        let budget = 1 << 20;
        let cache = QueryCache::new(budget).unwrap();
        let data = [0x5a; 4000];
        for position in 0..10_000 {
            admit(&cache, position, 0, &record(&data));
            assert!(cache.used.load(Ordering::Relaxed) <= budget);
        }
        let kept = (0..10_000).filter(|&p| cache.get(p, 0).is_some()).count();
        assert!((200..=251).contains(&kept), "{kept} kept");
        let large = vec![1u8; budget / 64];
        admit(&cache, 20_000, 0, &record(&large));
        assert!(cache.get(20_000, 0).is_none());
    }

    #[test]
    fn an_entry_read_before_a_replacement_is_not_served_after_it() {
        let cache = QueryCache::new(1 << 20).unwrap();
        cache.insert(42, 5, &record(b"payload"));
        assert!(cache.get(42, 5).is_none(), "kept at its first read");
        cache.insert(42, 5, &record(b"payload"));
        let hit = cache.get(42, 5).unwrap();
        let again = hit.record().unwrap();
        assert_eq!((again.stream, again.event_type), ("s-1", "Changed"));
        assert_eq!((again.metadata, again.data), (&b"m"[..], &b"payload"[..]));
        assert_eq!(
            (again.stream_version, again.id, again.timestamp_us),
            (3, [7; 16], 11)
        );
        assert!(cache.get(42, 6).is_none());
        assert!(cache.get(43, 5).is_none());
    }

    #[test]
    fn forgetting_stale_entries_keeps_the_current_ones_and_frees_the_rest() {
        let cache = QueryCache::new(1 << 20).unwrap();
        for position in 0..100 {
            admit(&cache, position, position % 2, &record(b"payload"));
        }
        let before = cache.used.load(Ordering::Relaxed);
        cache.forget_stale(1);
        let kept = (0..100).filter(|&p| cache.get(p, 1).is_some()).count();
        assert_eq!(kept, 50);
        assert!((0..100).all(|p| cache.get(p, 0).is_none()));
        assert_eq!(cache.used.load(Ordering::Relaxed) * 2, before);
    }
}
