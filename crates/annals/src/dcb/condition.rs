//! The append condition of the Dynamic Consistency Boundary: an append
//! that fails, writing nothing, if an event matching a query was written
//! after a position ([`AppendCondition`]), and how a failed one is told
//! apart from a stale expected version ([`AppendRejected`]).

use super::query::Query;
use crate::store::MultiConflict;

/// Fail the append if an event matching `fail_if_events_match` has a
/// position above `after` (anywhere in the log without `after`), counting
/// the events accepted before it in the same group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendCondition {
    /// What the decision read.
    pub fail_if_events_match: Query,
    /// The position the decision read up to (from
    /// [`QueryRead::read_up_to`](super::QueryRead::read_up_to)); `None`:
    /// no event matching may exist at all.
    pub after: Option<u64>,
}

impl AppendCondition {
    /// Fail if any event matches `query` (set a position with
    /// [`after`](AppendCondition::after)).
    pub fn new(query: Query) -> Self {
        AppendCondition {
            fail_if_events_match: query,
            after: None,
        }
    }

    /// Only events above `position` count (`None`: all of them).
    pub fn after(mut self, position: impl Into<Option<u64>>) -> Self {
        self.after = position.into();
        self
    }
}

/// An append condition that failed: an event matching its query is at
/// `position`, the first one above the condition's `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("append condition failed: the event at position {position} matches its query")]
pub struct ConditionFailed {
    /// The first matching event's position (possibly an event accepted
    /// earlier in the same group commit).
    pub position: u64,
}

/// Why a conditional append wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejected {
    /// A stream was not at its expected version.
    #[error(transparent)]
    WrongExpectedVersion(#[from] MultiConflict),
    /// An event matching the condition's query was written after its
    /// position.
    #[error(transparent)]
    Condition(#[from] ConditionFailed),
}
