//! Property: a read-only open whose scan reads a frame before the owner's
//! `write` of it has landed (bytes half there), and later frames after,
//! ends its view before that frame instead of reporting damage; the same
//! bytes torn for good are still damage. Method: deterministic, through a
//! storage wrapper that returns the active segment's bytes around one
//! offset torn on the first read after each directory listing (each open
//! attempt lists the directory first) and whole on any read after that:
//! the race of `annals stats` beside `annals stress` (13 of 30 opens
//! failed before the fix of commit 1cef814), without the timing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::storage::{FsStorage, Mapping, Storage, StorageFile};
use annals::{EventData, ExpectedVersion, Options, Store};

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

/// Tears `torn_at..torn_at + 32` of one file on the first read after
/// `armed` is set (by a listing), or on every read with `always`.
#[derive(Debug)]
struct TornFile {
    inner: Arc<dyn StorageFile>,
    torn_at: u64,
    armed: Arc<AtomicBool>,
    always: bool,
}

impl StorageFile for TornFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let covers = offset <= self.torn_at && self.torn_at + 32 <= end;
        if covers && (self.always || self.armed.swap(false, Ordering::SeqCst)) {
            let at = (self.torn_at - offset) as usize;
            buf[at..at + 32].fill(0);
        }
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.inner.sync_all()
    }
    fn map(&self) -> std::io::Result<Mapping> {
        self.inner.map()
    }
    fn reopen(&self) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.reopen()
    }
}

/// A read-only directory whose active segment is a [`TornFile`].
#[derive(Debug)]
struct Racing {
    inner: FsStorage,
    active: String,
    torn_at: u64,
    armed: Arc<AtomicBool>,
    always: bool,
    /// Cleared once the open is done: the owner's write has landed.
    racing: AtomicBool,
}

impl Storage for Racing {
    fn list(&self) -> std::io::Result<Vec<String>> {
        if self.racing.load(Ordering::SeqCst) {
            self.armed.store(true, Ordering::SeqCst);
        }
        self.inner.list()
    }
    fn create(&self, name: &str) -> std::io::Result<Arc<dyn StorageFile>> {
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> std::io::Result<Arc<dyn StorageFile>> {
        let file = self.inner.open(name)?;
        if name != self.active {
            return Ok(file);
        }
        Ok(Arc::new(TornFile {
            inner: file,
            torn_at: self.torn_at,
            armed: Arc::clone(&self.armed),
            always: self.always,
        }))
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
}

/// A store as a live owner leaves it (no clean-close marker), each event
/// its own commit (so every frame was written after the one before it was
/// durable); its active segment's name and an offset inside the data of
/// a frame in its middle.
fn live_store(dir: &Path) -> (Vec<annals::RecordedEvent>, String, u64) {
    let store = Store::open_with(dir, small()).unwrap();
    for i in 0..300u64 {
        let data = EventData::new("Changed", format!("{i}-{}", "x".repeat(200)));
        store
            .append(&format!("s-{}", i % 5), ExpectedVersion::Any, vec![data])
            .unwrap()
            .unwrap();
    }
    let all = store.read_all(0, usize::MAX).unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.join("CLEAN")).unwrap();
    let mut segments: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segments.sort();
    let active = segments.pop().unwrap();
    // What a live owner has not written yet: the active segment's frame
    // index (written at close) and index runs vouching for its end.
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".run") || name == active.replace(".seg", ".fidx") {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
    let bytes = std::fs::read(dir.join(&active)).unwrap();
    let data_end = bytes.iter().rposition(|&b| b != 0).unwrap();
    let torn_at = (data_end / 2..data_end)
        .find(|&at| bytes[at..at + 32].iter().all(|&b| b == b'x'))
        .unwrap();
    (all, active, torn_at as u64)
}

fn racing(dir: &Path, active: String, torn_at: u64, always: bool) -> Arc<Racing> {
    Arc::new(Racing {
        inner: FsStorage::open_read_only(dir).unwrap(),
        active,
        torn_at,
        armed: Arc::new(AtomicBool::new(false)),
        always,
        racing: AtomicBool::new(true),
    })
}

/// Regression (commit 1cef814): the view ended in a frame read half
/// written, followed by a frame written after it was durable, was
/// reported as `Corrupt` on every open attempt.
#[test]
fn a_frame_read_half_written_ends_the_view_instead_of_being_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (all, active, torn_at) = live_store(dir.path());
    let storage = racing(dir.path(), active, torn_at, false);
    let store = Store::open_storage_read_only(storage.clone(), small()).unwrap();
    // The owner's write has landed.
    storage.racing.store(false, Ordering::SeqCst);
    storage.armed.store(false, Ordering::SeqCst);
    let seen = store.read_all(0, usize::MAX).unwrap();
    assert!(!seen.is_empty() && seen.len() < all.len(), "{}", seen.len());
    assert_eq!(seen, all[..seen.len()].to_vec());
    // Read afresh, everything is there.
    assert_eq!(store.refresh().unwrap(), all.len() as u64);
    assert_eq!(store.read_all(0, usize::MAX).unwrap(), all);
}

#[test]
fn the_same_bytes_torn_for_good_are_still_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (_, active, torn_at) = live_store(dir.path());
    let error = Store::open_storage_read_only(racing(dir.path(), active, torn_at, true), small())
        .unwrap_err();
    assert!(error.is_corruption(), "{error}");
}
