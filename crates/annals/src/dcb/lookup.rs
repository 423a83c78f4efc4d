//! Finding the events that match a [`Query`] above a position, through the
//! secondary index's postings per event type and per tag
//! ([`indexed`](super::indexed)): what the write path's condition check
//! and [`Store::read_query`](crate::Store::read_query) ask. A few index
//! lookups per query item, never a walk of the log.

use std::ops::ControlFlow;

use annals_index::SecondaryKey;
use annals_segment::LogReader;

use super::indexed::{visit_indexed, Key, Postings};
use super::query::Query;
use crate::error::Result;
use crate::event::EventRef;
use crate::index::Index;

impl Postings for Index {
    fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
        let key = match key {
            Key::Type(name) => SecondaryKey::event_type(name),
            Key::Tag(name) => SecondaryKey::tag(name),
        };
        let mut candidates = self.secondary_candidates(&key, from, max)?;
        // Sorted: what is cut is past `to`, and all before it is kept.
        candidates.retain(|&p| p < to);
        Ok(candidates)
    }
}

/// The first position in `from..to` holding an event that matches `query`.
pub(crate) fn first_match(
    index: &Index,
    reader: &LogReader,
    query: &Query,
    from: u64,
    to: u64,
) -> Result<Option<u64>> {
    visit_indexed(index, reader, query, from, to, |_| ControlFlow::Break(()))
}

/// Visits the events from `from` on that match `query`, in position order,
/// until `visit` breaks. Returns the last position covered: where `visit`
/// broke, else the last of the log as this call saw it (`None`: none).
pub(crate) fn visit_matches(
    index: &Index,
    reader: &LogReader,
    query: &Query,
    from: u64,
    visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    let to = reader.position_end();
    let stopped = visit_indexed(index, reader, query, from, to, visit)?;
    Ok(stopped.or_else(|| (to > from).then(|| to - 1)))
}
