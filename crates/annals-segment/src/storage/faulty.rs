//! A storage wrapper that injects I/O faults: fail the Nth operation of a
//! kind, once or from then on, with EIO, ENOSPC, or a short write (part of
//! the buffer reaches the file, then the call fails). Deterministic: the
//! same plan on the same workload fails at the same call.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, Storage, StorageFile};

/// The kinds of operation a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `write_all_at`.
    Write,
    /// `sync_data` and `sync_all`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `open` and `create`.
    Open,
    /// `read_exact_at` and `map`.
    Read,
    /// `set_len`.
    Truncate,
    /// `remove`.
    Remove,
}

const OPS: [FaultOp; 8] = [
    FaultOp::Write,
    FaultOp::Sync,
    FaultOp::SyncDir,
    FaultOp::Rename,
    FaultOp::Open,
    FaultOp::Read,
    FaultOp::Truncate,
    FaultOp::Remove,
];

/// What an injected fault looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`.
    Eio,
    /// `ENOSPC` (disk full).
    NoSpace,
    /// For writes: half the buffer is written, then `ENOSPC`. Other
    /// operations fail with `EIO`.
    ShortWrite,
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Which operation.
    pub op: FaultOp,
    /// Fail the `nth` call of that kind (counted from 0, from when the fault
    /// was planned).
    pub nth: u64,
    /// Keep failing every later call of that kind, too.
    pub persistent: bool,
    /// How it fails.
    pub kind: FaultKind,
}

#[derive(Debug, Default)]
struct Plan {
    counts: [AtomicU64; 8],
    faults: Mutex<Vec<(Fault, u64)>>,
    injected: AtomicU64,
    /// Microseconds every sync sleeps before it runs.
    sync_delay_us: AtomicU64,
    /// Writeback errors so far (see [`FaultyStorage::writeback_error`]).
    writeback_errors: AtomicU64,
    /// Name prefixes whose removals and renames pass uncounted (see
    /// [`FaultyStorage::spare_names_starting_with`]).
    spared: Mutex<Vec<String>>,
}

impl Plan {
    /// Counts the call and returns the fault to inject, if any.
    fn check(&self, op: FaultOp) -> Option<FaultKind> {
        let slot = OPS.iter().position(|o| *o == op).unwrap_or(0);
        let n = self
            .counts
            .get(slot)
            .map_or(0, |c| c.fetch_add(1, Ordering::SeqCst));
        let faults = self.faults.lock();
        let hit = faults.iter().find(|(f, base)| {
            f.op == op && (n == base + f.nth || (f.persistent && n > base + f.nth))
        });
        let kind = hit.map(|(f, _)| f.kind);
        if kind.is_some() {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        kind
    }

    /// Whether `name` is spared from counting and faults.
    fn spares(&self, name: &str) -> bool {
        self.spared
            .lock()
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }

    fn sync_delay(&self) {
        let us = self.sync_delay_us.load(Ordering::SeqCst);
        if us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
    }

    fn count(&self, op: FaultOp) -> u64 {
        let slot = OPS.iter().position(|o| *o == op).unwrap_or(0);
        self.counts
            .get(slot)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

fn error(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::NoSpace => io::Error::from_raw_os_error(28), // ENOSPC
        FaultKind::Eio | FaultKind::ShortWrite => io::Error::from_raw_os_error(5), // EIO
    }
}

/// Wraps another storage and injects the planned faults.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    plan: Arc<Plan>,
}

impl FaultyStorage {
    /// Wraps `inner` with no faults planned.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        FaultyStorage {
            inner,
            plan: Arc::default(),
        }
    }

    /// Plans a fault, counting calls of its kind from now.
    pub fn inject(&self, fault: Fault) {
        let base = self.plan.count(fault.op);
        self.plan.faults.lock().push((fault, base));
    }

    /// From now on, removals and renames of files whose names start with
    /// `prefix` pass through: not counted, never failed. For a test that
    /// aims its faults at one component's files while another component
    /// removes and renames its own on the same storage at moments the test
    /// does not control (e.g. the secondary index's `secondary-` files on
    /// the index merge thread).
    pub fn spare_names_starting_with(&self, prefix: &str) {
        self.plan.spared.lock().push(prefix.to_owned());
    }

    /// Removes every planned fault (space is back, the device is healthy).
    pub fn heal(&self) {
        self.plan.faults.lock().clear();
    }

    /// Makes every later `sync_data`/`sync_all` take `delay` longer (it
    /// sleeps, then syncs): a slow disk, for tests of what concurrency
    /// does while an fsync runs.
    pub fn slow_syncs(&self, delay: std::time::Duration) {
        self.plan
            .sync_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Simulates a failed writeback of cached pages, as the kernel reports
    /// it: the next `sync_data`/`sync_all` through *each* handle open now
    /// fails with `EIO`, once (Linux's `errseq_t`, per open file
    /// description). Handles from [`StorageFile::reopen`] are descriptions
    /// of their own; clones of one `Arc` share one, and with it the one
    /// report.
    pub fn writeback_error(&self) {
        self.plan.writeback_errors.fetch_add(1, Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.plan.injected.load(Ordering::SeqCst)
    }

    /// How many calls of `op` were made so far.
    pub fn calls(&self, op: FaultOp) -> u64 {
        self.plan.count(op)
    }

    fn wrap(&self, file: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        wrap(file, &self.plan)
    }
}

impl Storage for FaultyStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(kind) = self.plan.check(FaultOp::Open) {
            return Err(error(kind));
        }
        Ok(self.wrap(self.inner.create(name)?))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(kind) = self.plan.check(FaultOp::Open) {
            return Err(error(kind));
        }
        Ok(self.wrap(self.inner.open(name)?))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        if self.plan.spares(name) {
            return self.inner.remove(name);
        }
        match self.plan.check(FaultOp::Remove) {
            Some(kind) => Err(error(kind)),
            None => self.inner.remove(name),
        }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        if self.plan.spares(from) {
            return self.inner.rename(from, to);
        }
        match self.plan.check(FaultOp::Rename) {
            Some(kind) => Err(error(kind)),
            None => self.inner.rename(from, to),
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        match self.plan.check(FaultOp::SyncDir) {
            Some(kind) => Err(error(kind)),
            None => self.inner.sync_dir(),
        }
    }

    fn try_lock(&self) -> io::Result<()> {
        self.inner.try_lock()
    }

    fn describe(&self) -> String {
        format!("faulty:{}", self.inner.describe())
    }
}

fn wrap(file: Arc<dyn StorageFile>, plan: &Arc<Plan>) -> Arc<dyn StorageFile> {
    Arc::new(FaultyFile {
        inner: file,
        plan: Arc::clone(plan),
        reported: AtomicU64::new(plan.writeback_errors.load(Ordering::SeqCst)),
    })
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    plan: Arc<Plan>,
    /// Writeback errors this handle (one open file description) has
    /// reported.
    reported: AtomicU64,
}

impl FaultyFile {
    /// A planned fault for this sync, or a writeback error this handle has
    /// not reported yet.
    fn sync_fault(&self) -> Option<FaultKind> {
        self.plan.sync_delay();
        let planned = self.plan.check(FaultOp::Sync);
        let errors = self.plan.writeback_errors.load(Ordering::SeqCst);
        let unreported = self.reported.fetch_max(errors, Ordering::SeqCst) < errors;
        planned.or(unreported.then_some(FaultKind::Eio))
    }
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self.plan.check(FaultOp::Read) {
            Some(kind) => Err(error(kind)),
            None => self.inner.read_exact_at(buf, offset),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.plan.check(FaultOp::Write) {
            Some(FaultKind::ShortWrite) => {
                let half = buf.get(..buf.len() / 2).unwrap_or_default();
                self.inner.write_all_at(half, offset)?;
                Err(error(FaultKind::NoSpace))
            }
            Some(kind) => Err(error(kind)),
            None => self.inner.write_all_at(buf, offset),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self.plan.check(FaultOp::Truncate) {
            Some(kind) => Err(error(kind)),
            None => self.inner.set_len(len),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        match self.sync_fault() {
            Some(kind) => Err(error(kind)),
            None => self.inner.sync_data(),
        }
    }

    fn sync_all(&self) -> io::Result<()> {
        match self.sync_fault() {
            Some(kind) => Err(error(kind)),
            None => self.inner.sync_all(),
        }
    }

    fn map(&self) -> io::Result<Mapping> {
        match self.plan.check(FaultOp::Read) {
            Some(kind) => Err(error(kind)),
            None => self.inner.map(),
        }
    }

    /// Not counted as an `open` (the zero filler reopens on its own
    /// thread, at no fixed point of a test's plan).
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(wrap(self.inner.reopen()?, &self.plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn a_writeback_error_is_reported_once_per_handle() {
        let faulty = FaultyStorage::new(Arc::new(MemStorage::new()));
        let writer = faulty.create("f").unwrap();
        let shared = Arc::clone(&writer);
        let own = writer.reopen().unwrap();
        writer.write_all_at(b"data", 0).unwrap();
        faulty.writeback_error();
        // One report for the description the writer and `shared` share...
        assert!(shared.sync_data().is_err());
        assert!(writer.sync_data().is_ok());
        // ...and one for the reopened handle, whoever synced first.
        assert!(own.sync_all().is_err());
        assert!(own.sync_data().is_ok());
        // A handle opened after the error was reported does not see it.
        let later = own.reopen().unwrap();
        assert!(later.sync_data().is_ok());
    }
}
