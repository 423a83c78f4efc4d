//! The real filesystem backend. This module holds the `unsafe` code of
//! Annals' file I/O: the `mmap` call and the `fallocate` call.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, Storage, StorageFile};

/// Name of the lock file inside the directory.
const LOCK_FILE_NAME: &str = "LOCK";

/// A directory on the real filesystem.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    lock: Mutex<Option<File>>,
    dir_syncs: DirSyncs,
    /// Opened with [`FsStorage::open_read_only`]: files are opened
    /// `O_RDONLY`; nothing is created, renamed, removed, synced or locked.
    read_only: bool,
}

/// Directory syncs run one at a time, and once one has failed every later
/// one fails too. The log's writer and the index's background writer both
/// sync the directory; a failed writeback is reported to an `fsync` once,
/// so two syncs at once could see one report between them, and the other
/// caller would go on believing its new file durable.
#[derive(Debug, Default)]
struct DirSyncs {
    failed: Mutex<Option<String>>,
}

impl DirSyncs {
    fn run(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut failed = self.failed.lock();
        if let Some(first) = &*failed {
            return Err(io::Error::other(format!(
                "an earlier directory fsync failed ({first}); reopen the store"
            )));
        }
        sync().inspect_err(|e| *failed = Some(e.to_string()))
    }
}

impl FsStorage {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        Ok(FsStorage {
            dir,
            lock: Mutex::new(None),
            dir_syncs: DirSyncs::default(),
            read_only: false,
        })
    }

    /// Opens the existing directory `dir` for reading only: files are
    /// opened `O_RDONLY` (so this works on a read-only filesystem), and
    /// every call that would change the directory or a file (create,
    /// remove, rename, write, directory sync, taking the lock) fails with
    /// [`io::ErrorKind::PermissionDenied`]. Takes no lock: see
    /// `docs/ARCHITECTURE.md`, "Read-only opens".
    pub fn open_read_only(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(FsStorage {
            dir,
            lock: Mutex::new(None),
            dir_syncs: DirSyncs::default(),
            read_only: true,
        })
    }

    fn refuse_if_read_only(&self, what: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error(what));
        }
        Ok(())
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

impl Storage for FsStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.refuse_if_read_only("create")?;
        let path = self.path_of(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Arc::new(FsFile {
            file,
            path,
            writable: true,
        }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let path = self.path_of(name)?;
        let writable = !self.read_only;
        let file = open_file(&path, writable)?;
        Ok(Arc::new(FsFile {
            file,
            path,
            writable,
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.refuse_if_read_only("remove")?;
        std::fs::remove_file(self.path_of(name)?)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.refuse_if_read_only("rename")?;
        std::fs::rename(self.path_of(from)?, self.path_of(to)?)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.refuse_if_read_only("fsync dir")?;
        // A directory that cannot be opened is not a failed sync.
        let dir = File::open(&self.dir)?;
        self.dir_syncs.run(|| dir.sync_all())
    }

    fn try_lock(&self) -> io::Result<()> {
        self.refuse_if_read_only("lock")?;
        let mut held = self.lock.lock();
        if held.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK_FILE_NAME))?;
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn file_path(&self, name: &str) -> Option<PathBuf> {
        self.path_of(name).ok()
    }

    /// Yes on filesystems that allocate a block on its first write and
    /// overwrite allocated blocks in place (ext2/3/4, XFS), found from
    /// `/proc/self/mountinfo`; no elsewhere (copy-on-write filesystems
    /// allocate on every write, tmpfs has no metadata to sync) and when the
    /// filesystem cannot be told.
    fn zero_fill_helps(&self) -> bool {
        let (Ok(dir), Ok(mounts)) = (
            self.dir.canonicalize(),
            std::fs::read_to_string("/proc/self/mountinfo"),
        ) else {
            return false;
        };
        matches!(
            filesystem_of(&mounts, &dir),
            Some("ext4" | "ext3" | "ext2" | "xfs")
        )
    }

    /// Yes on filesystems whose blocks are memory (tmpfs, ramfs), found
    /// from `/proc/self/mountinfo`.
    fn allocate_in_steps(&self) -> bool {
        let (Ok(dir), Ok(mounts)) = (
            self.dir.canonicalize(),
            std::fs::read_to_string("/proc/self/mountinfo"),
        ) else {
            return false;
        };
        matches!(filesystem_of(&mounts, &dir), Some("tmpfs" | "ramfs"))
    }
}

/// The type of the filesystem holding `path` (absolute, canonical), from
/// the text of `/proc/self/mountinfo`: the entry with the longest mount
/// point containing `path`, the last one of equal length (stacked mounts).
fn filesystem_of<'a>(mountinfo: &'a str, path: &Path) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(point), Some(fs_type)) = (mount.split(' ').nth(4), fs.split(' ').next()) else {
            continue;
        };
        let point = unescape_mount_point(point);
        if path.starts_with(&point) && best.is_none_or(|(len, _)| point.len() >= len) {
            best = Some((point.len(), fs_type));
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Mount points in `mountinfo` write space, tab, newline and backslash as
/// octal escapes (`\040`…).
fn unescape_mount_point(point: &str) -> String {
    let mut out = String::with_capacity(point.len());
    let mut chars = point.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3 {
                if let Ok(byte) = u8::from_str_radix(&digits, 8) {
                    out.push(char::from(byte));
                    chars.nth(2);
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

fn open_file(path: &Path, writable: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(writable).open(path)
}

fn read_only_error(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{what}: the store is opened read-only"),
    )
}

#[derive(Debug)]
struct FsFile {
    file: File,
    /// Where it was opened: [`StorageFile::reopen`] opens it again (and
    /// refuses if the path now names another file).
    path: PathBuf,
    /// Opened for writing (not through a read-only storage).
    writable: bool,
}

impl FsFile {
    fn refuse_if_read_only(&self, what: &str) -> io::Result<()> {
        if !self.writable {
            return Err(read_only_error(what));
        }
        Ok(())
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.refuse_if_read_only("write")?;
        self.file.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.refuse_if_read_only("truncate")?;
        self.file.set_len(len)
    }

    #[allow(unsafe_code)]
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.refuse_if_read_only("fallocate")?;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "allocation range out of range",
            ));
        };
        loop {
            // SAFETY: `fallocate` takes a file descriptor and three integers
            // and touches no memory of this process; the descriptor is
            // `self.file`'s, open for writing for as long as `self` lives.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, offset, len) };
            if rc == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP | libc::ENOSYS) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, error))
                }
                _ => return Err(error),
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        let file = open_file(&self.path, self.writable)?;
        let (was, is) = (self.file.metadata()?, file.metadata()?);
        if (was.dev(), was.ino()) != (is.dev(), is.ino()) {
            return Err(io::Error::other(format!(
                "{} was renamed or replaced since it was opened",
                self.path.display()
            )));
        }
        Ok(Arc::new(FsFile {
            file,
            path: self.path.clone(),
            writable: self.writable,
        }))
    }

    #[allow(unsafe_code)]
    fn map(&self) -> io::Result<Mapping> {
        if self.len()? == 0 {
            // mmap of zero bytes fails on Linux; an empty mapping is the same thing.
            return Ok(Mapping::new(Arc::new(Vec::<u8>::new()), true));
        }
        // SAFETY: `Mmap::map` is unsafe because the file could be changed
        // or shortened behind our back: touching a mapped page past the
        // file's end raises SIGBUS. Annals holds an exclusive lock on the
        // directory for as long as any mapping lives, so no other Annals
        // process writes these files, and this process never shortens a
        // segment file (recovery cuts a torn tail by overwriting it with
        // zeros; files only grow). The mapping covers the file's length
        // now; readers touch only bytes below what the writer wrote (whole
        // verified frames, allocated before they were written), and the
        // unwritten tail is never read through a mapping (recovery scans it
        // with `pread`), so no page fault has to allocate a block: on tmpfs
        // such a fault on a full filesystem is a SIGBUS. Bytes past the
        // visible end may still be written while mapped; readers never look
        // at them. `Bytes` handed out keep the mapping alive beyond the
        // store (and its lock): they cover verified frames below the visible
        // end, which no later open changes, and unlinking a file keeps its
        // pages. What remains (GUARANTEES.md): another process truncating
        // the file, or a device error reading a mapped page, still raises
        // SIGBUS.
        let map = unsafe { memmap2::MmapOptions::new().map(&self.file)? };
        Ok(Mapping::new(Arc::new(map), true))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    const MOUNTINFO: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:21 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw,size=4096k
30 22 0:40 / /data rw,relatime shared:9 - btrfs /dev/vdb rw,space_cache
31 30 0:41 / /data/fast rw,relatime shared:10 - xfs /dev/vdc rw
32 22 0:42 / /mnt/with\\040space rw - ext4 /dev/vdd rw
33 25 0:43 / /tmp rw - ext4 /dev/vde rw
garbage line without separator
";

    #[test]
    fn the_filesystem_is_the_longest_mount_point_holding_the_path() {
        let of = |path: &str| filesystem_of(MOUNTINFO, Path::new(path));
        assert_eq!(of("/home/me/store"), Some("ext4"));
        assert_eq!(of("/data/store"), Some("btrfs"));
        assert_eq!(of("/data/fast/store"), Some("xfs"));
        // Component-wise: /database is not under /data.
        assert_eq!(of("/database"), Some("ext4"));
        assert_eq!(of("/mnt/with space/x"), Some("ext4"));
        assert_eq!(of("/mnt/with"), Some("ext4"));
        // The later of two mounts on the same point is the one in use.
        assert_eq!(of("/tmp/x"), Some("ext4"));
        assert_eq!(filesystem_of("", Path::new("/x")), None);
        assert_eq!(unescape_mount_point(r"a\040b\134c\9"), "a b\\c\\9");
    }

    #[test]
    fn after_a_failed_directory_sync_every_later_one_fails() {
        let syncs = DirSyncs::default();
        syncs.run(|| Ok(())).unwrap();
        let eio = syncs
            .run(|| Err(io::Error::from_raw_os_error(5)))
            .unwrap_err();
        assert_eq!(eio.raw_os_error(), Some(5));
        let mut ran = false;
        let later = syncs
            .run(|| {
                ran = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!ran, "no sync may succeed after one failed");
        assert!(
            later.to_string().contains("earlier directory fsync failed"),
            "{later}"
        );
    }

    #[test]
    fn directory_syncs_run_one_at_a_time() {
        let syncs = Arc::new(DirSyncs::default());
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (syncs, running, most) = (syncs.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        syncs
                            .run(|| {
                                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                running.fetch_sub(1, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_reopened_handle_is_the_same_file_or_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let file = storage.create("a").unwrap();
        let again = file.reopen().unwrap();
        again.write_all_at(b"through the second handle", 0).unwrap();
        again.sync_data().unwrap();
        let mut buf = [0u8; 7];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"through");
        // Renamed away and replaced: the path names another file now.
        storage.rename("a", "b").unwrap();
        drop(storage.create("a").unwrap());
        let err = file.reopen().unwrap_err();
        assert!(err.to_string().contains("renamed or replaced"), "{err}");
    }

    #[test]
    fn zero_fill_is_asked_for_only_where_it_helps() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let fs = filesystem_of(&mounts, &dir.path().canonicalize().unwrap());
        assert_eq!(
            storage.zero_fill_helps(),
            matches!(fs, Some("ext4" | "ext3" | "ext2" | "xfs")),
            "{fs:?}"
        );
    }
}
