//! Online backup: [`Store::backup`] copies a prefix of the log (positions
//! `0..p`, `p` the end when it starts), with what opening it needs without
//! a rebuild (the sealed segments' frame indexes, the index runs within the
//! prefix, the identity), into an ordinary store directory, while writers
//! go on. Works on a writable store and on a read-only one (another
//! process's store).
//!
//! Protocol (`docs/FORMAT.md`, "Backup"): the destination first gets a
//! durable `BACKUP-INCOMPLETE` marker; every open refuses a directory
//! holding it. Then the identity, the segments' bytes, the frame indexes
//! and the runs are copied and each file is `fsync`ed, the directory too;
//! only then is the marker removed (and that removal synced). A backup
//! that is killed or runs out of space leaves the marker: the destination
//! never opens as a complete store. Running the backup again completes it.
//!
//! Incremental: segment files are append-only and sealed ones immutable,
//! so a destination file holding `n` bytes of a segment holds its first
//! `n` bytes; only the rest is copied. Frame indexes and runs are
//! immutable under their names: copied once.

use std::path::Path;
use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage, StorageFile};
use annals_segment::{DirKind, StoreId};

use crate::error::{Error, Result};
use crate::Store;

/// Name of the marker of a backup in progress (or interrupted).
pub const BACKUP_INCOMPLETE_FILE_NAME: &str = "BACKUP-INCOMPLETE";

/// Bytes copied per read and write.
const COPY_BYTES: usize = 1 << 20;

/// What a backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup holds exactly positions `0..position_end`.
    pub position_end: u64,
    /// Files written to (new or extended).
    pub files_copied: usize,
    /// Files already complete in the destination (an earlier backup).
    pub files_kept: usize,
    /// Bytes copied.
    pub bytes_copied: u64,
}

/// Refuses a directory that holds an interrupted backup.
pub(crate) fn refuse_incomplete(storage: &dyn Storage) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    if names.iter().any(|n| n == BACKUP_INCOMPLETE_FILE_NAME) {
        return Err(Error::Backup(format!(
            "{} holds an incomplete backup ({BACKUP_INCOMPLETE_FILE_NAME} is present): it lacks data; run the backup again to complete it",
            storage.describe()
        )));
    }
    Ok(())
}

impl Store {
    /// Backs the store up into `dest`: see [`Store::backup_with_progress`].
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_with_progress(dest, &mut |_, _| {})
    }

    /// Backs up positions `0..p` (`p`: the end when it starts) into `dest`,
    /// a missing or empty directory or an earlier backup of this store
    /// (then only what is new is copied). Any other destination is refused
    /// ([`Error::Backup`]) and nothing in it is touched. Everything is
    /// `fsync`ed before this returns; until then the destination does not
    /// open. `progress(bytes done, bytes to copy)`.
    pub fn backup_with_progress(
        &self,
        dest: impl AsRef<Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupReport> {
        let dest = dest.as_ref();
        let id = self.id().ok_or_else(|| {
            Error::Backup(
                "the store has no identity file yet (a store from before it, opened read-only): open it for writing once".into(),
            )
        })?;
        check_destination(dest, id)?;
        let target = FsStorage::open(dest)
            .map_err(|e| annals_segment::Error::io("open", dest.display().to_string(), e))?;
        let (source, reader) = self.files();
        let source = Arc::clone(source);
        let end = reader.position_end();
        let parts = reader.prefix(end)?;

        let marker = create_or_open(&target, BACKUP_INCOMPLETE_FILE_NAME)?;
        sync(&marker, BACKUP_INCOMPLETE_FILE_NAME)?;
        sync_dir(&target)?;
        if annals_segment::identity::read(&target)?.is_none() {
            annals_segment::identity::write(&target, id)?;
        }

        let mut plan: Vec<(String, u64)> = Vec::new();
        for part in &parts {
            plan.push((part.name.clone(), part.bytes));
            if part.sealed {
                let fidx = annals_segment::frame_index_file_name(part.position_first);
                plan.push((fidx, u64::MAX));
            }
        }
        for name in list(source.as_ref())? {
            if annals_index::parse_run_file_name(&name).is_some_and(|(_, e)| e <= end) {
                plan.push((name, u64::MAX));
            }
        }
        // Snapshots: every valid frame (appended to like segments, so a
        // later backup copies only what is new). One saved for a version
        // past `end` is kept but never loaded: loads take the newest at
        // or below the stream's version.
        plan.extend(self.snapshots().file_prefixes()?);
        let mut report = BackupReport {
            position_end: end,
            files_copied: 0,
            files_kept: 0,
            bytes_copied: 0,
        };
        let total: u64 = parts.iter().map(|p| p.bytes).sum();
        for (name, bytes) in plan {
            let copied = copy(source.as_ref(), &target, &name, bytes)?;
            match copied {
                Some(0) | None => report.files_kept += 1,
                Some(n) => {
                    report.files_copied += 1;
                    report.bytes_copied += n;
                }
            }
            progress(report.bytes_copied.min(total), total);
        }
        sync_dir(&target)?;
        drop(marker);
        target
            .remove(BACKUP_INCOMPLETE_FILE_NAME)
            .map_err(|e| annals_segment::Error::io("remove", BACKUP_INCOMPLETE_FILE_NAME, e))?;
        sync_dir(&target)?;
        Ok(report)
    }
}

/// A missing or empty directory, an interrupted backup that got no
/// further than its marker, or a store with the same id.
fn check_destination(dest: &Path, id: StoreId) -> Result<()> {
    let refuse = |why: &str| Err(Error::Backup(format!("refusing {}: {why}", dest.display())));
    let names: Vec<String> = match std::fs::read_dir(dest) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(annals_segment::Error::io("list", dest.display().to_string(), e).into())
        }
    };
    // Killed before its identity was renamed into place: the marker, and
    // perhaps the identity's temp file.
    let identity_tmp = format!("{}.tmp", annals_segment::IDENTITY_FILE_NAME);
    let marker_only = names
        .iter()
        .all(|n| n.starts_with(BACKUP_INCOMPLETE_FILE_NAME) || *n == identity_tmp);
    match annals_segment::identity::classify(&names) {
        DirKind::Missing | DirKind::Empty => Ok(()),
        DirKind::Foreign if marker_only => Ok(()),
        DirKind::Store => {
            let storage = FsStorage::open_read_only(dest)
                .map_err(|e| annals_segment::Error::io("open", dest.display().to_string(), e))?;
            match annals_segment::identity::read(&storage)? {
                Some(found) if found == id => Ok(()),
                _ => refuse("it is another store, not a backup of this one"),
            }
        }
        DirKind::OldStore | DirKind::Foreign => {
            refuse("it is not empty and not a backup of this store")
        }
    }
}

/// Copies `name` from `source` into `target`: its first `bytes` bytes
/// (`u64::MAX`: all of an immutable file, copied only if missing). Returns
/// the bytes copied, or `None` if the source file is gone (an index run
/// merged away meanwhile: the copy's open replays the log instead).
fn copy(source: &dyn Storage, target: &FsStorage, name: &str, bytes: u64) -> Result<Option<u64>> {
    let whole = bytes == u64::MAX;
    let from = match source.open(name) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && whole => return Ok(None),
        Err(e) => return Err(annals_segment::Error::io("open", name, e).into()),
    };
    let len = from
        .len()
        .map_err(|e| annals_segment::Error::io("stat", name, e))?;
    let want = if whole { len } else { bytes.min(len) };
    let to = create_or_open(target, name)?;
    let have = to
        .len()
        .map_err(|e| annals_segment::Error::io("stat", name, e))?;
    if have > want || (whole && have == want) {
        if have > want && !whole {
            return Err(Error::Backup(format!(
                "{name} in the destination holds more than the log's prefix: not a backup of this store"
            )));
        }
        return Ok(Some(0));
    }
    let mut buf = vec![0u8; COPY_BYTES];
    let mut at = if whole { 0 } else { have };
    while at < want {
        let n = usize::try_from(want - at)
            .unwrap_or(COPY_BYTES)
            .min(COPY_BYTES);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        from.read_exact_at(chunk, at)
            .map_err(|e| annals_segment::Error::io("read", name, e))?;
        to.write_all_at(chunk, at)
            .map_err(|e| annals_segment::Error::io("write", name, e))?;
        at += n as u64;
    }
    sync(&to, name)?;
    Ok(Some(want - if whole { 0 } else { have }))
}

fn create_or_open(target: &FsStorage, name: &str) -> Result<Arc<dyn StorageFile>> {
    match target.open(name) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => target
            .create(name)
            .map_err(|e| annals_segment::Error::io("create", name, e).into()),
        Err(e) => Err(annals_segment::Error::io("open", name, e).into()),
    }
}

fn sync(file: &Arc<dyn StorageFile>, name: &str) -> Result<()> {
    file.sync_all()
        .map_err(|e| annals_segment::Error::io("fsync", name, e).into())
}

fn sync_dir(target: &FsStorage) -> Result<()> {
    target
        .sync_dir()
        .map_err(|e| annals_segment::Error::io("fsync dir", target.describe(), e).into())
}

fn list(storage: &dyn Storage) -> Result<Vec<String>> {
    storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e).into())
}
