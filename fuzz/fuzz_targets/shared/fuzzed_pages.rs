//! What the index-run targets share: a store's files in memory with fuzzed
//! bytes XORed over the data pages of some of its index runs, each page's
//! checksum recomputed (the runs are trusted at open, their entries are
//! arbitrary). The input's first two bytes say where to start, in steps of
//! 16 bytes; the rest is XORed, page after page, file after file.

use annals::storage::MemStorage;
use annals_index::{page_crc, PAGE_BYTES as PAGE};

/// `files` written into a fresh in-memory storage, the data pages of those
/// `fuzzed(name)` picks XORed with `data` (see the module).
pub fn storage_with_fuzzed_pages(
    files: &[(String, Vec<u8>)],
    data: &[u8],
    fuzzed: impl Fn(&str) -> bool,
) -> MemStorage {
    let storage = MemStorage::new();
    let (start, xor) = data.split_at(data.len().min(2));
    let mut skip = start.iter().fold(0usize, |a, b| a << 8 | usize::from(*b)) * 16;
    let mut fuzz = xor.iter().copied();
    for (name, bytes) in files {
        let mut bytes = bytes.clone();
        if fuzzed(name) && bytes.len() >= 2 * PAGE {
            let salt = u64::from_le_bytes(bytes[32..40].try_into().unwrap_or_default());
            for (page, chunk) in bytes.chunks_mut(PAGE).enumerate().skip(1) {
                let (payload, crc) = chunk.split_at_mut(PAGE - 4);
                for byte in payload.iter_mut() {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    match fuzz.next() {
                        Some(f) => *byte ^= f,
                        None => break,
                    }
                }
                crc.copy_from_slice(&page_crc(salt, page as u64, payload).to_le_bytes());
            }
        }
        storage.write_file(name, &bytes);
    }
    storage
}
