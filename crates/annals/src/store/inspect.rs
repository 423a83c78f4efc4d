//! Looking at a store: counts, write-path figures, `verify` (every
//! checksum, and the index against a rescan of the log), index upkeep.

use super::Store;
use crate::error::{Error, Result};

/// Counts describing a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Number of streams (deleted ones included).
    pub streams: u64,
    /// Number of events in the global feed (tombstones included).
    pub events: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Bytes preallocated for segment files.
    pub segment_bytes: u64,
    /// Bytes of those files that hold data (frames and headers).
    pub data_bytes: u64,
    /// Index run files on disk.
    pub index_runs: u64,
    /// Bytes of those files.
    pub index_bytes: u64,
    /// Position up to which the index is persisted: an open after a crash
    /// replays the log from here.
    pub index_checkpoint: u64,
    /// Events whose index entries are only in memory (not yet in a run).
    pub index_buffered: u64,
    /// The last failure of the background index writer, if it has not
    /// succeeded since (the entries stay in memory meanwhile).
    pub index_error: Option<String>,
    /// Snapshots a load can find (one per stream and version; superseded
    /// ones that a compaction will remove included).
    pub snapshots: u64,
    /// Bytes of the snapshot files.
    pub snapshot_bytes: u64,
}

/// Counts describing the write path since the store was opened (see
/// [`Store::write_stats`]). `requests / groups` is the average group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteStats {
    /// Group commits: each at most one `write` (and in `Fsync` and
    /// `Batched` modes one `fdatasync`); a group that only rejected
    /// requests writes nothing.
    pub groups: u64,
    /// Requests those groups answered: appends, `append_many`s and
    /// flushes, accepted or not.
    pub requests: u64,
    /// Groups whose leader waited for the callers the previous group
    /// answered (see [`Options::gather`](crate::Options::gather)).
    pub gathers: u64,
    /// Gathers that ended at their time limit, not with everyone back.
    pub gather_timeouts: u64,
}

/// Figures of the query cache (see [`Store::query_cache_stats`]), since the
/// store was opened; all 0 when it is off. `hits / (hits + misses)` is the
/// share of the events read through the cache that it served (a scan's
/// events past its first 1,024 are read from the log directly, and
/// counted in neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueryCacheStats {
    /// [`Options::query_cache_bytes`](crate::Options::query_cache_bytes).
    pub budget: u64,
    /// Events it holds now.
    pub entries: u64,
    /// Bytes those hold, as the budget counts them (at most `budget`).
    pub bytes: u64,
    /// Events query reads were served from the cache.
    pub hits: u64,
    /// Events query reads read from the log through the cache (each noted
    /// at its first read, and copied at a later one if its note is still
    /// there and it is at most a 64th of the budget).
    pub misses: u64,
    /// Copies put in the cache (a copy replaces the entry in its slot).
    pub kept: u64,
}

/// What [`Store::verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events whose checksums were verified.
    pub events: u64,
    /// Streams in the index.
    pub streams: u64,
    /// Index entries (persisted or in memory) that matched a full rescan.
    pub index_entries: u64,
    /// Snapshot frames whose checksums were verified.
    pub snapshot_frames: u64,
    /// Snapshots a load can find, each checked to be the newest frame of
    /// its stream and version in the snapshot files.
    pub snapshots: u64,
}

impl Store {
    /// Does the index's background work now, on this thread: writes the
    /// frozen in-memory buffers to index files and merges runs until no
    /// more merging is due. Never needed for correctness; useful after a
    /// bulk load, before measuring, or before a backup.
    pub fn maintain_index(&self) -> Result<()> {
        self.refuse_if_read_only()?;
        self.inner.index.maintain()
    }

    /// Counts of streams, events and segments.
    pub fn stats(&self) -> Stats {
        let segments = self.inner.reader.segments();
        let index = self.inner.index.figures();
        let (snapshots, snapshot_bytes) = self.snapshots().figures();
        Stats {
            streams: index.streams,
            events: self.inner.reader.position_end(),
            segments: segments.len() as u64,
            segment_bytes: segments.iter().map(|s| s.segment_bytes).sum(),
            data_bytes: segments.iter().map(|s| s.data_bytes).sum(),
            index_runs: index.runs,
            index_bytes: index.run_bytes,
            index_checkpoint: index.checkpoint,
            index_buffered: index.buffered,
            index_error: index.error,
            snapshots,
            snapshot_bytes,
        }
    }

    /// The query cache's figures: its budget, what it holds, and how many
    /// events it served since the store was opened (all 0 when
    /// [`Options::query_cache_bytes`](crate::Options::query_cache_bytes)
    /// is 0). What to size it by: hits that stay low beside misses mean
    /// the queries read again do not fit, or are not read again.
    pub fn query_cache_stats(&self) -> QueryCacheStats {
        self.query_cache()
            .map(crate::dcb::cache::QueryCache::stats)
            .unwrap_or_default()
    }

    /// Counts of group commits and gathering since the store was opened.
    pub fn write_stats(&self) -> WriteStats {
        self.inner
            .pipeline
            .as_ref()
            .map(|p| p.stats())
            .unwrap_or_default()
    }

    /// Reads every byte of the log, verifying every checksum, and every
    /// frame of the snapshot files (checksums, and the snapshots a load
    /// finds are the newest frames of their stream and version); then reads
    /// every page of every index file (checksums, order, each position
    /// once) and checks that each index file holds exactly the entries a
    /// rescan of the log implies (an order-independent digest: constant
    /// memory, ~2⁻¹²⁸ chance to miss a difference), and each in-memory
    /// entry one by one. Damage to the log is [`Error::Log`]; damage to
    /// the index alone (the log verified) is [`Error::IndexDamaged`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let events = self.inner.reader.verify()?;
        let snapshots = self.snapshots().verify()?;
        // The log verified: whatever the index check finds is the index's.
        let index_entries = self
            .inner
            .index
            .verify()
            .map_err(|e| Error::IndexDamaged(Box::new(e)))?;
        Ok(VerifyReport {
            events,
            streams: self.inner.index.figures().streams,
            index_entries,
            snapshot_frames: snapshots.frames,
            snapshots: snapshots.snapshots,
        })
    }

    /// A copy of the whole index (stream → positions, deleted), for tests
    /// and tools that compare indexes. Reads every index entry.
    pub fn index_dump(&self) -> Result<std::collections::BTreeMap<String, (Vec<u64>, bool)>> {
        self.inner.index.dump()
    }
}
