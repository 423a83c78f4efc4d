//! The store identity file: what makes a directory recognisably an Annals
//! store. Written once, durably, when a store is created (or on the first
//! writable open of a store made before the file existed); never changed.
//!
//! `IDENTITY` file (40 bytes):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    8 | magic `ANNALSID` |
//! |   8 |    4 | format version (u32), `1` |
//! |  12 |    4 | reserved, zero |
//! |  16 |   16 | store id: 128 random bits |
//! |  32 |    4 | CRC-32/IEEE of bytes 0..32 |
//! |  36 |    4 | reserved, zero |

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::get_u32;
use crate::storage::Storage;

/// Name of the identity file.
pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
const MAGIC: [u8; 8] = *b"ANNALSID";
const VERSION: u32 = 1;
const BYTES: usize = 40;
const CRC_AT: usize = 32;

/// A store's identity: 128 random bits chosen when it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreId(pub u128);

impl std::fmt::Display for StoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

fn encode(id: StoreId) -> [u8; BYTES] {
    let mut out = [0u8; BYTES];
    let fields: [(usize, &[u8]); 3] = [
        (0, &MAGIC),
        (8, &VERSION.to_le_bytes()),
        (16, &id.0.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let crc = crc32fast::hash(out.get(..CRC_AT).unwrap_or_default());
    if let Some(dst) = out.get_mut(CRC_AT..CRC_AT + 4) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Checksum first, then magic and version. Unlike the clean-close marker, a
/// bad identity file is an error, never ignored: it is what tells a store
/// from any other directory.
fn decode(bytes: &[u8]) -> Result<StoreId> {
    let corrupt = |offset: u64, reason: &str| Error::corrupt(IDENTITY_FILE_NAME, offset, reason);
    if bytes.len() != BYTES {
        return Err(corrupt(0, "identity file has the wrong length"));
    }
    let crc = get_u32(bytes, CRC_AT).ok_or_else(|| corrupt(0, "identity file too short"))?;
    let head = bytes.get(..CRC_AT).unwrap_or_default();
    if crc32fast::hash(head) != crc {
        return Err(corrupt(CRC_AT as u64, "identity file checksum mismatch"));
    }
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(corrupt(0, "identity file has the wrong magic"));
    }
    let version = get_u32(bytes, 8).unwrap_or(0);
    if version != VERSION {
        return Err(corrupt(
            8,
            &format!(
                "identity file format version {version} is not known (this build reads {VERSION})"
            ),
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(bytes.get(16..32).unwrap_or(&[0u8; 16]));
    Ok(StoreId(u128::from_le_bytes(id)))
}

/// Reads the identity file: `None` if there is none.
pub fn read(storage: &dyn Storage) -> Result<Option<StoreId>> {
    let names = storage
        .list()
        .map_err(|e| Error::io("list", storage.describe(), e))?;
    if !names.iter().any(|n| n == IDENTITY_FILE_NAME) {
        return Ok(None);
    }
    let file = storage
        .open(IDENTITY_FILE_NAME)
        .map_err(|e| Error::io("open", IDENTITY_FILE_NAME, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("stat", IDENTITY_FILE_NAME, e))?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(BYTES + 1).min(BYTES + 1)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read", IDENTITY_FILE_NAME, e))?;
    decode(&bytes).map(Some)
}

/// Reads the identity file, writing one with a new random id if there is
/// none (temp file → fsync → rename → fsync directory). Called by every
/// writable open, after the lock is taken.
pub fn ensure(storage: &dyn Storage) -> Result<StoreId> {
    if let Some(id) = read(storage)? {
        return Ok(id);
    }
    let id = StoreId(u128::from(crate::random_u64()) << 64 | u128::from(crate::random_u64()));
    write(storage, id)?;
    Ok(id)
}

/// Writes the identity file with `id` durably (temp file → fsync → rename
/// → fsync directory). A backup writes its source's id.
pub fn write(storage: &dyn Storage, id: StoreId) -> Result<()> {
    let tmp = format!("{IDENTITY_FILE_NAME}.tmp");
    let _ = storage.remove(&tmp);
    let file = storage
        .create(&tmp)
        .map_err(|e| Error::io("create", tmp.clone(), e))?;
    file.write_all_at(&encode(id), 0)
        .map_err(|e| Error::io("write", tmp.clone(), e))?;
    file.sync_all()
        .map_err(|e| Error::io("fsync", tmp.clone(), e))?;
    drop(file);
    storage
        .rename(&tmp, IDENTITY_FILE_NAME)
        .map_err(|e| Error::io("rename", tmp.clone(), e))?;
    storage
        .sync_dir()
        .map_err(|e| Error::io("fsync dir", storage.describe(), e))
}

/// What a directory is, found by listing it (nothing is created or opened
/// for writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// The path does not exist.
    Missing,
    /// An empty directory (or one holding only a `LOCK` file, or the temp
    /// file of an identity whose creation was interrupted).
    Empty,
    /// A store: it has an identity file.
    Store,
    /// A store created before the identity file existed: segment files,
    /// no identity file. Its next writable open writes one.
    OldStore,
    /// Anything else: not a store, and not to be turned into one.
    Foreign,
}

/// Classifies `dir` by its file names.
pub fn probe(dir: &Path) -> std::io::Result<DirKind> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirKind::Missing),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(classify(&names))
}

/// [`probe`] on a listing.
pub fn classify(names: &[String]) -> DirKind {
    let tmp = format!("{IDENTITY_FILE_NAME}.tmp");
    if names.iter().any(|n| n == IDENTITY_FILE_NAME) {
        DirKind::Store
    } else if names
        .iter()
        .any(|n| crate::segment::parse_segment_file_name(n).is_some())
    {
        DirKind::OldStore
    } else if names.iter().all(|n| n == "LOCK" || *n == tmp) {
        DirKind::Empty
    } else {
        DirKind::Foreign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn an_identity_reads_back_and_any_flipped_byte_is_refused() {
        let id = StoreId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let bytes = encode(id);
        assert_eq!(decode(&bytes).ok(), Some(id));
        for at in 0..CRC_AT + 4 {
            let mut bad = bytes;
            if let Some(b) = bad.get_mut(at) {
                *b ^= 0x40;
            }
            assert!(decode(&bad).is_err(), "byte {at} flipped");
        }
        assert!(decode(bytes.get(..BYTES - 1).unwrap_or_default()).is_err());
    }

    #[test]
    fn ensure_writes_once_and_then_reads_the_same_id() {
        let storage = MemStorage::new();
        assert_eq!(read(&storage).ok(), Some(None));
        let first = ensure(&storage).ok();
        assert!(first.is_some());
        assert_eq!(ensure(&storage).ok(), first);
        assert_eq!(read(&storage).ok(), Some(first));
        let names = storage.list().unwrap_or_default();
        assert_eq!(names, vec![IDENTITY_FILE_NAME.to_owned()]);
    }

    #[test]
    fn directories_are_classified_by_their_names() {
        let of =
            |names: &[&str]| classify(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(of(&[]), DirKind::Empty);
        assert_eq!(of(&["LOCK"]), DirKind::Empty);
        assert_eq!(of(&["LOCK", "IDENTITY"]), DirKind::Store);
        assert_eq!(of(&["00000000000000000000.seg"]), DirKind::OldStore);
        assert_eq!(of(&["CLEAN"]), DirKind::Foreign);
        assert_eq!(of(&["notes.txt", "x.tmp"]), DirKind::Foreign);
    }
}
