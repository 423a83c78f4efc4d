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
    #[allow(
        dead_code,
        reason = "for conditions on keys (DCB, issue 22); tested here"
    )]
    pub(crate) fn secondary_positions(
        &self,
        key: &SecondaryKey<'_>,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<u64>> {
        self.inner.index.secondary_positions(key, after, max)
    }

    /// The position of the last event carrying `key`, if any.
    #[allow(
        dead_code,
        reason = "for conditions on keys (DCB, issue 22); tested here"
    )]
    pub(crate) fn secondary_last_position(&self, key: &SecondaryKey<'_>) -> Result<Option<u64>> {
        self.inner.index.secondary_last_position(key)
    }
}

#[cfg(test)]
mod tests {
    use annals_index::SecondaryKey;

    use crate::{Durability, EventData, ExpectedVersion, Options, Store};

    /// `secondary_positions` and `secondary_last_position` against a
    /// filtered scan, from memory and from runs (after reopen), for keys
    /// that occur, occur once, and never occur.
    #[test]
    fn key_lookups_equal_a_filtered_scan_from_memory_and_from_runs() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default()
            .index_buffer_events(50)
            .durability(Durability::Buffered);
        let write = |store: &Store| {
            for i in 0..300u64 {
                let stream = format!("{}-{}", ["a", "b", "c"][(i % 3) as usize], i % 7);
                let ty = if i == 123 {
                    "Once"
                } else {
                    ["X", "Y"][(i % 2) as usize]
                };
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![EventData::new(ty, "{}")],
                    )
                    .unwrap()
                    .unwrap();
            }
        };
        let check = |store: &Store| {
            let all = store.read_all(0, usize::MAX).unwrap();
            let keys = [
                SecondaryKey::category("a"),
                SecondaryKey::category("c"),
                SecondaryKey::category("zz"),
                SecondaryKey::event_type("Y"),
                SecondaryKey::event_type("Once"),
                SecondaryKey::event_type("a"),
            ];
            for key in keys {
                let matching: Vec<u64> = all
                    .iter()
                    .filter(|e| match key.kind {
                        annals_index::SecondaryKind::Category => {
                            crate::category_of(&e.stream) == Some(key.name)
                        }
                        _ => e.event_type == key.name,
                    })
                    .map(|e| e.position)
                    .collect();
                assert_eq!(
                    store.secondary_last_position(&key).unwrap(),
                    matching.last().copied(),
                    "{key:?}"
                );
                for after in [None, Some(0), Some(122), Some(123), Some(299), Some(10_000)] {
                    for max in [1, 5, usize::MAX] {
                        let want: Vec<u64> = matching
                            .iter()
                            .copied()
                            .filter(|p| after.is_none_or(|a| *p > a))
                            .take(max)
                            .collect();
                        let got = store.secondary_positions(&key, after, max).unwrap();
                        assert_eq!(got, want, "{key:?} after {after:?} max {max}");
                    }
                }
            }
        };
        {
            let store = Store::open_with(dir.path(), options.clone()).unwrap();
            write(&store);
            check(&store);
        }
        let store = Store::open_with(dir.path(), options).unwrap();
        assert_eq!(store.index_report().secondary.replayed, 0);
        check(&store);
        write(&store);
        check(&store);
    }
}
