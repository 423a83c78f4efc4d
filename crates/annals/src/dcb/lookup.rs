//! Finding the events that match a [`Query`] above a position, through the
//! secondary index's postings per event type and per tag
//! ([`indexed`](super::indexed)): what the write path's condition check
//! and [`Store::read_query`](crate::Store::read_query) ask. A few index
//! lookups per query item, never a walk of the log.

use std::ops::ControlFlow;

use annals_index::SecondaryKey;
use annals_segment::LogReader;

use super::cache::EventSource;
use super::indexed::{visit_indexed, Key, Postings};
use super::query::Query;
use crate::error::Result;
use crate::event::EventRef;
use crate::index::Index;

/// The index's postings for reads: a damaged run page met on the way is
/// rebuilt on the reader's thread and the lookup retried.
impl Postings for Index {
    fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
        let mut candidates = self.secondary_candidates(&secondary_key(key), from, max)?;
        // Sorted: what is cut is past `to`, and all before it is kept.
        candidates.retain(|&p| p < to);
        Ok(candidates)
    }

    fn count(&self, key: Key<'_>, from: u64) -> Result<u64> {
        self.secondary_count(&secondary_key(key), from)
    }
}

/// The index's postings for the write path's check of an append condition,
/// below `end` only: the secondary memtable is extended to `end`, never
/// past it (the check decodes no event it does not need: those past `end`
/// it finds elsewhere); and a lookup that meets a damaged run page fails
/// (`Index::needs_repair` says so) instead of rebuilding the run there,
/// which would hold up every append of the group: the caller rebuilds it
/// on its own thread and submits again.
struct WritePath<'a> {
    index: &'a Index,
    end: u64,
}

impl Postings for WritePath<'_> {
    fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
        let to = to.min(self.end);
        let mut candidates =
            self.index
                .secondary_candidates_unrepaired(&secondary_key(key), from, max, to)?;
        candidates.retain(|&p| p < to);
        Ok(candidates)
    }

    fn count(&self, key: Key<'_>, from: u64) -> Result<u64> {
        self.index
            .secondary_count_unrepaired(&secondary_key(key), from, self.end)
    }
}

fn secondary_key(key: Key<'_>) -> SecondaryKey<'_> {
    match key {
        Key::Type(name) => SecondaryKey::event_type(name),
        Key::Tag(name) => SecondaryKey::tag(name),
    }
}

/// The first position in `from..to` holding an event that matches `query`:
/// the write path's check of an append condition (the secondary memtable
/// extended to `to` at most, a damaged index run the error: see
/// [`WritePath`]).
pub(crate) fn first_match(
    index: &Index,
    reader: &LogReader,
    query: &Query,
    from: u64,
    to: u64,
) -> Result<Option<u64>> {
    let postings = WritePath { index, end: to };
    visit_indexed(&postings, reader, query, from, to, |_| {
        ControlFlow::Break(())
    })
}

/// Visits the events in `from..to` that match `query`, in position order,
/// until `visit` breaks; returns the position it broke at, if it did (every
/// matching event below it was visited). What a query subscription far
/// behind reads through.
pub(crate) fn visit_between(
    index: &Index,
    reader: &LogReader,
    query: &Query,
    from: u64,
    to: u64,
    visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    visit_indexed(index, reader, query, from, to, visit)
}

/// Visits the events from `from` on that match `query`, in position order,
/// until `visit` breaks. Returns the last position covered: where `visit`
/// broke, else the last of the log as this call saw it (`None`: none).
pub(crate) fn visit_matches(
    index: &Index,
    events: EventSource<'_>,
    query: &Query,
    from: u64,
    visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
) -> Result<Option<u64>> {
    let to = events.reader.position_end();
    let stopped = visit_indexed(index, events, query, from, to, visit)?;
    Ok(stopped.or_else(|| (to > from).then(|| to - 1)))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::super::indexed::test_support::{collect_counting, fill, matching_from};
    use super::*;
    use crate::{Durability, EventData, Options, QueryItem, Store};

    /// A store in `dir` with no fsync and an index buffer of `events`.
    fn open_buffered(dir: &std::path::Path, events: u64) -> Store {
        let options = Options::default()
            .index_buffer_events(events)
            .durability(Durability::Buffered);
        Store::open_with(dir, options).unwrap()
    }

    /// The store's postings, counting the candidates they hand out, for
    /// walked and intersected keys alike: a bound on the events the walk
    /// reads.
    struct Counting<'a> {
        index: &'a Index,
        handed: Cell<u64>,
    }

    impl Postings for Counting<'_> {
        fn candidates(&self, key: Key<'_>, from: u64, to: u64, max: usize) -> Result<Vec<u64>> {
            let out = self.index.candidates(key, from, to, max)?;
            self.handed.set(self.handed.get() + out.len() as u64);
            Ok(out)
        }

        fn count(&self, key: Key<'_>, from: u64) -> Result<u64> {
            self.index.count(key, from)
        }
    }

    /// An item whose first tag is on every event and whose second is rare
    /// (or whose type is rare) reads only about as many events as the rare
    /// key has, wherever its keys sit (runs and memtable), for a read and
    /// for a condition's first-match lookup; and finds exactly the
    /// matching events. Walking the first tag read over a thousand.
    #[test]
    fn an_item_walks_its_rarest_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_buffered(dir.path(), 700);
        let n = 6_000u64;
        fill(&store, n, 500, Some(8), |p| {
            let ty = if p % 1_500 == 7 { "Rare" } else { "Often" };
            let mut tags = vec!["common".to_owned()];
            if p % 997 == 3 {
                tags.push("rare".to_owned());
            }
            EventData::new(ty, "{}").with_tags(tags)
        });
        let all = store.read_all(0, usize::MAX).unwrap();
        let reader = store.log_reader();
        let cases = [
            (QueryItem::new().tags(["common", "rare"]), "rare tag"),
            (
                QueryItem::new()
                    .types(["Often", "Rare"])
                    .tags(["common", "rare"]),
                "rare tag, common types",
            ),
            (
                QueryItem::new().types(["Rare"]).tags(["common"]),
                "rare type",
            ),
            (QueryItem::new().tags(["common", "absent"]), "absent tag"),
        ];
        for (item, what) in cases {
            for from in [0, 2_000, 5_990] {
                let want = matching_from(&all, &item, from);
                let rarest = if what == "rare type" {
                    all.iter()
                        .filter(|e| e.position >= from && e.event_type == "Rare")
                        .count()
                } else {
                    want.len()
                } as u64;
                let query = Query::new([item.clone()]);
                let postings = Counting {
                    index: store.index(),
                    handed: Cell::new(0),
                };
                let mut got = Vec::new();
                visit_indexed(&postings, reader, &query, from, n, |e| {
                    got.push(e.position);
                    ControlFlow::Continue(())
                })
                .unwrap();
                assert_eq!(got, want, "{what} from {from}");
                assert!(
                    postings.handed.get() <= rarest,
                    "{what} from {from}: {} events read for {rarest} of the rarest key",
                    postings.handed.get()
                );
                postings.handed.set(0);
                let first = visit_indexed(&postings, reader, &query, from, n, |_| {
                    ControlFlow::Break(())
                })
                .unwrap();
                assert_eq!(first, want.first().copied(), "{what} from {from}");
                assert!(postings.handed.get() <= rarest, "{what} from {from}");
            }
        }
    }

    /// Two tags each on a tenth of 30,000 events, together on a hundred
    /// and tenth, their postings across runs and the memtable and over
    /// several pages each: a read and a condition's first-match lookup find
    /// exactly the matches and read only the intersection's events (also
    /// with a third tag on every event, 11 times as common, and with a
    /// type: both checked on the events read).
    #[test]
    fn two_common_tags_are_intersected_across_runs_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_buffered(dir.path(), 4_000);
        let n = 30_000u64;
        let tags = |p: u64| {
            [
                format!("a:{}", p % 10),
                format!("b:{}", p % 11),
                "all".to_owned(),
            ]
        };
        fill(&store, n, 1_000, Some(17), |p| {
            EventData::new(if p % 2 == 0 { "Even" } else { "Odd" }, "{}").with_tags(tags(p))
        });
        let all = store.read_all(0, usize::MAX).unwrap();
        let reader = store.log_reader();
        let items = [
            QueryItem::new().tags(["a:3", "b:4"]),
            QueryItem::new().tags(["all", "b:4", "a:3"]),
            QueryItem::new().types(["Odd"]).tags(["a:3", "b:4"]),
        ];
        for item in items {
            let query = Query::new([item.clone()]);
            for from in [0, 12_345, 29_000] {
                let want = matching_from(&all, &item, from);
                let both = (from..n).filter(|p| p % 10 == 3 && p % 11 == 4).count() as u64;
                let (got, read) = collect_counting(store.index(), reader, &query, from, n);
                assert_eq!(got, want, "{item:?} from {from}");
                assert_eq!(read, both, "{item:?} from {from}: events read");
                let first = first_match(store.index(), reader, &query, from, n).unwrap();
                assert_eq!(first, want.first().copied(), "{item:?} from {from}");
            }
        }
    }
}
