//! Optimistic concurrency: what an append expects of its stream, what the
//! stream actually is, and the check between them.

use std::fmt;

/// What an append expects the stream's current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No expectation: append whatever the stream holds (unless deleted).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (hold at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

/// A stream's version as the store sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CurrentVersion {
    /// The stream has no events.
    NoStream,
    /// The version of the stream's last event.
    Version(u64),
    /// The stream was deleted; `last` is the version of its tombstone.
    Deleted {
        /// Version of the tombstone.
        last: u64,
    },
}

impl CurrentVersion {
    /// From the index state of a stream.
    pub(crate) fn from_state(state: Option<annals_index::StreamState>) -> Self {
        match state {
            None => CurrentVersion::NoStream,
            Some(s) if s.len == 0 => CurrentVersion::NoStream,
            Some(s) if s.deleted => CurrentVersion::Deleted { last: s.len - 1 },
            Some(s) => CurrentVersion::Version(s.len - 1),
        }
    }

    /// The version the next event would get.
    pub(crate) fn next(self) -> u64 {
        match self {
            CurrentVersion::NoStream => 0,
            CurrentVersion::Version(v) | CurrentVersion::Deleted { last: v } => v + 1,
        }
    }

    /// Whether `expected` holds. A deleted stream satisfies no expectation.
    pub fn satisfies(self, expected: ExpectedVersion) -> bool {
        match (expected, self) {
            (_, CurrentVersion::Deleted { .. }) => false,
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, CurrentVersion::NoStream) => true,
            (ExpectedVersion::StreamExists, CurrentVersion::Version(_)) => true,
            (ExpectedVersion::Exact(want), CurrentVersion::Version(have)) => want == have,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no-stream"),
            ExpectedVersion::StreamExists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for CurrentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentVersion::NoStream => f.write_str("no-stream"),
            CurrentVersion::Version(v) => write!(f, "{v}"),
            CurrentVersion::Deleted { last } => write!(f, "deleted (tombstone at {last})"),
        }
    }
}

/// An append was rejected because its stream is not at the expected
/// version. Nothing of the append was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wrong expected version for stream {stream}: expected {expected}, actual {actual}")]
pub struct WrongExpectedVersion {
    /// The stream.
    pub stream: String,
    /// What the append expected.
    pub expected: ExpectedVersion,
    /// What the stream actually is.
    pub actual: CurrentVersion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use CurrentVersion as C;
    use ExpectedVersion as E;

    #[test]
    fn every_expectation_against_every_state() {
        let table = [
            (E::Any, C::NoStream, true),
            (E::Any, C::Version(3), true),
            (E::Any, C::Deleted { last: 4 }, false),
            (E::NoStream, C::NoStream, true),
            (E::NoStream, C::Version(0), false),
            (E::NoStream, C::Deleted { last: 1 }, false),
            (E::StreamExists, C::NoStream, false),
            (E::StreamExists, C::Version(0), true),
            (E::StreamExists, C::Deleted { last: 1 }, false),
            (E::Exact(0), C::NoStream, false),
            (E::Exact(3), C::Version(3), true),
            (E::Exact(2), C::Version(3), false),
            (E::Exact(4), C::Version(3), false),
            (E::Exact(1), C::Deleted { last: 1 }, false),
        ];
        for (expected, current, holds) in table {
            assert_eq!(
                current.satisfies(expected),
                holds,
                "{expected} vs {current}"
            );
        }
    }
}
