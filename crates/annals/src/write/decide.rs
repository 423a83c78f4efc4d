//! Deciding each request of a group: is it a retry of a stored append (by
//! event id), and does every expectation hold against the index plus the
//! requests accepted before it in the same group?

use std::collections::HashMap;

use annals_index::IdHash;
use annals_segment::LogReader;

use super::{Conflict, RecentEvents, Request, StreamAppend, Work};
use crate::dcb::{lookup, AppendCondition, Query};
use crate::error::Error;
use crate::expected::{CurrentVersion, WrongExpectedVersion};
use crate::index::Index;
use crate::{AppendResult, APPEND_FIRST_FLAG, APPEND_LAST_FLAG};

/// What the writer does with one request.
pub(super) enum Decision {
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
    /// A lookup met a damaged index run: answered without a decision, so
    /// that the caller rebuilds the run (off the write path) and asks again.
    Repair,
    /// Not an append.
    Flush,
}

/// Decides every request of a group. Retries are recognised first (a retry
/// whose expectation is now stale is still the same append), then each
/// expectation is checked against the index plus earlier accepted requests
/// of the group: two requests that both expect version N cannot both win.
/// Likewise an append condition counts the events accepted before it in the
/// group (they will sit from `position_next` on, in order): two requests
/// that both saw no matching event cannot both write one.
pub(super) fn decide(
    index: &Index,
    reader: &LogReader,
    recent: &RecentEvents,
    group: &[Request],
    position_next: u64,
) -> Vec<Decision> {
    let mut overlay: HashMap<&str, CurrentVersion> = HashMap::new();
    // Requests accepted so far, with the position of their first event.
    let mut accepted: Vec<(u64, &[StreamAppend])> = Vec::new();
    let mut next = position_next;
    let mut group_ids: HashMap<[u8; 16], usize, IdHash> = HashMap::default();
    // A retry inside the group needs an earlier append in it to repeat.
    let appends_in_group = group
        .iter()
        .filter(|r| matches!(r.work, Work::Append(..)))
        .count();
    let mut decisions = Vec::with_capacity(group.len());
    // Repairs so far: a lookup failing on a run another thread's repair
    // replaces meanwhile is answered Repair, not its stale error.
    let repairs = index.repairs();
    // The end of the stored log: a condition looks for matches in the log
    // below it, and among the requests accepted in the group above it
    // (which are not in the log yet: a lookup there would fail).
    let stored_end = reader.position_end();
    // Where the next accepted request will land (replicated appends must
    // land exactly where the source wrote them).
    let mut position_next = stored_end;
    for (r, request) in group.iter().enumerate() {
        let Work::Append(appends, condition) = &request.work else {
            decisions.push(Decision::Flush);
            continue;
        };
        if let Some(refused) = misplaced_replica(appends, position_next) {
            decisions.push(refused);
            continue;
        }
        match find_retry(index, reader, &group_ids, group, appends) {
            Ok(Some(decision)) => {
                decisions.push(decision);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                decisions.push(invalid_or_repair(index, repairs, error));
                continue;
            }
        }
        let decision = match check_expectations(index, &overlay, appends) {
            Ok(decision) => decision,
            Err(error) => {
                decisions.push(invalid_or_repair(index, repairs, error));
                continue;
            }
        };
        let decision = match (decision, condition) {
            (Ok(staged), Some(condition)) => {
                let stored = Stored {
                    index,
                    reader,
                    recent,
                    end: stored_end,
                };
                match check_condition(&stored, condition, &accepted) {
                    Ok(None) => Ok(staged),
                    Ok(Some(position)) => Err(Conflict::Condition(position)),
                    Err(error) => {
                        decisions.push(invalid_or_repair(index, repairs, error));
                        continue;
                    }
                }
            }
            (decision, _) => decision,
        };
        if let Ok((_, staged)) = &decision {
            accepted.push((next, appends.as_slice()));
            next += appends.iter().map(|a| a.events.len() as u64).sum::<u64>();
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
            Ok((firsts, _)) => {
                position_next += appends.iter().map(|a| a.events.len() as u64).sum::<u64>();
                Decision::Accept(firsts)
            }
            Err(conflict) => Decision::Conflict(conflict),
        });
    }
    decisions
}

/// A replicated append that would not land at its source position.
fn misplaced_replica(appends: &[StreamAppend], position_next: u64) -> Option<Decision> {
    let replica = appends.first()?.replica?;
    (replica.position != position_next).then(|| {
        Decision::Invalid(Error::InvalidInput(format!(
            "a replicated append of position {} must come next, but the store's next position is {position_next}",
            replica.position
        )))
    })
}

/// A lookup's failure: a damaged run to rebuild off the write path, or an
/// answer for the caller.
fn invalid_or_repair(index: &Index, repairs: u64, error: Error) -> Decision {
    if index.needs_repair(&error, repairs) {
        Decision::Repair
    } else {
        Decision::Invalid(error)
    }
}

/// What an accepted request will make of each of its streams.
type Staged<'a> = HashMap<&'a str, CurrentVersion>;

/// The first versions of each stream append and the state each stream will
/// be in, or the first failing expectation. (A map, not a list: a search of
/// a list made a 1,000-stream `append_many` quadratic.) The outer `Err`: the
/// index could not be read.
#[allow(clippy::type_complexity)]
fn check_expectations<'a>(
    index: &Index,
    overlay: &HashMap<&'a str, CurrentVersion>,
    appends: &'a [StreamAppend],
) -> Result<Result<(Vec<u64>, Staged<'a>), Conflict>, Error> {
    let mut staged: Staged<'a> = HashMap::with_capacity(appends.len());
    let mut firsts = Vec::with_capacity(appends.len());
    for (i, append) in appends.iter().enumerate() {
        let stream = append.stream.as_str();
        let known = staged
            .get(stream)
            .copied()
            .or_else(|| overlay.get(stream).copied());
        let current = match known {
            Some(current) => current,
            None => CurrentVersion::from_state(index.state_unrepaired(stream)?),
        };
        if !current.satisfies(append.expected) {
            return Ok(Err(Conflict::Expected(
                i,
                WrongExpectedVersion {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual: current,
                },
            )));
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
    Ok(Ok((firsts, staged)))
}

/// The events stored when a group is decided: the log up to `end`, found
/// through the writer's recent events or the secondary index.
struct Stored<'a> {
    index: &'a Index,
    reader: &'a LogReader,
    recent: &'a RecentEvents,
    /// The log's end.
    end: u64,
}

impl Stored<'_> {
    /// The first position in `from..end` holding an event that matches
    /// `query`. The last events (up to [`RECENT_SCAN_MAX`](super::recent::RECENT_SCAN_MAX))
    /// are scanned among the writer's recent ones, each match confirmed on
    /// the log (as the index path does: a compaction may have erased the
    /// event since); the events before them are found through the
    /// secondary index, whose memtable is extended only that far (the index
    /// worker extends it off the write path, `Index::kick_secondary`).
    /// Without recent events running up to `end`, all goes through the index.
    fn first_match(&self, query: &Query, from: u64) -> Result<Option<u64>, Error> {
        if from >= self.end {
            return Ok(None);
        }
        let split = self.recent.scan_start(self.end).unwrap_or(self.end);
        if from < split {
            if let Some(found) = lookup::first_match(self.index, self.reader, query, from, split)? {
                return Ok(Some(found));
            }
        }
        if split >= self.end {
            return Ok(None);
        }
        let scan_from = from.max(split);
        let mut failure = None;
        let found = self.recent.first_match(query, scan_from, |position| {
            let confirmed = self.reader.with_event(position, |record| {
                !crate::compact::is_erased(&record) && query.matches(record.event_type, record.tags)
            });
            match confirmed {
                Ok(Some(matched)) => matched,
                // Not in the log: the recent events are not what they
                // claim. Stop, and ask the index for the whole range.
                Ok(None) => {
                    failure = Some(None);
                    true
                }
                Err(error) => {
                    failure = Some(Some(error));
                    true
                }
            }
        });
        match failure {
            None => Ok(found),
            Some(Some(error)) => Err(error.into()),
            Some(None) => lookup::first_match(self.index, self.reader, query, scan_from, self.end),
        }
    }
}

/// The first position above the condition's `after` holding an event that
/// matches its query: among the stored events (the log up to
/// `stored.end`), then among those accepted earlier in the group.
fn check_condition(
    stored: &Stored<'_>,
    condition: &AppendCondition,
    accepted: &[(u64, &[StreamAppend])],
) -> Result<Option<u64>, Error> {
    let query = &condition.fail_if_events_match;
    let from = match condition.after {
        None => 0,
        Some(after) => match after.checked_add(1) {
            Some(from) => from,
            None => return Ok(None),
        },
    };
    if let Some(position) = stored.first_match(query, from)? {
        return Ok(Some(position));
    }
    for &(first, appends) in accepted {
        let mut position = first;
        for append in appends {
            for (i, event) in append.events.iter().enumerate() {
                if position >= from && query.matches(&event.event_type, append.tags(i)) {
                    return Ok(Some(position));
                }
                position += 1;
            }
        }
    }
    Ok(None)
}

/// Whether the request repeats an append already stored (or earlier in the
/// group). `None`: none of its ids is known, so it is a new append.
fn find_retry(
    index: &Index,
    reader: &LogReader,
    group_ids: &HashMap<[u8; 16], usize, IdHash>,
    group: &[Request],
    appends: &[StreamAppend],
) -> Result<Option<Decision>, Error> {
    let ids: Vec<[u8; 16]> = appends
        .iter()
        .flat_map(|a| a.events.iter().map(|e| e.id.0))
        .collect();
    let found = index.find_ids_unrepaired(&ids)?;
    let total = ids.len();
    let stored = found.iter().filter(|f| f.is_some()).count();
    let in_group = if group_ids.is_empty() {
        0
    } else {
        ids.iter().filter(|id| group_ids.contains_key(*id)).count()
    };
    if stored == 0 && in_group == 0 {
        return Ok(None);
    }
    let partial = || {
        Decision::Invalid(Error::InvalidInput(format!(
            "event ids match only part of an earlier append ({} of {total} already used): a retry must repeat the whole append",
            stored.max(in_group)
        )))
    };
    if in_group == total {
        // Every id belongs to one earlier request of this group with the same shape.
        let earlier = ids.first().and_then(|id| group_ids.get(id)).copied();
        return Ok(Some(match earlier.and_then(|e| Some((e, group.get(e)?))) {
            Some((
                earlier,
                Request {
                    work: Work::Append(original, _),
                    ..
                },
            )) if same_shape(original, appends) => Decision::DuplicateOf(earlier),
            _ => partial(),
        }));
    }
    if stored != total {
        return Ok(Some(partial()));
    }
    Ok(Some(
        stored_retry(&found, reader, appends, total).unwrap_or_else(partial),
    ))
}

/// Every id of the request is stored: its original results, if they sit,
/// in order, at dense positions in the same streams, from the first event
/// of one stored append to its last (the boundary flags) — else `None`.
fn stored_retry(
    found: &[Option<u64>],
    reader: &LogReader,
    appends: &[StreamAppend],
    total: usize,
) -> Option<Decision> {
    let mut position = (*found.first()?)?;
    let mut results = Vec::with_capacity(appends.len());
    let mut k = 0usize;
    for append in appends {
        let append_start = position;
        let mut first_version = None;
        for event in &append.events {
            let found = found.get(k).copied().flatten();
            let stored_event = reader
                .with_event(position, |r| {
                    (r.stream == append.stream, r.id, r.stream_version, r.flags)
                })
                .ok()
                .flatten();
            let Some((true, id, version, flags)) = stored_event else {
                return None;
            };
            let boundary_ok = (flags & APPEND_FIRST_FLAG != 0) == (k == 0)
                && (flags & APPEND_LAST_FLAG != 0) == (k + 1 == total);
            let first = *first_version.get_or_insert(version);
            if found != Some(position)
                || id != event.id.0
                || !boundary_ok
                || version != first + (position - append_start)
            {
                return None;
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
