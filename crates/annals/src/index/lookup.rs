//! Lookups through every level: a stream's state, event ids, and stream
//! reads (the candidates a run, a frozen or the active memtable give).

use std::ops::ControlFlow;
use std::sync::Arc;

use annals_index::{Direction, Fnv1aMix, Memtable, Run, StreamHasher, StreamState};

use crate::error::Result;

use super::*;

impl IndexState {
    /// Whether the event at `position` (starting at `offset` in its
    /// segment, if known) belongs to `stream`.
    pub(super) fn is_stream(
        &self,
        position: u64,
        offset: Option<u32>,
        stream: &str,
    ) -> Result<bool> {
        if position >= self.reader.position_end() {
            return Err(missing(position));
        }
        let mut found = false;
        self.reader
            .with_stream_events(&[position], &[offset], stream, |_, record, _| {
                found = record.is_some();
                ControlFlow::Break(())
            })?;
        Ok(found)
    }

    pub(super) fn snapshot(&self) -> (Arc<Vec<Arc<Run>>>, Vec<Arc<Memtable>>) {
        let levels = self.levels.read();
        (Arc::clone(&levels.runs), levels.frozen.clone())
    }

    pub(super) fn state(&self, stream: &str) -> Result<Option<StreamState>> {
        let (runs, frozen) = {
            let levels = self.levels.read();
            if let Some(state) = levels.active.state(stream) {
                return Ok(Some(state));
            }
            (Arc::clone(&levels.runs), levels.frozen.clone())
        };
        if let Some(state) = frozen.iter().rev().find_map(|m| m.state(stream)) {
            return Ok(Some(state));
        }
        let hash = Fnv1aMix.hash(stream);
        for run in runs.iter().rev() {
            if !run.may_hold_stream(hash)? {
                continue;
            }
            // Newest version first; skip a colliding stream's entries.
            let mut i = run.seek_stream(hash, u64::MAX)?;
            while i > 0 {
                i -= 1;
                let entry = run.stream_entry(i)?;
                if entry.hash != hash {
                    break;
                }
                if self.is_stream(entry.position, entry.known_offset(), stream)? {
                    return Ok(Some(StreamState {
                        len: entry.end_version(),
                        deleted: entry.tombstone,
                    }));
                }
            }
        }
        Ok(None)
    }

    pub(super) fn find_ids(&self, ids: &[[u8; 16]]) -> Result<Vec<Option<u64>>> {
        let mut found: Vec<Option<u64>> = {
            let levels = self.levels.read();
            ids.iter().map(|id| levels.active.find_id(id)).collect()
        };
        let (runs, frozen) = self.snapshot();
        for (id, slot) in ids.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            *slot = frozen.iter().rev().find_map(|m| m.find_id(id));
            for run in runs.iter().rev() {
                if slot.is_some() {
                    break;
                }
                *slot = run.find_id(id)?;
            }
        }
        Ok(found)
    }

    pub(super) fn read(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        visit: &mut VisitCandidates<'_>,
    ) -> Result<()> {
        let (active, runs, frozen) = {
            let levels = self.levels.read();
            (
                levels.active.read(stream, from, direction, max),
                Arc::clone(&levels.runs),
                levels.frozen.clone(),
            )
        };
        let hash = Fnv1aMix.hash(stream);
        let is_ours = |position, offset| self.is_stream(position, offset, stream);
        let memtable = |m: &Memtable| m.read(stream, from, direction, max);
        let visit_all = |hits: &[(u64, u64, Option<u32>)],
                         visit: &mut VisitCandidates<'_>|
         -> Result<ControlFlow<()>> {
            for &(version, position, offset) in hits {
                let candidate = Candidate {
                    version,
                    position,
                    offset,
                };
                if visit(candidate)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        };
        match direction {
            Direction::Forward => {
                for run in runs.iter() {
                    if visit_run(run, hash, &is_ours, from, direction, visit)?.is_break() {
                        return Ok(());
                    }
                }
                for m in &frozen {
                    if visit_all(&memtable(m), visit)?.is_break() {
                        return Ok(());
                    }
                }
                // Last source: whether it stopped early changes nothing.
                let _ = visit_all(&active, visit)?;
            }
            Direction::Backward => {
                if visit_all(&active, visit)?.is_break() {
                    return Ok(());
                }
                for m in frozen.iter().rev() {
                    if visit_all(&memtable(m), visit)?.is_break() {
                        return Ok(());
                    }
                }
                for run in runs.iter().rev() {
                    if visit_run(run, hash, &is_ours, from, direction, visit)?.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a stream read through the index calls with each candidate.
pub(crate) type VisitCandidates<'a> = dyn FnMut(Candidate) -> Result<ControlFlow<()>> + 'a;

/// An event the index gives for a stream: it may belong to another stream
/// whose name has the same hash (the reader checks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) version: u64,
    pub(crate) position: u64,
    /// Where the event starts in its segment, when the index knows (runs
    /// and memtables record it).
    pub(crate) offset: Option<u32>,
}

/// Visits the events a run's entries of streams with `hash` hold, from
/// version `from` in `direction`. `is_ours(position, offset)` tells
/// whether an event is of the stream read (another may share its hash).
pub(super) fn visit_run(
    run: &Run,
    hash: u64,
    is_ours: &dyn Fn(u64, Option<u32>) -> Result<bool>,
    from: u64,
    direction: Direction,
    visit: &mut VisitCandidates<'_>,
) -> Result<ControlFlow<()>> {
    if !run.may_hold_stream(hash)? {
        return Ok(ControlFlow::Continue(()));
    }
    let forward = direction == Direction::Forward;
    // Backward: the entries before the first one that starts past `from`.
    // Forward: from the entry that holds `from`, which may start before it.
    let mut i = run.seek_stream(hash, from.saturating_add(u64::from(!forward)))?;
    if forward && from > 0 {
        i = forward_start(run, hash, is_ours, from, i)?;
    }
    loop {
        let at = if forward {
            (i < run.stream_entries()).then_some(i)
        } else {
            i.checked_sub(1)
        };
        let Some(at) = at else {
            return Ok(ControlFlow::Continue(()));
        };
        let entry = run.stream_entry(at)?;
        if entry.hash != hash {
            return Ok(ControlFlow::Continue(()));
        }
        let (low, past) = if forward {
            (entry.version.max(from), entry.end_version())
        } else {
            (
                entry.version,
                entry.end_version().min(from.saturating_add(1)),
            )
        };
        for n in 0..past.saturating_sub(low) {
            let version = if forward { low + n } else { past - 1 - n };
            let k = version - entry.version;
            let candidate = Candidate {
                version,
                position: entry.position + k,
                // The first event's offset; the others are found through
                // the frame index (one frame holds them all).
                offset: entry.known_offset().filter(|_| k == 0),
            };
            if visit(candidate)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        i = if forward { at + 1 } else { at };
    }
}

/// Where a forward read of a run from version `from` starts, given `i`, the
/// first entry of `hash` at or after `from`: one step back, to the entry
/// that holds `from` if it is the stream's. Entries of one stream do not
/// overlap, so the stream's entry just before `i` holds `from` or none of
/// its entries does. Another stream with the same hash can have entries in
/// between: those are kept (the reader skips their events) and the search
/// goes on, never further than `max_count` versions, the widest entry of
/// the run.
pub(super) fn forward_start(
    run: &Run,
    hash: u64,
    is_ours: &dyn Fn(u64, Option<u32>) -> Result<bool>,
    from: u64,
    mut i: u64,
) -> Result<u64> {
    while let Some(before) = i.checked_sub(1) {
        let entry = run.stream_entry(before)?;
        if entry.hash != hash || entry.version.saturating_add(run.max_count()) <= from {
            break;
        }
        if is_ours(entry.position, entry.known_offset())? {
            if entry.end_version() > from {
                i = before;
            }
            break;
        }
        i = before;
    }
    Ok(i)
}
