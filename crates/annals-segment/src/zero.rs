//! Zero-filling the active segment ahead of the writer, on a background
//! thread.
//!
//! A segment is created sparse (`set_len`): its blocks are allocated by the
//! first write into each, and an `fdatasync` after such a write must also
//! write the file's allocation metadata — on ext4 a second synchronous
//! write (`ext4_write_inode` → `__sync_dirty_buffer` in `perf`) before the
//! flush. Once a block holds written zeros, a commit into it is a plain
//! overwrite and its `fdatasync` writes only the data. So this thread keeps
//! the region just ahead of the writer filled with real zeros (and synced):
//! measured on this machine, 100-event appends went from ~2,050 to
//! ~3,000 per second (see `docs/PERFORMANCE-HISTORY.md`).
//!
//! The cost is that every byte of the log is written twice to the device
//! (zeros, then data), and a segment occupies its blocks as soon as they
//! are zeroed. Zeros are what a sparse tail reads as, so nothing on disk
//! changes meaning: recovery, readers and the format are unaffected, and a
//! crash in the middle of a zero-fill leaves zeros. Zeroing never touches
//! a byte at or before the writer's end (the writer publishes where it is
//! about to write before writing, and waits if a chunk being zeroed
//! overlaps it). A failed zero write or sync stops the filler for that
//! segment and nothing else: the writer's own `fdatasync` makes its data
//! durable either way. The filler writes and syncs through a handle of its
//! own ([`StorageFile::reopen`](crate::storage::StorageFile::reopen)): a
//! failed writeback is reported once per open file description, and a
//! filler syncing through the writer's would take the report the writer's
//! next `fdatasync` must give. After a reopen the filler starts from the writer's
//! end again, so up to `AHEAD` bytes already zero may be zeroed twice.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::segment::Segment;
use crate::storage::StorageFile;

/// Bytes zeroed (then synced) per step. Each step's pages can be caught
/// by a commit's `fdatasync` running meanwhile: 64 KiB to 4 MiB measured,
/// 256 KiB–1 MiB fastest for 100-event appends, 256 KiB the lower p99.
const CHUNK: u64 = 256 << 10;
/// How far ahead of the writer's end zeros are kept.
const AHEAD: u64 = 8 << 20;
/// Zeroing starts once this much was written since open (after a roll, at
/// once): a store that writes a little never pays for it.
const ACTIVATE_AFTER: u64 = CHUNK;
const PAGE: u64 = 4096;

/// The zero-filling thread and what it shares with the writer.
#[derive(Debug)]
pub(crate) struct ZeroAhead {
    progress: Arc<FillProgress>,
    thread: Option<JoinHandle<()>>,
}

/// The writer's and the filler's progress in the segment, and the
/// condition variable each waits on for the other.
#[derive(Debug)]
struct FillProgress {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    segment: Arc<Segment>,
    segment_bytes: u64,
    /// End of what the writer has written (or is writing) in `segment`.
    written: u64,
    /// Zeros are written and synced from `written`'s page up to here.
    zeroed: u64,
    /// Zeroing starts once `written` passes this.
    activate_at: u64,
    /// The chunk being zeroed right now.
    busy: Option<(u64, u64)>,
    /// A chunk's write or sync failed: zeroing stops for the segment.
    failed: bool,
    stopping: bool,
}

impl State {
    fn wants_work(&self) -> bool {
        self.written >= self.activate_at
            && !self.failed
            && self.zeroed < self.written.saturating_add(AHEAD)
            && self.next_start() < self.segment_bytes
    }

    /// Where the next chunk starts: past the zeros already written and
    /// past the writer's last page (which it may still be filling).
    fn next_start(&self) -> u64 {
        self.zeroed.max(self.written.div_ceil(PAGE) * PAGE)
    }
}

impl ZeroAhead {
    /// Starts the thread for `segment`, whose data ends at `written`.
    pub(crate) fn start(segment: Arc<Segment>, segment_bytes: u64, written: u64) -> Self {
        let progress = Arc::new(FillProgress {
            state: Mutex::new(State {
                segment,
                segment_bytes,
                written,
                zeroed: written,
                activate_at: written.saturating_add(ACTIVATE_AFTER),
                busy: None,
                failed: false,
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("annals-zero".into())
            .spawn(move || worker.run())
            .ok();
        ZeroAhead { progress, thread }
    }

    /// The writer is about to write up to `end` of the active segment:
    /// waits while a chunk being zeroed reaches below `end`, then records
    /// `end` so that no later chunk does.
    pub(crate) fn before_write(&self, end: u64) {
        let mut state = self.progress.state.lock();
        while state.busy.is_some_and(|(start, _)| start < end) {
            self.progress.changed.wait(&mut state);
        }
        state.written = state.written.max(end);
        if state.wants_work() {
            self.progress.changed.notify_all();
        }
    }

    /// The writer rolled to `segment`, whose data starts at `written`.
    pub(crate) fn switch(&self, segment: Arc<Segment>, written: u64) {
        let mut state = self.progress.state.lock();
        // A chunk of the old segment finishes first (`busy` is in its offsets).
        while state.busy.is_some() {
            self.progress.changed.wait(&mut state);
        }
        state.segment = segment;
        state.written = written;
        state.zeroed = written;
        // A roll means a log that is being written: start at once.
        state.activate_at = written;
        state.failed = false;
        self.progress.changed.notify_all();
    }
}

impl Drop for ZeroAhead {
    fn drop(&mut self) {
        self.progress.state.lock().stopping = true;
        self.progress.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl FillProgress {
    fn run(&self) {
        let zeros = vec![0u8; CHUNK as usize];
        // The segment being zeroed and the filler's own handle on it.
        let mut own: Option<(Arc<Segment>, Arc<dyn StorageFile>)> = None;
        loop {
            let (segment, start, end) = {
                let mut state = self.state.lock();
                while !state.stopping && !state.wants_work() {
                    self.changed.wait(&mut state);
                }
                if state.stopping {
                    return;
                }
                let start = state.next_start();
                let end = (start + CHUNK).min(state.segment_bytes);
                state.busy = Some((start, end));
                (Arc::clone(&state.segment), start, end)
            };
            // Whatever happens below (even a panic in a storage backend),
            // the chunk stops being busy: a writer may be waiting on it.
            let mut chunk = Chunk {
                progress: self,
                segment,
                end,
                done: false,
            };
            let file = match &own {
                Some((segment, file)) if Arc::ptr_eq(segment, &chunk.segment) => Arc::clone(file),
                // A segment sealed since (no file any more): nothing to do.
                _ => match chunk
                    .segment
                    .file()
                    .ok_or(())
                    .and_then(|f| f.reopen().map_err(drop))
                {
                    Ok(file) => {
                        own = Some((Arc::clone(&chunk.segment), Arc::clone(&file)));
                        file
                    }
                    // Not done: zeroing stops for this segment.
                    Err(_) => continue,
                },
            };
            let len = (end - start) as usize;
            chunk.done = file
                .write_all_at(zeros.get(..len).unwrap_or(&zeros), start)
                .and_then(|()| file.sync_data())
                .is_ok();
        }
    }
}

/// A chunk being zeroed; dropping it records the outcome and wakes the
/// writer.
struct Chunk<'a> {
    progress: &'a FillProgress,
    segment: Arc<Segment>,
    end: u64,
    done: bool,
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        let mut state = self.progress.state.lock();
        state.busy = None;
        if Arc::ptr_eq(&state.segment, &self.segment) {
            if self.done {
                state.zeroed = state.zeroed.max(self.end);
            } else {
                state.failed = true;
            }
        }
        self.progress.changed.notify_all();
    }
}
