//! Reading by query: [`Store::read_query`] and its visitor form
//! [`Store::read_query_with`].

use std::ops::ControlFlow;

use super::lookup::visit_matches;
use super::query::Query;
use crate::error::Result;
use crate::event::{EventRef, RecordedEvent};
use crate::store::Store;

/// What [`Store::read_query`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRead {
    /// The matching events, in position order.
    pub events: Vec<RecordedEvent>,
    /// The last position the read covered: every event up to it that
    /// matches is in `events` (or before `from`). Give it as
    /// [`AppendCondition::after`](super::AppendCondition::after) to append
    /// only if nothing matching was written since. `None`: the read covered
    /// no position at all (an empty log read from 0): give `None`.
    pub read_up_to: Option<u64>,
}

impl Store {
    /// Up to `max` events matching `query` from position `from`
    /// (inclusive), in position order, and how far the read covered (also
    /// when nothing matched). See [`Query`] for what matches.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Query, QueryItem, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let subscribed = EventData::new("StudentSubscribed", "{}").with_tags(["student:1", "course:7"]);
    /// store.append("student-1", ExpectedVersion::Any, vec![subscribed])??;
    /// let query = Query::new([QueryItem::new().tags(["course:7"])]);
    /// let read = store.read_query(&query, 0, 100)?;
    /// assert_eq!(read.events.len(), 1);
    /// assert_eq!(read.read_up_to, Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_query(&self, query: &Query, from: u64, max: usize) -> Result<QueryRead> {
        let mut events = Vec::with_capacity(max.min(128));
        let read_up_to = self.read_query_with(query, from, max, |event| {
            events.push(event.to_recorded());
            ControlFlow::Continue(())
        })?;
        Ok(QueryRead { events, read_up_to })
    }

    /// Like [`read_query`](Store::read_query), handing each matching event
    /// to `visit` borrowed from the mapped log (or from the query cache's
    /// verified copy of it), until `max` are visited or
    /// `visit` breaks. Returns how far the read covered: the position of
    /// the last event visited if it stopped there, else the last position
    /// of the log it looked at.
    pub fn read_query_with(
        &self,
        query: &Query,
        from: u64,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<Option<u64>> {
        query.validate()?;
        let reader = self.log_reader();
        // Read before the walk, which covers at least this far: a position
        // past the end is not covered (an event may still be written there).
        let covered_without_events = from.min(reader.position_end()).checked_sub(1);
        if max == 0 {
            return Ok(covered_without_events);
        }
        let mut visited = 0usize;
        let mut stopped_at = None;
        let events = crate::dcb::cache::EventSource {
            reader,
            cache: self.query_cache(),
        };
        let last = visit_matches(self.index(), events, query, from, |event| {
            visited += 1;
            let position = event.position;
            let flow = visit(event);
            if flow.is_break() || visited >= max {
                stopped_at = Some(position);
                ControlFlow::Break(())
            } else {
                flow
            }
        })?;
        Ok(stopped_at.or(last).or(covered_without_events))
    }
}
