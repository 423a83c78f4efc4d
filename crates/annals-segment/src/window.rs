//! Reading a segment file with `pread` through a sliding window, for
//! recovery: the tail of the active segment is never read through a
//! mapping.
//!
//! A page of a mapping that the file does not back with a block (a hole of
//! a sparse file, space past its end) is allocated or refused by the page
//! fault that first touches it: on a full tmpfs that fault is a SIGBUS,
//! and reading a whole sparse 64 MiB segment through a mapping filled a
//! 32 MiB tmpfs. `pread` of a hole allocates nothing and returns zeros,
//! and any failure is an error. Recovery reads frames, the tail after the
//! last valid frame and the candidates for a later durable frame through
//! this window; only verified frames are ever mapped.

use crate::error::{Error, Result};
use crate::format::{self, FrameFault, FrameHeader};
use crate::storage::StorageFile;

/// Bytes read per `pread` when a frame or chunk does not ask for more.
pub(crate) const WINDOW_BYTES: usize = 1 << 20;

/// Where a frame header holds the frame's length (`docs/FORMAT.md`, frame
/// header: `frame_bytes` u32 at offset 4).
const FRAME_BYTES_FIELD: usize = 4;

/// A window of a file's bytes, read with `pread` as it moves.
pub(crate) struct FileWindow<'a> {
    file: &'a dyn StorageFile,
    name: &'a str,
    /// The file's length when the window was made: nothing past it is read.
    len: u64,
    /// Offset of `buf[0]` in the file.
    start: u64,
    buf: Vec<u8>,
    /// The least a read fetches.
    read_bytes_min: usize,
}

impl<'a> FileWindow<'a> {
    /// A window on `file` (named `name` in errors), as long as it is now.
    pub(crate) fn new(file: &'a dyn StorageFile, name: &'a str) -> Result<Self> {
        let len = file.len().map_err(|e| Error::io("stat", name, e))?;
        Ok(FileWindow {
            file,
            name,
            len,
            start: 0,
            buf: Vec::new(),
            read_bytes_min: WINDOW_BYTES,
        })
    }

    /// A window that reads `read_bytes_min` bytes at least (a read-only
    /// refresh, polled every few milliseconds, mostly finds nothing new:
    /// it should not read a whole window to see that).
    pub(crate) fn with_reads_of(
        file: &'a dyn StorageFile,
        name: &'a str,
        read_bytes_min: usize,
    ) -> Result<Self> {
        let mut window = Self::new(file, name)?;
        window.read_bytes_min = read_bytes_min;
        Ok(window)
    }

    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The bytes from `offset` on: `want` of them, or fewer at the end of
    /// the file (none past it). Reads only when the window does not hold
    /// them already.
    pub(crate) fn at(&mut self, offset: u64, want: usize) -> Result<&[u8]> {
        let end = offset.saturating_add(want as u64).min(self.len).max(offset);
        let held = self.start..=self.start.saturating_add(self.buf.len() as u64);
        if !(held.contains(&offset) && held.contains(&end)) {
            let read_end = offset
                .saturating_add(want.max(self.read_bytes_min) as u64)
                .min(self.len)
                .max(offset);
            let size = usize::try_from(read_end - offset).unwrap_or(0);
            self.buf.resize(size, 0);
            self.start = offset;
            if let Err(e) = self.file.read_exact_at(&mut self.buf, offset) {
                self.buf.clear();
                return Err(Error::io("read", self.name, e));
            }
        }
        let from = usize::try_from(offset - self.start).unwrap_or(usize::MAX);
        let to = usize::try_from(end - self.start).unwrap_or(usize::MAX);
        Ok(self.buf.get(from..to).unwrap_or_default())
    }

    /// Decodes and verifies the frame at `offset` (as
    /// [`format::decode_frame`] on the rest of the file would): only its
    /// header is kept. Decodes the header first, then reads the frame's
    /// length and its padding: a garbage header never makes it read more
    /// than the header.
    pub(crate) fn frame(
        &mut self,
        offset: u64,
        salt: u64,
    ) -> Result<Result<FrameHeader, FrameFault>> {
        let head = self.at(offset, format::FRAME_HEADER_BYTES)?;
        match format::decode_frame_header(head, offset, salt) {
            // The header verified (its checksum is checked before any other
            // field): read the frame and its padding. Every other fault is
            // decided by the header's bytes alone, as `decode_frame` would.
            Ok(_) | Err(FrameFault::FramePastSegmentEnd) => {
                let claimed = format::get_u32(head, FRAME_BYTES_FIELD).unwrap_or(0) as usize;
                let want = format::align_up(claimed.min(format::FRAME_BYTES_MAX) as u64) as usize;
                let bytes = self.at(offset, want.max(format::FRAME_HEADER_BYTES))?;
                Ok(format::decode_frame(bytes, offset, salt).map(|(header, _)| header))
            }
            Err(fault) => Ok(Err(fault)),
        }
    }

    /// Decodes the frame header at `offset` (as
    /// [`format::decode_frame_header`] on the rest of the file would).
    pub(crate) fn frame_header(
        &mut self,
        offset: u64,
        salt: u64,
    ) -> Result<Result<FrameHeader, FrameFault>> {
        let head = self.at(offset, format::FRAME_HEADER_BYTES)?;
        match format::decode_frame_header(head, offset, salt) {
            // Only a header that verified gets here (its checksum is checked
            // first), so a run of garbage never makes this read a frame's
            // worth of bytes per candidate offset: the length is checked
            // against the rest of the file as the decoder would.
            Err(FrameFault::FramePastSegmentEnd) => {
                let claimed = format::get_u32(head, FRAME_BYTES_FIELD).unwrap_or(0) as usize;
                let bytes = self.at(offset, claimed.min(format::FRAME_BYTES_MAX))?;
                Ok(format::decode_frame_header(bytes, offset, salt))
            }
            other => Ok(other),
        }
    }

    /// Whether every byte from `offset` to the end of the file is zero, and
    /// where the last byte that is not ends.
    pub(crate) fn dirty_end(&mut self, offset: u64) -> Result<Option<u64>> {
        let mut dirty = None;
        let mut at = offset;
        while at < self.len {
            let chunk = self.at(at, WINDOW_BYTES)?;
            if chunk.is_empty() {
                break;
            }
            if let Some(last) = chunk.iter().rposition(|b| *b != 0) {
                dirty = Some(at + last as u64 + 1);
            }
            at += chunk.len() as u64;
        }
        Ok(dirty)
    }
}

/// Overwrites with zeros every block of `[from, to)` of `file` that holds a
/// byte that is not zero (blocks of zeros, holes included, are left alone:
/// writing them would allocate space on a filesystem that may be full).
/// This is how recovery cuts a torn tail: the file is never shortened, so
/// no mapping of it can lose a page.
pub(crate) fn zero_range(file: &dyn StorageFile, name: &str, from: u64, to: u64) -> Result<()> {
    const BLOCK: u64 = 64 << 10;
    let zeros = vec![0u8; BLOCK as usize];
    let mut buf = vec![0u8; BLOCK as usize];
    let mut at = from;
    while at < to {
        // Blocks aligned to BLOCK, the first one starting at `from`.
        let end = ((at / BLOCK + 1) * BLOCK).min(to);
        let len = usize::try_from(end - at).unwrap_or(0);
        let part = buf.get_mut(..len).unwrap_or_default();
        file.read_exact_at(part, at)
            .map_err(|e| Error::io("read", name, e))?;
        if part.iter().any(|b| *b != 0) {
            file.write_all_at(zeros.get(..len).unwrap_or_default(), at)
                .map_err(|e| Error::io("write", name, e))?;
        }
        at = end;
    }
    Ok(())
}
