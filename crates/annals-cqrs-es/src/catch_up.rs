//! Bringing a snapshot that is behind its stream up to date, for cqrs-es'
//! aggregate-store mode (opt-in: [`AnnalsEventRepository::with_snapshot_catch_up`]).
//!
//! That mode loads an aggregate from its snapshot alone. The snapshot is
//! saved after the events (docs/CQRS-ES.md, "Snapshots and atomicity"), so
//! after a crash between the two, or a failed save, it is behind the
//! stream and every later command on the aggregate conflicts. Catching up
//! folds the events after the snapshot into it (`Aggregate::apply`) before
//! cqrs-es sees it.
//!
//! [`AnnalsEventRepository::with_snapshot_catch_up`]: crate::AnnalsEventRepository::with_snapshot_catch_up

use cqrs_es::persist::{SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;

/// `snapshot` with `later` (the events after it, in order) folded in; the
/// snapshot unchanged if there are none or any of them, or the snapshot,
/// does not deserialize as `A` (events are deserialized as stored: cqrs-es'
/// upcasters are not the repository's to run).
pub fn catch_up<A: Aggregate>(
    snapshot: SerializedSnapshot,
    later: &[SerializedEvent],
) -> SerializedSnapshot {
    let Some(last) = later.last() else {
        return snapshot;
    };
    match fold::<A>(&snapshot, later) {
        Some(aggregate) => SerializedSnapshot {
            aggregate,
            current_sequence: last.sequence,
            ..snapshot
        },
        None => snapshot,
    }
}

fn fold<A: Aggregate>(
    snapshot: &SerializedSnapshot,
    later: &[SerializedEvent],
) -> Option<serde_json::Value> {
    let mut aggregate: A = serde_json::from_value(snapshot.aggregate.clone()).ok()?;
    for event in later {
        aggregate.apply(serde_json::from_value(event.payload.clone()).ok()?);
    }
    serde_json::to_value(&aggregate).ok()
}
