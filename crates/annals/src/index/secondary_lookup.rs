//! Lookups in the secondary indexes: the positions of a key after a
//! position (candidates from runs confirmed by reading their events), the
//! last position of a key, and visiting the matching events themselves.

use std::ops::ControlFlow;
use std::sync::Arc;

use annals_index::SecondaryKey;
use annals_segment::Record;

use super::secondary::{record_has_key, SecondaryIndex};
use crate::error::Result;

/// Candidates fetched from the index per round of a read.
const CHUNK: usize = 4096;

impl SecondaryIndex {
    /// Up to `max` candidate positions of `key` from `from` (inclusive), in
    /// increasing order: those of runs are the key's *hash*'s (another key
    /// with the same hash adds some), those of the memtable exact. The
    /// memtable is first extended to the log's published end. A damaged
    /// run page met on the way is rebuilt on this thread and the lookup
    /// retried.
    pub(crate) fn candidates(
        &self,
        key: &SecondaryKey<'_>,
        from: u64,
        max: usize,
    ) -> Result<Vec<u64>> {
        let end = self.reader.position_end();
        self.repairing(|| self.candidates_unrepaired(key, from, max, end))
    }

    /// [`candidates`](SecondaryIndex::candidates) for the write path, which
    /// does bounded work only: the memtable is extended only to `end`, so
    /// the result is complete below `end` (those at or past it may be
    /// missing: the condition check finds them elsewhere and decodes no
    /// event it does not need), and a damaged run page is the error (the
    /// caller rebuilds the run off the write path and asks again).
    pub(crate) fn candidates_unrepaired(
        &self,
        key: &SecondaryKey<'_>,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<u64>> {
        self.extend_to(end)?;
        let (runs, memtable) = {
            let levels = self.levels.read();
            let memtable = levels.memtable.positions(key, from, max);
            (Arc::clone(&levels.runs), memtable)
        };
        let hash = key.hash();
        // No room reserved: a condition's lookup usually finds nothing
        // (the runs reserve some when they find a first candidate).
        let mut out = Vec::new();
        // The first run that may hold `from`: runs are contiguous.
        let first = runs.partition_point(|r| r.end() <= from);
        for run in runs.get(first..).unwrap_or_default() {
            if out.len() >= max {
                break;
            }
            run.extend_positions(hash, from, max - out.len(), &mut out)?;
        }
        out.extend(memtable.into_iter().take(max - out.len().min(max)));
        Ok(out)
    }

    /// How many candidates [`candidates`](SecondaryIndex::candidates) has
    /// for `key` from `from` on (its matches, plus any other key's of the
    /// same hash in runs): what a query walks the rarest of its keys by.
    /// O(log n) run entries read per run. A damaged run page met on the way
    /// is rebuilt on this thread and the count retried.
    pub(crate) fn count(&self, key: &SecondaryKey<'_>, from: u64) -> Result<u64> {
        let end = self.reader.position_end();
        self.repairing(|| self.count_unrepaired(key, from, end))
    }

    /// [`count`](SecondaryIndex::count) for the write path: the memtable
    /// extended only to `end`, a damaged run page the error (see
    /// [`candidates_unrepaired`](SecondaryIndex::candidates_unrepaired)).
    pub(crate) fn count_unrepaired(
        &self,
        key: &SecondaryKey<'_>,
        from: u64,
        end: u64,
    ) -> Result<u64> {
        self.extend_to(end)?;
        let (runs, in_memory) = {
            let levels = self.levels.read();
            (Arc::clone(&levels.runs), levels.memtable.count(key, from))
        };
        let hash = key.hash();
        let first = runs.partition_point(|r| r.end() <= from);
        let mut total = in_memory;
        for run in runs.get(first..).unwrap_or_default() {
            total = total.saturating_add(run.count(hash, from)?);
        }
        Ok(total)
    }

    /// Calls `visit(position, record, buffer)` for each of the first `max`
    /// events carrying `key` from position `from` (inclusive) on, in
    /// position order, until it returns `Break`; only matching events (and
    /// the rare hash-colliding candidate) are read.
    pub(crate) fn visit_matching(
        &self,
        key: &SecondaryKey<'_>,
        from: u64,
        max: usize,
        visit: &mut dyn FnMut(u64, Record<'_>, &bytes::Bytes) -> ControlFlow<()>,
    ) -> Result<()> {
        let (mut from, mut left) = (from, max);
        while left > 0 {
            let chunk = left.min(CHUNK);
            let candidates = self.candidates(key, from, chunk)?;
            let Some(&last) = candidates.last() else {
                return Ok(());
            };
            let mut stop = false;
            self.reader
                .with_events_shared(&candidates, |position, record, owner| {
                    if !record_has_key(&record, key) {
                        return ControlFlow::Continue(());
                    }
                    left -= 1;
                    if visit(position, record, owner).is_break() || left == 0 {
                        stop = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
            if stop || candidates.len() < chunk {
                return Ok(());
            }
            from = last + 1;
        }
        Ok(())
    }

    /// Up to `max` positions of events carrying `key` after `after`
    /// (exclusive; `None`: from the first), in increasing order.
    pub(crate) fn positions(
        &self,
        key: &SecondaryKey<'_>,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<u64>> {
        let from = after.map_or(0, |p| p.saturating_add(1));
        let mut out = Vec::new();
        self.visit_matching(key, from, max, &mut |position, _, _| {
            out.push(position);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// The position of the last event carrying `key`, if any: the
    /// memtable's, else the newest run's candidates confirmed by reading
    /// their events, newest first.
    pub(crate) fn last_position(&self, key: &SecondaryKey<'_>) -> Result<Option<u64>> {
        self.extend_to(self.reader.position_end())?;
        // Starting afresh on a retry: a repair replaces the broken run.
        self.repairing(|| {
            let (runs, in_memory) = {
                let levels = self.levels.read();
                (Arc::clone(&levels.runs), levels.memtable.last_position(key))
            };
            if in_memory.is_some() {
                return Ok(in_memory);
            }
            let hash = key.hash();
            for run in runs.iter().rev() {
                let mut below = run.end();
                loop {
                    let candidates = run.positions_backward(hash, below, CHUNK)?;
                    let mut found = None;
                    self.reader
                        .with_events_shared(&candidates, |position, record, _| {
                            if record_has_key(&record, key) {
                                found = Some(position);
                                return ControlFlow::Break(());
                            }
                            ControlFlow::Continue(())
                        })?;
                    if found.is_some() {
                        return Ok(found);
                    }
                    match candidates.last() {
                        Some(&oldest) if candidates.len() == CHUNK => below = oldest,
                        _ => break,
                    }
                }
            }
            Ok(None)
        })
    }
}
