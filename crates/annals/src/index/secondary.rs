//! The store's secondary indexes — category, event type and tag — kept beside
//! the stream index, in files of their own (`secondary-*.sidx`).
//!
//! - **Derived, never on the write path.** Nothing is written into the log
//!   and the writer does no extra work: the memtable is extended from the
//!   log by whoever needs it (a filtered read, the background persister,
//!   the merger when the writer asks it to follow the log's end for
//!   conditional appends), each event scanned once.
//! - **Checkpointed.** Runs cover `[0, checkpoint)` without gaps; opening
//!   trusts the valid chain and replays only the log after it. A run only
//!   ever covers positions the stream index has persisted (durable in the
//!   log), or, on close, the durable log.
//! - **Never trusted blindly.** A run whose header fails, that overlaps or
//!   leaves a gap, or that reaches past the log is discarded; a page that
//!   fails its checksum marks its run broken, which is rebuilt from the log
//!   and the lookup retried. `verify` compares every run and the memtable
//!   with the log.
//! - **Merged** (the last two while the last is at least a third of the
//!   one before), so a log of N events has O(log N) secondary runs.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use annals_index::{
    parse_secondary_file_name, SecondaryEntry, SecondaryKey, SecondaryKind, SecondaryMemtable,
    SecondaryRun,
};
use annals_segment::storage::Storage;
use annals_segment::{LogReader, Record};
use parking_lot::{Mutex, RwLock};

use super::run_files::{remove_file, sync_dir};
use crate::error::{Error, Result};

/// What opening the secondary indexes found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecondaryReport {
    /// Position up to which persisted secondary runs were trusted.
    pub checkpoint: u64,
    /// Events replayed from the log after the checkpoint.
    pub replayed: u64,
    /// Secondary run files discarded (damaged, overlapping, or ahead of
    /// the log).
    pub discarded: Vec<String>,
}

pub(super) struct SecondaryLevels {
    pub(super) memtable: SecondaryMemtable,
    /// By position, contiguous from 0; the memtable starts at the end of
    /// the last.
    pub(super) runs: Arc<Vec<Arc<SecondaryRun>>>,
}

/// The category and event-type indexes of one open store.
pub(crate) struct SecondaryIndex {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) reader: LogReader,
    pub(super) levels: RwLock<SecondaryLevels>,
    /// Held while runs are written, merged or repaired.
    pub(super) maintain_lock: Mutex<()>,
    pub(super) buffer_events: u64,
    pub(super) read_only: bool,
    pub(super) report: SecondaryReport,
    /// How many runs [`repair`](SecondaryIndex::repair) has replaced: a
    /// lookup that met a damaged page and finds nothing broken any more
    /// was beaten to the repair by another thread when this moved.
    pub(super) repairs: AtomicU64,
}

/// The secondary keys of one event: its category (if its stream has one),
/// its type and each of its tags.
pub(crate) fn record_keys<'a>(record: &Record<'a>) -> Vec<SecondaryKey<'a>> {
    let mut keys = Vec::with_capacity(2 + usize::from(!record.tags.is_empty()) * 2);
    if let Some(category) = crate::category_of(record.stream) {
        keys.push(SecondaryKey::category(category));
    }
    keys.push(SecondaryKey::event_type(record.event_type));
    keys.extend(record.tags.iter().map(SecondaryKey::tag));
    keys
}

/// Whether the event `record` carries `key` (what confirms a run's
/// candidate, whose key is only a hash).
pub(crate) fn record_has_key(record: &Record<'_>, key: &SecondaryKey<'_>) -> bool {
    // A compaction's gap record keeps its stream and type (and the index
    // its entries), but the event is gone: no read by key shows it.
    if crate::compact::is_erased(record) {
        return false;
    }
    match key.kind {
        SecondaryKind::Category => crate::category_of(record.stream) == Some(key.name),
        SecondaryKind::EventType => record.event_type == key.name,
        SecondaryKind::Tag => record.tags.contains(key.name),
        _ => false,
    }
}

/// The secondary run files to trust: the longest contiguous chain from 0
/// whose headers verify and that end within the log; the others are
/// removed (unless `remove` is false: read-only).
fn load_chain(
    storage: &Arc<dyn Storage>,
    log_end: u64,
    remove: bool,
) -> Result<(Vec<Arc<SecondaryRun>>, Vec<String>)> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    let mut candidates: Vec<(u64, u64, String)> = names
        .iter()
        .filter_map(|n| parse_secondary_file_name(n).map(|(s, e)| (s, e, n.clone())))
        .collect();
    // By start, longest first: a merge that crashed before removing its
    // inputs left the merged run, which wins.
    candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let (mut runs, mut discarded, mut next) = (Vec::new(), Vec::new(), 0);
    for (start, end, name) in candidates {
        let usable = start == next && end <= log_end;
        match usable.then(|| SecondaryRun::open(storage, &name)) {
            Some(Ok(run)) => {
                runs.push(Arc::new(run));
                next = end;
            }
            Some(Err(annals_index::Error::Storage(annals_segment::Error::Io {
                op,
                file,
                source,
            }))) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(annals_segment::Error::Io { op, file, source }.into());
            }
            _ => discarded.push(name),
        }
    }
    for name in discarded.iter().filter(|_| remove) {
        remove_file(storage, name)?;
    }
    if remove && !discarded.is_empty() {
        sync_dir(storage)?;
    }
    Ok((runs, discarded))
}

/// Removes every secondary run file (before a rebuild from the log).
pub(crate) fn remove_secondary_runs(storage: &Arc<dyn Storage>) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    for name in names
        .iter()
        .filter(|n| parse_secondary_file_name(n).is_some())
    {
        remove_file(storage, name)?;
    }
    sync_dir(storage)
}

/// The sorted secondary entries the log's events `[start, end)` imply.
pub(super) fn secondary_entries_from_log(
    reader: &LogReader,
    start: u64,
    end: u64,
) -> Result<Vec<SecondaryEntry>> {
    let mut entries = Vec::with_capacity(((end - start) * 2) as usize);
    let mut seen = 0;
    reader.scan_located_until(start, end, |position, _, record, _| {
        if position >= end {
            return ControlFlow::Break(());
        }
        seen += 1;
        for key in record_keys(&record) {
            entries.push(SecondaryEntry {
                hash: key.hash(),
                position,
            });
        }
        ControlFlow::Continue(())
    })?;
    if seen != end - start {
        return Err(Error::Index(format!(
            "the log holds {seen} of the events {start}..{end}"
        )));
    }
    entries.sort_unstable();
    entries.dedup();
    Ok(entries)
}

impl SecondaryIndex {
    /// Opens the secondary indexes of the log `reader` reads (whose end is
    /// `log_end`): trusts the valid run chain, replays the rest.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        reader: LogReader,
        log_end: u64,
        buffer_events: u64,
        read_only: bool,
    ) -> Result<SecondaryIndex> {
        let (runs, discarded) = load_chain(&storage, log_end, !read_only)?;
        let checkpoint = runs.last().map_or(0, |r| r.end());
        let index = SecondaryIndex {
            storage,
            reader,
            levels: RwLock::new(SecondaryLevels {
                memtable: SecondaryMemtable::new(checkpoint),
                runs: Arc::new(runs),
            }),
            maintain_lock: Mutex::new(()),
            buffer_events: buffer_events.max(1),
            read_only,
            report: SecondaryReport {
                checkpoint,
                replayed: log_end - checkpoint,
                discarded,
            },
            repairs: AtomicU64::new(0),
        };
        index.extend_to(log_end)?;
        Ok(index)
    }

    /// What opening found and did.
    pub(crate) fn report(&self) -> &SecondaryReport {
        &self.report
    }

    /// Extends the memtable with the log's events up to `to`.
    pub(crate) fn extend_to(&self, to: u64) -> Result<()> {
        if self.levels.read().memtable.end() >= to {
            return Ok(());
        }
        let mut levels = self.levels.write();
        let from = levels.memtable.end();
        let mut failure = None;
        self.reader
            .scan_located_until(from, to, |position, _, record, _| {
                if position >= to {
                    return ControlFlow::Break(());
                }
                let keys = record_keys(&record);
                if let Err(e) = levels.memtable.push_event(position, &keys) {
                    failure = Some(Error::Index(format!("at position {position}: {e}")));
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
        failure.map_or(Ok(()), Err)
    }

    /// Persists what the memtable holds below `durable` (every event there
    /// durable in the log) once that is at least a buffer's worth, or
    /// whatever it is if `all`; then merges. Only the persister thread and
    /// `close` call it.
    pub(crate) fn maintain(&self, durable: u64, all: bool) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let _maintaining = self.maintain_lock.lock();
        let durable = durable.min(self.reader.position_end());
        self.extend_to(durable)?;
        // The locks are held for one pass over the memtable each, without
        // copying it: a lookup before a conditional append (on the write
        // path) waits for them.
        let (start, durable, mut entries) = {
            let levels = self.levels.read();
            let start = levels.memtable.start();
            let durable = durable.min(levels.memtable.end());
            let enough = durable > start && (all || durable - start >= self.buffer_events);
            if !enough {
                return Ok(());
            }
            let mut entries = Vec::with_capacity(levels.memtable.entry_count() as usize);
            levels.memtable.entries_below(durable, &mut entries);
            (start, durable, entries)
        };
        entries.sort_unstable();
        entries.dedup();
        let run = SecondaryRun::write(&self.storage, start, durable, &entries)?;
        {
            let mut levels = self.levels.write();
            let mut runs = Vec::clone(&levels.runs);
            runs.push(Arc::new(run));
            levels.runs = Arc::new(runs);
            levels.memtable.remove_below(durable);
        }
        self.merge()
    }

    /// Merges the last two runs while the last is at least a third of the
    /// one before (caller holds the maintain lock). Runs persist whatever
    /// the stream index's checkpoint moved by, so their sizes vary; this
    /// rule keeps each run over three times the next, so a log of N events
    /// has O(log N) secondary runs, and an entry is rewritten each time its
    /// run grows by a third or more: O(log N) times.
    fn merge(&self) -> Result<()> {
        loop {
            let runs = Arc::clone(&self.levels.read().runs);
            let group = match runs.len().checked_sub(2).and_then(|i| runs.get(i..)) {
                Some(group @ [before, last]) if last.events() * 3 >= before.events() => group,
                _ => return Ok(()),
            };
            let (start, end) = match (group.first(), group.last()) {
                (Some(first), Some(last)) => (first.start(), last.end()),
                _ => return Ok(()),
            };
            let mut entries = Vec::new();
            for run in group {
                entries.extend(run.verify()?);
            }
            entries.sort_unstable();
            let merged = Arc::new(SecondaryRun::write(&self.storage, start, end, &entries)?);
            {
                let mut levels = self.levels.write();
                let mut kept: Vec<_> = runs.get(..runs.len() - 2).unwrap_or_default().to_vec();
                kept.push(Arc::clone(&merged));
                levels.runs = Arc::new(kept);
            }
            for old in group.iter().filter(|old| old.name() != merged.name()) {
                remove_file(&self.storage, old.name())?;
            }
            sync_dir(&self.storage)?;
        }
    }

    /// Runs `lookup`; if it met a damaged run page, rebuilds the broken
    /// runs from the log and runs it once more.
    pub(super) fn repairing<T>(&self, mut lookup: impl FnMut() -> Result<T>) -> Result<T> {
        let repairs = self.repairs();
        match lookup() {
            Err(e) if !self.read_only && e.is_corruption() && self.damaged_since(repairs) => {
                self.repair()?;
                lookup()
            }
            other => other,
        }
    }

    /// Whether a run met a damaged page (and waits for [`repair`](SecondaryIndex::repair)).
    pub(super) fn any_broken(&self) -> bool {
        self.levels.read().runs.iter().any(|r| r.is_broken())
    }

    /// How many runs repairs have replaced so far.
    pub(super) fn repairs(&self) -> u64 {
        self.repairs.load(Ordering::Acquire)
    }

    /// Whether a lookup that began when [`repairs`](SecondaryIndex::repairs)
    /// said `repairs` and met a damaged page met one a repair rebuilds: a
    /// run is broken now, or one was replaced since (another thread's
    /// repair can rebuild the run between the failed lookup and this
    /// question, leaving nothing broken).
    pub(super) fn damaged_since(&self, repairs: u64) -> bool {
        self.any_broken() || self.repairs() != repairs
    }

    /// Rebuilds every broken run from the log.
    pub(crate) fn repair(&self) -> Result<()> {
        let _maintaining = self.maintain_lock.lock();
        let runs = Arc::clone(&self.levels.read().runs);
        for run in runs.iter().filter(|r| r.is_broken()) {
            let entries = secondary_entries_from_log(&self.reader, run.start(), run.end())?;
            let rebuilt = SecondaryRun::write(&self.storage, run.start(), run.end(), &entries)?;
            let mut levels = self.levels.write();
            let mut replaced = Vec::clone(&levels.runs);
            if let Some(slot) = replaced.iter_mut().find(|r| Arc::ptr_eq(r, run)) {
                *slot = Arc::new(rebuilt);
            }
            levels.runs = Arc::new(replaced);
            self.repairs.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Verifies every run page, order and coverage, and compares each run
    /// and the memtable with the entries a rescan of the log implies.
    /// Returns the events checked.
    pub(crate) fn verify(&self) -> Result<u64> {
        let (runs, memtable) = {
            let levels = self.levels.read();
            (Arc::clone(&levels.runs), levels.memtable.clone())
        };
        let mut expected_start = 0;
        for run in runs.iter() {
            if run.start() != expected_start {
                return Err(Error::Index(format!(
                    "secondary run {} starts at {}, the one before ends at {expected_start}",
                    run.name(),
                    run.start()
                )));
            }
            if run.verify()? != secondary_entries_from_log(&self.reader, run.start(), run.end())? {
                return Err(Error::Index(format!(
                    "secondary run {} holds entries that differ from the log",
                    run.name()
                )));
            }
            expected_start = run.end();
        }
        let (start, end) = (memtable.start(), memtable.end());
        if start != expected_start
            || memtable.entries() != secondary_entries_from_log(&self.reader, start, end)?
        {
            return Err(Error::Index(format!(
                "secondary memtable {start}..{end} differs from the log"
            )));
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use annals_index::SecondaryKey;

    use crate::{Durability, EventData, ExpectedVersion, Options, Store};

    /// A store of 1,000 events tagged `t:{p % 5}` whose first secondary
    /// run has a flipped byte in every entry page, reopened (nothing
    /// verified yet).
    fn store_with_damaged_runs(dir: &std::path::Path) -> Store {
        let options = || {
            Options::default()
                .index_buffer_events(64)
                .durability(Durability::Buffered)
        };
        let store = Store::open_with(dir, options()).unwrap();
        for chunk in 0..10u64 {
            let events = (chunk * 100..(chunk + 1) * 100)
                .map(|p| EventData::new("E", "{}").with_tags([format!("t:{}", p % 5)]))
                .collect();
            store
                .append("s", ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
        store.maintain_index().unwrap();
        drop(store);
        crate::index::damage_first_run(dir, "secondary-", ".sidx");
        Store::open_with(dir, options()).unwrap()
    }

    /// Regression: a lookup met a damaged run page, and before `repairing`
    /// asked whether a run was broken, another thread's repair had rebuilt
    /// it: nothing was broken any more, and the read failed with the
    /// stale corruption error although the store had mended itself. It is
    /// now retried.
    #[test]
    fn a_lookup_whose_damaged_run_another_thread_repaired_meanwhile_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_damaged_runs(dir.path());
        let index = store.index();
        let secondary = &index.state.secondary;
        let key = SecondaryKey::tag("t:1");
        let end = store.position_end();
        let mut attempts = 0;
        let got = secondary.repairing(|| {
            attempts += 1;
            let found = secondary.candidates_unrepaired(&key, 0, usize::MAX, end);
            if attempts == 1 {
                assert!(found.is_err(), "the damaged page is met: {found:?}");
                // Another thread's repair, between the failed lookup and
                // `repairing`'s question.
                index.repair().unwrap();
                assert!(!secondary.any_broken());
            }
            found
        });
        let want: Vec<u64> = (0..end).filter(|p| p % 5 == 1).collect();
        assert_eq!(got.unwrap(), want);
        assert_eq!(attempts, 2);
    }

    /// The same race on the write path: its lookup failed, another thread
    /// repaired the run, and the write path must still answer Repair (the
    /// caller asks again), not hand the stale error to the appender. A
    /// lookup begun after the repair, failing alike, is not repairable.
    #[test]
    fn the_write_path_answers_repair_for_a_run_repaired_since_its_lookup_began() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_damaged_runs(dir.path());
        let index = store.index();
        let key = SecondaryKey::tag("t:1");
        let end = store.position_end();
        let repairs = index.repairs();
        let error = index
            .secondary_candidates_unrepaired(&key, 0, usize::MAX, end)
            .unwrap_err();
        index.repair().unwrap();
        assert!(index.needs_repair(&error, repairs), "{error}");
        assert!(!index.needs_repair(&error, index.repairs()), "{error}");
        let found = index.secondary_candidates_unrepaired(&key, 0, usize::MAX, end);
        assert_eq!(found.unwrap().len() as u64, end / 5);
    }
}
