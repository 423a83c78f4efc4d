//! The write path: leader/follower group commit and the decisions it makes.
//!
//! Callers queue their request (a bounded queue: a full one blocks them).
//! The first caller to find no leader becomes the leader: it takes every
//! request waiting (up to `group_max`), recognises retries of appends
//! already stored (by event id), checks each expectation against the index
//! *and* the requests before it in the same group, writes the accepted ones
//! as one frame with one `write`, makes them durable with one `fdatasync`
//! (per the durability mode), updates the index, hands leadership to the
//! next waiting request and answers its followers. A caller alone never
//! changes threads; a group of N costs at most N-1 wakeups. (A dedicated
//! writer thread cost two cross-thread wakeups per append: measured at ~21%
//! of the time of bulk appends on this machine.)

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals_index::StreamIndex;
use annals_segment::{LogReader, LogWriter, Record};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::{CurrentVersion, ExpectedVersion, WrongExpectedVersion};
use crate::{AppendResult, Durability, APPEND_FIRST_FLAG, APPEND_LAST_FLAG, TOMBSTONE_FLAG};

/// One stream's part of an append.
#[derive(Debug)]
pub(crate) struct StreamAppend {
    pub(crate) stream: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<EventData>,
    pub(crate) tombstone: bool,
}

/// A rejected append: which of its streams failed, and how.
pub(crate) type Conflict = (usize, WrongExpectedVersion);

/// What an append is answered.
pub(crate) type Outcome = Result<Result<Vec<AppendResult>, Conflict>>;

/// Work for the write path.
pub(crate) enum Work {
    /// Append, atomically, to one or more streams.
    Append(Vec<StreamAppend>),
    /// Make everything appended so far durable.
    Flush,
}

/// The answer to one piece of work.
pub(crate) enum Answer {
    /// To an append.
    Append(Outcome),
    /// To a flush.
    Flush(Result<()>),
}

/// Where a waiting caller learns its fate.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    /// This caller is now the leader.
    Lead,
    Done(Answer),
}

impl Slot {
    fn set(&self, state: SlotState) {
        *self.state.lock() = state;
        self.changed.notify_one();
    }

    /// Blocks until answered or made leader.
    fn wait(&self) -> SlotState {
        let mut state = self.state.lock();
        while matches!(*state, SlotState::Waiting) {
            self.changed.wait(&mut state);
        }
        std::mem::take(&mut *state)
    }
}

/// A queued request.
pub(crate) struct Request {
    work: Work,
    slot: Arc<Slot>,
}

struct Queue {
    pending: VecDeque<Request>,
    leader: bool,
}

/// The write path shared by every `Store` clone.
pub(crate) struct Pipeline {
    queue: Mutex<Queue>,
    space: Condvar,
    writer: Mutex<Writer>,
    queue_max: usize,
    group_max: usize,
    delay: Option<Duration>,
}

impl Pipeline {
    pub(crate) fn new(writer: Writer, queue_max: usize, group_max: usize) -> Self {
        let delay = match writer.durability {
            Durability::Batched { delay } => Some(delay),
            _ => None,
        };
        Pipeline {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                leader: false,
            }),
            space: Condvar::new(),
            writer: Mutex::new(writer),
            queue_max: queue_max.max(1),
            group_max: group_max.max(1),
            delay,
        }
    }

    /// Queues `work` and returns its answer, leading a group commit if no
    /// one else is.
    pub(crate) fn submit(&self, work: Work) -> Answer {
        let slot = Arc::new(Slot::default());
        let lead_now = {
            let mut queue = self.queue.lock();
            while queue.pending.len() >= self.queue_max {
                self.space.wait(&mut queue);
            }
            queue.pending.push_back(Request {
                work,
                slot: Arc::clone(&slot),
            });
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead_now {
            return self.lead(&slot);
        }
        match slot.wait() {
            SlotState::Done(answer) => answer,
            SlotState::Lead => self.lead(&slot),
            SlotState::Waiting => Answer::Append(Err(Error::Closed)),
        }
    }

    /// Commits one group, which holds the leader's own request (it is at
    /// the front of the queue), then passes leadership on.
    fn lead(&self, own: &Arc<Slot>) -> Answer {
        if let Some(delay) = self.delay {
            // Batched durability: give more writers time to join the group.
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline && self.queue.lock().pending.len() < self.group_max {
                std::thread::sleep(Duration::from_micros(50).min(delay));
            }
        }
        let group: Vec<Request> = {
            let mut queue = self.queue.lock();
            let n = queue.pending.len().min(self.group_max);
            let group = queue.pending.drain(..n).collect();
            self.space.notify_all();
            group
        };
        let answers = self.writer.lock().commit_group(&group);
        {
            let mut queue = self.queue.lock();
            match queue.pending.front() {
                Some(next) => next.slot.set(SlotState::Lead),
                None => queue.leader = false,
            }
        }
        let mut own_answer = None;
        for (request, answer) in group.into_iter().zip(answers) {
            if Arc::ptr_eq(&request.slot, own) {
                own_answer = Some(answer);
            } else {
                request.slot.set(SlotState::Done(answer));
            }
        }
        own_answer.unwrap_or(Answer::Append(Err(Error::Index(
            "the leader's request was not in its group".into(),
        ))))
    }

    /// Syncs on close, unless poisoned (the next open recovers from disk).
    pub(crate) fn close(&self) {
        let mut writer = self.writer.lock();
        if !writer.poisoned {
            let _ = writer.log.sync();
        }
    }
}

/// Event id → global position of every event in the log.
pub(crate) type IdTable = HashMap<[u8; 16], u64, IdHash>;

/// Hashes 16-byte event ids with one folded 128-bit multiply, keyed per
/// process so that callers who choose ids cannot aim them at one bucket.
/// SipHash cost ~12% of the writer's time on bulk appends.
#[derive(Clone)]
pub(crate) struct IdHash {
    key: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        IdHash {
            key: annals_segment::random_u64() | 1,
        }
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.key }
    }
}

/// The hasher [`IdHash`] builds.
pub(crate) struct IdHasher {
    state: u64,
}

impl IdHasher {
    fn mix(&mut self, word: u64) {
        let mixed = u128::from(self.state ^ word) * 0x9E37_79B9_7F4A_7C15_u128;
        self.state = (mixed as u64) ^ ((mixed >> 64) as u64);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.mix(u64::from_le_bytes(le));
        }
        for byte in words.remainder() {
            self.mix(u64::from(*byte));
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {
        // Ids are always 16 bytes: the length prefix carries nothing.
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// The log and what the write path decides with; used by one leader at a time.
pub(crate) struct Writer {
    pub(crate) log: LogWriter,
    pub(crate) reader: LogReader,
    pub(crate) index: Arc<RwLock<StreamIndex>>,
    pub(crate) ids: IdTable,
    pub(crate) durability: Durability,
    pub(crate) poisoned: bool,
}

impl Writer {
    /// Answers every request of a group. After a failed write or fsync the
    /// writer is poisoned: every later request fails until reopen.
    fn commit_group(&mut self, group: &[Request]) -> Vec<Answer> {
        if !self.poisoned {
            match self.commit(group) {
                Ok(answers) => return answers,
                Err(failed) => {
                    self.poisoned = true;
                    let mut failed = Some(failed);
                    return group
                        .iter()
                        .map(|r| error_answer(&r.work, failed.take().unwrap_or(Error::Poisoned)))
                        .collect();
                }
            }
        }
        group
            .iter()
            .map(|r| error_answer(&r.work, Error::Poisoned))
            .collect()
    }

    /// Decides every request of the group, writes and syncs the accepted
    /// ones, updates the index and returns the answers. An `Err` means the
    /// log failed: the caller poisons the writer.
    fn commit(&mut self, group: &[Request]) -> Result<Vec<Answer>> {
        let decisions = decide(&self.index.read(), &self.ids, &self.reader, group);
        let timestamp_us = now_us();
        let mut batches: Vec<Vec<Record<'_>>> = Vec::new();
        for (request, decision) in group.iter().zip(&decisions) {
            let (Work::Append(appends), Decision::Accept(first_versions)) =
                (&request.work, decision)
            else {
                continue;
            };
            let mut batch = Vec::new();
            for (append, &first_version) in appends.iter().zip(first_versions) {
                for (i, event) in append.events.iter().enumerate() {
                    batch.push(Record {
                        stream: &append.stream,
                        stream_version: first_version + i as u64,
                        id: event.id.0,
                        timestamp_us,
                        flags: if append.tombstone { TOMBSTONE_FLAG } else { 0 },
                        event_type: &event.event_type,
                        metadata: &event.metadata,
                        data: &event.data,
                    });
                }
            }
            // Mark the append's boundaries, so a retry can be told from a
            // request that repeats only part of it.
            if let Some(first) = batch.first_mut() {
                first.flags |= APPEND_FIRST_FLAG;
            }
            if let Some(last) = batch.last_mut() {
                last.flags |= APPEND_LAST_FLAG;
            }
            batches.push(batch);
        }
        let flush_asked = group.iter().any(|r| matches!(r.work, Work::Flush));
        let refs: Vec<&[Record<'_>]> = batches.iter().map(Vec::as_slice).collect();
        let firsts = if refs.is_empty() {
            Vec::new()
        } else {
            self.log.append(&refs)?
        };
        if self.durability == Durability::Buffered && !flush_asked {
            self.log.publish_unsynced()?;
        } else {
            self.log.sync()?;
        }
        let results = self.apply(group, decisions, firsts)?;
        Ok(results
            .into_iter()
            .map(|result| match result {
                Some(outcome) => Answer::Append(outcome),
                None => Answer::Flush(Ok(())),
            })
            .collect())
    }

    /// Records what the group wrote in the index and the id table, and
    /// builds each request's answer (`None` for flushes).
    fn apply(
        &mut self,
        group: &[Request],
        decisions: Vec<Decision>,
        firsts: Vec<u64>,
    ) -> Result<Vec<Option<Outcome>>> {
        let mut results: Vec<Option<Outcome>> = Vec::with_capacity(group.len());
        let mut index = self.index.write();
        let mut firsts = firsts.into_iter();
        for (request, decision) in group.iter().zip(decisions) {
            let Work::Append(appends) = &request.work else {
                results.push(None);
                continue;
            };
            let first_versions = match decision {
                Decision::Accept(first_versions) => first_versions,
                Decision::Conflict(conflict) => {
                    results.push(Some(Ok(Err(conflict))));
                    continue;
                }
                Decision::Duplicate(found) => {
                    results.push(Some(Ok(Ok(found))));
                    continue;
                }
                Decision::DuplicateOf(earlier) => {
                    let copy = match results.get(earlier) {
                        Some(Some(Ok(Ok(found)))) => Ok(Ok(mark_duplicate(found.clone()))),
                        _ => Err(Error::Index(
                            "retry of a failed append in the same group".into(),
                        )),
                    };
                    results.push(Some(copy));
                    continue;
                }
                Decision::Invalid(error) => {
                    results.push(Some(Err(error)));
                    continue;
                }
                Decision::Flush => {
                    results.push(None);
                    continue;
                }
            };
            let mut position = firsts
                .next()
                .ok_or_else(|| Error::Index("log returned too few positions".into()))?;
            let mut per_stream = Vec::with_capacity(appends.len());
            for (append, first_version) in appends.iter().zip(first_versions) {
                let count = append.events.len() as u64;
                index
                    .push_run(
                        &append.stream,
                        first_version,
                        position,
                        count,
                        append.tombstone,
                    )
                    .map_err(|e| Error::Index(e.to_string()))?;
                for (i, event) in append.events.iter().enumerate() {
                    self.ids.insert(event.id.0, position + i as u64);
                }
                per_stream.push(AppendResult {
                    stream: append.stream.clone(),
                    first_version,
                    last_version: first_version + count - 1,
                    first_position: position,
                    last_position: position + count - 1,
                    duplicate: false,
                });
                position += count;
            }
            results.push(Some(Ok(Ok(per_stream))));
        }
        Ok(results)
    }
}

fn error_answer(work: &Work, error: Error) -> Answer {
    match work {
        Work::Append(_) => Answer::Append(Err(error)),
        Work::Flush => Answer::Flush(Err(error)),
    }
}

fn mark_duplicate(mut results: Vec<AppendResult>) -> Vec<AppendResult> {
    for result in &mut results {
        result.duplicate = true;
    }
    results
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the writer does with one request.
enum Decision {
    /// Write it; the first version of each of its stream appends.
    Accept(Vec<u64>),
    /// Reject it: an expectation failed.
    Conflict(Conflict),
    /// A retry of an append already in the log: its original result.
    Duplicate(Vec<AppendResult>),
    /// A retry of an append earlier in this group.
    DuplicateOf(usize),
    /// Its ids clash with stored events without being a retry.
    Invalid(Error),
    /// Not an append.
    Flush,
}

/// Decides every request of a group. Retries are recognised first (a retry
/// whose expectation is now stale is still the same append), then each
/// expectation is checked against the index plus earlier accepted requests
/// of the group: two requests that both expect version N cannot both win.
fn decide(
    index: &StreamIndex,
    ids: &IdTable,
    reader: &LogReader,
    group: &[Request],
) -> Vec<Decision> {
    let mut overlay: HashMap<&str, CurrentVersion> = HashMap::new();
    let mut group_ids: HashMap<[u8; 16], usize, IdHash> = HashMap::default();
    // A retry inside the group needs an earlier append in it to repeat.
    let appends_in_group = group
        .iter()
        .filter(|r| matches!(r.work, Work::Append(_)))
        .count();
    let mut decisions = Vec::with_capacity(group.len());
    for (r, request) in group.iter().enumerate() {
        let Work::Append(appends) = &request.work else {
            decisions.push(Decision::Flush);
            continue;
        };
        if let Some(decision) = find_retry(ids, reader, &group_ids, group, appends) {
            decisions.push(decision);
            continue;
        }
        let decision = check_expectations(index, &overlay, appends);
        if let Ok((_, staged)) = &decision {
            overlay.extend(staged.iter().map(|(s, v)| (*s, *v)));
            if appends_in_group > 1 {
                for append in appends {
                    for event in &append.events {
                        group_ids.insert(event.id.0, r);
                    }
                }
            }
        }
        decisions.push(match decision {
            Ok((firsts, _)) => Decision::Accept(firsts),
            Err(conflict) => Decision::Conflict(conflict),
        });
    }
    decisions
}

/// What an accepted request will make of each of its streams.
type Staged<'a> = HashMap<&'a str, CurrentVersion>;

/// The first versions of each stream append and the state each stream will
/// be in, or the first failing expectation. (A map, not a list: a search of
/// a list made a 1,000-stream `append_many` quadratic.)
fn check_expectations<'a>(
    index: &StreamIndex,
    overlay: &HashMap<&'a str, CurrentVersion>,
    appends: &'a [StreamAppend],
) -> Result<(Vec<u64>, Staged<'a>), Conflict> {
    let mut staged: Staged<'a> = HashMap::with_capacity(appends.len());
    let mut firsts = Vec::with_capacity(appends.len());
    for (i, append) in appends.iter().enumerate() {
        let stream = append.stream.as_str();
        let current = staged
            .get(stream)
            .copied()
            .or_else(|| overlay.get(stream).copied())
            .unwrap_or_else(|| CurrentVersion::from_state(index.state(stream)));
        if !current.satisfies(append.expected) {
            return Err((
                i,
                WrongExpectedVersion {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: current,
                },
            ));
        }
        let first = current.next();
        let last = first + append.events.len() as u64 - 1;
        let after = if append.tombstone {
            CurrentVersion::Deleted { last }
        } else {
            CurrentVersion::Version(last)
        };
        staged.insert(stream, after);
        firsts.push(first);
    }
    Ok((firsts, staged))
}

/// Whether the request repeats an append already stored (or earlier in the
/// group). `None`: none of its ids is known, so it is a new append.
fn find_retry(
    ids: &IdTable,
    reader: &LogReader,
    group_ids: &HashMap<[u8; 16], usize, IdHash>,
    group: &[Request],
    appends: &[StreamAppend],
) -> Option<Decision> {
    let (mut stored, mut in_group, mut total) = (0usize, 0usize, 0usize);
    for event in appends.iter().flat_map(|a| a.events.iter()) {
        total += 1;
        stored += usize::from(ids.contains_key(&event.id.0));
        in_group += usize::from(!group_ids.is_empty() && group_ids.contains_key(&event.id.0));
    }
    if stored == 0 && in_group == 0 {
        return None;
    }
    let partial = || {
        Decision::Invalid(Error::InvalidInput(format!(
            "event ids match only part of an earlier append ({} of {total} already used): a retry must repeat the whole append",
            stored.max(in_group)
        )))
    };
    if in_group == total {
        // Every id belongs to one earlier request of this group with the same shape.
        let first = appends.first()?.events.first()?;
        let earlier = *group_ids.get(&first.id.0)?;
        return match group.get(earlier) {
            Some(Request {
                work: Work::Append(original),
                ..
            }) if same_shape(original, appends) => Some(Decision::DuplicateOf(earlier)),
            _ => Some(partial()),
        };
    }
    if stored != total {
        return Some(partial());
    }
    // Every id is stored: it is a retry if they sit, in order, at dense
    // positions in the same streams, from the first event of one stored
    // append to its last (the boundary flags), and nowhere else.
    let mut position = *ids.get(&appends.first()?.events.first()?.id.0)?;
    let mut results = Vec::with_capacity(appends.len());
    let mut k = 0usize;
    for append in appends {
        let append_start = position;
        let mut first_version = None;
        for event in &append.events {
            let found = ids.get(&event.id.0).copied();
            let stored_event = reader
                .with_event(position, |r| {
                    (r.stream == append.stream, r.id, r.stream_version, r.flags)
                })
                .ok()
                .flatten();
            let Some((true, id, version, flags)) = stored_event else {
                return Some(partial());
            };
            let boundary_ok = (flags & APPEND_FIRST_FLAG != 0) == (k == 0)
                && (flags & APPEND_LAST_FLAG != 0) == (k + 1 == total);
            let first = *first_version.get_or_insert(version);
            if found != Some(position)
                || id != event.id.0
                || !boundary_ok
                || version != first + (position - append_start)
            {
                return Some(partial());
            }
            position += 1;
            k += 1;
        }
        let count = append.events.len() as u64;
        let first_version = first_version?;
        results.push(AppendResult {
            stream: append.stream.clone(),
            first_version,
            last_version: first_version + count - 1,
            first_position: position - count,
            last_position: position - 1,
            duplicate: true,
        });
    }
    Some(Decision::Duplicate(results))
}

/// Whether two requests append the same events (by id) to the same streams.
fn same_shape(a: &[StreamAppend], b: &[StreamAppend]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.stream == y.stream
                && x.events.len() == y.events.len()
                && x.events.iter().zip(&y.events).all(|(e, f)| e.id == f.id)
        })
}
