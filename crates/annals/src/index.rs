//! The store's index: a bounded memtable of recent entries, frozen
//! memtables waiting to be written, and immutable run files on disk, kept
//! few by a background merger.
//!
//! - **Checkpoint.** Runs cover `[0, checkpoint)` without gaps; the
//!   checkpoint is the end of the last run. Opening reads the run headers,
//!   then replays only the log after the checkpoint into the memtable.
//! - **Never trusted blindly.** A run whose header fails, that overlaps or
//!   leaves a gap, or that reaches past the log's end is discarded (the
//!   replay then covers its range). A page that fails its checksum when
//!   first read marks its run broken; the lookup rebuilds that run from the
//!   log and is retried.
//! - **Durable before persisted.** A memtable is frozen only once every
//!   event it holds is durable in the log (the writer syncs first in
//!   buffered mode), so a run never describes events a crash can take back.
//! - **Bounded memory.** The active memtable holds at most
//!   `index_buffer_events` events; at most two frozen ones wait for the
//!   background writer before the writer persists one itself (never behind
//!   a merge: persisting and merging take different locks).
//! - **Two background threads.** One writes frozen memtables, one merges
//!   runs: a merge of large runs takes seconds, and frozen memtables must
//!   not pile up (memory) or push the writer into persisting (latency)
//!   behind it.
//! - **Merging.** Runs are grouped in size classes (powers of 4 of the
//!   buffer); four runs of one class at the tail are merged into one of the
//!   next class, so a log of N events has O(log N) runs and every entry is
//!   rewritten O(log N) times.
//!
//! Stream entries are keyed by a hash of the name; a lookup confirms each
//! candidate by reading the event it points at, so a hash collision costs a
//! read, never a wrong answer.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use annals_index::{
    merge_runs, parse_run_file_name, write_run, Direction, EntryDigest, Fnv1aMix, IdEntry,
    Memtable, Run, StreamEntry, StreamHasher, StreamState,
};
use annals_segment::storage::Storage;
use annals_segment::LogReader;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::{APPEND_FIRST_FLAG, TOMBSTONE_FLAG};

/// Frozen memtables allowed to wait for the background writer.
const FROZEN_MAX: usize = 2;
/// Runs of one size class merged together.
const MERGE_FANOUT: usize = 4;

/// What opening the index found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Position up to which persisted runs were trusted.
    pub checkpoint: u64,
    /// Events replayed from the log after the checkpoint.
    pub replayed: u64,
    /// Run files discarded (damaged, overlapping, or ahead of the log).
    pub discarded: Vec<String>,
}

struct Levels {
    active: Memtable,
    /// Oldest first.
    frozen: Vec<Arc<Memtable>>,
    /// By position, contiguous from 0.
    runs: Arc<Vec<Arc<Run>>>,
}

pub(crate) struct Shared {
    storage: Arc<dyn Storage>,
    reader: LogReader,
    levels: RwLock<Levels>,
    /// Held while frozen memtables are written (by the worker, or by the
    /// writer under backpressure): each is written once, in order.
    persist_lock: Mutex<()>,
    /// Held while runs are merged or repaired. Never taken by the writer, so
    /// a long merge does not stall appends; new runs only ever join the
    /// tail, and a merge or repair swaps in its result under `levels`.
    merge_lock: Mutex<()>,
    buffer_events: u64,
    closing: AtomicBool,
    /// Why the last write of a frozen memtable failed (cleared by the next
    /// one that succeeds): its entries are still only in memory.
    persist_error: Mutex<Option<String>>,
    /// Why the last merge failed (cleared by the next merge that has work
    /// to do and succeeds).
    merge_error: Mutex<Option<String>>,
}

enum Message {
    Work,
    Stop,
}

type Worker = (mpsc::Sender<Message>, JoinHandle<()>);

/// The index of one open store.
pub(crate) struct Index {
    shared: Arc<Shared>,
    /// Writes frozen memtables; kicks the merger after each success.
    persister: Mutex<Option<Worker>>,
    /// Merges runs.
    merger: Mutex<Option<Worker>>,
    report: IndexReport,
}

/// Figures for [`Stats`](crate::Stats).
pub(crate) struct IndexFigures {
    pub(crate) streams: u64,
    pub(crate) runs: u64,
    pub(crate) run_bytes: u64,
    pub(crate) checkpoint: u64,
    pub(crate) buffered: u64,
    pub(crate) error: Option<String>,
}

impl Index {
    /// Opens the index of the log `reader` reads: trusts the valid run
    /// chain, replays the rest of the log, starts the background worker.
    /// `progress(done, total)` follows the replay.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        reader: LogReader,
        buffer_events: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Index> {
        let log_end = reader.position_end();
        let (runs, discarded) = load_runs(&storage, log_end)?;
        let checkpoint = runs.last().map_or(0, |r| r.end());
        let shared = Arc::new(Shared {
            storage,
            reader,
            levels: RwLock::new(Levels {
                active: Memtable::new(checkpoint),
                frozen: Vec::new(),
                runs: Arc::new(runs),
            }),
            persist_lock: Mutex::new(()),
            merge_lock: Mutex::new(()),
            buffer_events: buffer_events.max(1),
            closing: AtomicBool::new(false),
            persist_error: Mutex::new(None),
            merge_error: Mutex::new(None),
        });
        let merger = spawn_worker(&shared, "annals-index-merge", |shared, receiver| {
            shared.merge_work(receiver)
        })?;
        let merge_kick = merger.0.clone();
        let persister = spawn_worker(&shared, "annals-index", move |shared, receiver| {
            shared.persist_work(receiver, &merge_kick)
        })?;
        let index = Index {
            shared,
            persister: Mutex::new(Some(persister)),
            merger: Mutex::new(Some(merger)),
            report: IndexReport {
                checkpoint,
                replayed: log_end - checkpoint,
                discarded,
            },
        };
        index.replay(checkpoint, log_end, progress)?;
        index.kick();
        Ok(index)
    }

    /// Pushes the log's events `[from, to)` into the memtable.
    fn replay(&self, from: u64, to: u64, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let mut failure = None;
        let mut done = 0u64;
        self.shared
            .reader
            .scan_located(from, |position, offset, record, _| {
                if position >= to {
                    return ControlFlow::Break(());
                }
                let tombstone = record.flags & TOMBSTONE_FLAG != 0;
                let starts_append = record.flags & APPEND_FIRST_FLAG != 0;
                // A run holds whole appends (its stream entries are one per
                // stream per append): freeze only where one begins.
                if starts_append && self.wants_freeze() {
                    self.freeze();
                }
                let pushed = {
                    let mut levels = self.shared.levels.write();
                    levels
                        .active
                        .push_run(
                            record.stream,
                            record.stream_version,
                            position,
                            &[record.id],
                            tombstone,
                            starts_append,
                        )
                        .and_then(|()| levels.active.record_offsets(position, &[offset]))
                };
                if let Err(e) = pushed {
                    failure = Some(Error::Index(format!("at position {position}: {e}")));
                    return ControlFlow::Break(());
                }
                done += 1;
                if done.is_multiple_of(1 << 16) {
                    progress(done, to - from);
                }
                ControlFlow::Continue(())
            })?;
        progress(done, to - from);
        failure.map_or(Ok(()), Err)
    }

    /// What opening found and did.
    pub(crate) fn report(&self) -> &IndexReport {
        &self.report
    }

    fn kick(&self) {
        if let Some((sender, _)) = &*self.persister.lock() {
            // A stopped worker only happens on close: nothing left to do.
            let _ = sender.send(Message::Work);
        }
    }

    /// Records appended events: `push` gets the active memtable.
    pub(crate) fn update<R>(&self, push: impl FnOnce(&mut Memtable) -> R) -> R {
        push(&mut self.shared.levels.write().active)
    }

    /// Whether the active memtable is full. The caller makes the log
    /// durable up to the memtable's end, then calls [`Index::freeze`].
    pub(crate) fn wants_freeze(&self) -> bool {
        self.shared.levels.read().active.len() >= self.shared.buffer_events
    }

    /// Freezes the active memtable and hands it to the background writer;
    /// if too many wait already, persists them on this thread
    /// (backpressure). Only call when the log is durable up to its end.
    pub(crate) fn freeze(&self) {
        let waiting = {
            let mut levels = self.shared.levels.write();
            if levels.active.is_empty() {
                return;
            }
            let end = levels.active.end();
            let full = std::mem::replace(&mut levels.active, Memtable::new(end));
            levels.frozen.push(Arc::new(full));
            levels.frozen.len()
        };
        if waiting > FROZEN_MAX {
            self.shared.record_persist(self.shared.persist_frozen());
        } else {
            self.kick();
        }
    }

    /// Stops the background threads (a merge under way finishes first)
    /// and persists everything in memory (the log is durable: the writer
    /// was closed first).
    pub(crate) fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        for worker in [&self.persister, &self.merger] {
            if let Some((sender, handle)) = worker.lock().take() {
                let _ = sender.send(Message::Stop);
                let _ = handle.join();
            }
        }
        self.freeze();
        self.shared.record_persist(self.shared.persist_frozen());
    }

    /// Does the background writer's pending work on this thread: writes
    /// every frozen memtable, then merges until no size class has four runs.
    pub(crate) fn maintain(&self) -> Result<()> {
        self.shared.persist_frozen()?;
        let merged = self.shared.merge();
        self.shared.record_merge(&merged);
        merged.map(|_| ())
    }

    /// The stream's state.
    pub(crate) fn state(&self, stream: &str) -> Result<Option<StreamState>> {
        self.shared.repairing(|| self.shared.state(stream))
    }

    /// The position of each id, if stored.
    pub(crate) fn find_ids(&self, ids: &[[u8; 16]]) -> Result<Vec<Option<u64>>> {
        self.shared.repairing(|| self.shared.find_ids(ids))
    }

    /// Visits candidate (version, position) pairs of `stream` from version
    /// `from` in `direction`, in version order. Candidates from runs may
    /// belong to another stream with the same hash: `visit` checks. Call it
    /// inside [`Index::repairing`], starting afresh on each attempt.
    pub(crate) fn read(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        visit: &mut VisitCandidates<'_>,
    ) -> Result<()> {
        self.shared.read(stream, from, direction, max, visit)
    }

    /// Runs `attempt`; if it met a damaged run page, rebuilds the broken
    /// runs from the log and runs it once more.
    pub(crate) fn repairing<T>(&self, attempt: impl FnMut() -> Result<T>) -> Result<T> {
        self.shared.repairing(attempt)
    }

    /// Counts for `stats`.
    pub(crate) fn figures(&self) -> IndexFigures {
        let levels = self.shared.levels.read();
        let runs = &levels.runs;
        IndexFigures {
            streams: runs.iter().map(|r| r.new_streams()).sum::<u64>()
                + levels.frozen.iter().map(|m| m.new_streams()).sum::<u64>()
                + levels.active.new_streams(),
            runs: runs.len() as u64,
            run_bytes: runs.iter().map(|r| r.file_bytes()).sum(),
            checkpoint: runs.last().map_or(0, |r| r.end()),
            buffered: levels.frozen.iter().map(|m| m.len()).sum::<u64>() + levels.active.len(),
            error: self.shared.error(),
        }
    }

    /// Verifies every run page, order and coverage, and compares each run
    /// with the entries a rescan of the log implies (equal digests, in
    /// constant memory) and each memtable entry by entry. Returns the events
    /// checked.
    pub(crate) fn verify(&self) -> Result<u64> {
        let (runs, frozen, active) = {
            let levels = self.shared.levels.read();
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
            if in_run != digest_from_log(&self.shared.reader, run.start(), run.end())? {
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
            let (log_streams, log_ids, _) = entries_from_log(&self.shared.reader, start, end)?;
            if streams != log_streams || ids != log_ids {
                return Err(Error::Index(format!(
                    "memtable {start}..{end} differs from the log"
                )));
            }
            expected_start = end;
            checked += end - start;
        }
        Ok(checked)
    }

    /// Every stream → (positions in version order, deleted), from the
    /// whole index; for tests and tools that compare indexes.
    pub(crate) fn dump(&self) -> Result<BTreeMap<String, (Vec<u64>, bool)>> {
        let (runs, memtables) = {
            let levels = self.shared.levels.read();
            let mut memtables: Vec<_> = levels.frozen.iter().map(|m| m.dump()).collect();
            memtables.push(levels.active.dump());
            (Arc::clone(&levels.runs), memtables)
        };
        let mut all: BTreeMap<String, (BTreeMap<u64, u64>, bool)> = BTreeMap::new();
        for run in runs.iter() {
            for i in 0..run.stream_entries() {
                let entry = run.stream_entry(i)?;
                let name = self
                    .shared
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

fn missing(position: u64) -> Error {
    Error::Index(format!(
        "index points at position {position}, not in the log"
    ))
}

/// Starts a background thread running `work` on the index's shared state
/// with the receiving end of its channel.
fn spawn_worker(
    shared: &Arc<Shared>,
    name: &str,
    work: impl FnOnce(&Shared, &mpsc::Receiver<Message>) + Send + 'static,
) -> Result<Worker> {
    let (sender, receiver) = mpsc::channel();
    let shared = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || work(&shared, &receiver))
        .map_err(|e| Error::Index(format!("cannot start the {name} thread: {e}")))?;
    Ok((sender, handle))
}

/// Waits for a kick; drains the kicks that queued up meanwhile. `None` when
/// the channel is closed, else whether a stop was among them.
fn next_message(receiver: &mpsc::Receiver<Message>) -> Option<bool> {
    let mut stop = matches!(receiver.recv().ok()?, Message::Stop);
    while let Ok(message) = receiver.try_recv() {
        stop |= matches!(message, Message::Stop);
    }
    Some(stop)
}

impl Shared {
    fn record_persist(&self, outcome: Result<()>) {
        *self.persist_error.lock() = outcome.err().map(|e| e.to_string());
    }

    /// A failure stays reported until a merge that had work to do
    /// succeeds (one with nothing to merge proves nothing).
    fn record_merge(&self, outcome: &Result<usize>) {
        match outcome {
            Ok(0) => {}
            Ok(_) => *self.merge_error.lock() = None,
            Err(e) => *self.merge_error.lock() = Some(e.to_string()),
        }
    }

    /// What `stats` reports: a failed persist first (entries only in
    /// memory), else a failed merge.
    fn error(&self) -> Option<String> {
        let persist = self.persist_error.lock().clone();
        persist.or_else(|| self.merge_error.lock().clone())
    }

    /// The persisting thread: writes frozen memtables when kicked, then
    /// kicks the merger.
    fn persist_work(&self, receiver: &mpsc::Receiver<Message>, merger: &mpsc::Sender<Message>) {
        while let Some(stop) = next_message(receiver) {
            let persisted = self.persist_frozen();
            let ok = persisted.is_ok();
            self.record_persist(persisted);
            if stop {
                return;
            }
            if ok && !self.closing.load(Ordering::Acquire) {
                // A stopped merger only happens on close.
                let _ = merger.send(Message::Work);
            }
        }
    }

    /// The merging thread: merges runs when kicked.
    fn merge_work(&self, receiver: &mpsc::Receiver<Message>) {
        while let Some(stop) = next_message(receiver) {
            if stop || self.closing.load(Ordering::Acquire) {
                return;
            }
            self.record_merge(&self.merge());
        }
    }

    /// Writes every frozen memtable as a run, oldest first.
    fn persist_frozen(&self) -> Result<()> {
        let _persisting = self.persist_lock.lock();
        loop {
            let Some(memtable) = self.levels.read().frozen.first().cloned() else {
                return Ok(());
            };
            let run = write_sorted(
                &self.storage,
                (memtable.start(), memtable.end()),
                memtable.new_streams(),
                &memtable.stream_entries(),
                &memtable.id_entries(),
            )?;
            let mut levels = self.levels.write();
            let mut runs = Vec::clone(&levels.runs);
            runs.push(Arc::new(run));
            levels.runs = Arc::new(runs);
            levels.frozen.remove(0);
        }
    }

    /// Merges tail runs of one size class, as long as there are enough.
    /// Returns the number of merges done.
    fn merge(&self) -> Result<usize> {
        let mut merges = 0;
        loop {
            if self.closing.load(Ordering::Acquire) {
                return Ok(merges);
            }
            let _merging = self.merge_lock.lock();
            let runs = Arc::clone(&self.levels.read().runs);
            let class = |run: &Run| (run.events() / self.buffer_events).max(1).ilog(4);
            let Some(last) = runs.last() else {
                return Ok(merges);
            };
            let tail = runs
                .iter()
                .rev()
                .take_while(|r| class(r) == class(last))
                .count();
            if tail < MERGE_FANOUT {
                return Ok(merges);
            }
            let group = runs.get(runs.len() - tail..).unwrap_or_default();
            let merged = Arc::new(merge_runs(&self.storage, group)?);
            {
                let mut levels = self.levels.write();
                // Runs persisted meanwhile were appended after the group.
                let now = Arc::clone(&levels.runs);
                let unchanged = now.len() >= runs.len()
                    && now.iter().zip(runs.iter()).all(|(a, b)| Arc::ptr_eq(a, b));
                if !unchanged {
                    return Err(Error::Index("the run list changed under a merge".into()));
                }
                let mut kept: Vec<Arc<Run>> =
                    runs.get(..runs.len() - tail).unwrap_or_default().to_vec();
                kept.push(Arc::clone(&merged));
                kept.extend(now.iter().skip(runs.len()).cloned());
                levels.runs = Arc::new(kept);
            }
            for old in group {
                if old.name() != merged.name() {
                    remove_file(&self.storage, old.name())?;
                }
            }
            sync_dir(&self.storage)?;
            merges += 1;
        }
    }

    /// Runs `lookup`; if it found a damaged run page, rebuilds the broken
    /// runs from the log and runs it once more.
    fn repairing<T>(&self, mut lookup: impl FnMut() -> Result<T>) -> Result<T> {
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
    fn repair(&self) -> Result<()> {
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
    fn rebuild_run(&self, start: u64, end: u64) -> Result<Arc<Run>> {
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

    /// Whether the event at `position` (starting at `offset` in its
    /// segment, if known) belongs to `stream`.
    fn is_stream(&self, position: u64, offset: Option<u32>, stream: &str) -> Result<bool> {
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

    fn snapshot(&self) -> (Arc<Vec<Arc<Run>>>, Vec<Arc<Memtable>>) {
        let levels = self.levels.read();
        (Arc::clone(&levels.runs), levels.frozen.clone())
    }

    fn state(&self, stream: &str) -> Result<Option<StreamState>> {
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

    fn find_ids(&self, ids: &[[u8; 16]]) -> Result<Vec<Option<u64>>> {
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

    fn read(
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
    /// and memtables record it; 0 in a run entry means not known).
    pub(crate) offset: Option<u32>,
}

/// Visits the events a run's entries of streams with `hash` hold, from
/// version `from` in `direction`. `is_ours(position, offset)` tells
/// whether an event is of the stream read (another may share its hash).
fn visit_run(
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
fn forward_start(
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

/// The sorted entries a run of the log's `[start, end)` holds, and how many
/// streams begin there.
fn entries_from_log(
    reader: &LogReader,
    start: u64,
    end: u64,
) -> Result<(Vec<StreamEntry>, Vec<IdEntry>, u64)> {
    let capacity = (end - start) as usize;
    let (mut streams, mut ids) = (Vec::new(), Vec::with_capacity(capacity));
    let mut new_streams = 0;
    visit_log_entries(reader, start, end, |entry| match entry {
        LogEntry::Stream(stream) => {
            new_streams += u64::from(stream.version == 0);
            streams.push(stream);
        }
        LogEntry::Id(id) => ids.push(id),
    })?;
    streams.sort_unstable();
    ids.sort_unstable();
    Ok((streams, ids, new_streams))
}

/// Writes the run of positions `range` from entries already sorted.
fn write_sorted(
    storage: &Arc<dyn Storage>,
    (start, end): (u64, u64),
    new_streams: u64,
    streams: &[StreamEntry],
    ids: &[IdEntry],
) -> Result<Run> {
    let run = write_run(
        storage,
        start,
        end,
        new_streams,
        || streams.iter().copied().map(Ok),
        || ids.iter().copied().map(Ok),
    )?;
    Ok(run)
}

/// The digest of the entries the log's events `[start, end)` imply, in
/// constant memory.
fn digest_from_log(reader: &LogReader, start: u64, end: u64) -> Result<EntryDigest> {
    let mut digest = EntryDigest::default();
    visit_log_entries(reader, start, end, |entry| match entry {
        LogEntry::Stream(stream) => digest.add_stream(&stream),
        LogEntry::Id(id) => digest.add_id(&id),
    })?;
    Ok(digest)
}

/// The position of the first event at or after `position` that begins an
/// append, or `end` if none does before it.
fn append_start_from(reader: &LogReader, position: u64, end: u64) -> Result<u64> {
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

/// An index entry the log implies.
enum LogEntry {
    Stream(StreamEntry),
    Id(IdEntry),
}

/// Calls `visit` with the stream entries of the log's events `[start,
/// end)` — one per stream per append, as the memtable makes them: an event
/// extends the entry of the event before it when it is of the same stream,
/// at the next version, not the first of an append, and the one before is
/// no tombstone — and with each event's id entry, in position order; fails
/// unless the log holds them all.
fn visit_log_entries(
    reader: &LogReader,
    start: u64,
    end: u64,
    mut visit: impl FnMut(LogEntry),
) -> Result<()> {
    let mut seen = 0u64;
    let mut open: Option<StreamEntry> = None;
    let mut open_stream = String::new();
    reader.scan_located(start, |position, offset, record, _| {
        if position >= end {
            return ControlFlow::Break(());
        }
        seen += 1;
        let entry = StreamEntry {
            hash: Fnv1aMix.hash(record.stream),
            version: record.stream_version,
            position,
            tombstone: record.flags & TOMBSTONE_FLAG != 0,
            offset,
            count: 1,
        };
        let starts_append = record.flags & APPEND_FIRST_FLAG != 0;
        match open.as_mut() {
            Some(o)
                if !starts_append && o.is_continued_by(&entry) && open_stream == record.stream =>
            {
                o.count += 1;
                o.tombstone = entry.tombstone;
            }
            _ => {
                if let Some(done) = open.replace(entry) {
                    visit(LogEntry::Stream(done));
                }
                open_stream.clear();
                open_stream.push_str(record.stream);
            }
        }
        visit(LogEntry::Id(IdEntry {
            id: record.id,
            position,
        }));
        ControlFlow::Continue(())
    })?;
    if let Some(done) = open {
        visit(LogEntry::Stream(done));
    }
    if seen != end - start {
        return Err(Error::Index(format!(
            "the log holds {seen} of the events {start}..{end}"
        )));
    }
    Ok(())
}

/// Removes every index run file (before a rebuild from the log).
pub(crate) fn remove_runs(storage: &Arc<dyn Storage>) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    for name in names.iter().filter(|n| parse_run_file_name(n).is_some()) {
        remove_file(storage, name)?;
    }
    sync_dir(storage)
}

fn remove_file(storage: &Arc<dyn Storage>, name: &str) -> Result<()> {
    storage
        .remove(name)
        .map_err(|e| annals_segment::Error::io("remove", name, e).into())
}

fn sync_dir(storage: &Arc<dyn Storage>) -> Result<()> {
    storage
        .sync_dir()
        .map_err(|e| annals_segment::Error::io("fsync dir", storage.describe(), e).into())
}

/// The runs to trust: the longest contiguous chain from position 0 of runs
/// whose header verifies and that end within the log. Every other run file
/// (and leftover of an interrupted write) is removed.
fn load_runs(storage: &Arc<dyn Storage>, log_end: u64) -> Result<(Vec<Arc<Run>>, Vec<String>)> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    let mut candidates: Vec<(u64, u64, String)> = names
        .iter()
        .filter_map(|name| parse_run_file_name(name).map(|(s, e)| (s, e, name.clone())))
        .collect();
    // By start, longest first: after a merge that crashed before removing
    // its inputs, the merged run wins.
    candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut runs: Vec<Arc<Run>> = Vec::new();
    let mut discarded = Vec::new();
    let mut next = 0;
    for (start, end, name) in candidates {
        let usable = start == next && end <= log_end;
        match usable.then(|| Run::open(storage, &name)) {
            Some(Ok(run)) => {
                runs.push(Arc::new(run));
                next = end;
            }
            Some(Err(annals_segment::Error::Io { op, file, source }))
                if source.kind() != std::io::ErrorKind::NotFound =>
            {
                return Err(annals_segment::Error::Io { op, file, source }.into());
            }
            _ => discarded.push(name),
        }
    }
    for name in &discarded {
        remove_file(storage, name)?;
    }
    if !discarded.is_empty() {
        sync_dir(storage)?;
    }
    Ok((runs, discarded))
}
