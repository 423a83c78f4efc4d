//! The store's error type.

use std::sync::Arc;

use crate::expected::WrongExpectedVersion;

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can fail in the store, apart from a conflict, which is an
/// outcome (see [`WrongExpectedVersion`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store directory is locked by another open store.
    #[error("store at {0} is locked by another process or handle")]
    Locked(String),
    /// Bad input from the caller; nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The stream was deleted; it cannot be read or appended to.
    #[error("stream {0} was deleted")]
    StreamDeleted(String),
    /// The stream has no events (a snapshot needs a stream to stand for).
    #[error("stream {0} has no events")]
    StreamNotFound(String),
    /// A snapshot at a version the stream has not reached; nothing was written.
    #[error("snapshot of {stream} at version {version} is ahead of the stream, which is at version {current}")]
    SnapshotAhead {
        /// The stream.
        stream: String,
        /// The version asked for.
        version: u64,
        /// The stream's current version.
        current: u64,
    },
    /// The metadata stream of a stream holds an event it cannot read.
    #[error("the metadata of stream {stream} is unreadable: {reason}")]
    BadStreamMetadata {
        /// The stream whose metadata it is.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A write, fsync or commit failed; the store refuses writes until it
    /// is reopened, which recovers from what is on disk. Every request of
    /// the group that failed, and every later one, carries the same cause.
    #[error("the store refuses writes after an earlier failure ({cause}); reopen it")]
    Poisoned {
        /// What failed first: an I/O error of the log, or a panic.
        #[source]
        cause: Arc<Error>,
    },
    /// A group commit panicked (in a [`Storage`](crate::storage::Storage)
    /// implementation, or a broken invariant of the store). Seen as the
    /// cause of [`Error::Poisoned`].
    #[error("a group commit panicked: {0}")]
    Panicked(String),
    /// The store was closed while the request was pending.
    #[error("the store is closed")]
    Closed,
    /// The store was opened read-only ([`Store::open_read_only`](crate::Store::open_read_only)):
    /// it refuses appends, deletes and anything else that would write.
    #[error("the store at {0} is opened read-only")]
    ReadOnly(String),
    /// The directory holds no store (missing, empty, or someone else's
    /// files): a read-only open creates none, and a writable open refuses
    /// to turn a non-empty directory into one.
    #[error("not an Annals store: {0}")]
    NotAStore(String),
    /// A backup was refused (its destination is someone else's) or the
    /// directory holds a backup that did not complete.
    #[error("backup: {0}")]
    Backup(String),
    /// The index disagrees with the log.
    #[error("index inconsistent with the log: {0}")]
    Index(String),
    /// The index holds as many in-memory buffers as it may and cannot write
    /// them to index files (disk full, a failed directory fsync): the
    /// append was refused and nothing was written. Appends succeed again
    /// once index files can be written; the store is not poisoned.
    #[error("append refused, nothing written: the index cannot be persisted ({0})")]
    IndexBacklog(String),
    /// [`Store::verify`](crate::Store::verify) found the index damaged or
    /// disagreeing with the log, while the log itself verified intact. The
    /// index is derived data: [`Store::rebuild_index`](crate::Store::rebuild_index)
    /// (`annals rebuild-index`) rebuilds it from the log, losing nothing.
    #[error("the index is damaged, the log is intact (rebuild the index from the log: `annals rebuild-index`): {0}")]
    IndexDamaged(#[source] Box<Error>),
    /// A broken invariant of the store itself (a bug, not a fault of the
    /// disk, the index or the caller): e.g. the log writer reporting fewer
    /// positions or offsets than events written.
    #[error("internal error: {0}")]
    Internal(String),
    /// A consumer checkpoint's stored event does not hold a position.
    #[error("checkpoint {name} is unreadable: {reason}")]
    BadCheckpoint {
        /// The consumer's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A conflict, for callers that use `??` and treat it as an error.
    #[error(transparent)]
    WrongExpectedVersion(#[from] WrongExpectedVersion),
    /// An error of the segment log: I/O, corruption, format version.
    #[error(transparent)]
    Log(annals_segment::Error),
}

impl From<annals_segment::Error> for Error {
    fn from(error: annals_segment::Error) -> Self {
        match error {
            annals_segment::Error::Invalid(reason) => Error::InvalidInput(reason),
            annals_segment::Error::Locked(dir) => Error::Locked(dir),
            other => Error::Log(other),
        }
    }
}

/// An index error reaches the store's callers as before the index had its
/// own error type: a run file's storage error as that error ([`Error::Log`]
/// for I/O, corruption and format versions, so [`Error::is_corruption`]
/// answers as for the log), and the memtable's refusals (a version or
/// position gap, an entry after a tombstone) as [`Error::Index`].
impl From<annals_index::Error> for Error {
    fn from(error: annals_index::Error) -> Self {
        match error {
            annals_index::Error::Storage(log) => Error::from(log),
            other => Error::Index(other.to_string()),
        }
    }
}

impl Error {
    /// Whether this is corruption found on disk.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Log(
                annals_segment::Error::Corrupt { .. } | annals_segment::Error::Missing { .. },
            ) => true,
            Error::IndexDamaged(inner) => inner.is_corruption(),
            _ => false,
        }
    }

    /// Whether this is damage to the index only ([`Error::IndexDamaged`]):
    /// derived data, rebuilt from the log without loss.
    pub fn is_index_damage(&self) -> bool {
        matches!(self, Error::IndexDamaged(_))
    }

    /// Whether the log ends before what the store's own files vouched was
    /// durable ([`annals_segment::Error::Missing`]): see
    /// [`Store::repair`](crate::Store::repair).
    pub fn is_missing(&self) -> bool {
        matches!(self, Error::Log(annals_segment::Error::Missing { .. }))
    }

    /// What made the store refuse writes, if this is [`Error::Poisoned`].
    pub fn poison_cause(&self) -> Option<&Error> {
        match self {
            Error::Poisoned { cause } => Some(cause),
            _ => None,
        }
    }
}
