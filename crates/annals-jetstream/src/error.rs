//! The crate's error type: what stops a relay or a mirror, and whether
//! trying again can help.

/// A relay's or a mirror's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] annals::Error),
    /// The NATS server could not be reached or did not answer as expected;
    /// trying again later can help (relays and mirrors do, with backoff).
    #[error("NATS: {0}")]
    Nats(String),
    /// Going on would break the copy (a JetStream stream that holds another
    /// store's events or positions this store does not have, settings that
    /// do not fit, a store that mirrors another source): refused, nothing
    /// published or written. Trying again does not help.
    #[error("refused: {0}")]
    Refused(String),
    /// A message in the JetStream stream is not one a relay published.
    #[error("JetStream message {sequence} is not an Annals event: {reason}")]
    BadMessage {
        /// Its stream sequence.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file (the mirror's source record) could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether trying again later can help (a server that is down or
    /// restarting, a publish that raced another relay).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Nats(_))
    }

    /// A NATS failure, from anything that prints.
    pub(crate) fn nats(context: &str, error: impl std::fmt::Display) -> Error {
        Error::Nats(format!("{context}: {error}"))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
