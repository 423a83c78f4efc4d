//! Deciding each request of a group: is it a retry of a stored append (by
//! event id), and does every expectation hold against the index plus the
//! requests accepted before it in the same group?

use std::collections::HashMap;

use annals_index::StreamIndex;
use annals_segment::LogReader;

use super::ids::IdHash;
use super::{Conflict, IdTable, Request, StreamAppend, Work};
use crate::error::Error;
use crate::expected::{CurrentVersion, WrongExpectedVersion};
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
    /// Not an append.
    Flush,
}

/// Decides every request of a group. Retries are recognised first (a retry
/// whose expectation is now stale is still the same append), then each
/// expectation is checked against the index plus earlier accepted requests
/// of the group: two requests that both expect version N cannot both win.
pub(super) fn decide(
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
    Some(stored_retry(ids, reader, appends, total).unwrap_or_else(partial))
}

/// Every id of the request is stored: its original results, if they sit,
/// in order, at dense positions in the same streams, from the first event
/// of one stored append to its last (the boundary flags) — else `None`.
fn stored_retry(
    ids: &IdTable,
    reader: &LogReader,
    appends: &[StreamAppend],
    total: usize,
) -> Option<Decision> {
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
