//! Committing one group: encode the accepted requests into one frame, one
//! `write`, one `fdatasync` (per the durability mode), then the index and
//! id table, then the answers.

use std::sync::Arc;

use annals_segment::{LogReader, LogWriter, Record};

use super::decide::{decide, Decision};
use super::{Answer, RecentEvents, Request, Work};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::subscribe::{Feed, Woken};
use crate::{AppendResult, Durability, APPEND_FIRST_FLAG, APPEND_LAST_FLAG, TOMBSTONE_FLAG};

/// The log and what the write path decides with; used by one leader at a time.
pub(crate) struct Writer {
    pub(crate) log: LogWriter,
    pub(crate) reader: LogReader,
    pub(crate) index: Arc<Index>,
    pub(crate) durability: Durability,
    /// Told after each publish of a new end, to wake subscribers.
    pub(crate) feed: Arc<Feed>,
    /// Async subscribers' wakers the feed handed back, woken by the leader
    /// once it has let go of the writer and passed leadership on
    /// (`Pipeline::lead`): a waker may append.
    pub(crate) woken: Woken,
    /// What failed, once a write, fsync or commit failed: every later
    /// request is refused with it until reopen.
    pub(crate) poison: Option<Arc<Error>>,
    /// The types and tags of the last events written, once a conditional
    /// append has been seen: what recent conditions are checked against.
    pub(crate) recent: RecentEvents,
}

impl Writer {
    /// Answers every request of a group. After a failed write or fsync the
    /// writer is poisoned: every request of the group, and every later one,
    /// fails with [`Error::Poisoned`] carrying the cause, until reopen.
    pub(super) fn commit_group(&mut self, group: &[Request]) -> Vec<Answer> {
        if self.poison.is_none() {
            match self.commit(group) {
                Ok(answers) => return answers,
                Err(failed) => self.poison = Some(Arc::new(failed)),
            }
        }
        self.refuse(group)
    }

    /// Poisons the writer with `cause` (unless it already is) and answers
    /// every request of the group with it.
    pub(super) fn fail(&mut self, cause: Error, group: &[Request]) -> Vec<Answer> {
        self.poison.get_or_insert_with(|| Arc::new(cause));
        self.refuse(group)
    }

    /// Answers every request of the group with the poison's cause.
    fn refuse(&self, group: &[Request]) -> Vec<Answer> {
        let cause = self
            .poison
            .clone()
            .unwrap_or_else(|| Arc::new(Error::Closed));
        group
            .iter()
            .map(|r| {
                let error = Error::Poisoned {
                    cause: Arc::clone(&cause),
                };
                error_answer(&r.work, error)
            })
            .collect()
    }

    /// Decides every request of the group, writes and syncs the accepted
    /// ones, updates the index and returns the answers. An `Err` means the
    /// log failed: the caller poisons the writer.
    fn commit(&mut self, group: &[Request]) -> Result<Vec<Answer>> {
        if let Some(cause) = self.index.backlog() {
            return self.refuse_appends(group, &cause);
        }
        if !self.recent.is_on()
            && group
                .iter()
                .any(|r| matches!(r.work, Work::Append(_, Some(_))))
        {
            self.recent.start_at(self.reader.position_end());
        }
        let decisions = decide(
            &self.index,
            &self.reader,
            &self.recent,
            group,
            self.log.position_next(),
        );
        let timestamp_us = now_us();
        let mut batches: Vec<Vec<Record<'_>>> = Vec::new();
        for (request, decision) in group.iter().zip(&decisions) {
            let (Work::Append(appends, _), Decision::Accept(first_versions)) =
                (&request.work, decision)
            else {
                continue;
            };
            let mut batch = Vec::new();
            // A replicated append keeps the source's commit time.
            let timestamp_us = appends
                .first()
                .and_then(|a| a.replica)
                .map_or(timestamp_us, |r| r.timestamp_us);
            for (append, &first_version) in appends.iter().zip(first_versions) {
                for (i, event) in append.events.iter().enumerate() {
                    batch.push(Record {
                        stream: &append.stream,
                        stream_version: first_version + i as u64,
                        id: event.id.0,
                        timestamp_us,
                        flags: if append.tombstone { TOMBSTONE_FLAG } else { 0 },
                        event_type: &event.event_type,
                        tags: append.tags(i),
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
        let appended = !refs.is_empty();
        let firsts = if refs.is_empty() {
            Vec::new()
        } else {
            self.log.append(&refs)?
        };
        if self.durability != Durability::Buffered || flush_asked {
            self.log.sync_unpublished()?;
        }
        // Written (and published below, or the writer is poisoned): the
        // next group's conditions see these events here.
        if self.recent.is_on() {
            let mut dropped = false;
            for (batch, &first) in batches.iter().zip(&firsts) {
                for (record, position) in batch.iter().zip(first..) {
                    dropped |= self.recent.push(position, record);
                }
            }
            if dropped {
                // Keep the secondary memtable near the recent events, off
                // the write path.
                self.index.kick_secondary();
            }
        }
        // Published inside the index's write lock, once the memtable holds
        // the group: whoever sees the new end in the feed then finds the
        // events through the index too, and the other way round (one
        // watermark for readers and subscribers).
        let log = &self.log;
        let offsets = log.appended_offsets();
        let results = self.index.update(|memtable| {
            let results = apply(memtable, group, decisions, firsts, offsets)?;
            log.publish()?;
            Ok::<_, Error>(results)
        })?;
        if appended {
            // Right after the publish, once per group.
            self.woken.join(self.feed.notify());
        }
        if self.index.wants_freeze() {
            // A frozen memtable is written to an index file: only what is
            // durable in the log may be.
            if self.durability == Durability::Buffered && !flush_asked {
                self.log.sync()?;
            }
            self.index.freeze();
        }
        Ok(results)
    }
}

impl Writer {
    /// Answers a group while the index cannot take more events: appends
    /// are refused with [`Error::IndexBacklog`] and write nothing (the
    /// store is not poisoned: they succeed again once index files can be
    /// written); flushes are done.
    fn refuse_appends(&mut self, group: &[Request], cause: &str) -> Result<Vec<Answer>> {
        if group.iter().any(|r| matches!(r.work, Work::Flush)) {
            self.log.sync()?;
        }
        Ok(group
            .iter()
            .map(|r| match r.work {
                Work::Append(..) => Answer::Append(Err(Error::IndexBacklog(cause.to_owned()))),
                Work::Flush => Answer::Flush(Ok(())),
            })
            .collect())
    }
}

/// Records what the group wrote in the memtable (with each event's byte
/// offset, `offsets` in the order the events were written) and builds each
/// request's answer.
fn apply(
    memtable: &mut annals_index::Memtable,
    group: &[Request],
    decisions: Vec<Decision>,
    firsts: Vec<u64>,
    offsets: &[u32],
) -> Result<Vec<Answer>> {
    let mut results: Vec<Answer> = Vec::with_capacity(group.len());
    let mut firsts = firsts.into_iter();
    let mut offsets = offsets;
    for (request, decision) in group.iter().zip(decisions) {
        let Work::Append(appends, _) = &request.work else {
            results.push(Answer::Flush(Ok(())));
            continue;
        };
        let first_versions = match decision {
            Decision::Accept(first_versions) => first_versions,
            Decision::Conflict(conflict) => {
                results.push(Answer::Append(Ok(Err(conflict))));
                continue;
            }
            Decision::Duplicate(found) => {
                results.push(Answer::Append(Ok(Ok(found))));
                continue;
            }
            Decision::DuplicateOf(earlier) => {
                let copy = match results.get(earlier) {
                    Some(Answer::Append(Ok(Ok(found)))) => Ok(Ok(mark_duplicate(found.clone()))),
                    _ => Err(Error::Internal(
                        "retry of a failed append in the same group".into(),
                    )),
                };
                results.push(Answer::Append(copy));
                continue;
            }
            Decision::Invalid(error) => {
                results.push(Answer::Append(Err(error)));
                continue;
            }
            Decision::Flush => {
                results.push(Answer::Flush(Ok(())));
                continue;
            }
            Decision::Repair => {
                results.push(Answer::Repair(None));
                continue;
            }
        };
        let mut position = firsts
            .next()
            .ok_or_else(|| Error::Internal("log returned too few positions".into()))?;
        let mut per_stream = Vec::with_capacity(appends.len());
        for (k, (append, first_version)) in appends.iter().zip(first_versions).enumerate() {
            let count = append.events.len() as u64;
            let ids: Vec<[u8; 16]> = append.events.iter().map(|e| e.id.0).collect();
            let starts_append = k == 0;
            memtable
                .push_stream_events(
                    &append.stream,
                    first_version,
                    position,
                    &ids,
                    append.tombstone,
                    starts_append,
                )
                .map_err(Error::from)?;
            let Some((located, rest)) = offsets.split_at_checked(count as usize) else {
                return Err(Error::Internal("log returned too few offsets".into()));
            };
            offsets = rest;
            memtable
                .record_offsets(position, located)
                .map_err(Error::from)?;
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
        results.push(Answer::Append(Ok(Ok(per_stream))));
    }
    Ok(results)
}

fn error_answer(work: &Work, error: Error) -> Answer {
    match work {
        Work::Append(..) => Answer::Append(Err(error)),
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
