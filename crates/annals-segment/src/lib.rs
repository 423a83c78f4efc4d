//! The Annals segment log: the global, append-only sequence of events, split
//! into preallocated segment files of checksummed batch frames.
//!
//! - [`format`](mod@format): every byte on disk (the spec is `docs/FORMAT.md`).
//! - [`LogWriter`]: the one writer; appends frames, `fdatasync`s, rolls segments.
//! - [`LogReader`]: cloneable readers over `mmap`, up to the end the writer
//!   published (what it synced, or what it wrote if told to publish unsynced).
//! - recovery on [`open`]: torn tails are truncated, corruption is refused.
//! - [`storage`]: all file I/O, with a real and a crash-simulating backend.
//!
//! This crate is the *event log format*: its records are events (stream
//! name, stream version, id, timestamp, flags, type, metadata, data), each
//! checksummed together with its segment's salt and its global position,
//! and a reader can select one stream's events by name. It gives events
//! dense global positions. It knows nothing of what the store builds on
//! them: expected versions, whether a stream's versions are dense, the
//! index, idempotency (ids are opaque bytes here) or what the flags mean.
//! `docs/ARCHITECTURE.md` says why the record schema lives here.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod allocation;
mod clean;
mod error;
mod evidence;
mod file_ids;
pub mod format;
pub mod frame_index;
pub mod identity;
mod merge;
mod prefix;
mod read_only;
mod reader;
mod recovery;
mod resident;
mod rewrite;
mod rewrite_out;
mod rng;
mod segment;
pub mod storage;
mod window;
mod writer;
mod zero;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

pub use clean::CLEAN_FILE_NAME;
pub use error::{Error, Result};
pub use evidence::{Evidence, EvidenceKind};
pub use format::{Record, Tags};
pub use identity::{DirKind, StoreId, IDENTITY_FILE_NAME};
pub use merge::{merged_bytes, PreparedMerge, SegmentMerge};
pub use prefix::PrefixPart;
pub use read_only::{open_read_only, ReadOnlyLog};
pub use reader::{LogReader, SegmentInfo};
pub use recovery::RecoveryReport;
pub use resident::OPEN_SEGMENTS_DEFAULT;
pub use rewrite::{
    Prepared, PreparedRewrite, RewriteOutcome, SealedSegment, SegmentRewrite, RECORD_ERASED_FLAG,
};
pub use segment::{frame_index_file_name, parse_segment_file_name, segment_file_name};
pub use writer::{open, open_bounded, open_with, open_with_evidence, LogWriter};

/// Asks the CPU to start loading the cache line of `bytes[at]` into its
/// caches (nothing when `at` is out of range, or off x86-64). A hint only:
/// it reads no value, cannot fault and changes nothing a program can
/// observe but time. Readers issue a batch of these before using the bytes,
/// so that the cache misses of a batch overlap.
#[inline(always)]
pub fn prefetch(bytes: &[u8], at: usize) {
    let Some(byte) = bytes.get(at) else {
        return;
    };
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `byte` is a reference into `bytes`, so the pointer is valid;
    // a prefetch does not access memory architecturally (it never faults
    // and changes no value), and SSE is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}

/// Asks the CPU to start loading every cache line of `bytes` (see
/// [`prefetch`]).
#[inline]
pub fn prefetch_all(bytes: &[u8]) {
    for at in (0..bytes.len()).step_by(64) {
        prefetch(bytes, at);
    }
    prefetch(bytes, bytes.len().saturating_sub(1));
}

/// `part` as a `Bytes` sharing `owner`'s buffer when `part` lies inside it
/// (no copy), else a copy. Readers use it to hand out event data straight
/// from the mapped segment.
pub fn share(owner: &bytes::Bytes, part: &[u8]) -> bytes::Bytes {
    if part.is_empty() {
        return bytes::Bytes::new();
    }
    let base = owner.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    match start.checked_sub(base) {
        Some(offset) if offset.saturating_add(part.len()) <= owner.len() => {
            owner.slice(offset..offset + part.len())
        }
        _ => bytes::Bytes::copy_from_slice(part),
    }
}

/// Default size of a segment file: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// How the log is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Size of each new segment file: allocated whole when it is created,
    /// or in steps ahead of the writer where the storage asks for it
    /// ([`Storage::allocate_in_steps`](storage::Storage::allocate_in_steps)).
    /// An existing segment keeps the size it was created with.
    pub segment_bytes: u64,
    /// Whether a background thread fills the active segment with written
    /// zeros ahead of the writer, so that commits overwrite allocated
    /// blocks and their `fdatasync` writes no allocation metadata (see
    /// `zero.rs`). `None` (the default): when the storage says it helps
    /// ([`Storage::zero_fill_helps`](storage::Storage::zero_fill_helps):
    /// a directory on ext2/3/4 or XFS).
    pub zero_ahead: Option<bool>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            zero_ahead: None,
        }
    }
}

impl LogOptions {
    fn validate(&self) -> Result<()> {
        let range = format::SEGMENT_BYTES_MIN..=format::SEGMENT_BYTES_MAX;
        if !range.contains(&self.segment_bytes)
            || !self.segment_bytes.is_multiple_of(format::FRAME_ALIGN)
        {
            return Err(Error::Invalid(format!(
                "segment size must be a multiple of {} in {range:?}, got {}",
                format::FRAME_ALIGN,
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// A random 64-bit value (for segment salts and generated event ids).
///
/// Each thread seeds a SplitMix64 generator once, from the standard
/// library's randomly keyed SipHash over a process-wide counter, the clock
/// and the process id; after that a value costs a few instructions and no
/// system call. Not cryptographic: ids and salts need to be unique, not
/// secret.
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    static SEEDS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: Cell<rng::SplitMix64> = Cell::new(rng::SplitMix64::new({
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(SEEDS.fetch_add(1, Ordering::Relaxed));
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.finish()
        }));
    }
    STATE.with(|state| {
        let mut rng = state.get();
        let value = rng.next_u64();
        state.set(rng);
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_takes_any_offset_and_changes_nothing() {
        let bytes: Vec<u8> = (0..=255).cycle().take(1000).collect();
        for at in [0, 63, 64, 999, 1000, usize::MAX] {
            prefetch(&bytes, at);
        }
        prefetch(&[], 0);
        prefetch_all(&bytes);
        prefetch_all(&bytes[3..70]);
        prefetch_all(&[]);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    }

    #[test]
    fn share_slices_inside_the_owner_and_copies_the_rest() {
        let owner = bytes::Bytes::from(vec![1u8, 2, 3, 4, 5]);
        let inside = share(&owner, &owner[1..4]);
        assert_eq!(&inside[..], &[2, 3, 4]);
        assert_eq!(
            inside.as_ptr(),
            owner[1..].as_ptr(),
            "a part of the owner is not copied"
        );
        let elsewhere = [2u8, 3, 4];
        let copied = share(&owner, &elsewhere);
        assert_eq!(&copied[..], &[2, 3, 4]);
        assert_ne!(copied.as_ptr(), elsewhere.as_ptr());
        assert!(share(&owner, &[]).is_empty());
    }
}
