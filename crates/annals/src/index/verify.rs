//! Checking the index against the log (`verify`) and dumping it whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::*;

impl Index {
    /// Verifies every run page, order and coverage, and compares each run
    /// with the entries a rescan of the log implies (equal digests, in
    /// constant memory) and each memtable entry by entry. Returns the events
    /// checked.
    pub(crate) fn verify(&self) -> Result<u64> {
        let (runs, frozen, active) = {
            let levels = self.state.levels.read();
            let active = (
                levels.active.start(),
                levels.active.end(),
                levels.active.stream_entries(),
                levels.active.id_entries(),
            );
            (Arc::clone(&levels.runs), levels.frozen.clone(), active)
        };
        let mut expected_start = 0;
        let mut checked = 0;
        for run in runs.iter() {
            if run.start() != expected_start {
                return Err(Error::Index(format!(
                    "index run {} starts at {}, the one before ends at {expected_start}",
                    run.name(),
                    run.start()
                )));
            }
            // Sorted, each position once (`Run::verify`), and the same set
            // of entries as the log implies: equal digests.
            let in_run = run.verify()?;
            // A read-only store's offsets are hints (`verify_hinted.rs`).
            let matches = in_run == digest_from_log(&self.state.reader, run.start(), run.end())?
                || (self.state.read_only
                    && verify_hinted::run_matches_offsets_aside(&self.state.reader, run)?);
            if !matches {
                return Err(Error::Index(format!(
                    "index run {} holds entries that differ from the log",
                    run.name()
                )));
            }
            expected_start = run.end();
            checked += run.events();
        }
        let memtables = frozen
            .iter()
            .map(|m| (m.start(), m.end(), m.stream_entries(), m.id_entries()))
            .chain(std::iter::once(active));
        for (start, end, streams, ids) in memtables {
            if start != expected_start {
                return Err(Error::Index(format!(
                    "memtable starts at {start}, the index before it ends at {expected_start}"
                )));
            }
            // Offsets included: the writer and the replay record every one.
            let (mut log_streams, log_ids, _) = entries_from_log(&self.state.reader, start, end)?;
            let mut streams = streams;
            if self.state.read_only && streams != log_streams {
                // Offsets are hints here (`verify_hinted.rs`).
                for entries in [&mut streams, &mut log_streams] {
                    for entry in entries.iter_mut() {
                        *entry = verify_hinted::offset_aside(*entry);
                    }
                    entries.sort_unstable();
                }
            }
            if streams != log_streams || ids != log_ids {
                return Err(Error::Index(format!(
                    "memtable {start}..{end} differs from the log"
                )));
            }
            expected_start = end;
            checked += end - start;
        }
        self.state.secondary.verify()?;
        Ok(checked)
    }

    /// Every stream → (positions in version order, deleted), from the
    /// whole index; for tests and tools that compare indexes.
    pub(crate) fn dump(&self) -> Result<BTreeMap<String, (Vec<u64>, bool)>> {
        let (runs, memtables) = {
            let levels = self.state.levels.read();
            let mut memtables: Vec<_> = levels.frozen.iter().map(|m| m.dump()).collect();
            memtables.push(levels.active.dump());
            (Arc::clone(&levels.runs), memtables)
        };
        let mut all: BTreeMap<String, (BTreeMap<u64, u64>, bool)> = BTreeMap::new();
        for run in runs.iter() {
            for i in 0..run.stream_entries() {
                let entry = run.stream_entry(i)?;
                let name = self
                    .state
                    .reader
                    .with_event(entry.position, |r| r.stream.to_owned())?
                    .ok_or_else(|| missing(entry.position))?;
                let slot = all.entry(name).or_default();
                for k in 0..u64::from(entry.count) {
                    slot.0.insert(entry.version + k, entry.position + k);
                }
                slot.1 = entry.tombstone;
            }
        }
        for memtable in memtables {
            for (name, (versions, deleted)) in memtable {
                let slot = all.entry(name).or_default();
                slot.0.extend(versions);
                slot.1 = deleted;
            }
        }
        Ok(all
            .into_iter()
            .map(|(name, (versions, deleted))| (name, (versions.into_values().collect(), deleted)))
            .collect())
    }
}
