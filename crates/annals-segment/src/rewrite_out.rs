//! The output side of a segment rewrite (`rewrite.rs`): the new segment
//! file under its temporary name, filled in one pass over the old one.
//!
//! Nothing is written until the first frame that loses an event: the
//! frames before it are then copied verbatim in one go (their bytes and
//! offsets do not change). After that, a frame that loses nothing is copied
//! as it is — its events' bytes, checksums and offset table unchanged —
//! with only its 48-byte header rebased to its new offset (the header
//! checksum binds a frame to its offset, `docs/FORMAT.md`, "Batch frame");
//! a frame that loses events is encoded afresh with gap records in their
//! places. Every frame copied was fully verified (header, every event's
//! checksum, offset table, padding) by the caller just before.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{self, FrameHeader, FramePlace, Record, FRAME_HEADER_BYTES};
use crate::frame_index::FrameEntry;
use crate::storage::{Storage, StorageFile};

/// How many bytes of a rewritten segment are written at once (and passed
/// to the pacing callback).
pub(crate) const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Frame header field offsets this file rewrites (`docs/FORMAT.md`, "Batch
/// frame"); the result is checked with [`format::decode_frame_header`].
const FH_CRC: usize = 0;
const FH_SYNCED_BEFORE: usize = 32;

/// A finished rewrite: its data end, frame index and moved offsets.
pub(crate) type Finished = (u64, Vec<FrameEntry>, Vec<(u64, Vec<u32>)>);

/// The new segment being written.
pub(crate) struct RewriteOut {
    pub(crate) tmp: String,
    file: Arc<dyn StorageFile>,
    salt: u64,
    /// Bytes not yet written, to go at `written`.
    buffer: Vec<u8>,
    /// Bytes written to the file.
    written: u64,
    /// The new frame index.
    pub(crate) entries: Vec<FrameEntry>,
    /// Where every event of each moved frame starts now.
    pub(crate) offsets: Vec<(u64, Vec<u32>)>,
}

impl RewriteOut {
    /// Creates the temporary file and copies `prefix` (the header and the
    /// frames before the first changed one, all at unchanged offsets) into
    /// it, with their frame index entries.
    pub(crate) fn start(
        storage: &Arc<dyn Storage>,
        tmp: String,
        salt: u64,
        prefix: &[u8],
        prefix_entries: Vec<FrameEntry>,
        pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<(RewriteOut, ControlFlow<()>)> {
        let _ = storage.remove(&tmp);
        let file = storage
            .create(&tmp)
            .map_err(|e| Error::io("create", tmp.clone(), e))?;
        let mut out = RewriteOut {
            tmp,
            file,
            salt,
            buffer: Vec::with_capacity(WRITE_CHUNK_BYTES + (64 << 10)),
            written: 0,
            entries: prefix_entries,
            offsets: Vec::new(),
        };
        for chunk in prefix.chunks(WRITE_CHUNK_BYTES) {
            out.file
                .write_all_at(chunk, out.written)
                .map_err(|e| Error::io("write", out.tmp.clone(), e))?;
            out.written += chunk.len() as u64;
            if pace(out.written).is_break() {
                return Ok((out, ControlFlow::Break(())));
            }
        }
        Ok((out, ControlFlow::Continue(())))
    }

    /// Where the next frame goes.
    fn next_offset(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// Copies a verified frame that loses nothing: `frame` is its
    /// `frame_bytes` (no padding), found at `old_offset`.
    pub(crate) fn copy_frame(
        &mut self,
        frame: &[u8],
        header: &FrameHeader,
        old_offset: u64,
    ) -> Result<()> {
        let offset = self.next_offset();
        let start = self.buffer.len();
        self.buffer.extend_from_slice(frame);
        if offset != old_offset {
            let head = self
                .buffer
                .get_mut(start..start + FRAME_HEADER_BYTES)
                .ok_or_else(|| {
                    Error::corrupt(&self.tmp, offset, "frame shorter than its header")
                })?;
            rebase_frame_header(head, offset);
            format::decode_frame_header(
                self.buffer.get(start..).unwrap_or_default(),
                offset,
                self.salt,
            )
            .map_err(|r| Error::corrupt(&self.tmp, offset, r.as_str()))?;
        }
        self.buffer
            .resize(start + format::align_up(frame.len() as u64) as usize, 0);
        // The offset table is relative to the frame: it does not change.
        let moved = (0..header.event_count as usize)
            .map(|k| {
                format::event_offset(frame, k)
                    .and_then(|at| u32::try_from(offset + at as u64).ok())
                    .unwrap_or(u32::MAX)
            })
            .collect();
        self.offsets.push((header.position_first, moved));
        self.entries.push(FrameEntry {
            position_first: header.position_first,
            offset,
        });
        Ok(())
    }

    /// Encodes a frame afresh from `records` (some of them gap records).
    pub(crate) fn encode_frame(
        &mut self,
        position_first: u64,
        records: &[Record<'_>],
    ) -> Result<()> {
        let offset = self.next_offset();
        let place = FramePlace {
            salt: self.salt,
            offset,
            position_first,
            synced_before: offset,
        };
        let start = self.buffer.len();
        format::encode_frame(&mut self.buffer, place, records)?;
        let frame = self.buffer.get(start..).unwrap_or_default();
        let moved = (0..records.len())
            .map(|k| {
                format::event_offset(frame, k)
                    .and_then(|at| u32::try_from(offset + at as u64).ok())
                    .unwrap_or(u32::MAX)
            })
            .collect();
        self.offsets.push((position_first, moved));
        self.entries.push(FrameEntry {
            position_first,
            offset,
        });
        Ok(())
    }

    /// Writes the buffer once it holds a chunk (`force`: whatever it
    /// holds); then asks `pace`.
    pub(crate) fn flush(
        &mut self,
        force: bool,
        pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        if self.buffer.is_empty() || (!force && self.buffer.len() < WRITE_CHUNK_BYTES) {
            return Ok(ControlFlow::Continue(()));
        }
        self.file
            .write_all_at(&self.buffer, self.written)
            .map_err(|e| Error::io("write", self.tmp.clone(), e))?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(pace(self.written))
    }

    /// Writes what is left and `fsync`s the file; returns its data end.
    pub(crate) fn finish(mut self) -> Result<Finished> {
        let _ = self.flush(true, &mut |_| ControlFlow::Continue(()))?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", self.tmp.clone(), e))?;
        Ok((self.written, self.entries, self.offsets))
    }
}

/// Rebinds a frame header to `offset`: `synced_before` becomes the offset
/// (as for a frame encoded there: everything before it is durable when the
/// rewritten file is switched in) and the header checksum — CRC-32/IEEE of
/// (`offset`, u64 LE) ‖ bytes 4..48 — is recomputed.
fn rebase_frame_header(head: &mut [u8], offset: u64) {
    if let Some(field) = head.get_mut(FH_SYNCED_BEFORE..FH_SYNCED_BEFORE + 8) {
        field.copy_from_slice(&offset.to_le_bytes());
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(head.get(4..FRAME_HEADER_BYTES).unwrap_or_default());
    let crc = hasher.finalize();
    if let Some(field) = head.get_mut(FH_CRC..FH_CRC + 4) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}
