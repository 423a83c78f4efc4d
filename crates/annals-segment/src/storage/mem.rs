//! An in-memory backend that remembers what was synced, so a test can take
//! the image a crash would leave behind: every write and every directory
//! change that was not made durable is dropped, torn at sector granularity
//! or garbled, deterministically from a seed.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, Storage, StorageFile};
use crate::rng::SplitMix64;

/// Sector size used to tear unsynced writes.
const SECTOR_BYTES: u64 = 512;

/// What a simulated crash does to data that was not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Unsynced writes and directory changes are all lost.
    DropUnsynced,
    /// Each unsynced sector independently survives or is lost; each unsynced
    /// directory change independently survives or is lost.
    TearUnsynced,
    /// Like `TearUnsynced`, and a lost sector may come back as random bytes.
    GarbleUnsynced,
}

#[derive(Debug, Default)]
struct FileData {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Byte ranges written (or zeroed by `set_len`) since the last sync.
    dirty: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
struct State {
    next_file_id: u64,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    files: HashMap<u64, Arc<Mutex<FileData>>>,
    lock_holder: Option<u64>,
}

static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// An in-memory directory with crash simulation.
///
/// Several handles ([`MemStorage::handle`]) share one directory; the lock
/// taken by [`Storage::try_lock`] belongs to the handle and is released when
/// the handle is dropped, like a file lock at process exit.
#[derive(Debug)]
pub struct MemStorage {
    state: Arc<Mutex<State>>,
    handle_id: u64,
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStorage {
    /// A new, empty directory.
    pub fn new() -> Self {
        MemStorage {
            state: Arc::new(Mutex::new(State::default())),
            handle_id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Another handle on the same directory.
    pub fn handle(&self) -> MemStorage {
        MemStorage {
            state: Arc::clone(&self.state),
            handle_id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The directory a crash at this instant could leave behind, as a new,
    /// independent, unlocked directory. Deterministic for a given seed.
    pub fn crash_image(&self, seed: u64, mode: CrashMode) -> MemStorage {
        let mut rng = SplitMix64::new(seed);
        let state = self.state.lock();
        let mut names = state.durable_names.clone();
        if mode != CrashMode::DropUnsynced {
            // Directory changes that were not synced may or may not have reached disk.
            for (name, id) in &state.names {
                if state.durable_names.get(name) != Some(id) && rng.chance(2) {
                    names.insert(name.clone(), *id);
                }
            }
            for name in state.durable_names.keys() {
                if !state.names.contains_key(name) && rng.chance(2) {
                    names.remove(name);
                }
            }
        }
        let mut image = State::default();
        for (name, id) in names {
            let Some(file) = state.files.get(&id) else {
                continue;
            };
            let file = file.lock();
            let data = crash_file(&file, &mut rng, mode);
            let new_id = image.next_file_id;
            image.next_file_id += 1;
            image.names.insert(name.clone(), new_id);
            image.durable_names.insert(name, new_id);
            image.files.insert(
                new_id,
                Arc::new(Mutex::new(FileData {
                    synced: data.clone(),
                    data,
                    dirty: Vec::new(),
                })),
            );
        }
        MemStorage {
            state: Arc::new(Mutex::new(image)),
            handle_id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Current contents of a file (synced or not), for tests.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let id = state.names.get(name)?;
        let file = state.files.get(id)?.lock();
        Some(file.data.clone())
    }

    /// Replaces the contents of a file durably, for tests that damage files.
    pub fn write_file(&self, name: &str, bytes: &[u8]) {
        let mut state = self.state.lock();
        let id = match state.names.get(name) {
            Some(id) => *id,
            None => {
                let id = state.next_file_id;
                state.next_file_id += 1;
                state.names.insert(name.to_owned(), id);
                state.durable_names.insert(name.to_owned(), id);
                state.files.insert(id, Arc::default());
                id
            }
        };
        if let Some(file) = state.files.get(&id) {
            let mut file = file.lock();
            file.data = bytes.to_vec();
            file.synced = bytes.to_vec();
            file.dirty.clear();
        }
    }
}

fn crash_file(file: &FileData, rng: &mut SplitMix64, mode: CrashMode) -> Vec<u8> {
    let mut out = file.synced.clone();
    if mode == CrashMode::DropUnsynced {
        return out;
    }
    for &(start, len) in &file.dirty {
        let end = start + len;
        let mut sector = start - start % SECTOR_BYTES;
        while sector < end {
            let lo = sector.max(start);
            let hi = (sector + SECTOR_BYTES).min(end);
            sector += SECTOR_BYTES;
            let keep_new = rng.chance(2);
            let garble = mode == CrashMode::GarbleUnsynced && !keep_new && rng.chance(4);
            if !keep_new && !garble {
                continue;
            }
            let (lo, hi) = (lo as usize, hi as usize);
            if out.len() < hi {
                out.resize(hi, 0);
            }
            for i in lo..hi {
                let byte = if garble {
                    rng.next_u64() as u8
                } else {
                    file.data.get(i).copied().unwrap_or(0)
                };
                if let Some(slot) = out.get_mut(i) {
                    *slot = byte;
                }
            }
        }
    }
    out
}

impl Drop for MemStorage {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.lock_holder == Some(self.handle_id) {
            state.lock_holder = None;
        }
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state.lock().names.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.state.lock();
        if state.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} exists"),
            ));
        }
        let id = state.next_file_id;
        state.next_file_id += 1;
        let data: Arc<Mutex<FileData>> = Arc::default();
        state.files.insert(id, Arc::clone(&data));
        state.names.insert(name.to_owned(), id);
        Ok(Arc::new(MemFile { data }))
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let state = self.state.lock();
        let id = state.names.get(name).ok_or_else(|| not_found(name))?;
        let data = state.files.get(id).ok_or_else(|| not_found(name))?;
        Ok(Arc::new(MemFile {
            data: Arc::clone(data),
        }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.names.remove(name).ok_or_else(|| not_found(name))?;
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_owned(), id);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.durable_names = state.names.clone();
        Ok(())
    }

    fn try_lock(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        match state.lock_holder {
            Some(holder) if holder != self.handle_id => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked",
            )),
            _ => {
                state.lock_holder = Some(self.handle_id);
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        "<memory>".to_owned()
    }
}

#[derive(Debug)]
struct MemFile {
    data: Arc<Mutex<FileData>>,
}

impl StorageFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().data.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let file = self.data.lock();
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = file.data.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut file = self.data.lock();
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        if let Some(dst) = file.data.get_mut(start..end) {
            dst.copy_from_slice(buf);
        }
        file.dirty.push((offset, buf.len() as u64));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut file = self.data.lock();
        let len_usize = usize::try_from(len).map_err(|_| eof())?;
        let old = file.data.len() as u64;
        file.data.resize(len_usize, 0);
        if len > old {
            file.dirty.push((old, len - old));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut file = self.data.lock();
        let FileData {
            data,
            synced,
            dirty,
        } = &mut *file;
        synced.resize(data.len(), 0);
        for (start, len) in dirty.drain(..) {
            let lo = (start as usize).min(data.len());
            let hi = ((start + len) as usize).min(data.len());
            if let (Some(dst), Some(src)) = (synced.get_mut(lo..hi), data.get(lo..hi)) {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn map(&self) -> io::Result<Mapping> {
        Ok(Mapping::new(Arc::new(self.data.lock().data.clone()), false))
    }

    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(MemFile {
            data: Arc::clone(&self.data),
        }))
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file")
}
