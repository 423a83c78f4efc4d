//! The snapshot log: frames appended to `snapshots-NNNNNNNNNNNNNNNN.snap`
//! files (FORMAT.md), one `write` and one `fdatasync` per save, under one
//! lock, and the in-memory map stream → version → where its snapshot lies,
//! rebuilt at open by reading every frame.
//!
//! Because each save is synced before the next one starts, only the last
//! frame of the newest file can be unsynced when the process dies: open
//! cuts an invalid frame there when it reaches the end of the file (a torn
//! write) and refuses anything else as `Corrupt { file, offset }`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use annals_segment::storage::{Storage, StorageFile};
use parking_lot::Mutex;

mod verify;

use super::format::{self, FrameFields, FILE_HEADER_BYTES, FRAME_HEADER_BYTES};
use crate::error::{Error, Result};

/// Prefix of snapshot log file names.
const FILE_PREFIX: &str = "snapshots-";
/// Suffix of snapshot log file names.
const FILE_SUFFIX: &str = ".snap";
/// Suffix of a snapshot file being created (removed at open).
const TEMP_SUFFIX: &str = ".snap.tmp";

/// Where one snapshot's frame lies.
#[derive(Debug, Clone, Copy)]
struct Location {
    file: u64,
    offset: u64,
    len: u32,
}

/// One open snapshot file.
#[derive(Debug)]
struct SnapFile {
    name: String,
    handle: Arc<dyn StorageFile>,
    salt: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Every snapshot file by number; the highest is appended to.
    files: BTreeMap<u64, Arc<SnapFile>>,
    /// End of the newest file's last valid frame.
    end: u64,
    /// stream → version → the newest snapshot saved at that version.
    streams: HashMap<String, BTreeMap<u64, Location>>,
    /// Set by a failed write or sync: saves are refused until reopen.
    poisoned: Option<String>,
}

/// What opening the store found in its snapshot log
/// ([`Store::snapshot_recovery`](crate::Store::snapshot_recovery)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotRecovery {
    /// Snapshot frames read.
    pub frames: u64,
    /// Bytes of a torn frame cut from the end of the newest file.
    pub torn_bytes: u64,
}

/// A snapshot read back: its verified frame and where it was.
pub(crate) struct Loaded {
    /// The stream version the snapshot stands for.
    pub version: u64,
    pub frame: Vec<u8>,
    pub salt: u64,
}

/// The snapshot log of one store.
#[derive(Debug)]
pub(crate) struct SnapshotLog {
    storage: Arc<dyn Storage>,
    state: Mutex<State>,
    recovery: SnapshotRecovery,
    /// Opened by a read-only store: nothing is ever written (no leftover
    /// removed, no torn frame cut, no save).
    read_only: bool,
}

fn file_name(number: u64) -> String {
    format!("{FILE_PREFIX}{number:016}{FILE_SUFFIX}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    (digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn io(op: &'static str, file: &str, e: std::io::Error) -> Error {
    annals_segment::Error::io(op, file.to_owned(), e).into()
}

impl SnapshotLog {
    /// Opens the snapshot log in `storage`: removes a file left half
    /// created, reads every frame of every snapshot file, cuts a torn last
    /// frame. A store without snapshot files opens with an empty log and
    /// nothing written. `read_only`: writes nothing at all — a leftover
    /// temporary file is ignored and a torn last frame ends the log without
    /// being cut (the owner may still be writing it).
    pub(crate) fn open(storage: Arc<dyn Storage>, read_only: bool) -> Result<SnapshotLog> {
        let names = storage
            .list()
            .map_err(|e| io("list", &storage.describe(), e))?;
        let mut removed = false;
        for name in names
            .iter()
            .filter(|n| !read_only && n.starts_with(FILE_PREFIX) && n.ends_with(TEMP_SUFFIX))
        {
            storage.remove(name).map_err(|e| io("remove", name, e))?;
            removed = true;
        }
        if removed {
            storage
                .sync_dir()
                .map_err(|e| io("sync_dir", &storage.describe(), e))?;
        }
        let mut numbers: Vec<u64> = names.iter().filter_map(|n| parse_file_name(n)).collect();
        numbers.sort_unstable();
        let mut state = State::default();
        let mut recovery = SnapshotRecovery::default();
        let newest = numbers.last().copied();
        for number in numbers {
            let name = file_name(number);
            let handle = storage.open(&name).map_err(|e| io("open", &name, e))?;
            let file = Arc::new(SnapFile {
                salt: read_header(&name, &*handle)?,
                name,
                handle,
            });
            let end = scan(
                &file,
                number,
                Some(number) == newest,
                read_only,
                &mut state,
                &mut recovery,
            )?;
            state.files.insert(number, file);
            state.end = end;
        }
        Ok(SnapshotLog {
            storage,
            state: Mutex::new(state),
            recovery,
            read_only,
        })
    }

    /// Each snapshot file with the bytes a copy of it must hold: older
    /// files whole, the newest up to its last valid frame (a save may be
    /// under way past it). What a backup copies.
    pub(crate) fn file_prefixes(&self) -> Result<Vec<(String, u64)>> {
        let state = self.state.lock();
        let newest = state.files.keys().next_back().copied();
        let mut prefixes = Vec::with_capacity(state.files.len());
        for (number, file) in &state.files {
            let bytes = if Some(*number) == newest {
                state.end
            } else {
                file.handle.len().map_err(|e| io("len", &file.name, e))?
            };
            prefixes.push((file.name.clone(), bytes));
        }
        Ok(prefixes)
    }

    /// Read-only logs: reads the frames the owner saved since the open
    /// (or the last refresh), in the newest file from its known end and in
    /// a file created since, so that loads find the new snapshots. An
    /// invalid frame ends the view without an error: the owner may be
    /// writing it (damage is reported by a full open). Costs one `stat`
    /// and one failed `open` when nothing was saved.
    pub(crate) fn refresh(&self) -> Result<()> {
        if !self.read_only {
            // Its own saves are always in the map.
            return Ok(());
        }
        let mut state = self.state.lock();
        // Bounded: each pass moves to a newer file or returns.
        loop {
            if let Some((number, file)) = state.files.last_key_value() {
                let (number, file) = (*number, Arc::clone(file));
                let from = state.end;
                state.end = scan_new(&file, number, from, &mut state)?;
            }
            let next = state.files.keys().next_back().map_or(0, |n| n + 1);
            let name = file_name(next);
            let handle = match self.storage.open(&name) {
                Ok(handle) => handle,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io("open", &name, e)),
            };
            // Renamed into place only with a whole, synced header.
            let salt = read_header(&name, &*handle)?;
            state
                .files
                .insert(next, Arc::new(SnapFile { name, handle, salt }));
            state.end = FILE_HEADER_BYTES as u64;
        }
    }

    /// What open found.
    pub(crate) fn recovery(&self) -> SnapshotRecovery {
        self.recovery
    }

    /// Appends one frame and syncs it; the snapshot is findable once this
    /// returns `Ok`. A failed write or sync refuses every later save until
    /// the store is reopened (the page cache may have dropped the bytes).
    pub(crate) fn append(&self, fields: &FrameFields<'_>) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly(self.storage.describe()));
        }
        let mut state = self.state.lock();
        if let Some(cause) = &state.poisoned {
            return Err(Error::Internal(format!(
                "the snapshot log refuses saves after an earlier failure ({cause}); reopen the store"
            )));
        }
        let (number, file) = match state.files.last_key_value() {
            Some((number, file)) => (*number, Arc::clone(file)),
            None => {
                let file = self.create(0)?;
                state.files.insert(0, Arc::clone(&file));
                state.end = FILE_HEADER_BYTES as u64;
                (0, file)
            }
        };
        let frame = format::encode_frame(file.salt, fields);
        let offset = state.end;
        let written = file
            .handle
            .write_all_at(&frame, offset)
            .map_err(|e| io("write", &file.name, e))
            .and_then(|()| {
                file.handle
                    .sync_data()
                    .map_err(|e| io("fdatasync", &file.name, e))
            });
        if let Err(error) = written {
            state.poisoned = Some(error.to_string());
            return Err(error);
        }
        state.end = offset + frame.len() as u64;
        let location = Location {
            file: number,
            offset,
            len: frame.len() as u32,
        };
        state
            .streams
            .entry(fields.stream.to_owned())
            .or_default()
            .insert(fields.version, location);
        Ok(())
    }

    /// The newest snapshot of `stream` at or below `version`, read from
    /// its file and verified again.
    pub(crate) fn newest_at_or_below(&self, stream: &str, version: u64) -> Result<Option<Loaded>> {
        let (version, location, file) = {
            let state = self.state.lock();
            let Some((version, location)) = state
                .streams
                .get(stream)
                .and_then(|versions| versions.range(..=version).next_back())
            else {
                return Ok(None);
            };
            let Some(file) = state.files.get(&location.file) else {
                return Err(Error::Internal(format!(
                    "snapshot file {} is not open",
                    location.file
                )));
            };
            (*version, *location, Arc::clone(file))
        };
        let mut frame = vec![0u8; location.len as usize];
        file.handle
            .read_exact_at(&mut frame, location.offset)
            .map_err(|e| io("read", &file.name, e))?;
        if let Err(fault) = format::decode_frame(file.salt, &frame) {
            return Err(
                annals_segment::Error::corrupt(file.name.clone(), location.offset, fault).into(),
            );
        }
        Ok(Some(Loaded {
            version,
            frame,
            salt: file.salt,
        }))
    }

    /// Keeps only the newest `keep` (at least 1) snapshots of each stream:
    /// writes them into a new file (numbered after the newest) under a
    /// temporary name, syncs it, renames it, syncs the directory, then
    /// removes the older files and syncs the directory again. A crash
    /// before the rename leaves the old files (the temporary one is removed
    /// at open); after it, the new file and maybe some old ones, whose
    /// frames the new file repeats (a later compaction removes them).
    /// Saves wait meanwhile; loads under way read the files they opened.
    /// Returns (snapshots removed, bytes before, bytes after).
    pub(crate) fn compact(&self, keep: usize) -> Result<(u64, u64, u64)> {
        if self.read_only {
            return Err(Error::ReadOnly(self.storage.describe()));
        }
        let keep = keep.max(1);
        let mut state = self.state.lock();
        if let Some(cause) = &state.poisoned {
            return Err(Error::Internal(format!(
                "the snapshot log refuses writes after an earlier failure ({cause}); reopen the store"
            )));
        }
        let Some(newest) = state.files.keys().next_back().copied() else {
            return Ok((0, 0, 0));
        };
        let total: usize = state.streams.values().map(BTreeMap::len).sum();
        let kept: usize = state.streams.values().map(|v| v.len().min(keep)).sum();
        let mut before = 0u64;
        for (number, file) in &state.files {
            before += if *number == newest {
                state.end
            } else {
                file.handle.len().map_err(|e| io("len", &file.name, e))?
            };
        }
        if kept == total && state.files.len() == 1 {
            return Ok((0, before, before));
        }
        let number = newest + 1;
        let name = file_name(number);
        let temp = format!("{FILE_PREFIX}{number:016}{TEMP_SUFFIX}");
        let salt = annals_segment::random_u64();
        let mut bytes = format::encode_file_header(salt).to_vec();
        let mut locations: HashMap<String, BTreeMap<u64, Location>> = HashMap::new();
        for (stream, versions) in &state.streams {
            for (version, location) in versions.iter().rev().take(keep) {
                let file = state.files.get(&location.file).ok_or_else(|| {
                    Error::Internal(format!("snapshot file {} is not open", location.file))
                })?;
                let mut frame = vec![0u8; location.len as usize];
                file.handle
                    .read_exact_at(&mut frame, location.offset)
                    .map_err(|e| io("read", &file.name, e))?;
                let fields = format::decode_frame(file.salt, &frame).map_err(|fault| {
                    annals_segment::Error::corrupt(file.name.clone(), location.offset, fault)
                })?;
                let encoded = format::encode_frame(salt, &fields);
                locations.entry(stream.clone()).or_default().insert(
                    *version,
                    Location {
                        file: number,
                        offset: bytes.len() as u64,
                        len: encoded.len() as u32,
                    },
                );
                bytes.extend_from_slice(&encoded);
            }
        }
        let _ = self.storage.remove(&temp);
        let handle = self.publish_file(&temp, &name, &bytes)?;
        let old: Vec<String> = state.files.values().map(|f| f.name.clone()).collect();
        state.files = BTreeMap::from([(number, Arc::new(SnapFile { name, handle, salt }))]);
        state.end = bytes.len() as u64;
        state.streams = locations;
        // The new file is durable and authoritative: the old ones go.
        for name in &old {
            self.storage
                .remove(name)
                .map_err(|e| io("remove", name, e))?;
        }
        self.storage
            .sync_dir()
            .map_err(|e| io("sync_dir", &self.storage.describe(), e))?;
        Ok(((total - kept) as u64, before, bytes.len() as u64))
    }

    /// Writes `bytes` as file `name` durably: written and synced under
    /// `temp`, renamed, directory synced; returns the file opened under
    /// `name`. A file under the final name therefore always holds all of
    /// `bytes`.
    fn publish_file(&self, temp: &str, name: &str, bytes: &[u8]) -> Result<Arc<dyn StorageFile>> {
        let handle = self
            .storage
            .create(temp)
            .map_err(|e| io("create", temp, e))?;
        handle
            .write_all_at(bytes, 0)
            .map_err(|e| io("write", temp, e))?;
        handle.sync_all().map_err(|e| io("fsync", temp, e))?;
        drop(handle);
        self.storage
            .rename(temp, name)
            .map_err(|e| io("rename", temp, e))?;
        self.storage
            .sync_dir()
            .map_err(|e| io("sync_dir", &self.storage.describe(), e))?;
        self.storage.open(name).map_err(|e| io("open", name, e))
    }

    /// Creates snapshot file `number` durably: header written and synced
    /// under a temporary name, renamed, directory synced. A file under the
    /// final name therefore always has a whole header.
    fn create(&self, number: u64) -> Result<Arc<SnapFile>> {
        let name = file_name(number);
        let temp = format!("{FILE_PREFIX}{number:016}{TEMP_SUFFIX}");
        let salt = annals_segment::random_u64();
        let handle = self.publish_file(&temp, &name, &format::encode_file_header(salt))?;
        Ok(Arc::new(SnapFile { name, handle, salt }))
    }
}

fn read_header(name: &str, handle: &dyn StorageFile) -> Result<u64> {
    let len = handle.len().map_err(|e| io("len", name, e))?;
    if len < FILE_HEADER_BYTES as u64 {
        return Err(annals_segment::Error::corrupt(
            name,
            0,
            "snapshot file shorter than its header",
        )
        .into());
    }
    let mut head = [0u8; FILE_HEADER_BYTES];
    handle
        .read_exact_at(&mut head, 0)
        .map_err(|e| io("read", name, e))?;
    format::decode_file_header(name, &head)
}

/// Reads every frame of `file` into `state.streams`; returns the end of
/// its last valid frame. An invalid frame is a torn write (cut, synced)
/// only in the newest file and only if it reaches the end of the file: a
/// frame followed by more bytes was synced before they were written.
fn scan(
    file: &SnapFile,
    number: u64,
    newest: bool,
    read_only: bool,
    state: &mut State,
    recovery: &mut SnapshotRecovery,
) -> Result<u64> {
    let len = file.handle.len().map_err(|e| io("len", &file.name, e))?;
    let mut offset = FILE_HEADER_BYTES as u64;
    let mut head = [0u8; FRAME_HEADER_BYTES];
    while offset < len {
        let fault = if len - offset < FRAME_HEADER_BYTES as u64 {
            Err(("frame header cut short", true))
        } else {
            file.handle
                .read_exact_at(&mut head, offset)
                .map_err(|e| io("read", &file.name, e))?;
            match format::claimed_len(&head) {
                None => Err(("implausible snapshot frame length", true)),
                Some(frame_len) if offset + frame_len as u64 > len => {
                    Err(("frame cut short", true))
                }
                Some(frame_len) => {
                    let mut frame = vec![0u8; frame_len];
                    file.handle
                        .read_exact_at(&mut frame, offset)
                        .map_err(|e| io("read", &file.name, e))?;
                    match format::decode_frame(file.salt, &frame) {
                        Ok(fields) => {
                            let location = Location {
                                file: number,
                                offset,
                                len: frame_len as u32,
                            };
                            state
                                .streams
                                .entry(fields.stream.to_owned())
                                .or_default()
                                .insert(fields.version, location);
                            recovery.frames += 1;
                            offset += frame_len as u64;
                            Ok(())
                        }
                        // The frame ends where the file does: it may be the one write not synced.
                        Err(fault) => Err((fault, offset + frame_len as u64 == len)),
                    }
                }
            }
        };
        match fault {
            Ok(()) => {}
            Err((_, true)) if newest => {
                if !read_only {
                    cut(file, offset, len)?;
                }
                recovery.torn_bytes = len - offset;
                return Ok(offset);
            }
            Err((reason, _)) => {
                return Err(
                    annals_segment::Error::corrupt(file.name.clone(), offset, reason).into(),
                );
            }
        }
    }
    Ok(offset)
}

/// A read-only refresh's [`scan`] of the newest file from `from`: any
/// invalid frame ends it (returned: where the next refresh starts again).
fn scan_new(file: &SnapFile, number: u64, from: u64, state: &mut State) -> Result<u64> {
    let mut end = from;
    // Frame by frame, so that a frame followed by one the owner is still
    // writing counts, and the half-written one ends the view.
    loop {
        let len = file.handle.len().map_err(|e| io("len", &file.name, e))?;
        if end >= len {
            return Ok(end);
        }
        let mut head = [0u8; FRAME_HEADER_BYTES];
        if len - end < FRAME_HEADER_BYTES as u64 {
            return Ok(end);
        }
        file.handle
            .read_exact_at(&mut head, end)
            .map_err(|e| io("read", &file.name, e))?;
        let Some(frame_len) = format::claimed_len(&head) else {
            return Ok(end);
        };
        let frame_end = end + frame_len as u64;
        if frame_end > len {
            return Ok(end);
        }
        if !read_one(file, number, end, frame_end, state)? {
            return Ok(end);
        }
        end = frame_end;
    }
}

/// Reads the one frame at `offset..frame_end` into `state.streams`;
/// `false` if it is not valid (yet).
fn read_one(
    file: &SnapFile,
    number: u64,
    offset: u64,
    frame_end: u64,
    state: &mut State,
) -> Result<bool> {
    let len = usize::try_from(frame_end - offset)
        .map_err(|_| Error::Internal("snapshot frame too large".into()))?;
    let mut frame = vec![0u8; len];
    file.handle
        .read_exact_at(&mut frame, offset)
        .map_err(|e| io("read", &file.name, e))?;
    if let Ok(fields) = format::decode_frame(file.salt, &frame) {
        let location = Location {
            file: number,
            offset,
            len: len as u32,
        };
        state
            .streams
            .entry(fields.stream.to_owned())
            .or_default()
            .insert(fields.version, location);
        return Ok(true);
    }
    Ok(false)
}

/// Cuts a torn frame: the snapshot file is never mapped, so it can be shortened.
fn cut(file: &SnapFile, offset: u64, len: u64) -> Result<()> {
    debug_assert!(offset < len);
    file.handle
        .set_len(offset)
        .map_err(|e| io("truncate", &file.name, e))?;
    file.handle
        .sync_all()
        .map_err(|e| io("fsync", &file.name, e))
}
