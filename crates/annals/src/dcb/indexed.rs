//! Finding the events that match a [`Query`] through postings (the
//! secondary index's positions per event type and per tag) instead of a
//! walk of the log: per query item, the candidates of its rarest key — the
//! tag with the fewest postings from the read's start, or the union of its
//! types if that is smaller — confirmed by reading the candidate event (a
//! key's postings may hold positions of a colliding hash; the item's other
//! keys are checked on the event). Candidates are taken a page per key at a
//! time, and only up to the lowest page end among the keys (the
//! *frontier*), so events come out in position order and each round costs a
//! few lookups per item.

use std::ops::ControlFlow;

use annals_segment::LogReader;

use super::query::{Query, QueryItem};
use crate::error::Result;
use crate::event::EventRef;

/// Candidates asked of one key at a time.
const PAGE: usize = 1024;

/// A key of the postings: an event type or a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key<'a> {
    /// Events of this type.
    Type(&'a str),
    /// Events carrying this tag.
    Tag(&'a str),
}

/// Positions per key.
pub(crate) trait Postings {
    /// Up to `max` positions in `from..to`, ascending, of events that may
    /// carry `key` (a superset is allowed: every candidate is confirmed on
    /// its event); every such event must be among them. Covers the log up
    /// to `to`.
    fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>>;

    /// How many candidates `key` has from `from` on (what choosing the
    /// rarest key compares; an estimate is allowed, correctness never
    /// depends on it).
    fn count(&self, key: Key<'_>, from: u64) -> Result<u64>;
}

/// Which postings stand for an item: every match of the item is among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan<'q> {
    /// One of the item's tags.
    Tag(&'q str),
    /// The union of its types.
    Types(&'q [String]),
    /// Every event.
    All,
}

/// The postings to walk for `item` from `from`: the fewest candidates
/// among each of its tags and the union of its types. Counting costs a
/// few index lookups per key, so it is skipped when there is one choice.
fn plan<'q>(postings: &impl Postings, item: &'q QueryItem, from: u64) -> Result<Plan<'q>> {
    let choices = item.tags.len() + usize::from(!item.types.is_empty());
    match (item.tags.first(), item.types.is_empty()) {
        (None, true) => return Ok(Plan::All),
        (None, false) if choices == 1 => return Ok(Plan::Types(&item.types)),
        (Some(tag), true) if choices == 1 => return Ok(Plan::Tag(tag)),
        _ => {}
    }
    let mut best: Option<(u64, Plan<'q>)> = None;
    let beats = |best: &Option<(u64, Plan<'q>)>, n: u64| best.is_none_or(|(b, _)| n < b);
    for tag in &item.tags {
        let n = postings.count(Key::Tag(tag), from)?;
        if beats(&best, n) {
            best = Some((n, Plan::Tag(tag)));
        }
        if n == 0 {
            // Nothing can be rarer (and the item matches nothing).
            return Ok(Plan::Tag(tag));
        }
    }
    if !item.types.is_empty() {
        let mut n = 0u64;
        for event_type in &item.types {
            n = n.saturating_add(postings.count(Key::Type(event_type), from)?);
            if !beats(&best, n) {
                break;
            }
        }
        if beats(&best, n) {
            best = Some((n, Plan::Types(&item.types)));
        }
    }
    Ok(best.map_or(Plan::All, |(_, plan)| plan))
}

/// Visits the events in `from..to` that match `query`, in position order,
/// until `visit` breaks; returns the position it broke at, if it did.
pub(crate) fn visit_indexed(
    postings: &impl Postings,
    reader: &LogReader,
    query: &Query,
    from: u64,
    to: u64,
    mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    let mut cursor = from;
    let mut batch = Vec::new();
    let plans = if from < to {
        let plans: Result<Vec<Plan<'_>>> = query
            .items
            .iter()
            .map(|item| plan(postings, item, from))
            .collect();
        plans?
    } else {
        Vec::new()
    };
    while cursor < to && !plans.is_empty() {
        batch.clear();
        let mut frontier = to;
        for &plan in &plans {
            match plan {
                Plan::Tag(tag) => {
                    take(postings, Key::Tag(tag), cursor, &mut frontier, &mut batch)?;
                }
                Plan::Types(types) => {
                    for event_type in types {
                        let key = Key::Type(event_type);
                        take(postings, key, cursor, &mut frontier, &mut batch)?;
                    }
                }
                Plan::All => {
                    let end = cursor.saturating_add(PAGE as u64).min(frontier);
                    frontier = end;
                    batch.extend(cursor..end);
                }
            }
        }
        batch.retain(|&p| p < frontier);
        batch.sort_unstable();
        batch.dedup();
        let mut stopped = None;
        reader.with_events_shared(&batch, |position, record, owner| {
            // A compaction's gap record keeps its type and tags (and the
            // index its entries), but the event is gone: it matches nothing.
            if crate::compact::is_erased(&record) || !query.matches(record.event_type, record.tags)
            {
                return ControlFlow::Continue(());
            }
            let flow = visit(EventRef::new(position, record, owner));
            if flow.is_break() {
                stopped = Some(position);
            }
            flow
        })?;
        if stopped.is_some() {
            return Ok(stopped);
        }
        cursor = frontier;
    }
    Ok(None)
}

/// Adds a page of `key`'s candidates in `cursor..frontier` to `batch`; a
/// full page lowers the frontier to just past its last candidate.
fn take(
    postings: &impl Postings,
    key: Key<'_>,
    cursor: u64,
    frontier: &mut u64,
    batch: &mut Vec<u64>,
) -> Result<()> {
    let page = postings.candidates(key, cursor, *frontier, PAGE)?;
    if page.len() >= PAGE {
        if let Some(last) = page.last() {
            *frontier = (*frontier).min(last + 1);
        }
    }
    batch.extend(page);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{EventData, ExpectedVersion, QueryItem, Store};

    /// Postings built from a read of the whole log; with `noise`, every
    /// key also lists every third position (a superset, as a hash
    /// collision would make).
    struct Model {
        keys: BTreeMap<(bool, String), Vec<u64>>,
        noise: bool,
    }

    impl Postings for Model {
        fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
            let id = match key {
                Key::Type(t) => (false, t.to_owned()),
                Key::Tag(t) => (true, t.to_owned()),
            };
            let listed = self.keys.get(&id).cloned().unwrap_or_default();
            let mut all: Vec<u64> = listed
                .into_iter()
                .chain((0..to).filter(|p| self.noise && p % 3 == 0))
                .filter(|p| (from..to).contains(p))
                .collect();
            all.sort_unstable();
            all.dedup();
            all.truncate(max);
            Ok(all)
        }

        fn count(&self, key: Key<'_>, from: u64) -> Result<u64> {
            // Past the last position any key lists, only noise is left.
            let end = self.keys.values().flatten().max().map_or(0, |p| p + 1);
            Ok(self.candidates(key, from, end, usize::MAX)?.len() as u64)
        }
    }

    #[test]
    fn indexed_visits_equal_a_filtered_walk_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = 5_000u64;
        for chunk in 0..(n / 500) {
            let events = (0..500)
                .map(|i| {
                    let p = chunk * 500 + i;
                    let t = ["A", "B", "C"][(p % 3) as usize];
                    EventData::new(t, "{}")
                        .with_tags([format!("m:{}", p % 7), format!("k:{}", p % 2)])
                })
                .collect();
            store
                .append("s", ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
        let mut keys: BTreeMap<(bool, String), Vec<u64>> = BTreeMap::new();
        for e in store.read_all(0, usize::MAX).unwrap() {
            keys.entry((false, e.event_type.clone()))
                .or_default()
                .push(e.position);
            for tag in &e.tags {
                keys.entry((true, tag.clone()))
                    .or_default()
                    .push(e.position);
            }
        }
        let all = store.read_all(0, usize::MAX).unwrap();
        let queries = [
            Query::new([QueryItem::new().tags(["k:0"])]),
            Query::new([QueryItem::new().types(["A", "B"])]),
            Query::new([
                QueryItem::new().types(["A"]).tags(["m:3", "k:1"]),
                QueryItem::new().tags(["m:5"]),
            ]),
            Query::new([QueryItem::new().tags(["m:1"]), QueryItem::new()]),
            Query::new([QueryItem::new().tags(["absent"])]),
            Query::default(),
        ];
        for noise in [false, true] {
            let postings = Model {
                keys: keys.clone(),
                noise,
            };
            for query in &queries {
                for (from, max) in [(0, usize::MAX), (1234, 700), (4990, 5)] {
                    let want: Vec<u64> = all
                        .iter()
                        .filter(|e| e.position >= from)
                        .filter(|e| {
                            query.items.iter().any(|i| {
                                (i.types.is_empty() || i.types.contains(&e.event_type))
                                    && i.tags.iter().all(|t| e.tags.contains(t))
                            })
                        })
                        .map(|e| e.position)
                        .take(max)
                        .collect();
                    let mut got = Vec::new();
                    let stopped =
                        visit_indexed(&postings, store.log_reader(), query, from, n, |e| {
                            got.push(e.position);
                            if got.len() >= max {
                                ControlFlow::Break(())
                            } else {
                                ControlFlow::Continue(())
                            }
                        })
                        .unwrap();
                    assert_eq!(got, want, "{query:?} from {from} noise {noise}");
                    assert_eq!(
                        stopped,
                        if want.len() == max {
                            want.last().copied()
                        } else {
                            None
                        }
                    );
                }
            }
        }
    }
}
