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
        match lookup() {
            Err(e)
                if e.is_corruption() && self.levels.read().runs.iter().any(|r| r.is_broken()) =>
            {
                self.repair()?;
                lookup()
            }
            other => other,
        }
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
