//! Compaction: rewrites sealed segments so that the events the user's own
//! rules made unreadable (hard delete, soft delete, truncate-before,
//! max-count, max-age) are physically gone, online and crash-safe.
//!
//! A removed event becomes a *gap record* at the same position (segment
//! crate, `rewrite.rs`): its data and metadata are dropped; its stream,
//! version, id, timestamp, type and flags stay, flagged erased. So every
//! surviving event keeps its position, version and exact bytes; frames stay
//! dense, so the frame index, recovery and the per-stream index keep
//! working, and readers of `$all`, of streams and subscriptions step over
//! gaps ([`is_erased`]). Idempotent retries of a removed event are still
//! recognised (its id and append flags stay), so a retry never brings the
//! data back: it gets the original result. By default nothing is removed:
//! only a stream's rules do. `docs/COMPACTION.md` has the whole design.

mod marker;
mod rules;

pub(crate) use marker::recover;
pub use marker::COMPACTING_FILE_NAME;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_segment::{
    merged_bytes, LogReader, Prepared, PreparedMerge, PreparedRewrite, Record, SealedSegment,
    RECORD_ERASED_FLAG,
};
use parking_lot::ReentrantMutex;

use crate::error::{Error, Result};
use crate::Store;
use rules::{Reason, Rules};

/// Whether `record` is a gap a compaction left (readers skip it).
pub(crate) fn is_erased(record: &Record<'_>) -> bool {
    record.flags & RECORD_ERASED_FLAG != 0
}

/// One compaction at a time; after one fails in I/O, none until reopen
/// (the cause is kept).
///
/// Re-entrant, so that the thread holding it can be told from the others:
/// a compaction's `progress` callback runs while it is held, and a
/// callback that compacts the store again, on that thread, finds the cell
/// borrowed and is refused (a plain mutex waited for itself for ever:
/// `tests/lock_order.rs`). Other threads wait their turn as before.
#[derive(Debug, Default)]
pub(crate) struct CompactionLock {
    failed: ReentrantMutex<RefCell<Option<Arc<Error>>>>,
}

/// What a compaction does beyond the rules.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Snapshots kept per stream, newest first (at least 1; default 1):
    /// older ones are superseded and removed from the snapshot log.
    pub keep_snapshots: usize,
    /// Rewrite at most this many bytes per second (`None`: as fast as it
    /// can). Spreads the compaction's I/O so appenders keep their pace.
    pub throttle_bytes_per_sec: Option<u64>,
    /// Set to `true` (from any thread) to stop: the segment being written
    /// is abandoned (its temporary file removed), the ones switched stay.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Merge runs of adjacent small sealed segments into one file (default
    /// `true`): after the rewrite, every sealed segment holding at most
    /// half its `segment_bytes` of frames is a candidate, and adjacent
    /// candidates are merged, oldest first, while the merged frames fit
    /// the first one's `segment_bytes` (`docs/COMPACTION.md`, "Merging").
    pub merge: bool,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            keep_snapshots: 1,
            throttle_bytes_per_sec: None,
            cancel: None,
            merge: true,
        }
    }
}

/// Events removed, per reason (the first rule, in this order, that hides
/// the event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedEvents {
    /// Events of hard-deleted streams (the tombstone stays).
    pub hard_delete: u64,
    /// Events below a soft delete.
    pub soft_delete: u64,
    /// Events below a truncate-before.
    pub truncate_before: u64,
    /// Events beyond a max-count.
    pub max_count: u64,
    /// Events older than a max-age.
    pub max_age: u64,
}

impl RemovedEvents {
    /// All removed events.
    pub fn total(&self) -> u64 {
        self.hard_delete + self.soft_delete + self.truncate_before + self.max_count + self.max_age
    }

    fn count(&mut self, reason: Reason) {
        let slot = match reason {
            Reason::HardDelete => &mut self.hard_delete,
            Reason::SoftDelete => &mut self.soft_delete,
            Reason::TruncateBefore => &mut self.truncate_before,
            Reason::MaxCount => &mut self.max_count,
            Reason::MaxAge => &mut self.max_age,
        };
        *slot += 1;
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Sealed segments examined.
    pub segments_examined: u64,
    /// Segments rewritten (the others had nothing to remove).
    pub segments_rewritten: u64,
    /// Bytes of the examined segments' frames (headers included) and of
    /// the snapshot log, before.
    pub bytes_before: u64,
    /// The same after.
    pub bytes_after: u64,
    /// Events removed, per reason.
    pub removed: RemovedEvents,
    /// Superseded snapshots removed (beyond the newest `keep_snapshots`
    /// of each stream). Their bytes are in `bytes_before`/`bytes_after`.
    pub snapshots_removed: u64,
    /// Merged segment files written: each replaced a run of two or more
    /// adjacent small sealed segments (named after the run's first).
    pub segments_merged: u64,
    /// Segment files removed by merges (absorbed into the segment before
    /// them).
    pub files_removed: u64,
    /// Whether it was cancelled before the end.
    pub cancelled: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl Store {
    /// Compacts the sealed segments: every event the stream rules hide
    /// (hard delete, soft delete, truncate-before, max-count, max-age as of
    /// now) is physically removed, its position left as a gap that every
    /// reader steps over. Appends, reads and subscriptions go on meanwhile.
    /// The active segment is never touched. Crash-safe at every step
    /// (`docs/FORMAT.md`, "Compaction").
    ///
    /// ```
    /// use annals::{CompactionOptions, EventData, ExpectedVersion, Options, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open_with(dir.path(), Options::default().segment_bytes(4096))?;
    /// for n in 0..60u8 {
    ///     store.append("log-1", ExpectedVersion::Any, vec![EventData::new("Logged", vec![n; 100])])??;
    /// }
    /// store.set_max_count("log-1", 5)?;
    /// let report = store.compact(&CompactionOptions::default())?;
    /// assert!(report.removed.max_count > 0);
    /// assert!(report.bytes_after < report.bytes_before);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact(&self, options: &CompactionOptions) -> Result<CompactionReport> {
        self.compact_with_progress(options, &mut |_, _| {})
    }

    /// [`compact`](Store::compact), reporting `progress(bytes done, bytes
    /// to do)` of the sealed segments as it goes. `progress` may call back
    /// into the store (read, append, subscribe, back up), but a compaction
    /// it starts on the same thread is refused with
    /// [`Error::InvalidInput`], nothing done: one compaction at a time.
    pub fn compact_with_progress(
        &self,
        options: &CompactionOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CompactionReport> {
        let compacted = self.compact_segments(options, progress);
        // The cached copies of what it rewrote are never served again
        // (`dcb::cache`); this also lets their memory go.
        self.forget_stale_cached();
        compacted
    }

    fn compact_segments(
        &self,
        options: &CompactionOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CompactionReport> {
        if self.is_read_only() {
            return Err(Error::ReadOnly(self.location().to_owned()));
        }
        let (reader, index, lock) = self.compaction_parts();
        // Another thread's compaction: wait for it. This thread's (a
        // progress callback compacting again): the cell is borrowed.
        let turn = lock.failed.lock();
        let Ok(mut failed) = turn.try_borrow_mut() else {
            return Err(Error::InvalidInput(
                "compact called from inside a compaction of the same store (its progress callback): one compaction at a time".into(),
            ));
        };
        if let Some(cause) = &*failed {
            return Err(Error::Poisoned {
                cause: Arc::clone(cause),
            });
        }
        let started = Instant::now();
        let mut report = CompactionReport::default();
        let segments = reader.sealed_segments();
        let total: u64 = segments.iter().map(|s| s.data_bytes).sum();
        let mut rules = Rules::new(self, crate::soft_delete::now_us());
        let mut pacer = Pacer::new(options);
        let mut done = 0u64;
        let mut moved = Vec::new();
        progress(0, total);
        let storage = self.storage_handle();
        if !segments.is_empty() {
            if let Err(e) = marker::create(storage) {
                let cause = Arc::new(e);
                *failed = Some(Arc::clone(&cause));
                return Err(Error::Poisoned { cause });
            }
        }
        // Rewritten segments wait, fsynced under temporary names, to be
        // switched in together: the protocol's directory fsyncs are shared
        // by a batch (`switch_rewritten`).
        let mut batch = Batch::default();
        let poison = |failed: &mut Option<Arc<Error>>, e: Error| {
            let cause = Arc::new(e);
            *failed = Some(Arc::clone(&cause));
            Error::Poisoned { cause }
        };
        for segment in &segments {
            if pacer.cancelled() {
                report.cancelled = true;
                break;
            }
            report.segments_examined += 1;
            let mut failure = None;
            let mut removed = RemovedEvents::default();
            let outcome = reader.prepare_rewrite(
                segment.position_first,
                &mut |_, record| {
                    if failure.is_some() {
                        return false;
                    }
                    match rules.reason(record) {
                        Ok(Some(reason)) => {
                            removed.count(reason);
                            true
                        }
                        Ok(None) => false,
                        Err(e) => {
                            failure = Some(e);
                            false
                        }
                    }
                },
                &mut |written| {
                    progress(done + written.min(segment.data_bytes), total);
                    pacer.pace(written)
                },
            );
            let outcome = match (outcome, failure) {
                (Ok(outcome), None) => outcome,
                (Ok(outcome), Some(e)) => {
                    if let Prepared::Ready(ready) = outcome {
                        batch.prepared.push(ready);
                    }
                    reader.abandon_rewritten(std::mem::take(&mut batch.prepared));
                    return Err(e);
                }
                (Err(e), _) => {
                    reader.abandon_rewritten(std::mem::take(&mut batch.prepared));
                    let e = Error::from(e);
                    if matches!(e, Error::Log(annals_segment::Error::Io { .. })) {
                        return Err(poison(&mut failed, e));
                    }
                    return Err(e);
                }
            };
            match outcome {
                Prepared::Unchanged => {
                    report.bytes_before += segment.data_bytes;
                    report.bytes_after += segment.data_bytes;
                }
                Prepared::Ready(ready) => {
                    batch.bytes += ready.rewrite().bytes_before;
                    batch.prepared.push(ready);
                    add(&mut batch.removed, &removed);
                }
                Prepared::Cancelled => {
                    report.cancelled = true;
                    report.bytes_before += segment.data_bytes;
                    report.bytes_after += segment.data_bytes;
                    break;
                }
            }
            done += segment.data_bytes;
            progress(done, total);
            if batch.bytes >= SWITCH_BATCH_BYTES {
                let switched = batch.switch(reader, &mut report, &mut moved);
                switched.map_err(|e| poison(&mut failed, e))?;
            }
        }
        // Segments written before a cancel are whole: they are switched in.
        let switched = batch.switch(reader, &mut report, &mut moved);
        switched.map_err(|e| poison(&mut failed, e))?;
        let rewritten = report.segments_rewritten > 0;
        if !report.cancelled {
            match self.snapshots().compact(options.keep_snapshots) {
                Ok((removed, before, after)) => {
                    report.snapshots_removed = removed;
                    report.bytes_before += before;
                    report.bytes_after += after;
                }
                Err(e) => {
                    let cause = Arc::new(e);
                    *failed = Some(Arc::clone(&cause));
                    return Err(Error::Poisoned { cause });
                }
            }
        }
        let finished = if rewritten {
            derived_data_rewritten(index, &moved)
        } else {
            Ok(())
        };
        if let Err(e) = finished {
            // The marker stays: the next open rebuilds the index.
            return Err(poison(&mut failed, e));
        }
        if options.merge && !report.cancelled {
            // Only segments this compaction examined (one sealed since is
            // not in the report's bytes).
            let examined_end = segments.last().map_or(0, |s| s.position_end);
            match merge_small(reader, examined_end, &mut pacer, &mut report) {
                Ok(merged) if merged.is_empty() => {}
                Ok(merged) => {
                    if let Err(e) = derived_data_rewritten(index, &merged) {
                        return Err(poison(&mut failed, e));
                    }
                }
                Err(e) => {
                    if matches!(e, Error::Log(annals_segment::Error::Io { .. })) {
                        return Err(poison(&mut failed, e));
                    }
                    return Err(e);
                }
            }
        }
        let finished = if segments.is_empty() {
            Ok(())
        } else {
            marker::remove(storage)
        };
        if let Err(e) = finished {
            // The marker stays: the next open rebuilds the index.
            let cause = Arc::new(e);
            *failed = Some(Arc::clone(&cause));
            return Err(Error::Poisoned { cause });
        }
        drop(failed);
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Bytes of sealed log rewritten (before) after which the rewritten
/// segments waiting are switched in: bounds the temporary files a
/// compaction holds at once.
const SWITCH_BATCH_BYTES: u64 = 256 << 20;

/// Rewritten segments waiting to be switched in, and what they remove.
#[derive(Default)]
struct Batch {
    prepared: Vec<PreparedRewrite>,
    bytes: u64,
    removed: RemovedEvents,
}

impl Batch {
    /// Switches the waiting segments in and counts them in `report`;
    /// their moved offsets join `moved`.
    fn switch(
        &mut self,
        reader: &LogReader,
        report: &mut CompactionReport,
        moved: &mut Vec<(u64, Vec<u32>)>,
    ) -> Result<()> {
        let batch = std::mem::take(self);
        for rewrite in reader.switch_rewritten(batch.prepared)? {
            report.segments_rewritten += 1;
            report.bytes_before += rewrite.bytes_before;
            report.bytes_after += rewrite.bytes_after;
            moved.extend(rewrite.offsets);
        }
        add(&mut report.removed, &batch.removed);
        Ok(())
    }
}

fn add(total: &mut RemovedEvents, more: &RemovedEvents) {
    total.hard_delete += more.hard_delete;
    total.soft_delete += more.soft_delete;
    total.truncate_before += more.truncate_before;
    total.max_count += more.max_count;
    total.max_age += more.max_age;
}

/// Segments were rewritten and the frames in `moved` moved: every file
/// derived from their layout is brought up to date here, and only here (the
/// per-stream index runs, which keep offsets, are remapped; other derived
/// indexes join this place).
fn derived_data_rewritten(index: &crate::index::Index, moved: &[(u64, Vec<u32>)]) -> Result<()> {
    index.segments_rewritten(moved)
}

/// Which sealed segments are merged: runs of adjacent ones, each holding
/// at most half its `segment_bytes` of frames, oldest first, each run as
/// long as the merged frames fit its first segment's `segment_bytes`.
/// Runs of one are left alone. Returns the runs' first positions.
pub(crate) fn merge_runs(segments: &[SealedSegment]) -> Vec<Vec<u64>> {
    let mut runs = Vec::new();
    let mut run: Vec<&SealedSegment> = Vec::new();
    let flush = |run: &mut Vec<&SealedSegment>, runs: &mut Vec<Vec<u64>>| {
        if run.len() >= 2 {
            runs.push(run.iter().map(|s| s.position_first).collect());
        }
        run.clear();
    };
    for segment in segments {
        let small = segment.data_bytes <= segment.segment_bytes / 2;
        if !small {
            flush(&mut run, &mut runs);
            continue;
        }
        if let Some(head) = run.first() {
            let adjacent = run
                .last()
                .is_some_and(|last| last.position_end == segment.position_first);
            let mut sizes: Vec<u64> = run.iter().map(|s| s.data_bytes).collect();
            sizes.push(segment.data_bytes);
            if !adjacent || merged_bytes(&sizes) > head.segment_bytes {
                flush(&mut run, &mut runs);
            }
        }
        run.push(segment);
    }
    flush(&mut run, &mut runs);
    runs
}

/// The merge phase: merges the runs [`merge_runs`] picks, switched in by
/// batches (up to [`SWITCH_BATCH_BYTES`] of log); counts them in `report`
/// and returns the moved offsets (for the index). A cancel stops before
/// the next run (the ones written are switched in).
fn merge_small(
    reader: &LogReader,
    examined_end: u64,
    pacer: &mut Pacer,
    report: &mut CompactionReport,
) -> Result<Vec<(u64, Vec<u32>)>> {
    let mut sealed = reader.sealed_segments();
    sealed.retain(|s| s.position_end <= examined_end);
    let runs = merge_runs(&sealed);
    let mut moved = Vec::new();
    let mut batch: Vec<PreparedMerge> = Vec::new();
    let mut batch_bytes = 0u64;
    let switch = |batch: &mut Vec<PreparedMerge>,
                  report: &mut CompactionReport,
                  moved: &mut Vec<(u64, Vec<u32>)>|
     -> Result<()> {
        for merge in reader.switch_merged(std::mem::take(batch))? {
            report.segments_merged += 1;
            report.files_removed += merge.segments_absorbed;
            report.bytes_after =
                report.bytes_after.saturating_sub(merge.bytes_before) + merge.bytes_after;
            moved.extend(merge.offsets);
        }
        Ok(())
    };
    for run in runs {
        if pacer.cancelled() {
            report.cancelled = true;
            break;
        }
        let prepared = reader.prepare_merge(&run, &mut |written| pacer.pace(written));
        match prepared {
            Ok(Some(ready)) => {
                batch_bytes += ready.merge().bytes_before;
                batch.push(ready);
            }
            Ok(None) => {
                report.cancelled = true;
                break;
            }
            Err(e) => {
                reader.abandon_merged(batch);
                return Err(e.into());
            }
        }
        if batch_bytes >= SWITCH_BATCH_BYTES {
            switch(&mut batch, report, &mut moved)?;
            batch_bytes = 0;
        }
    }
    switch(&mut batch, report, &mut moved)?;
    Ok(moved)
}

/// Throttle and cancel.
struct Pacer {
    rate: Option<u64>,
    cancel: Option<Arc<AtomicBool>>,
    started: Instant,
    /// Bytes written in earlier segments.
    before: u64,
    /// Bytes written in the current segment, as last reported.
    current: u64,
}

impl Pacer {
    fn new(options: &CompactionOptions) -> Self {
        Pacer {
            rate: options.throttle_bytes_per_sec.filter(|r| *r > 0),
            cancel: options.cancel.clone(),
            started: Instant::now(),
            before: 0,
            current: 0,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Called with the bytes written so far in the current segment.
    fn pace(&mut self, written: u64) -> ControlFlow<()> {
        if written < self.current {
            self.before += self.current;
        }
        self.current = written;
        if let Some(rate) = self.rate {
            let bytes = self.before + self.current;
            let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if self.cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adjacent segments of `data_bytes` each (header included), 8 KiB
    /// each at most, 10 positions each.
    fn segments(sizes: &[u64]) -> Vec<SealedSegment> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &data_bytes)| SealedSegment {
                name: format!("{i}"),
                position_first: 10 * i as u64,
                position_end: 10 * i as u64 + 10,
                data_bytes,
                segment_bytes: 8192,
            })
            .collect()
    }

    #[test]
    fn runs_take_adjacent_small_segments_while_they_fit_one() {
        // 64-byte headers: three of 2,000 merge into 5,872 bytes; a fourth
        // (7,808) still fits 8,192; a fifth does not.
        let runs = merge_runs(&segments(&[2000, 2000, 2000, 2000, 2000]));
        assert_eq!(runs, vec![vec![0, 10, 20, 30]]);
        // A segment more than half full ends a run and joins none; a run
        // of one is left alone.
        let runs = merge_runs(&segments(&[4000, 4097, 1000, 1000, 5000, 1000]));
        assert_eq!(runs, vec![vec![20, 30]]);
        // Exactly half is small.
        let runs = merge_runs(&segments(&[4096, 4096]));
        assert_eq!(runs, vec![vec![0, 10]]);
        // Not adjacent (a segment left out between them): no run.
        let mut apart = segments(&[1000, 1000, 1000]);
        apart.remove(1);
        assert_eq!(merge_runs(&apart), Vec::<Vec<u64>>::new());
        assert_eq!(merge_runs(&[]), Vec::<Vec<u64>>::new());
    }
}
