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
    /// The index disagrees with the log.
    #[error("index inconsistent with the log: {0}")]
    Index(String),
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

impl Error {
    /// Whether this is corruption found on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Log(
                annals_segment::Error::Corrupt { .. } | annals_segment::Error::Missing { .. }
            )
        )
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
