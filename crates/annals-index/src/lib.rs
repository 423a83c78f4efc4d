//! The Annals per-stream index: for every stream, the global position of
//! each of its versions, so that loading one aggregate reads only its own
//! events; and for every event id, its position, behind idempotent retries.
//!
//! Recent entries live in a [`Memtable`] (bounded: the store freezes it when
//! full). Frozen memtables are written as immutable, checksummed [`Run`]
//! files, each covering a contiguous range of global positions, and merged
//! in the background so that few runs exist; a Bloom filter per run lets a
//! lookup skip runs that cannot hold its key. Runs are derived data: they
//! can always be rebuilt from the log.
//!
//! This crate knows nothing of how events are framed: it stores stream
//! *hashes*, and the store resolves the (rare) collisions by reading the
//! event a position points at.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod hash;
mod ids;
mod memtable;
mod run;
mod secondary;

#[cfg(feature = "test-collisions")]
pub use hash::collisions;
pub use hash::{Fnv1aMix, StreamHasher};
pub use ids::{IdHash, IdHasher, IdTable};
pub use memtable::Memtable;
pub use run::{
    id_key, merge_runs, page_crc, parse_run_file_name, run_file_name, write_run, EntryDigest,
    EventOffset, IdEntry, Run, StreamEntry, MAX_ENTRY_EVENTS, PAGE_BYTES, POSITION_LIMIT,
};
pub use secondary::{
    parse_secondary_file_name, secondary_file_name, SecondaryEntry, SecondaryKey, SecondaryKind,
    SecondaryMemtable, SecondaryRun,
};

/// Errors of the index: the crate's one error type.
///
/// Equality ([`PartialEq`], for tests of the memtable's refusals) compares
/// the index's own variants field by field; two [`Error::Storage`] errors
/// are never equal (the storage error holds an `io::Error`, which has no
/// equality), so there is no `Eq`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An entry would break the density of stream versions.
    #[error("stream {stream}: version {version} does not follow {expected}")]
    VersionGap {
        /// The stream.
        stream: String,
        /// The version offered.
        version: u64,
        /// The version that was due.
        expected: u64,
    },
    /// An entry for a stream that was deleted.
    #[error("stream {0} was deleted")]
    Deleted(String),
    /// An entry whose position does not follow the memtable's last one.
    #[error("position {position} does not follow the memtable's end {end}")]
    PositionGap {
        /// The position offered.
        position: u64,
        /// The position that was due.
        end: u64,
    },
    /// A run file could not be written, read or merged: an I/O error, a
    /// damaged run (`annals_segment::Error::Corrupt`), a run of another
    /// format version, or entries a run cannot hold
    /// (`annals_segment::Error::Invalid`). Displayed as the storage error
    /// itself; [`source`](std::error::Error::source) continues with its
    /// cause.
    #[error(transparent)]
    Storage(#[from] annals_segment::Error),
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Error::VersionGap {
                    stream,
                    version,
                    expected,
                },
                Error::VersionGap {
                    stream: s,
                    version: v,
                    expected: e,
                },
            ) => (stream, version, expected) == (s, v, e),
            (Error::Deleted(a), Error::Deleted(b)) => a == b,
            (
                Error::PositionGap { position, end },
                Error::PositionGap {
                    position: p,
                    end: e,
                },
            ) => (position, end) == (p, e),
            _ => false,
        }
    }
}

impl Error {
    /// A damaged run file: what [`annals_segment::Error::corrupt`] says.
    pub(crate) fn corrupt(file: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Storage(annals_segment::Error::corrupt(file, offset, reason))
    }

    /// An I/O error on a run file.
    pub(crate) fn io(op: &'static str, file: impl Into<String>, source: std::io::Error) -> Self {
        Error::Storage(annals_segment::Error::io(op, file, source))
    }

    /// Entries or runs a run cannot be made of (a caller's mistake).
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::Storage(annals_segment::Error::Invalid(reason.into()))
    }

    /// Whether this is a damaged run file (a page or header that fails its
    /// checks).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Storage(annals_segment::Error::Corrupt { .. }))
    }
}

/// The state of one stream, as the expected-version check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// Number of entries (events, and the tombstone if deleted).
    pub len: u64,
    /// Whether the stream was deleted (its last entry is the tombstone).
    pub deleted: bool,
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}
