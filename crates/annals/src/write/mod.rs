//! The write path: leader/follower group commit and the decisions it makes.
//!
//! Callers queue their request (a bounded queue: a full one blocks them).
//! The first caller to find no leader becomes the leader: it waits briefly
//! for the callers the previous group answered (gathering, `Fsync` mode
//! only), takes every request waiting (up to `group_max`), recognises
//! retries of appends already stored (by event id), checks each
//! expectation against the index
//! *and* the requests before it in the same group, writes the accepted ones
//! as one frame with one `write`, makes them durable with one `fdatasync`
//! (per the durability mode), updates the index, hands leadership to the
//! next waiting request and answers its followers (woken as a tree: each
//! woken follower wakes two more). A caller alone never changes threads; a
//! group of N costs at most N-1 wakeups. (A dedicated
//! writer thread cost two cross-thread wakeups per append: measured at ~21%
//! of the time of bulk appends on this machine.)
//!
//! | file | owns |
//! |---|---|
//! | `pipeline.rs` | the queue, leadership, gathering, waking followers |
//! | `commit.rs` | one group: encode, `write`, `fdatasync`, index update, answers |
//!
//! The index (`crate::index`) holds the stream versions and event ids the
//! decisions need; the writer pushes each group into its memtable.
//! | `decide.rs` | per request: a retry? which expectation fails? |
//! | `recent.rs` | the types and tags of the last events written, for append conditions |

mod commit;
mod decide;
mod pipeline;
mod recent;

use crate::dcb::AppendCondition;
use crate::error::Result;
use crate::event::EventData;
use crate::expected::{ExpectedVersion, WrongExpectedVersion};
use crate::AppendResult;

pub(crate) use commit::Writer;
pub(crate) use pipeline::{Pipeline, Request};
pub(crate) use recent::RecentEvents;

/// One stream's part of an append.
#[derive(Debug)]
pub(crate) struct StreamAppend {
    pub(crate) stream: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<EventData>,
    pub(crate) tombstone: bool,
    /// Each event's encoded tag region, filled in when the append is
    /// validated (empty until then, and for events without tags).
    pub(crate) tag_regions: Vec<Vec<u8>>,
    /// Set on the first stream append of a replicated append
    /// (`crate::store::replicate`): where and when the source wrote it.
    pub(crate) replica: Option<Replica>,
}

/// A replicated append must land at `position` and keeps the source's
/// commit time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replica {
    pub(crate) position: u64,
    pub(crate) timestamp_us: u64,
}

impl StreamAppend {
    /// An append of `events` to `stream`, not yet validated.
    pub(crate) fn new(
        stream: String,
        expected: ExpectedVersion,
        events: Vec<EventData>,
        tombstone: bool,
    ) -> Self {
        StreamAppend {
            stream,
            expected,
            events,
            tombstone,
            tag_regions: Vec::new(),
            replica: None,
        }
    }

    /// The tags of event `i`, as validation encoded them.
    pub(crate) fn tags(&self, i: usize) -> annals_segment::Tags<'_> {
        self.tag_regions
            .get(i)
            .and_then(|region| annals_segment::Tags::from_encoded(region).ok())
            .unwrap_or_default()
    }
}

/// A rejected append: which of its streams failed, and how, or the
/// position of an event matching its condition.
#[derive(Debug)]
pub(crate) enum Conflict {
    /// Stream `.0` was not at its expected version.
    Expected(usize, WrongExpectedVersion),
    /// The event at this position matches the append's condition.
    Condition(u64),
}

/// What an append is answered.
pub(crate) type Outcome = Result<Result<Vec<AppendResult>, Conflict>>;

/// Work for the write path.
pub(crate) enum Work {
    /// Append, atomically, to one or more streams; only if no event
    /// matches the condition, when there is one.
    Append(Vec<StreamAppend>, Option<Box<AppendCondition>>),
    /// Make everything appended so far durable.
    Flush,
}

/// The answer to one piece of work.
pub(crate) enum Answer {
    /// To an append.
    Append(Outcome),
    /// To a flush.
    Flush(Result<()>),
    /// Not decided: a lookup met a damaged index run. The work comes back
    /// (filled in by the pipeline) so the caller rebuilds the run on its own
    /// thread and submits it again.
    Repair(Option<Work>),
}
