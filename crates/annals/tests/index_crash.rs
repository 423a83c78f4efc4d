//! Crashes and the index: a crash replays only the tail after the
//! checkpoint, and a crash at any step of writing or merging index files
//! loses nothing.
//!
//! Crash images are taken by a storage wrapper at every step of every index
//! file write, rename and removal (so "killed while an index file is being
//! written or merged" is covered at each step, not by chance).

use std::io;
use std::sync::Arc;

use annals::storage::{CrashMode, Mapping, MemStorage, Storage, StorageFile};
use annals::{Direction, ExpectedVersion, Options, Store};
use parking_lot::Mutex;

mod common;
use common::*;

#[test]
fn after_a_crash_only_the_tail_after_the_checkpoint_is_replayed() {
    let mem = MemStorage::new();
    let options = Options::default().index_buffer_events(64);
    let mut model = Model::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    fill(&store, &mut model, 1_000, 13, 1);
    wait_for("runs", || store.stats().index_checkpoint >= 960);
    let image = mem.crash_image(7, CrashMode::TearUnsynced);
    drop(store);
    let store = Store::open_storage(Arc::new(image), options).unwrap();
    let report = store.index_report().clone();
    assert!(report.checkpoint >= 960, "{report:?}");
    assert_eq!(report.replayed, 1_000 - report.checkpoint);
    check_against(&store, &model);
    store.verify().unwrap();
}

/// A storage that takes a crash image of its memory backend before every
/// index file operation, recording how many appends were acknowledged then.
#[derive(Debug)]
struct Imaging {
    inner: MemStorage,
    acked: Arc<Mutex<usize>>,
    images: Arc<Mutex<Vec<Image>>>,
}

/// A crash image, the appends acknowledged when it was taken, and the step.
type Image = (MemStorage, usize, &'static str);

impl Imaging {
    fn image(&self, step: &'static str) {
        let acked = *self.acked.lock();
        let mut images = self.images.lock();
        let mode = match images.len() % 3 {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TearUnsynced,
            _ => CrashMode::GarbleUnsynced,
        };
        let image = self.inner.crash_image(images.len() as u64, mode);
        images.push((image, acked, step));
    }
}

fn is_index(name: &str) -> bool {
    name.starts_with("index-")
}

impl Storage for Imaging {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = self.inner.create(name)?;
        if !is_index(name) {
            return Ok(file);
        }
        self.image("created");
        Ok(Arc::new(ImagingFile {
            inner: file,
            storage: Imaging {
                inner: self.inner.handle(),
                acked: Arc::clone(&self.acked),
                images: Arc::clone(&self.images),
            },
        }))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        if is_index(name) {
            self.image("before remove");
        }
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let index = is_index(from);
        if index {
            self.image("before rename");
        }
        self.inner.rename(from, to)?;
        if index {
            self.image("after rename");
        }
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn try_lock(&self) -> io::Result<()> {
        self.inner.try_lock()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[derive(Debug)]
struct ImagingFile {
    inner: Arc<dyn StorageFile>,
    storage: Imaging,
}

impl StorageFile for ImagingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)?;
        self.storage.image("written");
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()?;
        self.storage.image("synced");
        Ok(())
    }
    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ImagingFile {
            inner: self.inner.reopen()?,
            storage: Imaging {
                inner: self.storage.inner.handle(),
                acked: Arc::clone(&self.storage.acked),
                images: Arc::clone(&self.storage.images),
            },
        }))
    }
}

#[test]
fn a_crash_at_any_step_of_writing_or_merging_index_files_loses_nothing() {
    let mem = MemStorage::new();
    let acked = Arc::new(Mutex::new(0usize));
    let images = Arc::new(Mutex::new(Vec::new()));
    let storage = Imaging {
        inner: mem.handle(),
        acked: Arc::clone(&acked),
        images: Arc::clone(&images),
    };
    // Small segments: every image copies every file.
    let options = || {
        Options::default()
            .index_buffer_events(16)
            .segment_bytes(32 << 10)
    };
    let store = Store::open_storage(Arc::new(storage), options()).unwrap();
    let mut log: Vec<(String, u64, u64)> = Vec::new();
    let mut model = Model::new();
    for i in 0..400u64 {
        let stream = format!("c-{}", i % 9);
        let positions = model.entry(stream.clone()).or_default();
        let version = positions.len() as u64;
        let written = store
            .append(&stream, ExpectedVersion::Any, vec![event(&stream, version)])
            .unwrap()
            .unwrap();
        positions.push(written.first_position);
        log.push((stream, version, written.first_position));
        *acked.lock() = log.len();
    }
    drop(store);
    let images = std::mem::take(&mut *images.lock());
    let steps: std::collections::BTreeSet<&str> = images.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(
        steps.len(),
        6,
        "every step of an index write was imaged: {steps:?}"
    );
    assert!(
        images.iter().any(|(_, _, s)| *s == "before remove"),
        "merges ran (their inputs were removed)"
    );
    let mut replayed_less_than_all = 0;
    for (k, (image, acked, step)) in images.into_iter().enumerate() {
        let store = Store::open_storage(Arc::new(image), options())
            .unwrap_or_else(|e| panic!("image {k} ({step}): {e}"));
        let end = store.position_end();
        assert!(
            end >= acked as u64,
            "image {k} ({step}): lost acknowledged appends"
        );
        let report = store.index_report().clone();
        assert_eq!(report.replayed, end - report.checkpoint, "image {k}");
        replayed_less_than_all += usize::from(report.checkpoint > 0);
        for (stream, version, position) in log.iter().take(acked) {
            let got = store
                .read_stream(stream, *version, Direction::Forward, 1)
                .unwrap();
            let first = got
                .first()
                .unwrap_or_else(|| panic!("image {k} ({step}): {stream}@{version} missing"));
            assert_eq!(first.position, *position, "image {k} ({step})");
        }
        store
            .verify()
            .unwrap_or_else(|e| panic!("image {k} ({step}): {e}"));
    }
    assert!(
        replayed_less_than_all > 0,
        "some images had a persisted checkpoint"
    );
}
