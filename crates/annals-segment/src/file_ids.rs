//! How a read-only log notices that the owner replaced a segment's file.
//!
//! The owner's compaction renames a rewritten file over a sealed segment's
//! name (`rewrite.rs`); a mapping of the old file stays valid (it is
//! unlinked, never truncated) but no longer shows what the owner's readers
//! see (gap records in place of removed events). A read-only log records
//! the inode under each segment's name *before* it opens that name, and on
//! a refresh compares it with the inode there now: a difference means a
//! switch happened after the record (so perhaps after the open), and the
//! segment is loaded again. Recording before opening errs only towards a
//! reload too many, never towards keeping an old file.
//!
//! A refresh stats the segments only when the directory changed: its
//! modification time differs from the last refresh's, or is so recent
//! that a change within the same clock tick could hide behind it.
//! Storage that is not a plain directory ([`Storage::file_path`] `None`:
//! the test backends) has no inodes; nothing is noticed there.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::segment::segment_file_name;
use crate::storage::Storage;

/// A directory modified less than this long ago is looked at again: file
/// times move in clock ticks, and two changes within one tick leave one
/// time.
const RECENT: Duration = Duration::from_secs(2);

/// The inodes a read-only log saw under its segments' names.
#[derive(Debug)]
pub(crate) struct FileIds {
    storage: Arc<dyn Storage>,
    /// Segment first position → inode recorded before the last open.
    seen: Mutex<HashMap<u64, u64>>,
    /// The directory's modification time at the last look.
    dir_seen: Mutex<Option<SystemTime>>,
}

impl FileIds {
    /// Inodes of the segments of `storage`, none recorded yet.
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Self {
        FileIds {
            storage,
            seen: Mutex::new(HashMap::new()),
            dir_seen: Mutex::new(None),
        }
    }

    /// The inode under the name of the segment at `position_first` now.
    fn inode(&self, position_first: u64) -> Option<u64> {
        let path = self.dir()?.join(segment_file_name(position_first));
        std::fs::metadata(path).ok().map(|m| m.ino())
    }

    /// The store's directory, asked through a name no segment has (a
    /// storage may watch what is asked of a segment's name, as a backup
    /// test's storage does).
    fn dir(&self) -> Option<std::path::PathBuf> {
        self.storage
            .file_path(crate::identity::IDENTITY_FILE_NAME)
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
    }

    /// Records the inode under the segment's name: call it before opening
    /// the name. Whether it may be another file than the one opened last
    /// time: none was recorded, or another inode was (not on a storage
    /// without inodes, where nothing is noticed).
    pub(crate) fn note(&self, position_first: u64) -> bool {
        let Some(inode) = self.inode(position_first) else {
            return false;
        };
        self.seen.lock().insert(position_first, inode) != Some(inode)
    }

    /// Whether another file is under the segment's name than the one
    /// recorded (a segment never recorded, or gone, is not reported).
    pub(crate) fn replaced(&self, position_first: u64) -> bool {
        let Some(recorded) = self.seen.lock().get(&position_first).copied() else {
            return false;
        };
        self.inode(position_first)
            .is_some_and(|inode| inode != recorded)
    }

    /// Whether the directory may have changed since the last call (see the
    /// module comment); `true` the first time.
    pub(crate) fn dir_changed(&self) -> bool {
        let Some(dir) = self.dir() else {
            return false;
        };
        let Ok(modified) = std::fs::metadata(dir).and_then(|m| m.modified()) else {
            return true;
        };
        let mut seen = self.dir_seen.lock();
        let recent = SystemTime::now()
            .duration_since(modified)
            .map_or(true, |age| age < RECENT);
        let changed = *seen != Some(modified) || recent;
        *seen = Some(modified);
        changed
    }
}
