//! Finding the events that match a [`Query`] through postings (the
//! secondary index's positions per event type and per tag) instead of a
//! walk of the log: per query item, the candidates of its rarest key — the
//! tag with the fewest postings from the read's start, or the union of its
//! types if that is smaller — intersected with the postings of its other
//! tags that are not much commoner ([`INTERSECT_RATIO`]), then confirmed by
//! reading the candidate event (a key's postings may hold positions of a
//! colliding hash; the item's other keys are checked on the event).
//! Candidates are taken a page per key at a time, and only up to the lowest
//! page end among the walked keys (the *frontier*), so events come out in
//! position order and each round costs a few lookups per item.

use std::ops::ControlFlow;

use super::cache::EventSource;
use super::intersect::{Intersect, INTERSECT_RATIO, TRY_RATIO, TRY_WALKED};
use super::query::{Query, QueryItem};
use crate::error::Result;
use crate::event::EventRef;

/// Candidates asked of one key at a time.
pub(super) const PAGE: usize = 1024;

/// Events a walk reads through the query cache (if the store has one);
/// past them it is a scan, not a decision's read, and reads the log
/// directly, so that it neither pays for the cache nor evicts what
/// decide loops keep there.
pub(crate) const SCAN_EVENTS: usize = 1024;

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

/// How an item's matches are found: the postings walked, and the item's
/// other tags whose postings are intersected with the walked candidates
/// (two tags each on many events but together on few are read as few).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ItemPlan<'q> {
    walk: Plan<'q>,
    intersect: Vec<&'q str>,
}

/// The postings to walk for `item` from `from`: the fewest candidates
/// among each of its tags and the union of its types; and its other tags
/// not over [`INTERSECT_RATIO`] times as common (or [`TRY_RATIO`], for a
/// walk of [`TRY_WALKED`] candidates or more), to intersect. Counting
/// costs a few index lookups per key, so it is skipped when there is one
/// choice.
fn plan<'q>(postings: &impl Postings, item: &'q QueryItem, from: u64) -> Result<ItemPlan<'q>> {
    let only = |walk| {
        Ok(ItemPlan {
            walk,
            intersect: Vec::new(),
        })
    };
    let choices = item.tags.len() + usize::from(!item.types.is_empty());
    match (item.tags.first(), item.types.is_empty()) {
        (None, true) => return only(Plan::All),
        (None, false) if choices == 1 => return only(Plan::Types(&item.types)),
        (Some(tag), true) if choices == 1 => return only(Plan::Tag(tag)),
        _ => {}
    }
    let mut best: Option<(u64, Plan<'q>)> = None;
    let beats = |best: &Option<(u64, Plan<'q>)>, n: u64| best.is_none_or(|(b, _)| n < b);
    let mut tags = Vec::with_capacity(item.tags.len());
    for tag in &item.tags {
        let n = postings.count(Key::Tag(tag), from)?;
        if n == 0 {
            // Nothing can be rarer (and the item matches nothing).
            return only(Plan::Tag(tag));
        }
        if beats(&best, n) {
            best = Some((n, Plan::Tag(tag)));
        }
        tags.push((tag.as_str(), n));
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
    let Some((walked, walk)) = best else {
        return only(Plan::All);
    };
    let ratio = if walked >= TRY_WALKED {
        TRY_RATIO
    } else {
        INTERSECT_RATIO
    };
    let intersect = tags
        .into_iter()
        .filter(|&(tag, n)| walk != Plan::Tag(tag) && n <= walked.saturating_mul(ratio))
        .map(|(tag, _)| tag)
        .collect();
    Ok(ItemPlan { walk, intersect })
}

/// Visits the events in `from..to` that match `query`, in position order,
/// until `visit` breaks; returns the position it broke at, if it did.
pub(crate) fn visit_indexed<'r>(
    postings: &impl Postings,
    events: impl Into<EventSource<'r>>,
    query: &Query,
    from: u64,
    to: u64,
    visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    visit_counting(postings, events.into(), query, from, to, visit, &mut 0)
}

/// [`visit_indexed`], adding to `events_read` the number of events it
/// reads from the log (candidates that survived the intersections).
pub(crate) fn visit_counting(
    postings: &impl Postings,
    mut events: EventSource<'_>,
    query: &Query,
    from: u64,
    to: u64,
    mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    events_read: &mut u64,
) -> Result<Option<u64>> {
    let mut cursor = from;
    let mut batch = Vec::new();
    let mut read_here = 0usize;
    let plans = if from < to {
        let plans: Result<Vec<ItemPlan<'_>>> = query
            .items
            .iter()
            .map(|item| plan(postings, item, from))
            .collect();
        plans?
    } else {
        Vec::new()
    };
    let mut intersects: Vec<Vec<Intersect<'_>>> = plans
        .iter()
        .map(|plan| {
            plan.intersect
                .iter()
                .map(|tag| Intersect::new(tag))
                .collect()
        })
        .collect();
    let mut walked: Vec<Vec<u64>> = vec![Vec::new(); plans.len()];
    while cursor < to && !plans.is_empty() {
        // Each item's walked candidates from `cursor`, a page per key; the
        // frontier is the lowest end of a full page: below it, every
        // candidate of every item is in hand.
        let mut frontier = to;
        for (plan, walked) in plans.iter().zip(&mut walked) {
            walked.clear();
            match plan.walk {
                Plan::Tag(tag) => {
                    take(postings, Key::Tag(tag), cursor, &mut frontier, walked)?;
                }
                Plan::Types(types) => {
                    for event_type in types {
                        let key = Key::Type(event_type);
                        take(postings, key, cursor, &mut frontier, walked)?;
                    }
                    walked.sort_unstable();
                }
                Plan::All => {
                    let end = cursor.saturating_add(PAGE as u64).min(frontier);
                    frontier = end;
                    walked.extend(cursor..end);
                }
            }
        }
        batch.clear();
        for (walked, intersects) in walked.iter().zip(&mut intersects) {
            let below = walked.partition_point(|&p| p < frontier);
            let walked = walked.get(..below).unwrap_or_default();
            if intersects.is_empty() {
                batch.extend_from_slice(walked);
                continue;
            }
            for &position in walked {
                let mut admitted = true;
                for intersect in intersects.iter_mut() {
                    if !intersect.admits(postings, position, frontier)? {
                        admitted = false;
                        break;
                    }
                }
                if admitted {
                    batch.push(position);
                }
            }
            intersects.retain(Intersect::pays);
        }
        batch.sort_unstable();
        batch.dedup();
        *events_read += batch.len() as u64;
        read_here += batch.len();
        let mut stopped = None;
        events.with_events(&batch, |position, record, owner| {
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
        if read_here >= SCAN_EVENTS {
            // A scan, not a decision's read: the rest is read from the
            // log, neither noted nor copied by the query cache.
            events.cache = None;
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
    if batch.is_empty() {
        // The page itself, not a copy (the walk of one key).
        *batch = page;
    } else {
        batch.extend(page);
    }
    Ok(())
}

/// What the walk's tests share: filling a store, the model of a match, and
/// a walk that collects what it visits and counts what it reads.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;
    use std::ops::ControlFlow;

    use annals_segment::LogReader;

    use super::{visit_counting, Postings};
    use crate::{EventData, ExpectedVersion, Query, QueryItem, RecordedEvent, Store};

    /// Appends `n` events to stream `s`, `chunk` per append, event `p`
    /// made by `event(p)`; the index is maintained (its memtable written
    /// as runs) after chunk `maintain_after`, if given.
    pub(crate) fn fill(
        store: &Store,
        n: u64,
        chunk: u64,
        maintain_after: Option<u64>,
        event: impl Fn(u64) -> EventData,
    ) {
        for c in 0..n.div_ceil(chunk) {
            let events = (c * chunk..((c + 1) * chunk).min(n)).map(&event).collect();
            store
                .append("s", ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
            if maintain_after == Some(c) {
                store.maintain_index().unwrap();
            }
        }
    }

    /// Each key's positions in the whole log: `(false, type)`, `(true, tag)`.
    pub(crate) fn keys_of(store: &Store) -> BTreeMap<(bool, String), Vec<u64>> {
        let mut keys: BTreeMap<(bool, String), Vec<u64>> = BTreeMap::new();
        for e in store.read_all(0, usize::MAX).unwrap() {
            let tags = e.tags.iter().map(|tag| (true, tag.clone()));
            for key in std::iter::once((false, e.event_type.clone())).chain(tags) {
                keys.entry(key).or_default().push(e.position);
            }
        }
        keys
    }

    /// The model of an item's match: one of its types (any if none), all
    /// of its tags.
    pub(crate) fn item_matches(item: &QueryItem, e: &RecordedEvent) -> bool {
        (item.types.is_empty() || item.types.contains(&e.event_type))
            && item.tags.iter().all(|t| e.tags.contains(t))
    }

    /// The positions of the events of `log` from `from` on that `item`
    /// matches ([`item_matches`]).
    pub(crate) fn matching_from(log: &[RecordedEvent], item: &QueryItem, from: u64) -> Vec<u64> {
        log.iter()
            .filter(|e| e.position >= from && item_matches(item, e))
            .map(|e| e.position)
            .collect()
    }

    /// The positions the walk visits in `from..to`, and how many events it
    /// read to find them.
    pub(crate) fn collect_counting(
        postings: &impl Postings,
        reader: &LogReader,
        query: &Query,
        from: u64,
        to: u64,
    ) -> (Vec<u64>, u64) {
        let (mut got, mut read) = (Vec::new(), 0);
        let visit = |e: crate::event::EventRef<'_>| {
            got.push(e.position);
            ControlFlow::Continue(())
        };
        visit_counting(postings, reader.into(), query, from, to, visit, &mut read).unwrap();
        (got, read)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::test_support::{collect_counting, fill, item_matches, keys_of};
    use super::*;
    use crate::{EventData, QueryItem, Store};

    /// Postings built from a read of the whole log; with `noise`, every
    /// key also lists every third position (a superset, as a hash
    /// collision would make).
    struct Model {
        keys: BTreeMap<(bool, String), Vec<u64>>,
        noise: bool,
        /// How many candidates each key has handed out.
        handed: std::cell::RefCell<BTreeMap<String, u64>>,
    }

    impl Model {
        fn new(keys: BTreeMap<(bool, String), Vec<u64>>, noise: bool) -> Self {
            Model {
                keys,
                noise,
                handed: Default::default(),
            }
        }

        fn handed(&self, key: &str) -> u64 {
            self.handed.borrow().get(key).copied().unwrap_or(0)
        }
    }

    impl Model {
        /// What `key` lists in `from..to`, noise included.
        fn listed(&self, key: Key<'_>, from: u64, to: u64) -> Vec<u64> {
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
            all
        }
    }

    impl Postings for Model {
        fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
            let mut all = self.listed(key, from, to);
            all.truncate(max);
            let name = match key {
                Key::Type(name) | Key::Tag(name) => name.to_owned(),
            };
            *self.handed.borrow_mut().entry(name).or_default() += all.len() as u64;
            Ok(all)
        }

        fn count(&self, key: Key<'_>, from: u64) -> Result<u64> {
            // Past the last position any key lists, only noise is left.
            let end = self.keys.values().flatten().max().map_or(0, |p| p + 1);
            Ok(self.listed(key, from, end).len() as u64)
        }
    }

    #[test]
    fn indexed_visits_equal_a_filtered_walk_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = 5_000u64;
        fill(&store, n, 500, None, |p| {
            let t = ["A", "B", "C"][(p % 3) as usize];
            EventData::new(t, "{}").with_tags([format!("m:{}", p % 7), format!("k:{}", p % 2)])
        });
        let keys = keys_of(&store);
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
            let postings = Model::new(keys.clone(), noise);
            for query in &queries {
                for (from, max) in [(0, usize::MAX), (1234, 700), (4990, 5)] {
                    let want: Vec<u64> = all
                        .iter()
                        .filter(|e| e.position >= from)
                        .filter(|e| query.items.iter().any(|i| item_matches(i, e)))
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

    /// Two tags each on about a tenth of the events but together on about
    /// a hundredth: the events read are those both tags' postings list,
    /// not the rarer tag's tenth; and what is found is exactly the matches,
    /// from any start. With noise (every third position listed by every
    /// key), most candidates are in both lists: the intersection may be
    /// given up (`intersect::pays`), and no more than the walked list is read.
    #[test]
    fn an_item_of_two_common_tags_reads_only_their_intersection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = 6_000u64;
        fill(&store, n, n, None, |p| {
            EventData::new("E", "{}").with_tags([format!("a:{}", p % 10), format!("b:{}", p % 11)])
        });
        let keys = keys_of(&store);
        let query = Query::new([QueryItem::new().tags(["a:3", "b:4"])]);
        for noise in [false, true] {
            let postings = Model::new(keys.clone(), noise);
            for from in [0, 1_000, 5_900] {
                let want: Vec<u64> = (from..n).filter(|p| p % 10 == 3 && p % 11 == 4).collect();
                let listed_by_both = (from..n)
                    .filter(|p| (noise && p % 3 == 0) || (p % 10 == 3 && p % 11 == 4))
                    .count() as u64;
                let (got, read) = collect_counting(&postings, store.log_reader(), &query, from, n);
                assert_eq!(got, want, "from {from} noise {noise}");
                let listed_by_b = (from..n)
                    .filter(|p| (noise && p % 3 == 0) || p % 11 == 4)
                    .count() as u64;
                if noise {
                    assert!(
                        (listed_by_both..=listed_by_b).contains(&read),
                        "from {from}: {read} events read, {listed_by_both} listed by both, {listed_by_b} by b:4"
                    );
                } else {
                    assert_eq!(read, listed_by_both, "from {from}: events read");
                }
                // The first match, as a condition asks it.
                let first = visit_indexed(&postings, store.log_reader(), &query, from, n, |_| {
                    ControlFlow::Break(())
                })
                .unwrap();
                assert_eq!(first, want.first().copied(), "from {from} noise {noise}");
            }
        }
    }

    /// A long walk tries a tag up to 64 times as common as its walked key
    /// and keeps the intersection while it pays: `w` (every 10th event) and
    /// `t` (5 of every 10, never with `w`) read no event at all; `w` and
    /// `all` (every event: each candidate carries it) give the intersection
    /// up after its first page and copy `all`'s postings for that page only.
    #[test]
    fn a_long_walk_keeps_an_intersection_only_while_it_pays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = 40_000u64;
        fill(&store, n, 10_000, None, |p| {
            let mut tags = vec!["all".to_owned()];
            if p % 10 == 0 {
                tags.push("w".to_owned());
            }
            if (1..=5).contains(&(p % 10)) {
                tags.push("t".to_owned());
            }
            EventData::new("E", "{}").with_tags(tags)
        });
        let keys = keys_of(&store);
        let walked = n / 10;
        // t: 5x as common as w, rare together (never).
        let postings = Model::new(keys.clone(), false);
        let query = Query::new([QueryItem::new().tags(["w", "t"])]);
        let (got, read) = collect_counting(&postings, store.log_reader(), &query, 0, n);
        assert_eq!((got, read), (Vec::new(), 0), "w AND t");
        // all: 10x as common, on every candidate: tried, then given up.
        let postings = Model::new(keys, false);
        let query = Query::new([QueryItem::new().tags(["all", "w"])]);
        let (got, read) = collect_counting(&postings, store.log_reader(), &query, 0, n);
        assert_eq!(got, (0..n).step_by(10).collect::<Vec<u64>>(), "all AND w");
        assert_eq!(read, walked, "all AND w: each candidate read once");
        assert_eq!(postings.handed("w"), walked);
        // The first page of w covers 10 * PAGE positions; all lists each.
        let tried = postings.handed("all");
        assert!(
            (1..=10 * PAGE as u64 + PAGE as u64).contains(&tried),
            "all AND w: {tried} postings of `all` copied, of {n}"
        );
    }
}
