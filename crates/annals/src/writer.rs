//! The single writer and its group commit. Every append is a request on a
//! bounded queue; the writer takes every request waiting, checks each
//! expectation against the index *and* the requests before it in the same
//! group, writes the accepted ones as one frame with one `write`, makes them
//! durable with one `fdatasync`, updates the index, and only then answers.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use annals_index::StreamIndex;
use annals_segment::{LogWriter, Record};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::event::EventData;
use crate::expected::{CurrentVersion, ExpectedVersion, WrongExpectedVersion};
use crate::{AppendResult, TOMBSTONE_FLAG};

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

/// What the writer answers.
pub(crate) type Outcome = Result<Result<Vec<AppendResult>, Conflict>>;

/// An append waiting for the writer.
pub(crate) struct Request {
    pub(crate) appends: Vec<StreamAppend>,
    pub(crate) reply: SyncSender<Outcome>,
}

/// The writer thread: runs until every sender is gone.
pub(crate) fn run(
    mut log: LogWriter,
    index: Arc<RwLock<StreamIndex>>,
    queue: Receiver<Request>,
    group_max: usize,
) {
    let mut poisoned = false;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < group_max {
            match queue.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        if poisoned {
            for request in group {
                let _ = request.reply.send(Err(Error::Poisoned));
            }
            continue;
        }
        if let Err(failed) = commit(&mut log, &index, &group) {
            poisoned = true;
            let mut failed = Some(failed);
            for request in group {
                let error = failed.take().unwrap_or(Error::Poisoned);
                let _ = request.reply.send(Err(error));
            }
        }
    }
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Decides every request of the group, writes and syncs the accepted ones,
/// updates the index and answers. An `Err` means the log failed: nothing was
/// answered and the caller poisons the store.
fn commit(log: &mut LogWriter, index: &RwLock<StreamIndex>, group: &[Request]) -> Result<()> {
    let decisions = decide(&index.read(), group);
    let timestamp_us = now_us();
    let mut batches: Vec<Vec<Record<'_>>> = Vec::new();
    for (request, decision) in group.iter().zip(&decisions) {
        let Ok(first_versions) = decision else {
            continue;
        };
        let mut batch = Vec::new();
        for (append, &first_version) in request.appends.iter().zip(first_versions) {
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
        batches.push(batch);
    }
    let refs: Vec<&[Record<'_>]> = batches.iter().map(Vec::as_slice).collect();
    let firsts = if refs.is_empty() {
        Vec::new()
    } else {
        let firsts = log.append(&refs)?;
        log.sync()?;
        firsts
    };

    // Durable: update the index, then answer.
    let mut results = Vec::with_capacity(group.len());
    {
        let mut index = index.write();
        let mut firsts = firsts.into_iter();
        for (request, decision) in group.iter().zip(decisions) {
            let first_versions = match decision {
                Ok(first_versions) => first_versions,
                Err(conflict) => {
                    results.push(Ok(Err(conflict)));
                    continue;
                }
            };
            let mut position = firsts
                .next()
                .ok_or_else(|| Error::Index("log returned too few positions".into()))?;
            let mut per_stream = Vec::with_capacity(request.appends.len());
            for (append, first_version) in request.appends.iter().zip(first_versions) {
                let count = append.events.len() as u64;
                for i in 0..count {
                    index
                        .push(
                            &append.stream,
                            first_version + i,
                            position + i,
                            append.tombstone,
                        )
                        .map_err(|e| Error::Index(e.to_string()))?;
                }
                per_stream.push(AppendResult {
                    stream: append.stream.clone(),
                    first_version,
                    last_version: first_version + count - 1,
                    first_position: position,
                    last_position: position + count - 1,
                });
                position += count;
            }
            results.push(Ok(Ok(per_stream)));
        }
    }
    for (request, result) in group.iter().zip(results) {
        let _ = request.reply.send(result);
    }
    Ok(())
}

/// For each request, the first version of each of its stream appends, or
/// the conflict that rejects it. Earlier accepted requests in the group
/// count: two requests that both expect version N cannot both win.
fn decide(index: &StreamIndex, group: &[Request]) -> Vec<Result<Vec<u64>, Conflict>> {
    let mut overlay: HashMap<&str, CurrentVersion> = HashMap::new();
    let mut decisions = Vec::with_capacity(group.len());
    for request in group {
        let mut staged: Vec<(&str, CurrentVersion)> = Vec::new();
        let mut firsts = Vec::with_capacity(request.appends.len());
        let mut conflict = None;
        for (i, append) in request.appends.iter().enumerate() {
            let stream = append.stream.as_str();
            let current = staged
                .iter()
                .rev()
                .find(|(s, _)| *s == stream)
                .map(|(_, v)| *v)
                .or_else(|| overlay.get(stream).copied())
                .unwrap_or_else(|| CurrentVersion::from_state(index.state(stream)));
            if !current.satisfies(append.expected) {
                conflict = Some((
                    i,
                    WrongExpectedVersion {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual: current,
                    },
                ));
                break;
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
        match conflict {
            Some(conflict) => decisions.push(Err(conflict)),
            None => {
                overlay.extend(staged);
                decisions.push(Ok(firsts));
            }
        }
    }
    decisions
}
