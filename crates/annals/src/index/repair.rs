//! Repairing damaged runs: a lookup that meets a damaged page rebuilds the
//! broken runs from the log and is retried.

use std::ops::ControlFlow;
use std::sync::Arc;

use annals_index::{merge_runs, Run};
use annals_segment::LogReader;

use crate::error::{Error, Result};
use crate::APPEND_FIRST_FLAG;

use super::*;

impl IndexState {
    /// Runs `lookup`; if it found a damaged run page, rebuilds the broken
    /// runs from the log and runs it once more.
    pub(super) fn repairing<T>(&self, mut lookup: impl FnMut() -> Result<T>) -> Result<T> {
        if self.read_only {
            // A read-only store repairs nothing: the error is the answer.
            return lookup();
        }
        let repairs = self.repairs();
        match lookup() {
            Err(e) if e.is_corruption() && self.damaged_since(repairs) => {
                self.repair()?;
                lookup()
            }
            other => other,
        }
    }

    /// How many runs [`repair`](IndexState::repair) has replaced so far.
    pub(super) fn repairs(&self) -> u64 {
        self.repairs.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a lookup that began when [`repairs`](IndexState::repairs)
    /// said `repairs` and met a damaged page met one a repair rebuilds: a
    /// run is broken now, or one was replaced since (another thread's
    /// repair can rebuild it between the failed lookup and this question).
    fn damaged_since(&self, repairs: u64) -> bool {
        self.levels.read().runs.iter().any(|r| r.is_broken()) || self.repairs() != repairs
    }

    /// Rebuilds every broken run from the log.
    pub(super) fn repair(&self) -> Result<()> {
        let _merging = self.merge_lock.lock();
        let runs = Arc::clone(&self.levels.read().runs);
        for run in runs.iter() {
            if !run.is_broken() {
                continue;
            }
            let rebuilt = self.rebuild_run(run.start(), run.end())?;
            let mut levels = self.levels.write();
            let mut replaced = Vec::clone(&levels.runs);
            if let Some(slot) = replaced.iter_mut().find(|r| Arc::ptr_eq(r, run)) {
                *slot = rebuilt;
            }
            levels.runs = Arc::new(replaced);
            self.repairs
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Writes the run `[start, end)` afresh from the log, holding the
    /// entries of at most four buffers' worth of events at a time: a larger
    /// range is written as sorted pieces, merged four at a time (merging
    /// streams) until one run covers it. The result replaces a run file of
    /// the same range (temporary file, then rename). Pieces left by a crash
    /// are runs like any other: the next open keeps one chain and removes
    /// the rest.
    pub(super) fn rebuild_run(&self, start: u64, end: u64) -> Result<Arc<Run>> {
        let piece = self.buffer_events.saturating_mul(4).max(1);
        let write_piece = |from: u64, to: u64| -> Result<Arc<Run>> {
            let (streams, ids, new_streams) = entries_from_log(&self.reader, from, to)?;
            let run = write_sorted(&self.storage, (from, to), new_streams, &streams, &ids)?;
            Ok(Arc::new(run))
        };
        let mut pieces = Vec::new();
        let mut from = start;
        while from < end {
            // Pieces hold whole appends, as every run does.
            let to = append_start_from(&self.reader, from.saturating_add(piece), end)?;
            pieces.push(write_piece(from, to)?);
            from = to;
        }
        while pieces.len() > 1 {
            let mut merged_level = Vec::with_capacity(pieces.len().div_ceil(MERGE_FANOUT));
            for group in pieces.chunks(MERGE_FANOUT) {
                let merged = match group {
                    [one] => Arc::clone(one),
                    _ => {
                        let merged = Arc::new(merge_runs(&self.storage, group)?);
                        for old in group {
                            remove_file(&self.storage, old.name())?;
                        }
                        merged
                    }
                };
                merged_level.push(merged);
            }
            pieces = merged_level;
        }
        sync_dir(&self.storage)?;
        pieces
            .pop()
            .ok_or_else(|| Error::Index(format!("no events to index in {start}..{end}")))
    }
}

/// The position of the first event at or after `position` that begins an
/// append, or `end` if none does before it.
pub(super) fn append_start_from(reader: &LogReader, position: u64, end: u64) -> Result<u64> {
    if position >= end {
        return Ok(end);
    }
    let mut found = end;
    reader.scan(position, |at, record| {
        if at < end && record.flags & APPEND_FIRST_FLAG == 0 {
            return ControlFlow::Continue(());
        }
        found = at.min(end);
        ControlFlow::Break(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use crate::{Durability, EventData, ExpectedVersion, Options, Store};

    /// Regression (as for the secondary index, `secondary.rs`): a lookup
    /// met a damaged run page, another thread's repair rebuilt the run
    /// before `repairing` asked whether one was broken, and the lookup
    /// failed with the stale error. It is now retried.
    #[test]
    fn a_lookup_whose_damaged_run_another_thread_repaired_meanwhile_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let options = || {
            Options::default()
                .index_buffer_events(100)
                .durability(Durability::Buffered)
        };
        let store = Store::open_with(dir.path(), options()).unwrap();
        // "early" has events in the first run only: its lookup reaches it.
        for chunk in 0..10u64 {
            let stream = if chunk == 0 {
                "early".to_owned()
            } else {
                format!("s-{chunk}")
            };
            let events = (0..100).map(|_| EventData::new("E", "{}")).collect();
            store
                .append(&stream, ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
        store.maintain_index().unwrap();
        drop(store);
        crate::index::damage_first_run(dir.path(), "index-", ".run");
        let store = Store::open_with(dir.path(), options()).unwrap();
        let index = store.index();
        let mut attempts = 0;
        let got = index.state.repairing(|| {
            attempts += 1;
            let found = index.state.state("early");
            if attempts == 1 {
                assert!(found.is_err(), "the damaged page is met: {found:?}");
                // Another thread's repair, between the failed lookup and
                // `repairing`'s question.
                index.repair().unwrap();
            }
            found
        });
        let state = got.unwrap().expect("the stream is found");
        assert_eq!((state.len, state.deleted), (100, false), "{state:?}");
        assert_eq!(attempts, 2);
    }
}
