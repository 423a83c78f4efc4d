//! The clean-close marker. A log closed cleanly records where its active
//! segment's frames end; the next open, finding its scan stop exactly
//! there, knows the preallocated tail is untouched and does not read it
//! (64 MiB of zeros by default: most of a small store's open time and
//! memory). The marker is removed, and the removal made durable, before the
//! log accepts any write, so a marker that exists always means "nothing was
//! written since".
//!
//! `CLEAN` file (56 bytes):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    8 | magic `ANNALCLN` |
//! |   8 |    4 | format version (u32) |
//! |  12 |    4 | reserved, zero |
//! |  16 |    8 | position_first of the active segment |
//! |  24 |    8 | salt of the active segment |
//! |  32 |    8 | data_end: offset after its last frame |
//! |  40 |    8 | position_end: one past the last position in the log |
//! |  48 |    4 | CRC-32/IEEE of bytes 0..48 |
//! |  52 |    4 | reserved, zero |

use crate::error::{Error, Result};
use crate::format::{get_u32, get_u64};
use crate::storage::Storage;

/// Name of the marker file.
pub const CLEAN_FILE_NAME: &str = "CLEAN";
const MAGIC: [u8; 8] = *b"ANNALCLN";
const VERSION: u32 = 1;
const BYTES: usize = 56;

/// Where the log ended when it was closed cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanMarker {
    pub(crate) position_first: u64,
    pub(crate) salt: u64,
    pub(crate) data_end: u64,
    pub(crate) position_end: u64,
}

impl CleanMarker {
    fn encode(&self) -> [u8; BYTES] {
        let mut out = [0u8; BYTES];
        let fields: [(usize, &[u8]); 6] = [
            (0, &MAGIC),
            (8, &VERSION.to_le_bytes()),
            (16, &self.position_first.to_le_bytes()),
            (24, &self.salt.to_le_bytes()),
            (32, &self.data_end.to_le_bytes()),
            (40, &self.position_end.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let crc = crc32fast::hash(out.get(..48).unwrap_or_default());
        if let Some(dst) = out.get_mut(48..52) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Checksum first, then the fields; anything wrong is "no marker".
    fn decode(bytes: &[u8]) -> Option<CleanMarker> {
        let word = |at: usize| get_u64(bytes, at);
        let crc = get_u32(bytes, 48)?;
        if bytes.len() != BYTES || crc32fast::hash(bytes.get(..48)?) != crc {
            return None;
        }
        if bytes.get(..8)? != MAGIC || bytes.get(8..12)? != VERSION.to_le_bytes() {
            return None;
        }
        Some(CleanMarker {
            position_first: word(16)?,
            salt: word(24)?,
            data_end: word(32)?,
            position_end: word(40)?,
        })
    }
}

/// Writes the marker durably (temp file, fsync, rename, fsync directory).
pub(crate) fn write(storage: &dyn Storage, marker: CleanMarker) -> Result<()> {
    let tmp = format!("{CLEAN_FILE_NAME}.tmp");
    let _ = storage.remove(&tmp);
    let file = storage
        .create(&tmp)
        .map_err(|e| Error::io("create", tmp.clone(), e))?;
    file.write_all_at(&marker.encode(), 0)
        .map_err(|e| Error::io("write", tmp.clone(), e))?;
    file.sync_data()
        .map_err(|e| Error::io("fsync", tmp.clone(), e))?;
    drop(file);
    storage
        .rename(&tmp, CLEAN_FILE_NAME)
        .map_err(|e| Error::io("rename", tmp.clone(), e))?;
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))
}

/// Reads the marker without removing it: `None` if there is no marker
/// file, `Some(None)` if there is one but it is invalid. Recovery removes it
/// with [`remove`] only once it accepts the log: a refused open leaves it
/// as evidence (`evidence.rs`).
pub(crate) fn read(storage: &dyn Storage) -> Result<Option<Option<CleanMarker>>> {
    let Ok(file) = storage.open(CLEAN_FILE_NAME) else {
        return Ok(None);
    };
    let len = file
        .len()
        .map_err(|e| Error::io("stat", CLEAN_FILE_NAME, e))?;
    let mut bytes = vec![0u8; (len as usize).min(BYTES + 1)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read", CLEAN_FILE_NAME, e))?;
    Ok(Some(CleanMarker::decode(&bytes)))
}

/// Removes the marker, making the removal durable before the log can
/// accept a write.
pub(crate) fn remove(storage: &dyn Storage) -> Result<()> {
    storage
        .remove(CLEAN_FILE_NAME)
        .map_err(|e| Error::io("remove", CLEAN_FILE_NAME, e))?;
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))
}
