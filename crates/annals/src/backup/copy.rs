//! How a backup copies one file: hard-links a sealed segment (or its frame
//! index) where the filesystem allows, otherwise copies its bytes in
//! paced chunks that are written back as they go; extends a destination
//! file an earlier backup left shorter; rewrites one that no longer
//! matches its source (a segment compacted since: its ends, or any of its
//! event records, differ) under a temporary name and renames it into place. Never writes into a destination file that
//! is a hard link (to the source or anything else): such a file is
//! replaced, not extended.
//!
//! A source file is read through one open handle from start to end, so a
//! copy holds one version of it even if the file is replaced under its
//! name meanwhile (compaction renames a new file over the old name, never
//! rewrites one in place). After the copy the name is checked again: if it
//! no longer refers to the file copied, the result is [`Copied::Changed`]
//! and the backup lists the files again and retries.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals_segment::storage::{bulk, Storage, StorageFile};

use super::pace::Pace;
use crate::error::{Error, Result};

/// Bytes copied between two write-back points (and two checks of the pace).
const CHUNK_BYTES: u64 = 8 << 20;
/// Bytes compared at the end of an existing destination file's prefix,
/// and at its start, to tell that it holds the source's first bytes.
const MATCH_BYTES: u64 = 4096;
/// Suffix of a destination file being rewritten.
pub(super) const REWRITE_SUFFIX: &str = ".backup-tmp";

/// One file to back up.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub name: String,
    /// Bytes from offset 0 the copy must hold; `None`: the whole file, an
    /// immutable one (copied once, kept when its length matches).
    pub bytes: Option<u64>,
    /// A sealed segment or its frame index: immutable, may be linked.
    pub linkable: bool,
    /// Part of the log (a segment or its frame index): if it disappears or
    /// is replaced during the copy, the backup retries. Other files
    /// (index runs) that disappear are skipped: the copy's open replays
    /// the log instead.
    pub log: bool,
}

/// What copying one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Copied {
    /// Already complete in the destination.
    Kept,
    /// Hard-linked to the source file.
    Linked,
    /// This many bytes written.
    Bytes(u64),
    /// An immutable file gone from the source (an index run merged away).
    Missing,
    /// The source file disappeared, shrank or was replaced while copied.
    Changed,
}

/// A source file open for the copy.
enum Source {
    /// A real file: copied in the kernel, linkable, identified by inode.
    Local {
        file: File,
        path: PathBuf,
        dev: u64,
        ino: u64,
    },
    /// Any other storage: copied by reads and writes, identified by its
    /// first bytes (the segment header: salt and first position).
    Other {
        file: Arc<dyn StorageFile>,
        head: Vec<u8>,
    },
}

impl Source {
    /// `Ok(None)`: there is no such file.
    fn open(storage: &dyn Storage, name: &str) -> io::Result<Option<Source>> {
        let not_found = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
        if let Some(path) = storage.file_path(name) {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) => return not_found(e),
            };
            let meta = file.metadata()?;
            return Ok(Some(Source::Local {
                file,
                path,
                dev: meta.dev(),
                ino: meta.ino(),
            }));
        }
        let file = match storage.open(name) {
            Ok(file) => file,
            Err(e) => return not_found(e),
        };
        let head = head_of(file.as_ref())?;
        Ok(Some(Source::Other { file, head }))
    }

    fn len(&self) -> io::Result<u64> {
        match self {
            Source::Local { file, .. } => Ok(file.metadata()?.len()),
            Source::Other { file, .. } => file.len(),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::Local { file, .. } => file.read_exact_at(buf, offset),
            Source::Other { file, .. } => file.read_exact_at(buf, offset),
        }
    }

    fn copy_to(&self, to: &File, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Source::Local { file, .. } => bulk::copy_range(file, to, offset, len),
            Source::Other { file, .. } => {
                let mut buf = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
                let mut done = 0u64;
                while done < len {
                    let n = usize::try_from(len - done)
                        .unwrap_or(buf.len())
                        .min(buf.len());
                    let chunk = buf.get_mut(..n).unwrap_or_default();
                    file.read_exact_at(chunk, offset + done)?;
                    to.write_all_at(chunk, offset + done)?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }

    /// What tells this file from another one under the same name.
    fn identity(&self) -> Identity {
        match self {
            Source::Local { dev, ino, .. } => Identity::Inode(*dev, *ino),
            Source::Other { head, .. } => Identity::Head(head.clone()),
        }
    }

    /// Whether `dest` is this very file (hard-linked by an earlier backup).
    fn is(&self, dest: &std::fs::Metadata) -> bool {
        matches!(self, Source::Local { dev, ino, .. } if dest.dev() == *dev && dest.ino() == *ino)
    }
}

/// What tells a file from another one under the same name: its inode on
/// a real filesystem, else its first bytes (a segment's header: salt and
/// first position).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    Head(Vec<u8>),
}

/// The identity of the file now under `name` (`None`: there is none),
/// found the way `like` was.
fn identity_now(
    storage: &dyn Storage,
    name: &str,
    like: &Identity,
) -> io::Result<Option<Identity>> {
    let found = match like {
        Identity::Inode(..) => storage
            .file_path(name)
            .map(std::fs::metadata)
            .map(|m| m.map(|m| Identity::Inode(m.dev(), m.ino()))),
        Identity::Head(_) => Some(
            storage
                .open(name)
                .and_then(|file| head_of(file.as_ref()).map(Identity::Head)),
        ),
    };
    match found {
        None => Ok(None),
        Some(Ok(identity)) => Ok(Some(identity)),
        Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Some(Err(e)) => Err(e),
    }
}

/// The first bytes of a file (its header, for a segment).
fn head_of(file: &dyn StorageFile) -> io::Result<Vec<u8>> {
    let len = file
        .len()?
        .min(annals_segment::format::SEGMENT_HEADER_BYTES);
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut head, 0)?;
    Ok(head)
}

/// Copies files of `source` into the directory `dest`.
pub(super) struct Copier<'a> {
    source: &'a dyn Storage,
    dest: &'a Path,
    link: bool,
    pace: Pace,
    /// The identity of each log file copied, for [`Copier::changed`].
    copied: HashMap<String, Identity>,
}

fn io_error(op: &'static str, name: &str, e: io::Error) -> Error {
    annals_segment::Error::io(op, name.to_owned(), e).into()
}

impl<'a> Copier<'a> {
    /// A copier from `source` into the directory `dest`: see
    /// [`BackupOptions`](super::BackupOptions) for `link` and the pace.
    pub(super) fn new(source: &'a dyn Storage, dest: &'a Path, link: bool, pace: Pace) -> Self {
        Copier {
            source,
            dest,
            link,
            pace,
            copied: HashMap::new(),
        }
    }

    /// Whether the log file `entry` copied earlier is no longer the file
    /// under its name (replaced or removed since).
    pub(super) fn changed(&self, entry: &Entry) -> Result<bool> {
        let Some(identity) = self.copied.get(&entry.name) else {
            return Ok(true);
        };
        let now = identity_now(self.source, &entry.name, identity)
            .map_err(|e| io_error("stat", &entry.name, e))?;
        Ok(now.as_ref() != Some(identity))
    }

    /// Backs up one file.
    pub(super) fn copy(&mut self, entry: &Entry) -> Result<Copied> {
        let name = entry.name.as_str();
        let Some(source) =
            Source::open(self.source, name).map_err(|e| io_error("open", name, e))?
        else {
            return Ok(if entry.log {
                Copied::Changed
            } else {
                Copied::Missing
            });
        };
        let len = source.len().map_err(|e| io_error("stat", name, e))?;
        let want = match entry.bytes {
            None => len,
            Some(bytes) if bytes <= len => bytes,
            // Shorter than the log's view of it: replaced meanwhile.
            Some(_) => return Ok(Copied::Changed),
        };
        let copied = self.copy_open(entry, &source, want)?;
        if entry.log {
            let identity = source.identity();
            self.copied.insert(entry.name.clone(), identity);
            if self.changed(entry)? {
                return Ok(Copied::Changed);
            }
        }
        Ok(copied)
    }

    fn copy_open(&mut self, entry: &Entry, source: &Source, want: u64) -> Result<Copied> {
        let name = entry.name.as_str();
        let path = self.dest.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.create(entry, source, want)
            }
            Err(e) => return Err(io_error("stat", name, e)),
        };
        let have = meta.len();
        if entry.bytes.is_none() {
            // Compared too: a frame index replaced with its segment by a
            // compaction may keep its length.
            return if have == want
                && meta.is_file()
                && self.holds_prefix(name, source, &path, want)?
            {
                Ok(Copied::Kept)
            } else {
                self.rewrite(name, source, want)
            };
        }
        if entry.linkable && source.is(&meta) {
            // Linked by an earlier backup: the sealed file itself. (Not the
            // active segment: the owner writes to that one.)
            return Ok(Copied::Kept);
        }
        let prefix = have.min(want);
        let sealed_longer = have > want && entry.linkable;
        if !meta.is_file()
            || (have > want && !sealed_longer)
            || !self.holds_prefix(name, source, &path, prefix)?
            || (entry.log && !self.holds_records(name, source, &path, prefix)?)
        {
            return self.rewrite(name, source, want);
        }
        if have >= want {
            return Ok(Copied::Kept);
        }
        if meta.nlink() > 1 {
            // Never write through a link: whatever it shares the file with
            // keeps its bytes.
            return self.rewrite(name, source, want);
        }
        let to = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", name, e))?;
        self.fill(name, source, &to, have, want)?;
        Ok(Copied::Bytes(want - have))
    }

    /// A file the destination lacks: linked if allowed, else copied.
    fn create(&mut self, entry: &Entry, source: &Source, want: u64) -> Result<Copied> {
        let name = entry.name.as_str();
        let path = self.dest.join(name);
        if let (true, true, Source::Local { path: from, .. }) = (self.link, entry.linkable, source)
        {
            if bulk::hard_link(from, &path).map_err(|e| io_error("link", name, e))? {
                let meta = std::fs::metadata(&path).map_err(|e| io_error("stat", name, e))?;
                if source.is(&meta) {
                    return Ok(Copied::Linked);
                }
                // The name was replaced between our open and the link:
                // copy what was opened instead.
                std::fs::remove_file(&path).map_err(|e| io_error("remove", name, e))?;
            }
        }
        let to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error("create", name, e))?;
        self.fill(name, source, &to, 0, want)?;
        Ok(Copied::Bytes(want))
    }

    /// Replaces the destination file by a fresh copy: written under a
    /// temporary name, synced, renamed over it (the caller syncs the
    /// directory).
    fn rewrite(&mut self, name: &str, source: &Source, want: u64) -> Result<Copied> {
        let temp = format!("{name}{REWRITE_SUFFIX}");
        let temp_path = self.dest.join(&temp);
        match std::fs::remove_file(&temp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &temp, e)),
        }
        let to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| io_error("create", &temp, e))?;
        self.fill(&temp, source, &to, 0, want)?;
        drop(to);
        std::fs::rename(&temp_path, self.dest.join(name))
            .map_err(|e| io_error("rename", &temp, e))?;
        Ok(Copied::Bytes(want))
    }

    /// Whether the destination file's first `prefix` bytes are the
    /// source's: its header and the last [`MATCH_BYTES`] before `prefix`
    /// compared (a compacted segment differs there: its frames moved).
    fn holds_prefix(&self, name: &str, source: &Source, path: &Path, prefix: u64) -> Result<bool> {
        let dest = File::open(path).map_err(|e| io_error("open", name, e))?;
        let head = prefix.min(MATCH_BYTES);
        let tail_at = prefix.saturating_sub(MATCH_BYTES);
        for (at, n) in [(0, head), (tail_at, prefix - tail_at)] {
            let n = usize::try_from(n).unwrap_or(0);
            let (mut ours, mut theirs) = (vec![0u8; n], vec![0u8; n]);
            source
                .read_at(&mut ours, at)
                .map_err(|e| io_error("read", name, e))?;
            dest.read_exact_at(&mut theirs, at)
                .map_err(|e| io_error("read", name, e))?;
            if ours != theirs {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the destination segment's first `prefix` bytes hold the
    /// source's event records (`records.rs`: a segment compacted to the
    /// same layout differs only inside its records).
    fn holds_records(&self, name: &str, source: &Source, path: &Path, prefix: u64) -> Result<bool> {
        let dest = File::open(path).map_err(|e| io_error("open", name, e))?;
        let ours = |buf: &mut [u8], at: u64| source.read_at(buf, at);
        let theirs = |buf: &mut [u8], at: u64| dest.read_exact_at(buf, at);
        super::records::same_records(&ours, &theirs, prefix).map_err(|e| io_error("read", name, e))
    }

    /// Copies `from..want` in chunks: each chunk's write-back is started
    /// when it is written and waited for one chunk later, and its pages
    /// then dropped, so that dirty pages never pile up for one long
    /// `fsync` that would hold up the writers' `fdatasync`s. Paced. Ends
    /// with an `fsync` of the file.
    fn fill(&mut self, name: &str, source: &Source, to: &File, from: u64, want: u64) -> Result<()> {
        let mut at = from;
        let mut previous: Option<(u64, u64)> = None;
        while at < want {
            let n = (want - at).min(CHUNK_BYTES);
            source
                .copy_to(to, at, n)
                .map_err(|e| io_error("copy", name, e))?;
            bulk::write_back(to, at, n, false).map_err(|e| io_error("write back", name, e))?;
            if let Some((p_at, p_n)) = previous {
                bulk::write_back(to, p_at, p_n, true)
                    .map_err(|e| io_error("write back", name, e))?;
                bulk::drop_cached(to, p_at, p_n);
            }
            previous = Some((at, n));
            at += n;
            self.pace.account(n);
        }
        to.sync_all().map_err(|e| io_error("fsync", name, e))?;
        if let Some((p_at, p_n)) = previous {
            bulk::drop_cached(to, p_at, p_n);
        }
        Ok(())
    }
}
