//! Reads through the secondary indexes: the events of one category, or of
//! a set of event types, from a position, in position order. Only the
//! matching events are read: O(log n) index pages plus one event read per
//! result.

use std::ops::ControlFlow;

use annals_index::SecondaryKey;

use super::Store;
use crate::error::{Error, Result};
use crate::event::{EventRef, RecordedEvent};
use crate::index::record_has_key;

/// Candidates asked of the index per type per round of a type read.
const TYPE_CHUNK: usize = 1024;

impl Store {
    /// Visits up to `max` events of `category` (streams named
    /// `category-…`, see [`category_of`](crate::category_of)) from position
    /// `from` (inclusive, like [`read_all`](Store::read_all)) in position
    /// order, borrowed from the log, until `visit` returns `Break`.
    /// Returns the number visited. The store's own streams are in their
    /// own `$…` categories.
    pub fn read_category_with(
        &self,
        category: &str,
        from: u64,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        let mut visited = 0;
        if max == 0 {
            return Ok(0);
        }
        let key = SecondaryKey::category(category);
        self.inner
            .index
            .visit_secondary(&key, from, max, &mut |position, record, owner| {
                visited += 1;
                visit(EventRef::new(position, record, owner))
            })?;
        Ok(visited)
    }

    /// Up to `max` events of `category` from position `from` (inclusive),
    /// in position order (see [`read_category_with`](Store::read_category_with)).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for stream in ["order-1", "user-1", "order-2"] {
    ///     store.append(stream, ExpectedVersion::Any, vec![EventData::new("X", "{}")])??;
    /// }
    /// let orders: Vec<u64> = store.read_category("order", 0, 10)?.iter().map(|e| e.position).collect();
    /// assert_eq!(orders, vec![0, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_category(
        &self,
        category: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        self.read_category_with(category, from, max, |event| {
            events.push(event.to_recorded());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// Visits up to `max` events whose type is one of `types` from position
    /// `from` (inclusive) in position order, until `visit` returns
    /// `Break`. Returns the number visited. An empty set of types is
    /// [`Error::InvalidInput`].
    pub fn read_event_types_with<S: AsRef<str>>(
        &self,
        types: &[S],
        from: u64,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        if types.is_empty() {
            return Err(Error::InvalidInput("no event type to read".into()));
        }
        let keys: Vec<SecondaryKey<'_>> = types
            .iter()
            .map(|t| SecondaryKey::event_type(t.as_ref()))
            .collect();
        let index = &self.inner.index;
        let (mut from, mut visited) = (from, 0usize);
        while visited < max {
            // Each type's next candidates, merged: the smallest `horizon`
            // of the types that filled their chunk bounds what is certain.
            let chunk = (max - visited).min(TYPE_CHUNK);
            let mut merged = Vec::new();
            let mut horizon = u64::MAX;
            for key in &keys {
                let candidates = index.secondary_candidates(key, from, chunk)?;
                if candidates.len() == chunk {
                    horizon = horizon.min(candidates.last().copied().unwrap_or(u64::MAX));
                }
                merged.extend(candidates);
            }
            merged.sort_unstable();
            merged.dedup();
            merged.retain(|&p| p <= horizon);
            let Some(&last) = merged.last() else {
                return Ok(visited);
            };
            let mut stop = false;
            self.inner
                .reader
                .with_events_shared(&merged, |position, record, owner| {
                    if !keys.iter().any(|key| record_has_key(&record, key)) {
                        return ControlFlow::Continue(());
                    }
                    visited += 1;
                    if visit(EventRef::new(position, record, owner)).is_break() || visited >= max {
                        stop = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
            if stop || horizon == u64::MAX {
                return Ok(visited);
            }
            from = last + 1;
        }
        Ok(visited)
    }

    /// Up to `max` events whose type is one of `types` from position `from`
    /// (inclusive), in position order (see
    /// [`read_event_types_with`](Store::read_event_types_with)).
    pub fn read_event_types<S: AsRef<str>>(
        &self,
        types: &[S],
        from: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        self.read_event_types_with(types, from, max, |event| {
            events.push(event.to_recorded());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// Up to `max` positions of events carrying `key` after `after`
    /// (exclusive; `None`: from the first), in increasing order. For the
    /// store's own features (conditions on tags, categories, types).
    #[allow(dead_code)]
    pub(crate) fn secondary_positions(
        &self,
        key: &SecondaryKey<'_>,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<u64>> {
        self.inner.index.secondary_positions(key, after, max)
    }

    /// The position of the last event carrying `key`, if any.
    #[allow(dead_code)]
    pub(crate) fn secondary_last_position(&self, key: &SecondaryKey<'_>) -> Result<Option<u64>> {
        self.inner.index.secondary_last_position(key)
    }
}
