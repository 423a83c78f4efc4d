//! The single writer and its group commit. Every append is a request on a
//! bounded queue; the writer takes every request waiting, recognises retries
//! of appends already stored (by event id), checks each expectation against
//! the index *and* the requests before it in the same group, writes the
//! accepted ones as one frame with one `write`, makes them durable with one
//! `fdatasync` (per the durability mode), updates the index, and answers.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use annals_index::StreamIndex;
use annals_segment::{LogReader, LogWriter, Record};
use parking_lot::RwLock;

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

/// What the writer answers an append.
pub(crate) type Outcome = Result<Result<Vec<AppendResult>, Conflict>>;

/// Work for the writer.
pub(crate) enum Request {
    /// Append, atomically, to one or more streams.
    Append {
        appends: Vec<StreamAppend>,
        reply: SyncSender<Outcome>,
    },
    /// Make everything appended so far durable.
    Flush { reply: SyncSender<Result<()>> },
}

/// Event id → global position of every event in the log.
pub(crate) type IdTable = HashMap<[u8; 16], u64>;

/// What the writer needs besides the queue.
pub(crate) struct Writer {
    pub(crate) log: LogWriter,
    pub(crate) reader: LogReader,
    pub(crate) index: Arc<RwLock<StreamIndex>>,
    pub(crate) ids: IdTable,
    pub(crate) group_max: usize,
    pub(crate) durability: Durability,
}

impl Writer {
    /// Runs until every sender is gone.
    pub(crate) fn run(mut self, queue: Receiver<Request>) {
        let mut poisoned = false;
        while let Ok(first) = queue.recv() {
            let group = self.gather(first, &queue);
            if poisoned {
                for request in group {
                    answer_error(request, Error::Poisoned);
                }
                continue;
            }
            if let Err(failed) = self.commit(&group) {
                poisoned = true;
                let mut failed = Some(failed);
                for request in group {
                    answer_error(request, failed.take().unwrap_or(Error::Poisoned));
                }
            }
        }
        // The store is closing: a clean close leaves nothing unsynced, also
        // in buffered mode. (Nobody is left to hear a failure; the next open
        // recovers from what is on disk.)
        if !poisoned {
            let _ = self.log.sync();
        }
    }

    /// The first request and every one waiting behind it (in batched mode,
    /// also those arriving within the delay), up to `group_max`.
    fn gather(&self, first: Request, queue: &Receiver<Request>) -> Vec<Request> {
        let mut group = vec![first];
        let deadline = match self.durability {
            Durability::Batched { delay } => Some(Instant::now() + delay),
            _ => None,
        };
        while group.len() < self.group_max {
            let next = match deadline {
                None => queue.try_recv().ok(),
                Some(deadline) => queue
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok(),
            };
            match next {
                Some(request) => group.push(request),
                None => break,
            }
        }
        group
    }

    /// Decides every request of the group, writes and syncs the accepted
    /// ones, updates the index and answers. An `Err` means the log failed:
    /// nothing was answered and the caller poisons the store.
    fn commit(&mut self, group: &[Request]) -> Result<()> {
        let decisions = decide(&self.index.read(), &self.ids, &self.reader, group);
        let timestamp_us = now_us();
        let mut batches: Vec<Vec<Record<'_>>> = Vec::new();
        for (request, decision) in group.iter().zip(&decisions) {
            let (Request::Append { appends, .. }, Decision::Accept(first_versions)) =
                (request, decision)
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
        let flush_asked = group.iter().any(|r| matches!(r, Request::Flush { .. }));
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
        for (request, result) in group.iter().zip(results) {
            match (request, result) {
                (Request::Append { reply, .. }, Some(result)) => {
                    let _ = reply.send(result);
                }
                (Request::Flush { reply }, _) => {
                    let _ = reply.send(Ok(()));
                }
                (Request::Append { reply, .. }, None) => {
                    let _ = reply.send(Err(Error::Index("append lost its result".into())));
                }
            }
        }
        Ok(())
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
            let Request::Append { appends, .. } = request else {
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
                for (i, event) in append.events.iter().enumerate() {
                    let i = i as u64;
                    index
                        .push(
                            &append.stream,
                            first_version + i,
                            position + i,
                            append.tombstone,
                        )
                        .map_err(|e| Error::Index(e.to_string()))?;
                    self.ids.insert(event.id.0, position + i);
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

fn answer_error(request: Request, error: Error) {
    match request {
        Request::Append { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Request::Flush { reply } => {
            let _ = reply.send(Err(error));
        }
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
    let mut group_ids: HashMap<[u8; 16], usize> = HashMap::new();
    let mut decisions = Vec::with_capacity(group.len());
    for (r, request) in group.iter().enumerate() {
        let Request::Append { appends, .. } = request else {
            decisions.push(Decision::Flush);
            continue;
        };
        if let Some(decision) = find_retry(ids, reader, &group_ids, group, appends) {
            decisions.push(decision);
            continue;
        }
        let decision = check_expectations(index, &overlay, appends);
        if let Ok((_, staged)) = &decision {
            overlay.extend(staged.iter().copied());
            for append in appends {
                for event in &append.events {
                    group_ids.insert(event.id.0, r);
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

/// The first versions of each stream append and the state each stream will
/// be in, or the first failing expectation.
#[allow(clippy::type_complexity)]
fn check_expectations<'a>(
    index: &StreamIndex,
    overlay: &HashMap<&'a str, CurrentVersion>,
    appends: &'a [StreamAppend],
) -> Result<(Vec<u64>, Vec<(&'a str, CurrentVersion)>), Conflict> {
    let mut staged: Vec<(&str, CurrentVersion)> = Vec::new();
    let mut firsts = Vec::with_capacity(appends.len());
    for (i, append) in appends.iter().enumerate() {
        let stream = append.stream.as_str();
        let current = staged
            .iter()
            .rev()
            .find(|(s, _)| *s == stream)
            .map(|(_, v)| *v)
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
        staged.push((stream, after));
        firsts.push(first);
    }
    Ok((firsts, staged))
}

/// Whether the request repeats an append already stored (or earlier in the
/// group). `None`: none of its ids is known, so it is a new append.
fn find_retry(
    ids: &IdTable,
    reader: &LogReader,
    group_ids: &HashMap<[u8; 16], usize>,
    group: &[Request],
    appends: &[StreamAppend],
) -> Option<Decision> {
    let events = || appends.iter().flat_map(|a| a.events.iter());
    let stored = events().filter(|e| ids.contains_key(&e.id.0)).count();
    let in_group = events().filter(|e| group_ids.contains_key(&e.id.0)).count();
    let total = events().count();
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
            Some(Request::Append {
                appends: original, ..
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
