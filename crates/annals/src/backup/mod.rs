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
//! `n` bytes; only the rest is copied (checked: its first and last bytes
//! are compared, and a file that no longer matches, a segment compacted
//! since, is copied afresh). Frame indexes and runs are immutable under
//! their names: copied once. Sealed segments and their frame indexes are
//! hard-linked where the filesystem allows (`copy.rs`); the last segment
//! of the copy, its active one, is always copied.
//!
//! Against compaction (files replaced under their names while the backup
//! runs): each file is copied from one open handle, and a segment (or its
//! frame index) whose name no longer refers to the file copied makes the
//! backup list the files again and retry (`BACKUP_ATTEMPTS`).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the API, the protocol, the plan, retries |
//! | `copy.rs` | one file: link, copy, extend or rewrite; change detection |
//! | `pace.rs` | the rate limit |

mod copy;
mod pace;
mod records;

use std::path::Path;
use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage, StorageFile};
use annals_segment::{DirKind, PrefixPart, StoreId};

use self::copy::{Copied, Copier, Entry};
use crate::error::{Error, Result};
use crate::Store;

/// Name of the marker of a backup in progress (or interrupted).
pub const BACKUP_INCOMPLETE_FILE_NAME: &str = "BACKUP-INCOMPLETE";

/// How many times a backup lists the files and copies when a segment was
/// replaced or removed under it (a compaction) before giving up.
const BACKUP_ATTEMPTS: usize = 4;

/// How a backup copies ([`Store::backup_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupOptions {
    /// At most this many bytes copied per second, on average (`None`: as
    /// fast as the disk allows). Lower it to leave the disk to the
    /// writers: `docs/BACKUP.md`.
    pub rate_bytes_per_sec: Option<u64>,
    /// Hard-link sealed segments and their frame indexes into the
    /// destination where the filesystem allows (default `true`).
    pub link: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            rate_bytes_per_sec: None,
            link: true,
        }
    }
}

impl BackupOptions {
    /// Sets [`BackupOptions::rate_bytes_per_sec`] (`0`: no limit).
    pub fn rate_bytes_per_sec(mut self, rate: u64) -> Self {
        self.rate_bytes_per_sec = (rate > 0).then_some(rate);
        self
    }

    /// Sets [`BackupOptions::link`].
    pub fn link(mut self, link: bool) -> Self {
        self.link = link;
        self
    }
}

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
    /// Files hard-linked to the source's (sealed segments and their frame
    /// indexes), new in this backup.
    pub files_linked: usize,
    /// How many times the files were listed again because a segment was
    /// replaced or removed while it was copied.
    pub retries: usize,
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
    /// (then only what is new is copied), with default
    /// [`BackupOptions`]: see [`Store::backup_with`].
    pub fn backup_with_progress(
        &self,
        dest: impl AsRef<Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<BackupReport> {
        self.backup_with(dest, &BackupOptions::default(), progress)
    }

    /// Backs up positions `0..p` (`p`: the end when it starts) into `dest`,
    /// a missing or empty directory or an earlier backup of this store
    /// (then only what is new is copied). Any other destination is refused
    /// ([`Error::Backup`]) and nothing in it is touched. Everything is
    /// `fsync`ed before this returns; until then the destination does not
    /// open. `progress(bytes done, bytes to copy)`.
    pub fn backup_with(
        &self,
        dest: impl AsRef<Path>,
        options: &BackupOptions,
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

        let marker = create_or_open(&target, BACKUP_INCOMPLETE_FILE_NAME)?;
        sync(&marker, BACKUP_INCOMPLETE_FILE_NAME)?;
        sync_dir(&target)?;
        if annals_segment::identity::read(&target)?.is_none() {
            annals_segment::identity::write(&target, id)?;
        }
        // A rewrite a killed backup left half done.
        for name in list(&target)? {
            if name.ends_with(copy::REWRITE_SUFFIX) {
                target
                    .remove(&name)
                    .map_err(|e| annals_segment::Error::io("remove", name.clone(), e))?;
            }
        }
        let mut copier = Copier::new(
            source.as_ref(),
            dest,
            options.link,
            pace::Pace::new(options.rate_bytes_per_sec),
        );
        let mut report = BackupReport {
            position_end: end,
            files_copied: 0,
            files_kept: 0,
            bytes_copied: 0,
            files_linked: 0,
            retries: 0,
        };
        let mut attempt = 1;
        let mut segments_copied: Vec<u64>;
        loop {
            let parts = reader.prefix(end)?;
            segments_copied = parts.iter().map(|p| p.position_first).collect();
            let plan = self.plan(source.as_ref(), &parts, end)?;
            let total: u64 = parts.iter().map(|p| p.bytes).sum();
            match copy_all(&mut copier, &plan, &mut report, total, progress)? {
                None => break,
                Some(_) if attempt < BACKUP_ATTEMPTS => {
                    attempt += 1;
                    report.retries += 1;
                }
                Some(changed) => {
                    return Err(Error::Backup(format!(
                        "{changed} was replaced or removed while it was copied, {BACKUP_ATTEMPTS} times (a compaction?): the backup is incomplete; run it again"
                    )))
                }
            }
        }
        remove_merged_away(&target, &segments_copied)?;
        sync_dir(&target)?;
        drop(marker);
        target
            .remove(BACKUP_INCOMPLETE_FILE_NAME)
            .map_err(|e| annals_segment::Error::io("remove", BACKUP_INCOMPLETE_FILE_NAME, e))?;
        sync_dir(&target)?;
        Ok(report)
    }

    /// The files holding positions `0..end` and what opening them needs.
    fn plan(&self, source: &dyn Storage, parts: &[PrefixPart], end: u64) -> Result<Vec<Entry>> {
        let mut plan = Vec::new();
        for part in parts {
            plan.push(Entry {
                name: part.name.clone(),
                bytes: Some(part.bytes),
                linkable: part.sealed,
                log: true,
            });
            if part.sealed {
                plan.push(Entry {
                    name: annals_segment::frame_index_file_name(part.position_first),
                    bytes: None,
                    linkable: true,
                    // A missing frame index is rebuilt by the copy's open;
                    // a replaced one (with its segment) is a retry.
                    log: false,
                });
            }
        }
        for name in list(source)? {
            if annals_index::parse_run_file_name(&name).is_some_and(|(_, e)| e <= end) {
                plan.push(Entry {
                    name,
                    bytes: None,
                    linkable: false,
                    log: false,
                });
            }
        }
        // Snapshots: every valid frame (appended to like segments, so a
        // later backup copies only what is new). One saved for a version
        // past `end` is kept but never loaded: loads take the newest at
        // or below the stream's version.
        for (name, bytes) in self.snapshots().file_prefixes()? {
            plan.push(Entry {
                name,
                bytes: Some(bytes),
                linkable: false,
                log: false,
            });
        }
        Ok(plan)
    }
}

/// Copies every file of `plan`, then checks that each segment copied is
/// still the file under its name (a compaction replaces the segment
/// before its frame index: a segment copied before its replacement and a
/// frame index after would not match). `Some(name)`: a segment changed,
/// list and copy again.
fn copy_all(
    copier: &mut Copier<'_>,
    plan: &[Entry],
    report: &mut BackupReport,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<String>> {
    for entry in plan {
        match copier.copy(entry)? {
            Copied::Kept | Copied::Missing | Copied::Bytes(0) => report.files_kept += 1,
            Copied::Linked => report.files_linked += 1,
            Copied::Bytes(n) => {
                report.files_copied += 1;
                report.bytes_copied += n;
            }
            Copied::Changed => return Ok(Some(entry.name.clone())),
        }
        progress(report.bytes_copied.min(total), total);
    }
    for entry in plan.iter().filter(|e| e.log) {
        if copier.changed(entry)? {
            return Ok(Some(entry.name.clone()));
        }
    }
    Ok(None)
}

/// Removes from the destination every segment (and frame index) that is
/// not one of `segments` (first positions): an earlier backup's copy of a
/// segment a compaction has merged into the one before it since. (The
/// copy's open would remove it too, as a merge leftover; a backup leaves a
/// clean directory.)
fn remove_merged_away(target: &FsStorage, segments: &[u64]) -> Result<()> {
    for name in list(target)? {
        let first = annals_segment::parse_segment_file_name(&name).or_else(|| {
            name.strip_suffix(".fidx")
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok())
        });
        if let Some(first) = first {
            if !segments.contains(&first) {
                target
                    .remove(&name)
                    .map_err(|e| annals_segment::Error::io("remove", name.clone(), e))?;
            }
        }
    }
    Ok(())
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
