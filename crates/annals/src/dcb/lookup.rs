//! Finding the events that match a [`Query`] above a position: what the
//! write path's condition check and [`Store::read_query`](crate::Store::read_query) ask.
//!
//! INTERIM: this walks the log from the position on (every frame
//! checksummed), filtering by type and tags. It is the one place the
//! secondary index (type and tag postings, issue 19's machinery with a
//! `Tag` key kind) replaces: a few lookups per query item instead of a
//! scan. Until then a condition costs a read of the log after its
//! `after` position.

use std::ops::ControlFlow;

use annals_segment::LogReader;

use super::query::Query;
use crate::error::Result;
use crate::event::EventRef;

/// The first position in `from..` holding an event that matches `query`.
pub(crate) fn first_match(reader: &LogReader, query: &Query, from: u64) -> Result<Option<u64>> {
    if query.items.is_empty() {
        return Ok(None);
    }
    let mut found = None;
    reader.scan(from, |position, record| {
        if query.matches(record.event_type, record.tags) {
            found = Some(position);
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(found)
}

/// Visits the events in `from..` that match `query`, in position order,
/// until `visit` breaks. Returns the last position looked at (`None` if
/// none was).
pub(crate) fn visit_matches(
    reader: &LogReader,
    query: &Query,
    from: u64,
    mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    let mut last = None;
    reader.scan_shared(from, |position, record, owner| {
        last = Some(position);
        if query.matches(record.event_type, record.tags) {
            visit(EventRef::new(position, record, owner))
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(last)
}
