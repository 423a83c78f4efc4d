//! How a store is opened.

use std::time::Duration;

/// When an append is acknowledged, and so what a crash can lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged = on disk. Every group of concurrent appends is made
    /// durable with one `fdatasync` before any of them is answered. A crash
    /// of the process, the OS or the power loses nothing acknowledged.
    #[default]
    Fsync,
    /// Like [`Fsync`](Durability::Fsync), but the writer waits up to `delay`
    /// after the first waiting append to gather more into the same group
    /// (less if [`Options::group_max`] appends are waiting sooner): fewer,
    /// larger fsyncs for more latency. Loses nothing acknowledged.
    Batched {
        /// Longest wait for more appends before committing.
        delay: Duration,
    },
    /// Acknowledged = written to the OS (page cache), not fsync'd; readers
    /// see it at once. A crash of the process loses nothing; a crash of the
    /// OS or a power cut loses what was appended since the last
    /// [`Store::flush`](crate::Store::flush) (never part of an append, and
    /// never anything before a lost append).
    Buffered,
}

/// Options for [`Store::open_with`](crate::Store::open_with).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Size of each new segment file (default 64 MiB): allocated whole
    /// when created on disks, in steps ahead of the writer on tmpfs (see
    /// ARCHITECTURE.md, "Preallocation"). An existing segment keeps the
    /// size it was created with.
    pub segment_bytes: u64,
    /// Most appends waiting for the writer; callers beyond it block
    /// (backpressure). Default 4096.
    pub queue_max: usize,
    /// Most appends the writer commits with one write and one fsync.
    /// Default 1024.
    pub group_max: usize,
    /// When appends are acknowledged (default [`Durability::Fsync`]).
    pub durability: Durability,
    /// Whether a background thread writes zeros into the active segment
    /// ahead of the writer, so that a commit overwrites allocated blocks
    /// and its `fdatasync` writes no allocation metadata: on ext4 here,
    /// 100-event appends ~1.4× faster, for each log byte written to the
    /// device twice (zeros, then data). `None` (default): on for a
    /// directory on ext2/3/4 or XFS, off elsewhere (copy-on-write
    /// filesystems such as btrfs and ZFS allocate on every write anyway;
    /// tmpfs has nothing to sync) and for other storage.
    pub zero_ahead: Option<bool>,
    /// Events the in-memory index buffer holds before it is written to an
    /// index file in the background (default 65,536). Bounds the index's
    /// memory: at most four buffers exist at once (the active one and up
    /// to three frozen ones; the writer persists them itself at three; the
    /// active one may overfill by one group commit). While all four are
    /// full because index files cannot be written, appends fail with
    /// [`Error::IndexBacklog`](crate::Error::IndexBacklog), writing nothing.
    pub index_buffer_events: u64,
    /// In [`Durability::Fsync`] mode, whether the leader of a group commit
    /// waits briefly for the callers the previous group answered, so that
    /// writers appending in a loop share one `fdatasync` instead of taking
    /// turns in two halves. The wait ends when they are all back, and never
    /// lasts more than a quarter of a recent group's commit time; a caller
    /// appending alone never waits. Default on.
    pub gather: bool,
    /// Most sealed segments kept open at once (default 1,024). A sealed
    /// segment is opened by its first read — its file and its frame index
    /// are mapped and their files closed again, so an open segment holds
    /// two memory mappings and no file descriptor — and the least recently
    /// read one is let go when more are open (a read in progress, or a
    /// `Bytes` it handed out, keeps its mapping until it ends). Open keeps
    /// no file of a sealed segment open, so a store of any number of
    /// segments opens within the open-file limit; this bound keeps the
    /// mappings within `vm.max_map_count` (65,530 by default: 1,024
    /// segments use 2,048). A read of a segment not open costs two `open`s,
    /// two `mmap`s and a checksum of its frame index.
    pub open_segments_max: usize,
    /// Bytes of memory for the query cache (default
    /// [`QUERY_CACHE_BYTES_DEFAULT`](crate::QUERY_CACHE_BYTES_DEFAULT),
    /// 2 MiB, what SQLite's default page cache holds; 0: none): copies of
    /// the events [`Store::read_query`](crate::Store::read_query) and
    /// [`Store::read_query_with`](crate::Store::read_query_with) read,
    /// kept after their checksums and fields were verified, so that
    /// reading the same query's events again — a decide loop that reads a
    /// course's or a user's events before every conditional append —
    /// skips finding, checksumming and decoding them in the log. The copies
    /// are on the heap, never trusted from the mapped log; a compaction
    /// (which may erase events) or a merge makes every copy read before it
    /// unusable. An event is copied at its second read (the first notes
    /// its position), so events read once cost a lookup each and are not
    /// copied; once one call has read 1,024 events (a scan; the batch that
    /// reaches them is read through the cache, up to 1,024 candidates of
    /// each key it walks) the rest come from the log directly. A scan in
    /// pages of 1,024, one call each, goes through it page after page:
    /// turn it off (0) in a process that only scans. An event of more than a 64th of the budget is not
    /// kept. The slots take another 16 bytes per 512 of budget (64 KiB for
    /// the default), allocated at open; the copies' memory only as they
    /// are kept. `docs/DCB.md`, "The query cache".
    pub query_cache_bytes: usize,
}

/// The query cache's default budget ([`Options::query_cache_bytes`]):
/// 2 MiB.
pub const QUERY_CACHE_BYTES_DEFAULT: usize = 2 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: annals_segment::SEGMENT_BYTES_DEFAULT,
            queue_max: 4096,
            group_max: 1024,
            durability: Durability::Fsync,
            zero_ahead: None,
            index_buffer_events: 1 << 16,
            gather: true,
            open_segments_max: annals_segment::OPEN_SEGMENTS_DEFAULT,
            query_cache_bytes: QUERY_CACHE_BYTES_DEFAULT,
        }
    }
}

impl Options {
    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the query cache's budget in bytes (see
    /// [`Options::query_cache_bytes`]; 0 turns it off).
    pub fn query_cache_bytes(mut self, bytes: usize) -> Self {
        self.query_cache_bytes = bytes;
        self
    }

    /// Sets the size of the in-memory index buffer, in events.
    pub fn index_buffer_events(mut self, events: u64) -> Self {
        self.index_buffer_events = events;
        self
    }

    /// Turns zero-filling ahead of the writer on or off (see
    /// [`Options::zero_ahead`]).
    pub fn zero_ahead(mut self, on: bool) -> Self {
        self.zero_ahead = Some(on);
        self
    }

    /// Turns gathering on or off (see [`Options::gather`]).
    pub fn gather(mut self, on: bool) -> Self {
        self.gather = on;
        self
    }

    /// Sets how many sealed segments stay open at once (see
    /// [`Options::open_segments_max`]).
    pub fn open_segments_max(mut self, segments: usize) -> Self {
        self.open_segments_max = segments;
        self
    }

    /// Sets the queue bound.
    pub fn queue_max(mut self, queue_max: usize) -> Self {
        self.queue_max = queue_max;
        self
    }
}
