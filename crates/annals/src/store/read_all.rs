//! The global feed `$all` without copies: a visitor over borrowed events,
//! and a backward read. Also what subscriptions need of the store.

use std::ops::ControlFlow;

use annals_segment::LogReader;

use super::Store;
use crate::error::Result;
use crate::event::{EventRef, RecordedEvent};
use crate::subscribe::Feed;

/// How many positions a backward read asks the log for at once.
const BACKWARD_BATCH: u64 = 256;

impl Store {
    /// Like [`read_all`](Store::read_all), but hands each event to `visit`
    /// borrowed from the mapped log ([`EventRef`]): no allocation and no
    /// copy per event; every frame is checksummed before its events are
    /// visited. Visits up to `max` events from position `from`
    /// (inclusive), in commit order, until `visit` returns `Break`.
    /// Returns the number of events visited.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a-1", ExpectedVersion::Any, (0..3).map(|_| EventData::new("X", "abc")).collect())??;
    /// let mut bytes = 0;
    /// let visited = store.read_all_with(1, usize::MAX, |event| {
    ///     bytes += event.data.len();
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!((visited, bytes), (2, 6));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_with(
        &self,
        from: u64,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        let mut visited = 0usize;
        if max == 0 {
            return Ok(0);
        }
        self.inner
            .reader
            .scan_shared(from, |position, record, owner| {
                if crate::compact::is_erased(&record) {
                    return ControlFlow::Continue(());
                }
                visited += 1;
                let flow = visit(EventRef::new(position, record, owner));
                if flow.is_break() || visited >= max {
                    ControlFlow::Break(())
                } else {
                    flow
                }
            })?;
        Ok(visited)
    }

    /// Up to `max` events of the global feed from `from` (inclusive)
    /// backward, newest first. `u64::MAX` (or anything past the end)
    /// starts at the newest event.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a-1", ExpectedVersion::Any, (0..3).map(|_| EventData::new("X", "{}")).collect())??;
    /// let newest: Vec<u64> = store.read_all_backward(u64::MAX, 2)?.iter().map(|e| e.position).collect();
    /// assert_eq!(newest, vec![2, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_backward(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>> {
        let end = self.position_end();
        let mut events = Vec::with_capacity(max.min(4096));
        // One past the next position to read, going down.
        let mut upper = from.saturating_add(1).min(end);
        let mut positions = Vec::new();
        while upper > 0 && events.len() < max {
            let wanted = (max - events.len()) as u64;
            let count = wanted.min(BACKWARD_BATCH).min(upper);
            positions.clear();
            positions.extend((upper - count..upper).rev());
            self.inner
                .reader
                .with_events_shared(&positions, |position, record, owner| {
                    if !crate::compact::is_erased(&record) && events.len() < max {
                        events.push(RecordedEvent::from_record(position, record, owner));
                    }
                    ControlFlow::Continue(())
                })?;
            upper -= count;
        }
        Ok(events)
    }

    /// The log reader subscriptions scan with.
    pub(crate) fn log_reader(&self) -> &LogReader {
        &self.inner.reader
    }

    /// The index (DCB queries look up tags and types in it).
    pub(crate) fn index(&self) -> &crate::index::Index {
        &self.inner.index
    }

    /// The query cache, if [`Options::query_cache_bytes`](crate::Options::query_cache_bytes) asked for one.
    pub(crate) fn query_cache(&self) -> Option<&crate::dcb::cache::QueryCache> {
        self.inner.query_cache.as_ref()
    }

    /// Drops the query cache's copies read before a segment was last
    /// replaced (never served again; this frees their memory).
    pub(crate) fn forget_stale_cached(&self) {
        if let Some(cache) = self.query_cache() {
            cache.forget_stale(self.inner.reader.replacements());
        }
    }

    /// Held while `stream`'s metadata is read, checked and appended
    /// (`crate::stream_meta::MetaWriteLocks`).
    pub(crate) fn meta_write_lock(&self, stream: &str) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.meta_writes.lock(stream)
    }

    /// What wakes subscriptions.
    pub(crate) fn feed(&self) -> &Feed {
        &self.inner.feed
    }
}
