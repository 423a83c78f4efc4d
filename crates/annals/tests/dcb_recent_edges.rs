//! Property: an append condition is decided as a filter of the log says —
//! it fails, naming the first matching position above `after`, exactly
//! when an event matching its query lies above `after` — wherever `after`
//! falls against the writer's recent events (`write/recent.rs`: the last
//! 1,024–2,048 events, of which a condition scans the last ≤ 1,024, the
//! rest found through the secondary index): exactly 1,024 / 1,025 / 2,048
//! events back, at the start of the events held, just before and after
//! the oldest half is dropped, before any conditional append was seen,
//! after a reopen (nothing held), and with events a compaction erased
//! among the recent ones. Method: one writer, so that the events held can
//! be mirrored exactly (`Mirror`); every probe is compared with a brute
//! force over the log read back (`read_all`), in `Fsync` and `Buffered`.

mod common;

use annals::{
    AppendCondition, AppendRejected, CompactionOptions, Durability, EventData, ExpectedVersion,
    Options, Query, QueryItem, Store,
};

/// What the writer holds, mirrored: the first position held and how many
/// (`RECENT_EVENTS_MAX` = 1,024: it holds up to twice that, then drops
/// the oldest half at once).
#[derive(Debug, Clone, Copy, Default)]
struct Mirror {
    on: bool,
    start: u64,
    len: u64,
}

impl Mirror {
    fn seen_condition(&mut self, end: u64) {
        if !self.on {
            *self = Mirror {
                on: true,
                start: end,
                len: 0,
            };
        }
    }

    fn wrote(&mut self, events: u64) {
        if !self.on {
            return;
        }
        for _ in 0..events {
            if self.len >= 2 * 1024 {
                self.start += 1024;
                self.len -= 1024;
            }
            self.len += 1;
        }
    }
}

/// The live events of the log by position (`None`: erased by a
/// compaction), rebuilt from `read_all`.
struct Model {
    events: Vec<Option<(String, Vec<String>)>>,
}

impl Model {
    fn read(store: &Store) -> Model {
        let end = store.position_end();
        let mut events = vec![None; end as usize];
        for e in store.read_all(0, usize::MAX).unwrap() {
            events[e.position as usize] = Some((e.event_type, e.tags));
        }
        Model { events }
    }

    fn end(&self) -> u64 {
        self.events.len() as u64
    }

    fn first_match(&self, query: &Query, after: Option<u64>) -> Option<u64> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        (from..self.end()).find(|&p| {
            self.events[p as usize]
                .as_ref()
                .is_some_and(|(ty, tags)| common::query_matches(query, ty, tags))
        })
    }
}

/// A scrambled number for position `p` (a tag that recurs irregularly).
fn mix(p: u64) -> u64 {
    let mut x = p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 40
}

fn filler(p: u64) -> EventData {
    let ty = ["A", "B", "C"][(p % 3) as usize];
    EventData::new(ty, "{}").with_tags([format!("r:{}", mix(p) % 199), format!("g:{}", p % 5)])
}

/// Appends `n` filler events (batches of up to 200, one stream).
fn fill(store: &Store, mirror: &mut Mirror, n: u64) {
    let mut left = n;
    while left > 0 {
        let count = left.min(200);
        let end = store.position_end();
        let events = (end..end + count).map(filler).collect();
        store
            .append("filler", ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
        mirror.wrote(count);
        left -= count;
    }
}

/// The queries probed: a dense type first (its first match lies right
/// above `after`, so it is found only if the index covers the events
/// there), rare tags, a type with a tag, two items, two tags, every event.
fn queries(salt: u64) -> Vec<Query> {
    let r = |k: u64| format!("r:{}", (mix(salt * 31 + k)) % 199);
    vec![
        Query::new([QueryItem::new().types(["C"])]),
        Query::new([QueryItem::new().tags([r(1)])]),
        Query::new([QueryItem::new().types(["B"]).tags([r(2)])]),
        Query::new([
            QueryItem::new().tags([r(3)]),
            QueryItem::new().types(["A"]).tags([r(4)]),
        ]),
        Query::new([QueryItem::new().tags([r(5), format!("g:{}", salt % 5)])]),
        Query::all(),
    ]
}

/// One conditional append, checked against the model; the model and
/// mirror follow what it wrote. Returns whether it was rejected.
fn probe(
    store: &Store,
    model: &mut Model,
    mirror: &mut Mirror,
    query: &Query,
    after: Option<u64>,
) -> bool {
    let end = model.end();
    assert_eq!(store.position_end(), end);
    let want = model.first_match(query, after);
    mirror.seen_condition(end);
    // What a filler would be here (queries match probes as they match
    // the rest), and a tag of its own.
    let event = filler(end).with_tag("probe");
    let outcome = store
        .append_with_condition(
            vec![("probes".into(), ExpectedVersion::Any, vec![event.clone()])],
            AppendCondition::new(query.clone()).after(after),
        )
        .unwrap();
    let context = format!(
        "{query:?} after {after:?}: end {end}, held {}..{} (back {})",
        mirror.start,
        mirror.start + mirror.len,
        after.map_or(end, |a| end - a.min(end)),
    );
    match (outcome, want) {
        (Ok(written), None) => {
            assert_eq!(written[0].first_position, end, "{context}");
            model.events.push(Some((event.event_type, event.tags)));
            mirror.wrote(1);
            false
        }
        (Err(AppendRejected::Condition(failed)), Some(position)) => {
            assert_eq!(failed.position, position, "first match, {context}");
            assert_eq!(store.position_end(), end, "nothing written, {context}");
            true
        }
        (outcome, want) => panic!("{context}: got {outcome:?}, the log's first match {want:?}"),
    }
}

/// `after`s at and around the edges: 1,025 back, then furthest back
/// first: none, 2,048 and 1,024 events back, the end, the first event
/// held.
fn afters(end: u64, mirror: &Mirror) -> Vec<Option<u64>> {
    let mut backs: Vec<u64> = vec![3_500];
    backs.extend((2045..=2050).rev());
    backs.extend((1021..=1027).rev());
    backs.extend([2, 1, 0]);
    // First, 1,025 back: the index answers for one event, the last below
    // the events scanned among the writer's (the memtable must reach it).
    let mut out: Vec<Option<u64>> = vec![end.checked_sub(1 + 1025), None];
    out.extend(
        backs
            .iter()
            .filter_map(|&back| end.checked_sub(1 + back).map(Some)),
    );
    if mirror.on {
        for d in 0..5 {
            out.extend((mirror.start + d).checked_sub(3).map(Some));
        }
    }
    out
}

/// Probes every `after` with every query, at the model's end as it moves
/// (the dense type first: it finds the C event right above `after` only
/// if the index covers it).
/// Returns how many were rejected and written.
fn probe_all(store: &Store, model: &mut Model, mirror: &mut Mirror, salt: u64) -> (u64, u64) {
    let queries = queries(salt);
    let (mut rejected, mut written) = (0, 0);
    for after in afters(model.end(), mirror) {
        for query in &queries {
            if probe(store, model, mirror, query, after) {
                rejected += 1;
            } else {
                written += 1;
            }
        }
    }
    (rejected, written)
}

/// A small index buffer: runs are persisted and merged all along, and the
/// index worker keeps the secondary memtable near the log's end.
fn options(durability: Durability) -> Options {
    Options::default()
        .durability(durability)
        .index_buffer_events(300)
}

/// The default index buffer: nothing is persisted in these tests, so the
/// secondary memtable is extended only by the write path's own lookups
/// (up to the events the writer holds) and by the worker when the writer
/// drops its oldest half.
fn options_unpersisted(durability: Durability) -> Options {
    Options::default().durability(durability)
}

/// From before the first conditional append through the buffer's first
/// and second drop of its oldest half, probing at fill levels on each
/// side of 1,024 and 2,048 events held.
fn across_the_recent_events(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut mirror = Mirror::default();
    fill(&store, &mut mirror, 2_600);
    let mut model = Model::read(&store);
    let (mut rejected, mut written) = (0, 0);
    let levels = [
        0, 1, 2, 1_022, 1_023, 1_024, 1_025, 1_026, 2_046, 2_047, 2_048, 2_049, 2_050, 3_070,
        3_071, 3_072, 3_073, 4_100,
    ];
    for (salt, &level) in levels.iter().enumerate() {
        let held_since = if mirror.on { mirror.start } else { model.end() };
        let target = held_since + level;
        if mirror.on {
            // Reach `level` events held (or as near as the probes let).
            let total = mirror.start + mirror.len;
            if target > total {
                fill(&store, &mut mirror, target - total);
            }
        }
        model = Model::read(&store);
        let (r, w) = probe_all(&store, &mut model, &mut mirror, salt as u64);
        rejected += r;
        written += w;
    }
    assert!(rejected > 100 && written > 100, "{rejected} {written}");
    store.verify().unwrap();
}

#[test]
fn conditions_across_the_recent_events_fsync() {
    across_the_recent_events(options(Durability::Fsync));
}

#[test]
fn conditions_across_the_recent_events_buffered() {
    across_the_recent_events(options(Durability::Buffered));
}

#[test]
fn conditions_across_the_recent_events_index_unpersisted() {
    across_the_recent_events(options_unpersisted(Durability::Buffered));
}

/// After a reopen the writer holds nothing and the index has replayed the
/// log's tail: every condition goes through the index until the writer
/// holds events again; probed right away and after refilling.
#[test]
fn conditions_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut mirror = Mirror::default();
    {
        let store = Store::open_with(dir.path(), options(Durability::Buffered)).unwrap();
        fill(&store, &mut mirror, 1_500);
        let mut model = Model::read(&store);
        probe_all(&store, &mut model, &mut mirror, 1);
        fill(&store, &mut mirror, 1_700);
        store.close().unwrap();
    }
    let store = Store::open_with(dir.path(), options(Durability::Fsync)).unwrap();
    let mut mirror = Mirror::default();
    let mut model = Model::read(&store);
    probe_all(&store, &mut model, &mut mirror, 2);
    fill(&store, &mut mirror, 1_030);
    let mut model = Model::read(&store);
    probe_all(&store, &mut model, &mut mirror, 3);
    store.verify().unwrap();
}

/// Events a compaction erased while the writer still holds their types and
/// tags match nothing: the first match named is the first live one (or
/// the append is written), wherever `after` falls.
#[test]
fn erased_events_among_the_recent_ones_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(Durability::Fsync).segment_bytes(16 << 10);
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut mirror = Mirror::default();
    fill(&store, &mut mirror, 500);
    // Turn the recent events on, then interleave a stream to be deleted
    // with kept events: the deleted one carries the only `doomed` tags.
    let mut model = Model::read(&store);
    probe(
        &store,
        &mut model,
        &mut mirror,
        &Query::new([QueryItem::new().tags(["absent"])]),
        None,
    );
    for n in 0..1_800u64 {
        let (stream, ty) = if n % 3 == 0 {
            ("gone", "Doomed")
        } else {
            ("keep", "Kept")
        };
        let tags = [format!("doomed:{}", n % 4), format!("r:{}", mix(n) % 199)];
        let event = EventData::new(ty, "x".repeat(40)).with_tags(if stream == "gone" {
            tags.to_vec()
        } else {
            vec![tags[1].clone()]
        });
        store
            .append(stream, ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
        mirror.wrote(1);
    }
    store
        .soft_delete_stream("gone", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    mirror.wrote(1);
    let report = store.compact(&CompactionOptions::default()).unwrap();
    assert!(report.removed.soft_delete > 0, "{report:?}");
    let mut model = Model::read(&store);
    let erased = model.events.iter().filter(|e| e.is_none()).count();
    assert!(erased > 400, "{erased} erased");
    let end = model.end();
    let doomed = [
        Query::new([QueryItem::new().tags(["doomed:1"])]),
        Query::new([QueryItem::new().types(["Doomed"])]),
        Query::new([
            QueryItem::new().types(["Doomed"]),
            QueryItem::new().types(["Kept"]).tags(["r:7"]),
        ]),
    ];
    let mut afters: Vec<Option<u64>> = (0..40).map(|k| Some(end - 1 - k * 53)).collect();
    afters.push(None);
    for after in afters {
        for query in &doomed {
            probe(&store, &mut model, &mut mirror, query, after);
        }
    }
    probe_all(&store, &mut model, &mut mirror, 4);
    store.verify().unwrap();
}
