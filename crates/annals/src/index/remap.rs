//! Following a compaction's rewrite: the runs that cover rewritten
//! positions get the events' new offsets without reading the log.
//!
//! A rewrite keeps every event's position, version, id and stream (an
//! erased event keeps them too, as a gap record), so a run's entries stay
//! what they were except for the `offset` of a stream entry whose first
//! event moved. Each such run is written again from its own entries
//! (checksummed pages, read and verified as any lookup does) with the
//! offsets the rewrite reported (`SegmentRewrite::offsets`: position →
//! new offset), under the same name: a temporary file, `fsync`, rename,
//! directory `fsync` (`write_run`), as a rebuild from the log would be.
//! The result is the run a rebuild from the log would write, so `verify`
//! checks it the same way; applying the same move twice changes nothing
//! (the map gives positions their new offsets, whatever the old ones were).

use std::sync::Arc;

use annals_index::{write_run, EventOffset, Run, StreamEntry};

use crate::error::Result;

use super::*;

/// The new offsets of moved events, by position: (a moved frame's first
/// position, one offset per event), sorted by position.
struct Moves<'a> {
    frames: Vec<(u64, &'a [u32])>,
}

impl<'a> Moves<'a> {
    fn new(moved: &'a [(u64, Vec<u32>)]) -> Moves<'a> {
        let mut frames: Vec<(u64, &[u32])> = moved
            .iter()
            .map(|(first, offsets)| (*first, offsets.as_slice()))
            .collect();
        frames.sort_unstable_by_key(|(first, _)| *first);
        Moves { frames }
    }

    /// The new offset of the event at `position`, if it moved (`Some(None)`:
    /// it moved but its new offset does not fit an entry).
    fn offset(&self, position: u64) -> Option<Option<u32>> {
        let i = self.frames.partition_point(|(first, _)| *first <= position);
        let (first, offsets) = self.frames.get(i.checked_sub(1)?)?;
        let k = usize::try_from(position - first).ok()?;
        let offset = *offsets.get(k)?;
        Some((offset != u32::MAX).then_some(offset))
    }

    /// Whether any moved event lies in `start..end`.
    fn touches(&self, start: u64, end: u64) -> bool {
        let i = self.frames.partition_point(|(first, _)| *first < end);
        self.frames
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|(first, offsets)| first + offsets.len() as u64 > start)
    }
}

impl IndexState {
    /// Gives every run covering a moved event the new offsets (see the
    /// module comment), then removes every run file the levels do not
    /// hold. The one place where derived index data hears of a rewrite
    /// (`crate::compact`).
    pub(super) fn remap_runs(&self, moved: &[(u64, Vec<u32>)]) -> Result<()> {
        let moves = Moves::new(moved);
        let _merging = self.merge_lock.lock();
        let runs = Arc::clone(&self.levels.read().runs);
        for run in runs.iter() {
            if !moves.touches(run.start(), run.end()) {
                continue;
            }
            let remapped = match remap_run(&self.storage, run, &moves) {
                Ok(remapped) => remapped,
                // A run that cannot be read as it is (a damaged page) is
                // rebuilt from the log, as a repair would.
                Err(e) if e.is_corruption() => self.rebuild_run(run.start(), run.end())?,
                Err(e) => return Err(e),
            };
            let mut levels = self.levels.write();
            let mut replaced = Vec::clone(&levels.runs);
            if let Some(slot) = replaced.iter_mut().find(|r| Arc::ptr_eq(r, run)) {
                *slot = remapped;
            }
            levels.runs = Arc::new(replaced);
        }
        // Under both locks no merge or persist is under way, so every run
        // file the levels do not hold is an orphan: left by a merge or a
        // persist that failed after its rename. Its offsets may predate the
        // rewrite, and once the compaction's marker is gone an open would
        // trust it (the longest run at a start wins): it goes, durably,
        // before the marker does.
        let _persisting = self.persist_lock.lock();
        let held: Vec<String> = self
            .levels
            .read()
            .runs
            .iter()
            .map(|r| r.name().to_owned())
            .collect();
        remove_runs_except(&self.storage, &held)
    }
}

/// `run` written again with the moved offsets.
fn remap_run(storage: &Arc<dyn Storage>, run: &Run, moves: &Moves<'_>) -> Result<Arc<Run>> {
    let streams = || {
        (0..run.stream_entries()).map(|i| {
            run.stream_entry(i)
                .map(|entry| match moves.offset(entry.position) {
                    Some(offset) => StreamEntry {
                        offset: EventOffset::from(offset),
                        ..entry
                    },
                    None => entry,
                })
        })
    };
    let ids = || (0..run.events()).map(|i| run.id_entry(i));
    let new_streams = run.new_streams();
    let remapped = write_run(storage, run.start(), run.end(), new_streams, streams, ids)?;
    Ok(Arc::new(remapped))
}
