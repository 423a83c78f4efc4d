//! The `Store`: opening and closing. What it does once open is in one file
//! per concern:
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | `Store`: open (lock, recover, open the index, start the writer), close |
//! | `append.rs` | appends, deletes, flush, and validating what the caller gives |
//! | `read.rs` | stream reads (through the index) and `$all` reads |
//! | `read_all.rs` | the zero-copy `$all` visitor, the backward `$all` read, what subscriptions need of the store |
//! | `inspect.rs` | stats, write stats, `verify`, index maintenance and dumps |
//! | `read_only.rs` | read-only opens (no lock, nothing written) and `refresh` |
//! | `foreign.rs` | a writable open refuses a non-empty directory that is not a store |
//! | `replicate.rs` | reading `$all` with append boundaries, appending a source's appends into a replica |
//!
//! The expected-version check itself is decided on the write path
//! (`crate::write::decide`).

mod append;
mod foreign;
mod inspect;
mod read;
mod read_all;
mod read_only;
mod read_secondary;
mod replicate;

pub(crate) use append::expected_only;
pub use append::{AppendResult, MultiConflict};
pub use inspect::{QueryCacheStats, Stats, VerifyReport, WriteStats};
pub use replicate::ReplicatedEvent;

use std::path::Path;
use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{LogOptions, LogReader, RecoveryReport};

use crate::error::{Error, Result};
use crate::index::{Index, IndexReport};
use crate::snapshot::SnapshotLog;
use crate::subscribe::Feed;
use crate::write::{Pipeline, Writer};
use crate::Options;

/// An open event store. Cheap to clone and share between threads; the
/// directory stays locked until the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    /// The store's files (backups read them).
    storage: Arc<dyn Storage>,
    /// `None` only for a store from before the identity file, opened
    /// read-only (its next writable open writes one).
    id: Option<annals_segment::StoreId>,
    reader: LogReader,
    index: Arc<Index>,
    /// `None` when opened read-only.
    pipeline: Option<Pipeline>,
    /// `Some` when opened read-only: extends the view (`read_only.rs`).
    read_only: Option<read_only::Follower>,
    frame_bytes_max: usize,
    recovery: RecoveryReport,
    /// Wakes subscribers when the writer publishes a new end.
    feed: Arc<Feed>,
    /// Whether [`Inner::shut_down`] ran (by [`Store::close`]).
    shut: bool,
    /// Snapshots of aggregates (`crate::snapshot`).
    snapshots: SnapshotLog,
    /// One compaction at a time (`crate::compact`).
    compaction: crate::compact::CompactionLock,
    /// Metadata setters take turns per stream (`crate::stream_meta`).
    meta_writes: crate::stream_meta::MetaWriteLocks,
    /// Verified copies of events `read_query` read (`crate::dcb::cache`);
    /// `None` when [`Options::query_cache_bytes`] is 0.
    query_cache: Option<crate::dcb::cache::QueryCache>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Every clone is gone, so nothing is pending: syncs what buffered mode
    /// left unsynced and marks the log cleanly closed, then persists the
    /// index buffer. The first error of these.
    fn shut_down(&mut self) -> Result<()> {
        self.shut = true;
        let log = self.pipeline.as_ref().map_or(Ok(()), Pipeline::close);
        self.index.close();
        log
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.shut {
            // Nobody can be told: `Store::close` is the way to hear it.
            let _ = self.shut_down();
        }
    }
}

impl Store {
    /// Opens the store in `dir` with default options, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the store in `dir`, creating it if needed: in a missing or
    /// empty directory. A non-empty directory that is not a store is
    /// refused ([`Error::NotAStore`]) and left untouched.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref();
        let storage = FsStorage::open(dir)
            .map_err(|e| annals_segment::Error::io("open", dir.display().to_string(), e))?;
        Self::open_storage(Arc::new(storage), options)
    }

    /// Opens the store on any [`Storage`] (tests use the in-memory,
    /// crash-simulating one).
    pub fn open_storage(storage: Arc<dyn Storage>, options: Options) -> Result<Store> {
        Self::open_storage_with_progress(storage, options, &mut |_, _| {})
    }

    /// Opens the store on any [`Storage`], reporting the index replay as
    /// `progress(events done, events to replay)`.
    pub fn open_storage_with_progress(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        foreign::refuse_foreign(&storage)?;
        lock(&storage)?;
        let evidence = crate::repair::run_evidence(&storage)?;
        Self::open_locked(storage, options, progress, &evidence)
    }

    /// Opens the store in `dir` after removing every index file, so that
    /// the whole index is rebuilt from the log (`progress(done, total)`
    /// follows the replay). Needed only after damage the automatic checks
    /// cannot see; open already discards damaged or misplaced index files.
    pub fn rebuild_index(
        dir: impl AsRef<Path>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        let dir = dir.as_ref();
        let storage = FsStorage::open(dir)
            .map_err(|e| annals_segment::Error::io("open", dir.display().to_string(), e))?;
        Self::rebuild_index_storage(Arc::new(storage), options, progress)
    }

    /// [`Store::rebuild_index`] on any [`Storage`].
    pub fn rebuild_index_storage(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        foreign::refuse_foreign(&storage)?;
        lock(&storage)?;
        crate::repair::check_before_removing_runs(&storage, &options)?;
        crate::index::remove_runs(&storage)?;
        Self::open_locked(storage, options, progress, &[])
    }

    fn open_locked(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
        evidence: &[annals_segment::Evidence],
    ) -> Result<Store> {
        let location = storage.describe();
        crate::backup::refuse_incomplete(storage.as_ref())?;
        let id = Some(annals_segment::identity::ensure(storage.as_ref())?);
        let log_options = LogOptions {
            segment_bytes: options.segment_bytes,
            zero_ahead: options.zero_ahead,
        };
        let (log, reader, recovery) = annals_segment::open_with(
            Arc::clone(&storage),
            log_options,
            options.open_segments_max,
            evidence,
        )?;
        let snapshots = SnapshotLog::open(Arc::clone(&storage), false)?;
        crate::compact::recover(&storage)?;
        let index = Arc::new(Index::open(
            Arc::clone(&storage),
            reader.clone(),
            options.index_buffer_events,
            progress,
            false,
        )?);
        let frame_bytes_max = log.frame_bytes_max();
        let feed = Arc::new(Feed::default());
        let writer = Writer {
            feed: Arc::clone(&feed),
            woken: crate::subscribe::Woken::default(),
            log,
            reader: reader.clone(),
            index: Arc::clone(&index),
            durability: options.durability,
            poison: None,
            recent: crate::write::RecentEvents::default(),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                location,
                storage,
                id,
                reader,
                index,
                pipeline: Some(Pipeline::new(
                    writer,
                    options.queue_max,
                    options.group_max,
                    options.gather,
                )),
                read_only: None,
                frame_bytes_max,
                recovery,
                feed,
                shut: false,
                snapshots,
                compaction: crate::compact::CompactionLock::default(),
                meta_writes: crate::stream_meta::MetaWriteLocks::default(),
                query_cache: crate::dcb::cache::QueryCache::new(options.query_cache_bytes),
            }),
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The store's identity, from its `IDENTITY` file (written when the
    /// store was created, or by the first writable open of an older store).
    /// `None` only for a store from before the identity file opened
    /// read-only.
    pub fn id(&self) -> Option<annals_segment::StoreId> {
        self.inner.id
    }

    /// What recovery did when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// What opening the index found: its checkpoint, the events replayed
    /// from the log after it, run files discarded.
    pub fn index_report(&self) -> &IndexReport {
        self.inner.index.report()
    }

    /// The snapshot log (`crate::snapshot`).
    pub(crate) fn snapshots(&self) -> &SnapshotLog {
        &self.inner.snapshots
    }

    /// The store's files.
    pub(crate) fn storage_handle(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// What a compaction needs of the store (`crate::compact`).
    pub(crate) fn compaction_parts(
        &self,
    ) -> (&LogReader, &Arc<Index>, &crate::compact::CompactionLock) {
        (
            &self.inner.reader,
            &self.inner.index,
            &self.inner.compaction,
        )
    }
}

pub(crate) fn lock(storage: &Arc<dyn Storage>) -> Result<()> {
    storage.try_lock().map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked(storage.describe()),
        _ => annals_segment::Error::io("lock", storage.describe(), e).into(),
    })
}
