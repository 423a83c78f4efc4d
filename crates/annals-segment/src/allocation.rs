//! How much of a segment file has real space behind it, and growing it
//! ahead of the writer.
//!
//! A segment is allocated with `fallocate` (through
//! [`StorageFile::allocate`]) so that a full filesystem is an error of the
//! allocation — at segment creation, or at a growth step — and never a
//! later failure of a write into a hole, nor a SIGBUS on a page of a
//! mapping that the filesystem cannot back. Two policies:
//!
//! - **Whole** (disks): the whole segment is allocated when it is created,
//!   so the file's size never changes while appending and `fdatasync` has
//!   no size to write.
//! - **In steps** ([`Storage::allocate_in_steps`]: tmpfs, ramfs, where an
//!   allocated byte is a byte of RAM): 64 KiB at creation, then, whenever
//!   a write would pass the allocated end, the file grows to at least that
//!   write's end plus as much again as is already allocated, at least
//!   64 KiB and at most 4 MiB a step, never past the segment size. A
//!   one-event store then holds 64 KiB of segment instead of 64 MiB.
//!
//! When a step does not fit in what the filesystem has left, the write's
//! own end is tried before giving up.
//!
//! Where the storage cannot reserve space (`Unsupported`), the file is
//! extended with `set_len` to the segment size at once, as before: sparse,
//! and a full filesystem shows as a failed write.

use crate::error::{Error, Result};
use crate::storage::{Storage, StorageFile};

/// `errno` of a full filesystem.
const ENOSPC: i32 = 28;

/// First allocation, and smallest step, of a segment allocated in steps.
pub(crate) const STEP_MIN: u64 = 64 << 10;
/// Largest step.
pub(crate) const STEP_MAX: u64 = 4 << 20;

/// The allocated end of the active segment and how it grows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allocation {
    /// The file's length: every byte below it is allocated (or the storage
    /// could not reserve space, and the file is sparse).
    pub(crate) allocated: u64,
    /// The segment's size: the file never grows past it.
    pub(crate) segment_bytes: u64,
    /// Grow in steps (else whole).
    pub(crate) in_steps: bool,
}

impl Allocation {
    /// The policy for `storage`, for a segment whose file is `allocated`
    /// bytes long now.
    pub(crate) fn of(storage: &dyn Storage, allocated: u64, segment_bytes: u64) -> Self {
        Allocation {
            allocated,
            segment_bytes,
            in_steps: storage.allocate_in_steps(),
        }
    }

    /// Where the file should end for a write that ends at `end`: `None`
    /// when it already reaches that far.
    pub(crate) fn target(&self, end: u64) -> Option<u64> {
        if end <= self.allocated {
            return None;
        }
        if !self.in_steps {
            return Some(self.segment_bytes.max(end));
        }
        let step = self.allocated.clamp(STEP_MIN, STEP_MAX);
        let target = end
            .div_ceil(STEP_MIN)
            .saturating_mul(STEP_MIN)
            .max(self.allocated.saturating_add(step));
        Some(target.min(self.segment_bytes).max(end))
    }

    /// Makes sure the file is allocated up to `end` (a write about to
    /// end there), growing it by a step. A full filesystem is an
    /// [`Error::Io`] whose source is ENOSPC; nothing was written.
    pub(crate) fn ensure(&mut self, file: &dyn StorageFile, name: &str, end: u64) -> Result<()> {
        let Some(target) = self.target(end) else {
            return Ok(());
        };
        let grown = match grow(file, name, self.allocated, target) {
            // A step ahead does not fit: what this write needs may.
            Err(Error::Io { source, .. })
                if target > end && source.raw_os_error() == Some(ENOSPC) =>
            {
                grow(file, name, self.allocated, end).map(|()| end)
            }
            other => other.map(|()| target),
        }?;
        self.allocated = grown;
        Ok(())
    }
}

/// Extends `file` from `from` to `to` bytes with real space where the
/// storage can reserve it, else with `set_len` (sparse).
pub(crate) fn grow(file: &dyn StorageFile, name: &str, from: u64, to: u64) -> Result<()> {
    match file.allocate(from, to.saturating_sub(from)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => file
            .set_len(to)
            .map_err(|e| Error::io("preallocate", name, e)),
        Err(e) => Err(Error::io("preallocate", name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stepped(allocated: u64) -> Allocation {
        Allocation {
            allocated,
            segment_bytes: 64 << 20,
            in_steps: true,
        }
    }

    #[test]
    fn steps_double_from_the_smallest_to_the_largest_and_stop_at_the_segment_size() {
        assert_eq!(stepped(STEP_MIN).target(100), None);
        assert_eq!(stepped(STEP_MIN).target(STEP_MIN + 1), Some(2 * STEP_MIN));
        assert_eq!(stepped(1 << 20).target((1 << 20) + 1), Some(2 << 20));
        assert_eq!(
            stepped(32 << 20).target((32 << 20) + 1),
            Some((32 << 20) + STEP_MAX)
        );
        // One write far past the end: at least that end.
        assert_eq!(stepped(STEP_MIN).target(5 << 20), Some(5 << 20));
        assert_eq!(stepped(63 << 20).target((63 << 20) + 10), Some(64 << 20));
        let whole = Allocation {
            in_steps: false,
            ..stepped(4096)
        };
        assert_eq!(whole.target(5000), Some(64 << 20));
    }
}
