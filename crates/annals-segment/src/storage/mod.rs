//! All file I/O of Annals goes through [`Storage`]: one flat directory of
//! named files. The real implementation is [`FsStorage`]; [`MemStorage`]
//! keeps files in memory and can simulate a crash by dropping or tearing
//! everything that was written but not synced. Scenarios are written once
//! against the trait and run on every backend.

pub mod bulk;
mod faulty;
mod fs;
mod mem;

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

pub use faulty::{Fault, FaultKind, FaultOp, FaultyStorage};
pub use fs::FsStorage;
pub use mem::{CrashMode, MemStorage};

/// A flat directory of files.
///
/// Names are plain file names (no separators). Creating, renaming or removing
/// a name is durable only after [`Storage::sync_dir`].
pub trait Storage: Send + Sync + Debug {
    /// Names of all files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Creates a new, empty file; fails if it exists.
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// Takes the exclusive lock on the directory for the life of this
    /// storage object. Fails with [`io::ErrorKind::WouldBlock`] when another
    /// handle, in this process or another, holds it.
    fn try_lock(&self) -> io::Result<()>;
    /// A human-readable description of the location, for error messages.
    fn describe(&self) -> String;
    /// Where the file `name` lives on the real filesystem, for the bulk
    /// copies of a backup ([`bulk`]: hard links, `copy_file_range`).
    /// `None` (the default) for storage that is not a plain directory:
    /// a backup then copies through [`Storage::open`].
    fn file_path(&self, name: &str) -> Option<std::path::PathBuf> {
        let _ = name;
        None
    }
    /// Whether writing zeros ahead of the log's writer makes its commits
    /// cheaper (a filesystem that allocates blocks on first write and
    /// overwrites in place). Default `false`.
    fn zero_fill_helps(&self) -> bool {
        false
    }
    /// Whether segment files should be allocated in steps ahead of the
    /// writer rather than whole when created: where an allocated byte
    /// costs memory (tmpfs, ramfs), a 64 MiB segment allocated up front
    /// would hold 64 MiB of RAM for one event. Default `false`.
    fn allocate_in_steps(&self) -> bool {
        false
    }
}

/// One open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (one `pwrite` where the OS allows).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves real space for `len` bytes at `offset` and extends the file
    /// to cover them if it is shorter (`fallocate` mode 0): a later write
    /// into the range cannot fail for lack of space, and a full filesystem
    /// is reported here. [`io::ErrorKind::Unsupported`] where the storage
    /// cannot (the default): the caller then extends with
    /// [`set_len`](StorageFile::set_len), which reserves nothing.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this storage cannot reserve space",
        ))
    }
    /// `fdatasync`: makes written data (and the length) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: makes data and all metadata durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Maps the file read-only as it is now.
    fn map(&self) -> io::Result<Mapping>;
    /// Another handle on the same file, with its own open file description.
    ///
    /// A failed writeback is reported by the next `fsync` through *each*
    /// description open when it happened, and through only one call per
    /// description (Linux's `errseq_t`): a second thread syncing through
    /// the same handle can take the report and leave the writer's own
    /// `fdatasync` returning success for data that was lost. A thread that
    /// syncs beside the writer does so through a handle of its own.
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>>;
}

/// Read-only bytes of a mapped file, shareable without copying: readers
/// hand out [`Bytes`](bytes::Bytes) that keep the mapping alive.
///
/// A *live* mapping (a real `mmap`) shows later writes to the mapped range;
/// a snapshot mapping (test backends) shows the file as it was when mapped,
/// and readers must map again to see bytes written since.
#[derive(Clone)]
pub struct Mapping {
    shared: bytes::Bytes,
    live: bool,
}

/// Lets `Bytes` own a mapping.
struct MappingOwner(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl AsRef<[u8]> for MappingOwner {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl Mapping {
    /// Wraps mapped bytes.
    pub fn new(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>, live: bool) -> Self {
        Mapping {
            shared: bytes::Bytes::from_owner(MappingOwner(bytes)),
            live,
        }
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.shared
    }

    /// The mapped bytes as a shareable buffer (cloning it copies nothing).
    pub fn shared(&self) -> &bytes::Bytes {
        &self.shared
    }

    /// Whether later writes are visible through this mapping.
    pub fn is_live(&self) -> bool {
        self.live
    }
}

impl Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("len", &self.bytes().len())
            .field("live", &self.live)
            .finish()
    }
}
