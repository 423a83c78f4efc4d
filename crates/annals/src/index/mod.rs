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
//!   log and is retried — always on a caller's thread: the write path does
//!   bounded work only, so an append whose lookup meets a damaged run is
//!   handed back undecided (`Answer::Repair`), rebuilt by its caller under
//!   the merge lock while other appends commit, and submitted again.
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
//!
//! The files of this module:
//!
//! - `mod.rs`: [`Index`] and its levels (active memtable, frozen memtables,
//!   runs), opening, freezing, closing, and the entry points of lookups;
//! - `workers.rs`: the background persister and merger, and merging;
//! - `lookup.rs`: a stream's state, event ids, stream reads (`visit_run`,
//!   `forward_start`) and the [`Candidate`](lookup::Candidate)s they give;
//! - `replay.rs`: replaying the log into the memtable on open;
//! - `repair.rs`: rebuilding damaged runs from the log;
//! - `verify.rs`: checking the index against the log, and dumping it;
//! - `log_entries.rs`: the index entries the log implies;
//! - `run_files.rs`: loading, writing and removing run files;
//! - `secondary.rs`, `secondary_lookup.rs`: the category and event-type
//!   indexes ([`SecondaryIndex`]), maintained by
//!   the persister thread after each run it writes.

mod log_entries;
mod lookup;
mod remap;
mod repair;
mod replay;
mod run_files;
mod secondary;
mod secondary_lookup;
mod verify;
mod verify_hinted;
mod workers;

use log_entries::*;
pub(crate) use lookup::VisitCandidates;
pub(crate) use run_files::remove_runs;
use run_files::*;
pub(crate) use secondary::record_has_key;
use secondary::SecondaryIndex;
pub use secondary::SecondaryReport;
use workers::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use annals_index::{Direction, Memtable, Run, StreamState};
use annals_segment::storage::Storage;
use annals_segment::LogReader;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};

/// Frozen memtables allowed to wait for the background writer.
pub(super) const FROZEN_MAX: usize = 2;
/// Runs of one size class merged together.
pub(super) const MERGE_FANOUT: usize = 4;

/// What opening the index found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Position up to which persisted runs were trusted.
    pub checkpoint: u64,
    /// Events replayed from the log after the checkpoint.
    pub replayed: u64,
    /// Run files discarded (damaged, overlapping, or ahead of the log).
    pub discarded: Vec<String>,
    /// The same for the category and event-type indexes.
    pub secondary: SecondaryReport,
}

/// The index's entries, newest last: the runs on disk, the frozen
/// memtables waiting to be written, the active memtable.
pub(super) struct Levels {
    pub(super) active: Memtable,
    /// Oldest first.
    pub(super) frozen: Vec<Arc<Memtable>>,
    /// By position, contiguous from 0.
    pub(super) runs: Arc<Vec<Arc<Run>>>,
}

/// Everything the index holds and the background workers share with the
/// store's threads: the levels, the log reader and storage, the locks that
/// order persisting and merging, and the last failures to report.
pub(crate) struct IndexState {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) reader: LogReader,
    pub(super) levels: RwLock<Levels>,
    /// Held while frozen memtables are written (by the worker, or by the
    /// writer under backpressure): each is written once, in order.
    pub(super) persist_lock: Mutex<()>,
    /// Held while runs are merged or repaired. Never taken by the writer, so
    /// a long merge does not stall appends; new runs only ever join the
    /// tail, and a merge or repair swaps in its result under `levels`.
    pub(super) merge_lock: Mutex<()>,
    pub(super) buffer_events: u64,
    pub(super) closing: AtomicBool,
    /// Opened by a read-only store: nothing is ever written or removed
    /// (no worker, no persist on close, no repair of a damaged run).
    pub(super) read_only: bool,
    /// Why the last write of a frozen memtable failed (cleared by the next
    /// one that succeeds): its entries are still only in memory.
    pub(super) persist_error: Mutex<Option<String>>,
    /// Why the last merge failed (cleared by the next merge that has work
    /// to do and succeeds).
    pub(super) merge_error: Mutex<Option<String>>,
    /// The category and event-type indexes.
    pub(super) secondary: SecondaryIndex,
    /// Why the last maintenance of the secondary indexes failed (cleared
    /// by the next that succeeds).
    pub(super) secondary_error: Mutex<Option<String>>,
    /// Set by [`Index::kick_secondary`]: the merger extends the secondary
    /// memtable to the log's end on its next round.
    pub(super) secondary_extend: AtomicBool,
    /// How many runs of the stream index [`Index::repair`] has replaced
    /// (see [`SecondaryIndex`]'s `repairs`).
    pub(super) repairs: AtomicU64,
}

pub(super) enum Message {
    Work,
    Stop,
}

pub(super) type Worker = (mpsc::Sender<Message>, JoinHandle<()>);

/// The index of one open store.
pub(crate) struct Index {
    pub(super) state: Arc<IndexState>,
    /// Writes frozen memtables; kicks the merger after each success.
    pub(super) persister: Mutex<Option<Worker>>,
    /// Merges runs.
    pub(super) merger: Mutex<Option<Worker>>,
    pub(super) report: IndexReport,
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
        read_only: bool,
    ) -> Result<Index> {
        let log_end = reader.position_end();
        let (runs, discarded) = load_runs(&storage, log_end, !read_only)?;
        // Read-only: what is replayed stays in memory (one memtable).
        let buffer_events = if read_only { u64::MAX } else { buffer_events };
        let checkpoint = runs.last().map_or(0, |r| r.end());
        let secondary = SecondaryIndex::open(
            Arc::clone(&storage),
            reader.clone(),
            log_end,
            buffer_events,
            read_only,
        )?;
        let state = Arc::new(IndexState {
            secondary,
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
            read_only,
            persist_error: Mutex::new(None),
            merge_error: Mutex::new(None),
            secondary_error: Mutex::new(None),
            secondary_extend: AtomicBool::new(false),
            repairs: AtomicU64::new(0),
        });
        let (persister, merger) = if read_only {
            (None, None)
        } else {
            let merger = spawn_worker(&state, "annals-index-merge", |state, receiver| {
                state.merge_work(receiver)
            })?;
            let merge_kick = merger.0.clone();
            let persister = spawn_worker(&state, "annals-index", move |state, receiver| {
                state.persist_work(receiver, &merge_kick)
            })?;
            (Some(persister), Some(merger))
        };
        let secondary_report = state.secondary.report().clone();
        let index = Index {
            state,
            persister: Mutex::new(persister),
            merger: Mutex::new(merger),
            report: IndexReport {
                checkpoint,
                replayed: log_end - checkpoint,
                discarded,
                secondary: secondary_report,
            },
        };
        index.replay(checkpoint, log_end, progress)?;
        index.kick();
        Ok(index)
    }

    /// Read-only stores: indexes the log's positions `from..to` (made
    /// visible by a refresh) in memory.
    pub(crate) fn catch_up(&self, from: u64, to: u64) -> Result<()> {
        self.replay(from, to, &mut |_, _| {})
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
        push(&mut self.state.levels.write().active)
    }

    /// Asks the merger thread to extend the secondary memtable to the
    /// log's end, off the write path: the writer's condition checks then
    /// find the events older than its recent ones there without decoding
    /// them itself.
    pub(crate) fn kick_secondary(&self) {
        self.state.secondary_extend.store(true, Ordering::Release);
        if let Some((sender, _)) = &*self.merger.lock() {
            // A stopped worker only happens on close: nothing left to do.
            let _ = sender.send(Message::Work);
        }
    }

    /// Whether the active memtable is full. The caller makes the log
    /// durable up to the memtable's end, then calls [`Index::freeze`].
    pub(crate) fn wants_freeze(&self) -> bool {
        self.state.levels.read().active.len() >= self.state.buffer_events
    }

    /// Freezes the active memtable and hands it to the background writer;
    /// if too many wait already, persists them on this thread
    /// (backpressure). Only call when the log is durable up to its end.
    /// Never holds more than [`FROZEN_MAX`] + 1 frozen memtables: while
    /// that many wait because index files cannot be written (disk full, a
    /// failed directory fsync), the active one stays where it is and
    /// [`Index::backlog`] makes the writer refuse appends.
    pub(crate) fn freeze(&self) {
        if self.state.levels.read().frozen.len() > FROZEN_MAX {
            self.state.record_persist(self.state.persist_frozen());
        }
        let waiting = {
            let mut levels = self.state.levels.write();
            if levels.active.is_empty() || levels.frozen.len() > FROZEN_MAX {
                return;
            }
            let end = levels.active.end();
            let full = std::mem::replace(&mut levels.active, Memtable::new(end));
            levels.frozen.push(Arc::new(full));
            levels.frozen.len()
        };
        if waiting > FROZEN_MAX {
            self.state.record_persist(self.state.persist_frozen());
        } else {
            self.kick();
        }
    }

    /// Why the index cannot take more events, if it cannot: every buffer
    /// it may hold is full (the active memtable and [`FROZEN_MAX`] + 1
    /// frozen ones) and writing them out failed. The writer then refuses
    /// appends, writing nothing, instead of growing memory without bound;
    /// each new append retries writing them first.
    pub(crate) fn backlog(&self) -> Option<String> {
        let full = || {
            let levels = self.state.levels.read();
            levels.frozen.len() > FROZEN_MAX && levels.active.len() >= self.state.buffer_events
        };
        if !full() {
            return None;
        }
        self.freeze();
        if !full() {
            return None;
        }
        Some(
            self.state
                .error()
                .unwrap_or_else(|| "index files are not being written".into()),
        )
    }

    /// Stops the background threads (a merge under way finishes first)
    /// and persists everything in memory (the log is durable: the writer
    /// was closed first).
    pub(crate) fn close(&self) {
        self.state.closing.store(true, Ordering::Release);
        for worker in [&self.persister, &self.merger] {
            if let Some((sender, handle)) = worker.lock().take() {
                let _ = sender.send(Message::Stop);
                let _ = handle.join();
            }
        }
        if self.state.read_only {
            return;
        }
        self.freeze();
        self.state.record_persist(self.state.persist_frozen());
        // The log is durable up to its end: persist every secondary entry.
        let end = self.state.reader.position_end();
        self.state
            .record_secondary(self.state.secondary.maintain(end, true));
    }

    /// Does the background writer's pending work on this thread: writes
    /// every frozen memtable, then merges until no size class has four runs.
    pub(crate) fn maintain(&self) -> Result<()> {
        self.state.persist_frozen()?;
        let merged = self.state.merge();
        self.state.record_merge(&merged);
        merged?;
        self.state.secondary.maintain(self.state.checkpoint(), true)
    }

    /// Up to `max` positions of events carrying `key` after `after`
    /// (exclusive; `None`: from the first), in increasing order: O(log n)
    /// index pages plus one event read per result (a hash collision costs
    /// one more read, never a wrong answer).
    pub(crate) fn secondary_positions(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<u64>> {
        self.state.secondary.positions(key, after, max)
    }

    /// The position of the last event carrying `key`, if any.
    pub(crate) fn secondary_last_position(
        &self,
        key: &annals_index::SecondaryKey<'_>,
    ) -> Result<Option<u64>> {
        self.state.secondary.last_position(key)
    }

    /// Calls `visit` with each of the first `max` events carrying `key`
    /// from position `from` (inclusive), in position order, until it
    /// returns `Break`; reads only those events.
    pub(crate) fn visit_secondary(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        from: u64,
        max: usize,
        visit: &mut dyn FnMut(
            u64,
            annals_segment::Record<'_>,
            &bytes::Bytes,
        ) -> std::ops::ControlFlow<()>,
    ) -> Result<()> {
        self.state.secondary.visit_matching(key, from, max, visit)
    }

    /// Up to `max` candidate positions of `key` from `from` (inclusive):
    /// a superset of the matching ones among them (hash collisions), for
    /// merging several keys before reading events.
    pub(crate) fn secondary_candidates(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        from: u64,
        max: usize,
    ) -> Result<Vec<u64>> {
        self.state.secondary.candidates(key, from, max)
    }

    /// How many candidates `key` has from `from` (inclusive) on.
    pub(crate) fn secondary_count(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        from: u64,
    ) -> Result<u64> {
        self.state.secondary.count(key, from)
    }

    /// [`Index::secondary_candidates`] for the write path (an append
    /// condition's lookup): complete only below `end` (the memtable is not
    /// extended past it), and a damaged run is the error, never rebuilt
    /// here (see [`Index::state_unrepaired`]).
    pub(crate) fn secondary_candidates_unrepaired(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        from: u64,
        max: usize,
        end: u64,
    ) -> Result<Vec<u64>> {
        self.state
            .secondary
            .candidates_unrepaired(key, from, max, end)
    }

    /// [`Index::secondary_count`] for the write path (see
    /// [`Index::secondary_candidates_unrepaired`]).
    pub(crate) fn secondary_count_unrepaired(
        &self,
        key: &annals_index::SecondaryKey<'_>,
        from: u64,
        end: u64,
    ) -> Result<u64> {
        self.state.secondary.count_unrepaired(key, from, end)
    }

    /// The stream's state (a damaged run met on the way is rebuilt on
    /// this thread, then the lookup retried).
    pub(crate) fn state(&self, stream: &str) -> Result<Option<StreamState>> {
        self.state.repairing(|| self.state.state(stream))
    }

    /// The stream's state for the write path, which does bounded work
    /// only: a damaged run is not rebuilt here (that would hold up every
    /// append); the error is returned, and [`Index::needs_repair`] tells it.
    pub(crate) fn state_unrepaired(&self, stream: &str) -> Result<Option<StreamState>> {
        self.state.state(stream)
    }

    /// The position of each id, if stored, for the write path (see
    /// [`Index::state_unrepaired`]).
    pub(crate) fn find_ids_unrepaired(&self, ids: &[[u8; 16]]) -> Result<Vec<Option<u64>>> {
        self.state.find_ids(ids)
    }

    /// How many damaged runs repairs have replaced so far, stream index and
    /// secondary ones together: what [`Index::needs_repair`] compares.
    pub(crate) fn repairs(&self) -> u64 {
        self.state
            .repairs()
            .wrapping_add(self.state.secondary.repairs())
    }

    /// Whether `error`, from a lookup begun when [`Index::repairs`] said
    /// `repairs`, came from a damaged run (of the stream index or a
    /// secondary one) that [`Index::repair`] rebuilds: one is broken now,
    /// or another thread's repair replaced one since the lookup began (it
    /// may have rebuilt the very run the lookup failed on).
    pub(crate) fn needs_repair(&self, error: &Error, repairs: u64) -> bool {
        error.is_corruption()
            && (self.state.levels.read().runs.iter().any(|r| r.is_broken())
                || self.state.secondary.any_broken()
                || self.repairs() != repairs)
    }

    /// Rebuilds every damaged run from the log, stream index and secondary
    /// ones, on this thread (a caller's, never the writer's: it holds the
    /// merge locks, not the write path).
    pub(crate) fn repair(&self) -> Result<()> {
        self.state.repair()?;
        if self.state.secondary.any_broken() {
            self.state.secondary.repair()?;
        }
        Ok(())
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
        self.state.read(stream, from, direction, max, visit)
    }

    /// Runs `attempt`; if it met a damaged run page, rebuilds the broken
    /// runs from the log and runs it once more.
    pub(crate) fn repairing<T>(&self, attempt: impl FnMut() -> Result<T>) -> Result<T> {
        self.state.repairing(attempt)
    }

    /// Segments were rewritten by a compaction: `offsets` holds where each
    /// event of the moved frames starts now ((first position of a frame,
    /// one offset per event)): the in-memory buffer takes them, frozen
    /// buffers are persisted, and the runs covering moved events are
    /// remapped (`remap.rs`).
    pub(crate) fn segments_rewritten(&self, offsets: &[(u64, Vec<u32>)]) -> Result<()> {
        self.update(|active| {
            let (from, to) = (active.start(), active.end());
            for (first, moved) in offsets {
                let last = first + moved.len() as u64;
                let (a, b) = ((*first).max(from), last.min(to));
                if a >= b {
                    continue;
                }
                let slice = moved.get((a - first) as usize..(b - first) as usize);
                if let Some(slice) = slice {
                    // In range by construction: nothing to report.
                    let _ = active.record_offsets(a, slice);
                }
            }
        });
        self.state.persist_frozen()?;
        self.state.remap_runs(offsets)
    }

    /// Counts for `stats`.
    pub(crate) fn figures(&self) -> IndexFigures {
        let levels = self.state.levels.read();
        let runs = &levels.runs;
        IndexFigures {
            streams: runs.iter().map(|r| r.new_streams()).sum::<u64>()
                + levels.frozen.iter().map(|m| m.new_streams()).sum::<u64>()
                + levels.active.new_streams(),
            runs: runs.len() as u64,
            run_bytes: runs.iter().map(|r| r.file_bytes()).sum(),
            checkpoint: runs.last().map_or(0, |r| r.end()),
            buffered: levels.frozen.iter().map(|m| m.len()).sum::<u64>() + levels.active.len(),
            error: self.state.error(),
        }
    }
}

pub(super) fn missing(position: u64) -> Error {
    Error::Index(format!(
        "index points at position {position}, not in the log"
    ))
}

/// Flips a byte in every page after the header of the first run file (by
/// name) in `dir` whose name has this prefix and suffix: every lookup that
/// reaches the run meets a damaged page.
#[cfg(test)]
pub(crate) fn damage_first_run(dir: &std::path::Path, prefix: &str, suffix: &str) {
    let mut runs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    runs.sort();
    let first = runs.first().expect("a run was written");
    let mut bytes = std::fs::read(first).unwrap();
    for page in (4096..bytes.len()).step_by(4096) {
        bytes[page + 100] ^= 0x10;
    }
    std::fs::write(first, bytes).unwrap();
}
