//! The real filesystem backend. This module holds the only `unsafe` code of
//! Annals: the `mmap` call.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
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
}

impl FsStorage {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        Ok(FsStorage {
            dir,
            lock: Mutex::new(None),
        })
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path_of(name)?)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path_of(name)?)?;
        Ok(Arc::new(FsFile { file }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path_of(name)?)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path_of(from)?, self.path_of(to)?)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn try_lock(&self) -> io::Result<()> {
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

    fn zero_fill_helps(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    #[allow(unsafe_code)]
    fn map(&self) -> io::Result<Mapping> {
        if self.len()? == 0 {
            // mmap of zero bytes fails on Linux; an empty mapping is the same thing.
            return Ok(Mapping::new(Arc::new(Vec::<u8>::new()), true));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped file could be
        // truncated or modified behind our back. Annals holds an exclusive
        // lock on the directory for as long as any mapping lives, so no other
        // process writes these files. Within the process, segment files are
        // only truncated during recovery, before any mapping is made, and are
        // preallocated to their full size before being mapped, so mapped pages
        // never disappear (no SIGBUS). Bytes past the durable watermark may
        // still be written while mapped; readers never look at them.
        // Readers hand out `Bytes` that keep the mapping alive beyond the
        // store (and its lock): they only cover verified frames below the
        // durable end, which no later open truncates (recovery cuts only
        // after the last valid frame), and unlinking a file keeps its pages.
        let map = unsafe { memmap2::MmapOptions::new().map(&self.file)? };
        Ok(Mapping::new(Arc::new(map), true))
    }
}
