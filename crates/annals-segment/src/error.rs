//! The segment crate's one error type.

use std::io;

/// Result alias for the segment log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the segment log.
///
/// Corruption always says where: the file name (relative to the log
/// directory) and the byte offset of the structure that failed to verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error during {op} on {file}: {source}")]
    Io {
        /// What was being done (`write`, `fdatasync`, `open`, …).
        op: &'static str,
        /// The file concerned, relative to the log directory.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk failed verification.
    #[error("corrupt log: {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The file concerned, relative to the log directory.
        file: String,
        /// Byte offset of the structure that failed to verify.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The log ends before what a file of the store vouches was durable
    /// (an index run, the clean-close marker, a frame index, the next
    /// segment): acknowledged events are missing. Nothing was changed, the
    /// evidence included; `Store::repair` (`annals repair`) cuts the
    /// missing positions explicitly, reporting what it drops.
    #[error(
        "missing log data: positions {position_first}..{position_end} are gone ({found}) \
         but {} vouched for them; refusing to open with less (at {file} offset {offset})",
        crate::evidence::describe(.evidence)
    )]
    Missing {
        /// The file that should hold the first missing position (which may
        /// not exist), relative to the log directory.
        file: String,
        /// Where in `file` the missing data begins (0 for a missing file).
        offset: u64,
        /// The first missing position: where the log now ends.
        position_first: u64,
        /// One past the last position the evidence vouches for.
        position_end: u64,
        /// What was found where the missing positions should begin.
        found: String,
        /// Every file that vouches for a missing position, furthest first.
        evidence: Vec<crate::evidence::Evidence>,
    },
    /// A file carries a format version this build does not understand.
    #[error("{file}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file concerned.
        file: String,
        /// The version found.
        version: u32,
    },
    /// An earlier write or fsync failed; the log refuses writes until reopened.
    #[error("the log is poisoned by an earlier I/O failure; reopen to recover from disk")]
    Poisoned,
    /// A record or frame given by the caller breaks a format limit.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The directory is locked by another open log (in this or another process).
    #[error("{0} is locked by another process or handle")]
    Locked(String),
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op,
            file: file.into(),
            source,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(file: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
