//! Pages of a run file: the checksum that ends each page, the little-endian
//! readers of a page's words, and the writer of checksummed pages.

use std::sync::Arc;

use annals_segment::format;
use annals_segment::storage::StorageFile;

use crate::Error;

use super::*;

/// The checksum that ends page `page` of a run file whose salt is `salt`:
/// CRC-32 of `salt ‖ page ‖ payload` (FORMAT.md).
pub fn page_crc(salt: u64, page: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&page.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The little-endian `u64` at `at` (0 past the end: callers index inside
/// pages whose size they checked).
pub(super) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    format::get_u64(bytes, at).unwrap_or_default()
}

pub(super) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    format::get_u32(bytes, at).unwrap_or_default()
}

/// Writes one section of a run file, page by page from its first page, in
/// chunks of about [`WRITE_CHUNK`] bytes. Several sections are written at
/// once, each at its own offset (the layout is known in advance), so
/// nothing proportional to the run is held in memory.
pub(super) struct SectionWriter {
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) name: String,
    pub(super) salt: u64,
    pub(super) page: Vec<u8>,
    /// Number of the next page to finish.
    pub(super) page_no: u64,
    pub(super) pending: Vec<u8>,
    /// Page number of the first page in `pending`.
    pub(super) pending_first: u64,
}

impl SectionWriter {
    pub(super) fn new(file: &Arc<dyn StorageFile>, name: &str, salt: u64, first_page: u64) -> Self {
        SectionWriter {
            file: Arc::clone(file),
            name: name.to_owned(),
            salt,
            page: Vec::with_capacity(PAYLOAD_BYTES),
            page_no: first_page,
            pending: Vec::new(),
            pending_first: first_page,
        }
    }

    pub(super) fn push_payload(&mut self, payload: &[u8]) -> Result<(), Error> {
        let crc = page_crc(self.salt, self.page_no, payload);
        self.pending.extend_from_slice(payload);
        self.pending.extend_from_slice(&crc.to_le_bytes());
        self.page_no += 1;
        if self.pending.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.pending_first * PAGE_BYTES as u64)
            .map_err(|e| Error::io("write", self.name.clone(), e))?;
        self.pending_first = self.page_no;
        self.pending.clear();
        Ok(())
    }

    /// Adds one item to the page being filled, `per_page` items a page.
    pub(super) fn push_item(&mut self, item: &[u8], per_page: usize) -> Result<(), Error> {
        self.page.extend_from_slice(item);
        if self.page.len() == per_page * item.len() {
            self.end_page()?;
        }
        Ok(())
    }

    /// Pads and writes the page being filled, if it holds anything.
    pub(super) fn end_page(&mut self) -> Result<(), Error> {
        if self.page.is_empty() {
            return Ok(());
        }
        let mut page = std::mem::take(&mut self.page);
        page.resize(PAYLOAD_BYTES, 0);
        self.push_payload(&page)?;
        page.clear();
        self.page = page;
        Ok(())
    }

    /// Ends the section: its last page, then everything still buffered.
    pub(super) fn finish(&mut self) -> Result<(), Error> {
        self.end_page()?;
        self.flush()
    }
}
