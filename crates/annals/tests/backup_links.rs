//! Property: a backup hard-links sealed segments (and their frame indexes)
//! on the same filesystem and copies the active one; it never writes into
//! a destination file that is a hard link (it replaces it); and a segment
//! replaced or removed under a running backup (what a compaction does:
//! a new file renamed over the name) is detected: the backup lists the
//! files again and copies afresh, or, if the file stays gone, fails with
//! a typed error and leaves a destination that does not open. Method: real
//! directories, inodes compared; a storage wrapper that replaces or
//! removes a segment right after the backup copied it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use annals::storage::{FsStorage, Storage, StorageFile};
use annals::{BackupOptions, Error, EventData, ExpectedVersion, Options, Store};

fn small() -> Options {
    Options::default()
        .segment_bytes(64 << 10)
        .index_buffer_events(500)
}

fn fill(store: &Store, from: u64, count: u64) {
    for i in from..from + count {
        let data = EventData::new("Changed", format!("{i}-{}", "q".repeat(100)));
        store
            .append(&format!("f-{}", i % 13), ExpectedVersion::Any, vec![data])
            .unwrap()
            .unwrap();
    }
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Opens the backup and checks it holds exactly the owner's first `end`
/// events and verifies.
fn check_backup(dest: &Path, owner: &Store, end: u64) {
    let backup = Store::open_read_only(dest).unwrap();
    let all = owner.read_all(0, usize::MAX).unwrap();
    assert_eq!(
        backup.read_all(0, usize::MAX).unwrap(),
        all[..end as usize].to_vec()
    );
    assert_eq!(backup.verify().unwrap().events, end);
}

#[test]
fn sealed_segments_are_linked_the_active_one_copied() {
    let dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 0, 2_000);
    let dest = parent.path().join("linked");
    let report = owner.backup(&dest).unwrap();
    let names = segments(&dest);
    assert!(names.len() >= 3, "{names:?}");
    assert!(report.files_linked >= 2 * (names.len() - 1), "{report:?}");
    let (last, sealed) = names.split_last().unwrap();
    for name in sealed {
        assert_eq!(ino(&dest.join(name)), ino(&dir.path().join(name)), "{name}");
    }
    assert_ne!(ino(&dest.join(last)), ino(&dir.path().join(last)));
    check_backup(&dest, &owner, report.position_end);

    let copied = parent.path().join("copied");
    let options = BackupOptions::default().link(false);
    let report = owner
        .backup_with(&copied, &options, &mut |_, _| {})
        .unwrap();
    assert_eq!(report.files_linked, 0);
    for name in segments(&copied) {
        assert_ne!(ino(&copied.join(&name)), ino(&dir.path().join(&name)));
    }
    check_backup(&copied, &owner, report.position_end);
}

/// Regression (found while adding links): an incremental backup extended
/// a destination segment in place even when that file was a hard link,
/// writing the new bytes into whatever shared it.
#[test]
fn an_incremental_backup_never_writes_through_a_hard_link() {
    let dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 0, 100);
    let dest = parent.path().join("dest");
    owner.backup(&dest).unwrap();
    // Someone keeps a hard link to the backup's active segment.
    let active = segments(&dest).pop().unwrap();
    let kept = parent.path().join("kept.seg");
    std::fs::hard_link(dest.join(&active), &kept).unwrap();
    let before = std::fs::read(&kept).unwrap();

    fill(&owner, 100, 1_000);
    // The index's background writer finishes its work first: the buffers
    // frozen at 500 and 1,000 events become 44 KiB run files, and one it
    // persists between the two backups below is rightly copied by the
    // second (on tmpfs under CPU load: 15 of 50 runs).
    owner.maintain_index().unwrap();
    let report = owner.backup(&dest).unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), before, "written through");
    assert_ne!(ino(&dest.join(&active)), ino(&kept));
    check_backup(&dest, &owner, report.position_end);
    // And once more, with nothing new: everything kept.
    let again = owner.backup(&dest).unwrap();
    assert_eq!((again.files_copied, again.bytes_copied), (0, 0));
}

/// What the hook does to the watched segment right after the backup
/// copied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Renames a copy of it over its name (a new file, same bytes).
    Replace,
    /// Removes it.
    Remove,
}

/// A read-only directory whose watched segment is replaced or removed the
/// second time the backup asks where it is (the first: to copy it; the
/// second: to check it is still the file copied).
#[derive(Debug)]
struct Hooked {
    inner: FsStorage,
    dir: PathBuf,
    watched: String,
    act: Act,
    asked: AtomicUsize,
}

impl Storage for Hooked {
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.inner.sync_dir()
    }
    fn try_lock(&self) -> std::io::Result<()> {
        self.inner.try_lock()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn file_path(&self, name: &str) -> Option<PathBuf> {
        if name == self.watched && self.asked.fetch_add(1, Ordering::SeqCst) == 1 {
            let path = self.dir.join(name);
            match self.act {
                Act::Replace => {
                    let temp = self.dir.join("replacement.tmp");
                    std::fs::copy(&path, &temp).unwrap();
                    std::fs::rename(&temp, &path).unwrap();
                }
                Act::Remove => std::fs::remove_file(&path).unwrap(),
            }
        }
        self.inner.file_path(name)
    }
}

fn hooked_store(dir: &Path, act: Act) -> (Store, Arc<Hooked>) {
    let watched = segments(dir).into_iter().next().unwrap();
    let hooked = Arc::new(Hooked {
        inner: FsStorage::open_read_only(dir).unwrap(),
        dir: dir.to_path_buf(),
        watched,
        act,
        asked: AtomicUsize::new(0),
    });
    let store = Store::open_storage_read_only(hooked.clone(), small()).unwrap();
    (store, hooked)
}

#[test]
fn a_segment_replaced_under_a_backup_is_copied_again() {
    let dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 0, 1_500);
    owner.flush().unwrap();
    let (reader, hooked) = hooked_store(dir.path(), Act::Replace);
    let dest = parent.path().join("dest");
    let report = reader.backup(&dest).unwrap();
    assert_eq!(report.retries, 1, "{report:?}");
    assert!(hooked.asked.load(Ordering::SeqCst) >= 3);
    // The copy holds the bytes of the file now under the name (here the
    // same bytes: the first link is kept; a compacted file differs and
    // would be copied afresh).
    assert_eq!(
        std::fs::read(dest.join(&hooked.watched)).unwrap(),
        std::fs::read(dir.path().join(&hooked.watched)).unwrap()
    );
    check_backup(&dest, &owner, report.position_end);
}

#[test]
fn a_segment_removed_under_a_backup_fails_it_and_it_never_opens() {
    let dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 0, 1_500);
    owner.flush().unwrap();
    let (reader, _hooked) = hooked_store(dir.path(), Act::Remove);
    let dest = parent.path().join("dest");
    let error = reader.backup(&dest).unwrap_err();
    assert!(matches!(error, Error::Backup(_)), "{error}");
    assert!(error.to_string().contains("removed"), "{error}");
    assert!(dest.join(annals::BACKUP_INCOMPLETE_FILE_NAME).exists());
    let error = Store::open_read_only(&dest).unwrap_err();
    assert!(matches!(error, Error::Backup(_)), "{error}");
}

#[test]
fn a_rewrite_left_by_a_killed_backup_is_removed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let owner = Store::open_with(dir.path(), small()).unwrap();
    fill(&owner, 0, 500);
    let dest = parent.path().join("dest");
    owner.backup(&dest).unwrap();
    // Killed while rewriting a segment: the marker and the temp file.
    let active = segments(&dest).pop().unwrap();
    let temp = dest.join(format!("{active}.backup-tmp"));
    std::fs::write(dest.join(annals::BACKUP_INCOMPLETE_FILE_NAME), b"").unwrap();
    std::fs::write(&temp, b"half").unwrap();
    assert!(Store::open_read_only(&dest).is_err());
    let report = owner.backup(&dest).unwrap();
    assert!(!temp.exists());
    check_backup(&dest, &owner, report.position_end);
}
