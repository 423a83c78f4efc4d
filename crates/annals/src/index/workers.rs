//! The background workers: the persister writes frozen memtables as runs,
//! the merger merges tail runs of one size class; and their channels.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use annals_index::{merge_runs, Run};

use crate::error::{Error, Result};

use super::*;

/// Starts a background thread running `work` on the index's shared state
/// with the receiving end of its channel.
pub(super) fn spawn_worker(
    state: &Arc<IndexState>,
    name: &str,
    work: impl FnOnce(&IndexState, &mpsc::Receiver<Message>) + Send + 'static,
) -> Result<Worker> {
    let (sender, receiver) = mpsc::channel();
    let state = Arc::clone(state);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || work(&state, &receiver))
        .map_err(|e| Error::Index(format!("cannot start the {name} thread: {e}")))?;
    Ok((sender, handle))
}

/// Waits for a kick; drains the kicks that queued up meanwhile. `None` when
/// the channel is closed, else whether a stop was among them.
pub(super) fn next_message(receiver: &mpsc::Receiver<Message>) -> Option<bool> {
    let mut stop = matches!(receiver.recv().ok()?, Message::Stop);
    while let Ok(message) = receiver.try_recv() {
        stop |= matches!(message, Message::Stop);
    }
    Some(stop)
}

impl IndexState {
    pub(super) fn record_persist(&self, outcome: Result<()>) {
        *self.persist_error.lock() = outcome.err().map(|e| e.to_string());
    }

    /// A failure stays reported until a merge that had work to do
    /// succeeds (one with nothing to merge proves nothing).
    pub(super) fn record_merge(&self, outcome: &Result<usize>) {
        match outcome {
            Ok(0) => {}
            Ok(_) => *self.merge_error.lock() = None,
            Err(e) => *self.merge_error.lock() = Some(e.to_string()),
        }
    }

    /// Records how the last secondary index maintenance went.
    pub(super) fn record_secondary(&self, outcome: Result<()>) {
        *self.secondary_error.lock() = outcome.err().map(|e| format!("secondary index: {e}"));
    }

    /// What `stats` reports: a failed persist first (entries only in
    /// memory), else a failed merge, else a failed secondary index write.
    pub(super) fn error(&self) -> Option<String> {
        let persist = self.persist_error.lock().clone();
        persist
            .or_else(|| self.merge_error.lock().clone())
            .or_else(|| self.secondary_error.lock().clone())
    }

    /// The persisting thread: writes frozen memtables when kicked, then
    /// kicks the merger.
    pub(super) fn persist_work(
        &self,
        receiver: &mpsc::Receiver<Message>,
        merger: &mpsc::Sender<Message>,
    ) {
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
    pub(super) fn merge_work(&self, receiver: &mpsc::Receiver<Message>) {
        while let Some(stop) = next_message(receiver) {
            if stop || self.closing.load(Ordering::Acquire) {
                return;
            }
            self.record_merge(&self.merge());
            // The secondary indexes follow the stream index's checkpoint
            // (durable in the log), after its merge: on this thread, so
            // that the writer and the persister never wait for them. When
            // the writer asked (`Index::kick_secondary`), the memtable also
            // follows the log's end, for conditional appends' checks.
            let mut maintained = self.secondary.maintain(self.checkpoint(), false);
            if maintained.is_ok() && self.secondary_extend.swap(false, Ordering::AcqRel) {
                maintained = self.secondary.extend_to(self.reader.position_end());
            }
            self.record_secondary(maintained);
        }
    }

    /// The end of the last run: every event below is durable in the log.
    pub(super) fn checkpoint(&self) -> u64 {
        self.levels.read().runs.last().map_or(0, |r| r.end())
    }

    /// Writes every frozen memtable as a run, oldest first.
    pub(super) fn persist_frozen(&self) -> Result<()> {
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
    pub(super) fn merge(&self) -> Result<usize> {
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
}
