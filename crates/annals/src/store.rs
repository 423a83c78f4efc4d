//! The `Store`: opening, appending through the writer, reading.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use annals_index::Direction;
use annals_segment::format::{self, Record};
use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{LogOptions, LogReader, RecoveryReport};

use crate::error::{Error, Result};
use crate::event::{EventData, EventRef, RecordedEvent};
use crate::expected::{CurrentVersion, ExpectedVersion, WrongExpectedVersion};
use crate::index::{Index, IndexReport};
use crate::write::{Answer, Outcome, Pipeline, StreamAppend, Work, Writer};
use crate::{Options, TOMBSTONE_TYPE};

/// What an append wrote to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream.
    pub stream: String,
    /// Version of the first event written.
    pub first_version: u64,
    /// Version of the last event written.
    pub last_version: u64,
    /// Global position of the first event written.
    pub first_position: u64,
    /// Global position of the last event written.
    pub last_position: u64,
    /// Whether this append was a retry of one already stored: nothing was
    /// written, and this is the original append's result.
    pub duplicate: bool,
}

/// A rejected multi-stream append: which entry's expectation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("append entry {index} rejected: {conflict}")]
pub struct MultiConflict {
    /// Index of the failing entry in the request.
    pub index: usize,
    /// The conflict.
    pub conflict: WrongExpectedVersion,
}

/// Counts describing a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Number of streams (deleted ones included).
    pub streams: u64,
    /// Number of events in the global feed (tombstones included).
    pub events: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Bytes preallocated for segment files.
    pub segment_bytes: u64,
    /// Bytes of those files that hold data (frames and headers).
    pub data_bytes: u64,
    /// Index run files on disk.
    pub index_runs: u64,
    /// Bytes of those files.
    pub index_bytes: u64,
    /// Position up to which the index is persisted: an open after a crash
    /// replays the log from here.
    pub index_checkpoint: u64,
    /// Events whose index entries are only in memory (not yet in a run).
    pub index_buffered: u64,
    /// The last failure of the background index writer, if it has not
    /// succeeded since (the entries stay in memory meanwhile).
    pub index_error: Option<String>,
}

/// Counts describing the write path since the store was opened (see
/// [`Store::write_stats`]). `requests / groups` is the average group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriteStats {
    /// Group commits: each at most one `write` (and in `Fsync` and
    /// `Batched` modes one `fdatasync`); a group that only rejected
    /// requests writes nothing.
    pub groups: u64,
    /// Requests those groups answered: appends, `append_many`s and
    /// flushes, accepted or not.
    pub requests: u64,
    /// Groups whose leader waited for the callers the previous group
    /// answered (see [`Options::gather`](crate::Options::gather)).
    pub gathers: u64,
    /// Gathers that ended at their time limit, not with everyone back.
    pub gather_timeouts: u64,
}

/// What [`Store::verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events whose checksums were verified.
    pub events: u64,
    /// Streams in the index.
    pub streams: u64,
    /// Index entries (persisted or in memory) that matched a full rescan.
    pub index_entries: u64,
}

/// An open event store. Cheap to clone and share between threads; the
/// directory stays locked until the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    reader: LogReader,
    index: Arc<Index>,
    pipeline: Pipeline,
    frame_bytes_max: usize,
    recovery: RecoveryReport,
    /// Whether [`Inner::shut_down`] ran (by [`Store::close`]).
    shut: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Every clone is gone, so nothing is pending: syncs what buffered mode
    /// left unsynced and marks the log cleanly closed, then persists the
    /// index buffer. The first error of these.
    fn shut_down(&mut self) -> Result<()> {
        self.shut = true;
        let log = self.pipeline.close();
        self.index.close();
        log
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.shut {
            // Nobody can be told: `Store::close` is the way to hear it.
            let _ = self.shut_down();
        }
    }
}

impl Store {
    /// Opens the store in `dir` with default options, creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the store in `dir`, creating it if needed.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref();
        let storage = FsStorage::open(dir)
            .map_err(|e| annals_segment::Error::io("open", dir.display().to_string(), e))?;
        Self::open_storage(Arc::new(storage), options)
    }

    /// Opens the store on any [`Storage`] (tests use the in-memory,
    /// crash-simulating one).
    pub fn open_storage(storage: Arc<dyn Storage>, options: Options) -> Result<Store> {
        Self::open_storage_with_progress(storage, options, &mut |_, _| {})
    }

    /// Opens the store on any [`Storage`], reporting the index replay as
    /// `progress(events done, events to replay)`.
    pub fn open_storage_with_progress(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        lock(&storage)?;
        Self::open_locked(storage, options, progress)
    }

    /// Opens the store in `dir` after removing every index file, so that
    /// the whole index is rebuilt from the log (`progress(done, total)`
    /// follows the replay). Needed only after damage the automatic checks
    /// cannot see; open already discards damaged or misplaced index files.
    pub fn rebuild_index(
        dir: impl AsRef<Path>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        let dir = dir.as_ref();
        let storage = FsStorage::open(dir)
            .map_err(|e| annals_segment::Error::io("open", dir.display().to_string(), e))?;
        Self::rebuild_index_storage(Arc::new(storage), options, progress)
    }

    /// [`Store::rebuild_index`] on any [`Storage`].
    pub fn rebuild_index_storage(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        lock(&storage)?;
        crate::index::remove_runs(&storage)?;
        Self::open_locked(storage, options, progress)
    }

    fn open_locked(
        storage: Arc<dyn Storage>,
        options: Options,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Store> {
        let location = storage.describe();
        let log_options = LogOptions {
            segment_bytes: options.segment_bytes,
            zero_ahead: options.zero_ahead,
        };
        let (log, reader, recovery) = annals_segment::open_bounded(
            Arc::clone(&storage),
            log_options,
            options.open_segments_max,
        )?;
        let index = Arc::new(Index::open(
            storage,
            reader.clone(),
            options.index_buffer_events,
            progress,
        )?);
        let frame_bytes_max = log.frame_bytes_max();
        let writer = Writer {
            log,
            reader: reader.clone(),
            index: Arc::clone(&index),
            durability: options.durability,
            poison: None,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                location,
                reader,
                index,
                pipeline: Pipeline::new(
                    writer,
                    options.queue_max,
                    options.group_max,
                    options.gather,
                ),
                frame_bytes_max,
                recovery,
                shut: false,
            }),
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// What recovery did when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// What opening the index found: its checkpoint, the events replayed
    /// from the log after it, run files discarded.
    pub fn index_report(&self) -> &IndexReport {
        self.inner.index.report()
    }

    /// Appends `events` to `stream` if the stream is at `expected`: one
    /// atomic frame, durable (fsync'd) before this returns. A stale
    /// expectation is the inner `Err`, and nothing is written.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<Result<AppendResult, WrongExpectedVersion>> {
        let append = StreamAppend {
            stream: stream.to_owned(),
            expected,
            events,
            tombstone: false,
        };
        Ok(self
            .submit(vec![append])?
            .map(first_result)
            .map_err(|(_, conflict)| conflict))
    }

    /// Appends to several streams atomically: one frame, one fsync. Either
    /// every expectation holds and every event is written, or nothing is and
    /// the inner `Err` says which entry failed.
    pub fn append_many(
        &self,
        appends: Vec<(String, ExpectedVersion, Vec<EventData>)>,
    ) -> Result<Result<Vec<AppendResult>, MultiConflict>> {
        let appends = appends
            .into_iter()
            .map(|(stream, expected, events)| StreamAppend {
                stream,
                expected,
                events,
                tombstone: false,
            })
            .collect();
        Ok(self
            .submit(appends)?
            .map_err(|(index, conflict)| MultiConflict { index, conflict }))
    }

    /// Deletes `stream` for good: writes a tombstone (visible in the global
    /// feed) after which the stream cannot be read or appended to.
    pub fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
    ) -> Result<Result<AppendResult, WrongExpectedVersion>> {
        let tombstone = EventData::new(TOMBSTONE_TYPE, bytes::Bytes::new());
        let append = StreamAppend {
            stream: stream.to_owned(),
            expected,
            events: vec![tombstone],
            tombstone: true,
        };
        Ok(self
            .submit(vec![append])?
            .map(first_result)
            .map_err(|(_, conflict)| conflict))
    }

    fn submit(&self, appends: Vec<StreamAppend>) -> Outcome {
        self.validate(&appends)?;
        match self.inner.pipeline.submit(Work::Append(appends)) {
            Answer::Append(outcome) => outcome,
            Answer::Flush(_) => Err(Error::Index("an append was answered as a flush".into())),
        }
    }

    /// Closes this handle and says whether closing went well. The last
    /// handle syncs what [`Durability::Buffered`](crate::Durability::Buffered) left unsynced, marks the
    /// log cleanly closed and persists the index buffer, returning the
    /// first error of these (dropping the last handle does the same but can
    /// only swallow an error). While other clones are open, it makes
    /// everything appended so far durable, as [`Store::flush`], and lets go
    /// of this handle.
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.shut_down(),
            Err(inner) => Store { inner }.flush(),
        }
    }

    /// Makes every append acknowledged so far durable. Needed only with
    /// [`Durability::Buffered`](crate::Durability::Buffered); in the other
    /// modes everything acknowledged already is.
    pub fn flush(&self) -> Result<()> {
        match self.inner.pipeline.submit(Work::Flush) {
            Answer::Flush(result) => result,
            Answer::Append(_) => Err(Error::Index("a flush was answered as an append".into())),
        }
    }

    /// Checks everything about an append that does not need the writer.
    fn validate(&self, appends: &[StreamAppend]) -> Result<()> {
        if appends.is_empty() {
            return Err(Error::InvalidInput(
                "an append needs at least one stream".into(),
            ));
        }
        let mut records = Vec::new();
        let mut ids = Vec::new();
        for append in appends {
            if append.events.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "append to {} has no events",
                    append.stream
                )));
            }
            for event in &append.events {
                ids.push(event.id);
                if !append.tombstone && event.event_type.starts_with('$') {
                    return Err(Error::InvalidInput(format!(
                        "event type {:?} is reserved: types starting with '$' belong to the store",
                        event.event_type
                    )));
                }
                records.push(Record {
                    stream: &append.stream,
                    stream_version: 0,
                    id: event.id.0,
                    timestamp_us: 0,
                    flags: 0,
                    event_type: &event.event_type,
                    metadata: &event.metadata,
                    data: &event.data,
                });
            }
        }
        // Sorting beats hashing for the few ids of one append.
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair.first() == pair.last()) {
            let id = pair.first().copied().unwrap_or_default();
            return Err(Error::InvalidInput(format!(
                "event id {id} appears twice in one append"
            )));
        }
        let bytes = format::frame_bytes(&records)?;
        if bytes > self.inner.frame_bytes_max {
            return Err(Error::InvalidInput(format!(
                "append of {bytes} bytes exceeds the limit of {}",
                self.inner.frame_bytes_max
            )));
        }
        Ok(())
    }

    /// Does the index's background work now, on this thread: writes the
    /// frozen in-memory buffers to index files and merges runs until no
    /// more merging is due. Never needed for correctness; useful after a
    /// bulk load, before measuring, or before a backup.
    pub fn maintain_index(&self) -> Result<()> {
        self.inner.index.maintain()
    }

    /// The stream's current version.
    pub fn stream_version(&self, stream: &str) -> Result<CurrentVersion> {
        Ok(CurrentVersion::from_state(self.inner.index.state(stream)?))
    }

    /// Up to `max` events of `stream` from version `from` (inclusive), in
    /// `direction`. Reading backward from `u64::MAX` starts at the newest
    /// event. A stream with no events reads as empty; a deleted one is
    /// [`Error::StreamDeleted`]. Touches only this stream's events.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(max.min(1024));
        self.read_stream_with(stream, from, direction, max, |event| {
            events.push(event.to_recorded());
            ControlFlow::Continue(())
        })?;
        Ok(events)
    }

    /// Like [`read_stream`](Store::read_stream), but hands each event to
    /// `visit` borrowed from the log ([`EventRef`]) instead of collecting
    /// owned copies: loading an aggregate by folding its events costs no
    /// allocation per event. `visit` returns `Break` to stop early. Returns
    /// the number of events visited. Each event is visited once, in order,
    /// even if the read has to repair a damaged index file on the way. If
    /// it returns an error, `visit` may have seen some events before it.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use annals::{Direction, EventData, ExpectedVersion, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let deposits = [5u64, 7, 30].map(|n| EventData::new("Deposited", n.to_le_bytes().to_vec()));
    /// store.append("account-1", ExpectedVersion::NoStream, deposits.to_vec())??;
    /// let mut balance = 0;
    /// store.read_stream_with("account-1", 0, Direction::Forward, usize::MAX, |event| {
    ///     let amount: [u8; 8] = event.data.try_into().unwrap_or_default();
    ///     balance += u64::from_le_bytes(amount);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(balance, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_stream_with(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<usize> {
        let index = &self.inner.index;
        if index.state(stream)?.is_some_and(|s| s.deleted) {
            return Err(Error::StreamDeleted(stream.to_owned()));
        }
        // What was delivered survives a repair's second attempt, which
        // resumes after the last event visited.
        let delivered = Cell::new(0usize);
        let mut next = Some(from);
        let mut stopped = false;
        index.repairing(|| {
            let Some(from) = next.filter(|_| !stopped && delivered.get() < max) else {
                return Ok(());
            };
            let mut deliver = |event: EventRef<'_>| {
                delivered.set(delivered.get() + 1);
                next = match direction {
                    Direction::Forward => event.version.checked_add(1),
                    Direction::Backward => event.version.checked_sub(1),
                };
                let flow = visit(event);
                stopped = flow.is_break() || next.is_none() || delivered.get() >= max;
                if stopped {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            // Candidates are gathered, then read from the log together
            // (the segment's mapping and locks taken once per batch).
            let mut candidates = Candidates::default();
            let remaining = max - delivered.get();
            let mut wanted = remaining.min(READ_BATCH);
            let mut flow = ControlFlow::Continue(());
            index.read(stream, from, direction, remaining, &mut |candidate| {
                candidates.versions.push(candidate.version);
                candidates.positions.push(candidate.position);
                candidates.offsets.push(candidate.offset);
                if candidates.len() < wanted {
                    return Ok(ControlFlow::Continue(()));
                }
                flow = self.read_candidates(stream, &mut candidates, &mut deliver)?;
                wanted = (max - delivered.get()).min(READ_BATCH);
                Ok(flow)
            })?;
            if flow.is_continue() {
                // The last batch: whether it stopped early changes nothing.
                let _ = self.read_candidates(stream, &mut candidates, &mut deliver)?;
            }
            Ok(())
        })?;
        Ok(delivered.get())
    }

    /// Reads the candidate events the index gave for `stream` and hands
    /// those of `stream` to `deliver` (another stream whose name has the
    /// same hash is skipped), checking their versions. Leaves `candidates`
    /// empty.
    fn read_candidates(
        &self,
        stream: &str,
        candidates: &mut Candidates,
        deliver: &mut dyn FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let end = self.inner.reader.position_end();
        if let Some(position) = candidates.positions.iter().find(|p| **p >= end) {
            return Err(Error::Index(format!(
                "position {position} is not in the log"
            )));
        }
        let mut versions = candidates.versions.iter();
        let mut failure = None;
        let mut flow = ControlFlow::Continue(());
        self.inner.reader.with_stream_events(
            &candidates.positions,
            &candidates.offsets,
            stream,
            |position, record, owner| {
                let version = versions.next().copied().unwrap_or(u64::MAX);
                let Some(record) = record else {
                    // Another stream whose name has the same hash.
                    return ControlFlow::Continue(());
                };
                if record.stream_version != version {
                    failure = Some(Error::Index(format!(
                        "index maps {stream}@{version} to position {position}, which holds {}@{}",
                        record.stream, record.stream_version
                    )));
                    return ControlFlow::Break(());
                }
                flow = deliver(EventRef::new(position, record, owner));
                flow
            },
        )?;
        candidates.versions.clear();
        candidates.positions.clear();
        candidates.offsets.clear();
        failure.map_or(Ok(flow), Err)
    }

    /// Up to `max` events of the global feed from `from` (inclusive), in
    /// commit order. Positions are dense: nothing is skipped.
    pub fn read_all(&self, from: u64, max: usize) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(max.min(4096));
        if max == 0 {
            return Ok(events);
        }
        self.inner
            .reader
            .scan_shared(from, |position, record, owner| {
                events.push(RecordedEvent::from_record(position, record, owner));
                if events.len() >= max {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
        Ok(events)
    }

    /// One past the last position of the global feed.
    pub fn position_end(&self) -> u64 {
        self.inner.reader.position_end()
    }

    /// Counts of streams, events and segments.
    pub fn stats(&self) -> Stats {
        let segments = self.inner.reader.segments();
        let index = self.inner.index.figures();
        Stats {
            streams: index.streams,
            events: self.inner.reader.position_end(),
            segments: segments.len() as u64,
            segment_bytes: segments.iter().map(|s| s.segment_bytes).sum(),
            data_bytes: segments.iter().map(|s| s.data_bytes).sum(),
            index_runs: index.runs,
            index_bytes: index.run_bytes,
            index_checkpoint: index.checkpoint,
            index_buffered: index.buffered,
            index_error: index.error,
        }
    }

    /// Counts of group commits and gathering since the store was opened.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.pipeline.stats()
    }

    /// Reads every byte of the log, verifying every checksum; then reads
    /// every page of every index file (checksums, order, each position
    /// once) and checks that each index file holds exactly the entries a
    /// rescan of the log implies (an order-independent digest: constant
    /// memory, ~2⁻¹²⁸ chance to miss a difference), and each in-memory
    /// entry one by one.
    pub fn verify(&self) -> Result<VerifyReport> {
        let events = self.inner.reader.verify()?;
        let index_entries = self.inner.index.verify()?;
        Ok(VerifyReport {
            events,
            streams: self.inner.index.figures().streams,
            index_entries,
        })
    }

    /// A copy of the whole index (stream → positions, deleted), for tests
    /// and tools that compare indexes. Reads every index entry.
    pub fn index_dump(&self) -> Result<std::collections::BTreeMap<String, (Vec<u64>, bool)>> {
        self.inner.index.dump()
    }
}

fn lock(storage: &Arc<dyn Storage>) -> Result<()> {
    storage.try_lock().map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked(storage.describe()),
        _ => annals_segment::Error::io("lock", storage.describe(), e).into(),
    })
}

fn first_result(mut results: Vec<AppendResult>) -> AppendResult {
    results.swap_remove(0)
}

/// How many candidate events a stream read gathers before reading them.
const READ_BATCH: usize = 256;

/// (version, position) pairs the index gave for a stream read, in order.
#[derive(Default)]
struct Candidates {
    versions: Vec<u64>,
    positions: Vec<u64>,
    /// Where each event starts in its segment, if the index knows.
    offsets: Vec<Option<u32>>,
}

impl Candidates {
    fn len(&self) -> usize {
        self.positions.len()
    }
}
