//! The backend's error type, and how it reaches cqrs-es as a
//! [`PersistenceError`].

use cqrs_es::persist::PersistenceError;

/// Everything the backend can refuse or fail with, apart from a lost race,
/// which reaches cqrs-es as [`PersistenceError::OptimisticLockError`].
///
/// Inside a [`PersistenceError`] it is boxed as the source of
/// `UnknownError` (caller input, store failures), `DeserializationError`
/// (stored bytes that do not decode) or `ConnectionError` (the store is
/// locked, closed or poisoned); `downcast_ref::<Error>()` recovers it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The aggregate type cannot name an Annals category: it is empty,
    /// holds a `-` (the category is the stream name up to its first `-`),
    /// or starts with `$` (reserved for the store's own streams).
    #[error("aggregate type {aggregate_type:?} cannot be an Annals category: {reason}")]
    AggregateType {
        /// The type refused.
        aggregate_type: String,
        /// Why.
        reason: &'static str,
    },
    /// The events of one `persist` call are not one aggregate's run of
    /// consecutive sequences from 1 on (another aggregate or type, a gap, a
    /// repeat, sequence 0). Nothing was written.
    #[error("events not persisted: {0}")]
    Batch(String),
    /// A snapshot update came without events: it would not say which
    /// sequence its state stands for. Nothing was written.
    #[error("a snapshot of {aggregate_id} needs the events it folds in; none were given")]
    SnapshotWithoutEvents {
        /// The aggregate.
        aggregate_id: String,
    },
    /// An event or snapshot in the store does not decode as this backend
    /// writes them (docs/CQRS-ES.md, "Encoding").
    #[error("stored {what} of stream {stream} at version {version} does not decode: {reason}")]
    Stored {
        /// `"event"` or `"snapshot"`.
        what: &'static str,
        /// The stream.
        stream: String,
        /// Its version in the stream.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An event could not be encoded (its payload or metadata does not
    /// serialize). Nothing was written.
    #[error("event not encodable: {0}")]
    Encode(#[source] serde_json::Error),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] annals::Error),
    /// The blocking task running a store call panicked or was cancelled.
    #[error("the blocking task of a store call failed: {0}")]
    Blocking(String),
}

impl From<Error> for PersistenceError {
    fn from(error: Error) -> Self {
        match error {
            Error::Stored { .. } => PersistenceError::DeserializationError(Box::new(error)),
            Error::Store(
                annals::Error::Locked(_) | annals::Error::Closed | annals::Error::Poisoned { .. },
            ) => PersistenceError::ConnectionError(Box::new(error)),
            Error::Store(annals::Error::WrongExpectedVersion(_)) => {
                PersistenceError::OptimisticLockError
            }
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}
