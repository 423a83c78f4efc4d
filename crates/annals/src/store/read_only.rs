//! Read-only opens: [`Store::open_read_only`] and its variants, and
//! [`Store::refresh`]. A read-only store never writes a byte: it takes no
//! lock (so the owner's exclusive `flock` on `LOCK` is never in its way,
//! and a read-only filesystem is no obstacle), creates no file, cuts no
//! tail, removes no temp file or marker, persists no index. It sees a
//! prefix of the log (`annals_segment::open_read_only`); stream reads use
//! the persisted index runs plus the log after their checkpoint, replayed
//! into memory. See `docs/ARCHITECTURE.md`, "Read-only opens".

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{DirKind, ReadOnlyLog};
use parking_lot::Mutex;

use super::{Inner, Store};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::subscribe::{Feed, Woken};
use crate::write::Pipeline;
use crate::Options;

/// What a read-only store needs to extend its view.
pub(super) struct Follower {
    /// One refresh at a time.
    log: Mutex<ReadOnlyLog>,
}

impl Inner {
    /// The write pipeline, or [`Error::ReadOnly`].
    pub(super) fn pipeline(&self) -> Result<&Pipeline> {
        self.pipeline
            .as_ref()
            .ok_or_else(|| Error::ReadOnly(self.location.clone()))
    }
}

impl Store {
    /// Opens the store in `dir` read-only, with default options: see
    /// [`Store::open_read_only_with`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_read_only_with(dir, Options::default())
    }

    /// Opens the store in `dir` read-only: usable while another process
    /// owns (and writes) the store, and on a read-only filesystem. Never
    /// writes a byte and takes no lock. Appends and deletes fail with
    /// [`Error::ReadOnly`]; [`Store::refresh`] shows what the owner
    /// appended since. A directory that is not a store is
    /// [`Error::NotAStore`], and nothing is created.
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref();
        let not_a_store = || Error::NotAStore(dir.display().to_string());
        let storage = FsStorage::open_read_only(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => not_a_store(),
            _ => annals_segment::Error::io("open", dir.display().to_string(), e).into(),
        })?;
        Self::open_storage_read_only(Arc::new(storage), options)
    }

    /// [`Store::open_read_only_with`] on any [`Storage`]. The storage
    /// itself should refuse writes (as [`FsStorage::open_read_only`]
    /// does); this open never asks it to write.
    pub fn open_storage_read_only(storage: Arc<dyn Storage>, options: Options) -> Result<Store> {
        let location = storage.describe();
        let names = storage
            .list()
            .map_err(|e| annals_segment::Error::io("list", location.clone(), e))?;
        if !matches!(
            annals_segment::identity::classify(&names),
            DirKind::Store | DirKind::OldStore
        ) {
            return Err(Error::NotAStore(location));
        }
        crate::backup::refuse_incomplete(storage.as_ref())?;
        let id = annals_segment::identity::read(storage.as_ref())?;
        // Gathered before the log is opened: a run vouches only for
        // positions synced before it was written, which the log, opened
        // after, holds.
        let evidence = crate::repair::run_evidence(&storage)?;
        let (log, reader, recovery) = annals_segment::open_read_only(
            Arc::clone(&storage),
            options.open_segments_max,
            &evidence,
        )?;
        let index = Arc::new(Index::open(
            Arc::clone(&storage),
            reader.clone(),
            options.index_buffer_events,
            &mut |_, _| {},
            true,
        )?);
        // Read-only too: a torn last snapshot frame ends the log uncut.
        let snapshots = crate::snapshot::SnapshotLog::open(Arc::clone(&storage), true)?;
        Ok(Store {
            inner: Arc::new(Inner {
                location,
                storage,
                id,
                reader,
                index,
                snapshots,
                compaction: crate::compact::CompactionLock::default(),
                meta_writes: crate::stream_meta::MetaWriteLocks::default(),
                query_cache: crate::dcb::cache::QueryCache::new(options.query_cache_bytes),
                pipeline: None,
                read_only: Some(Follower {
                    log: Mutex::new(log),
                }),
                frame_bytes_max: annals_segment::format::FRAME_BYTES_MAX,
                recovery,
                feed: Arc::new(Feed::default()),
                shut: false,
            }),
        })
    }

    /// Whether this store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only.is_some()
    }

    /// Read-only stores: makes what the owning process appended since the
    /// open (or the last refresh) visible, and the snapshots it saved, following it into the segments
    /// it created since; wakes subscriptions. Returns the new end of the
    /// feed (one past the last position). On a writable store it returns
    /// the end and does nothing else: its own appends are always visible.
    pub fn refresh(&self) -> Result<u64> {
        let Some(follower) = &self.inner.read_only else {
            return Ok(self.inner.reader.position_end());
        };
        // Declared before the lock, so dropped (the wakers woken) after
        // it is released, on every return: a waker may refresh again.
        let mut woken = Woken::default();
        let log = follower.log.lock();
        let old = self.inner.reader.position_end();
        let new = log.refresh()?;
        // Copies of events in segments this refresh found replaced.
        self.forget_stale_cached();
        if new > old {
            // Indexed before it is published: a reader of the feed never
            // sees an event that a stream read cannot.
            self.inner.index.catch_up(old, new)?;
            log.publish(new);
            woken.join(self.inner.feed.notify());
        }
        // After the log: a snapshot of a version not yet visible is kept
        // but not loaded (loads take the newest at or below the version).
        self.inner.snapshots.refresh()?;
        Ok(new)
    }

    /// Read-only stores: refreshes every `interval` on a background thread
    /// (until the last handle is dropped, or a refresh fails), so that
    /// subscriptions follow the owner's appends. A refresh that finds
    /// nothing costs one `pread` and one failed `open`. Does nothing on a
    /// writable store, whose subscriptions the writer wakes.
    pub fn follow(&self, interval: Duration) -> Result<()> {
        if !self.is_read_only() {
            return Ok(());
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("annals-follow".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if (Store { inner }).refresh().is_err() {
                    return;
                }
            })
            .map(|_| ())
            .map_err(|e| Error::Internal(format!("cannot start the follower thread: {e}")))
    }

    /// The store's files and its log reader (for `backup/`).
    pub(crate) fn files(&self) -> (&Arc<dyn Storage>, &annals_segment::LogReader) {
        (&self.inner.storage, &self.inner.reader)
    }

    /// [`Error::ReadOnly`] on a read-only store.
    pub(super) fn refuse_if_read_only(&self) -> Result<()> {
        match self.inner.read_only {
            Some(_) => Err(Error::ReadOnly(self.inner.location.clone())),
            None => Ok(()),
        }
    }
}
