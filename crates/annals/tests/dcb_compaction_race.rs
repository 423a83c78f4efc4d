//! Property: conditional appends (DCB) decide right while compaction
//! rewrites and merges the segments under them and soft deletes, hard
//! deletes and retention rules turn matching events into gaps.
//! - Invariant threads each enforce "at most K events match" with
//!   read → count → append-if-nothing-new (`after` = what the read covered,
//!   sometimes older), retrying on a failed condition: on `seat:X` tags,
//!   whose events are never deleted (so never more than K ever), and on
//!   `room:X` tags, whose events the junk thread deletes or retires (so
//!   "never more than K live": an erased event frees its place).
//! - A junk thread appends throwaway streams, sets a rule on them and on
//!   the room streams (hard delete, soft delete, truncate-before,
//!   max-count, max-age) and compacts again and again (rewrites, merges).
//!
//! Method: a logical clock (one `SeqCst` counter) stamps every call before
//! and after; every event written is recorded by position. What is
//! checkable from the final log, since erasure only ever follows a rule and
//! is never undone: an event still live at the end, or whose rule was set
//! after a call returned, was live while that call decided; an event seen
//! erased before a call started was gone while it decided. So:
//! - an accepted append had no such definitely-live match between its
//!   `after` and its own position, and at most K − 1 definitely-live
//!   matches below it;
//! - a refused one names a position above its `after` holding a matching
//!   event not erased before it started, with no definitely-live match
//!   before that position;
//! - a read returned matching events not erased before it started, and
//!   every definitely-live match up to what it covered;
//! - a retry of a room append (same ids), perhaps erased since, gets its
//!   original result as a duplicate;
//! - only events under a rule are gone; at most K live matches per tag;
//!   no error but failed conditions; `verify` passes; all of it again
//!   after a reopen (then with nothing held by the writer). Compactions
//!   that rewrote segments while appends were being decided are counted
//!   (and must be many). In `Fsync` and `Buffered`.
//!
//! Mutations this catches (each tried by hand): an erased event matching
//! on the index walk (`dcb/indexed.rs`), or among the writer's recent
//! events (`write/decide.rs`), and a condition that ignores the events
//! accepted earlier in its group.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use annals::{
    AppendCondition, AppendRejected, AppendResult, CompactionOptions, CompactionReport,
    ConditionFailed, Durability, EventData, ExpectedVersion, Options, Query, QueryItem,
    RecordedEvent, Store, WriteStats,
};

mod common;
use common::actors::Actors;
use common::query_matches as matches;
use common::Rng;

#[path = "dcb_compaction_race/check.rs"]
mod check;
use check::check;

/// Most events matching a seat's or a room's query.
const K: usize = 3;
const ROOMS: u64 = 2;
const THREADS: usize = 4;

fn options(durability: Durability) -> Options {
    Options::default()
        .segment_bytes(16 << 10)
        .index_buffer_events(64)
        .durability(durability)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// Never deleted: at most K ever.
    Seat(u64),
    /// Deleted and retired by the junk thread: at most K live.
    Room(u64),
}

impl Key {
    fn tag(self) -> String {
        match self {
            Key::Seat(x) => format!("seat:{x}"),
            Key::Room(x) => format!("room:{x}"),
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Key::Seat(_) => "Booked",
            Key::Room(_) => "Entered",
        }
    }

    /// The query for the key, in one of three shapes (all match exactly
    /// the key's events).
    fn query(self, shape: u64) -> Query {
        let tag = self.tag();
        match shape % 3 {
            0 => Query::new([QueryItem::new().tags([tag])]),
            1 => Query::new([QueryItem::new().types([self.event_type()]).tags([tag])]),
            _ => Query::new([
                QueryItem::new().types(["Never"]).tags([tag.clone()]),
                QueryItem::new()
                    .types([self.event_type(), "Junk"])
                    .tags([tag]),
            ]),
        }
    }
}

/// An event as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    stream: String,
    version: u64,
    event_type: String,
    tags: Vec<String>,
}

/// A rule the junk thread set on a stream, and which versions it removes.
#[derive(Debug, Clone, Copy)]
enum Rule {
    HardDelete,
    SoftDelete,
    TruncateBefore(u64),
    MaxCount(u64),
    MaxAge,
}

impl Rule {
    /// Whether the rule may remove `version` of a stream whose last
    /// version (at the end: a max-count counts from the last version as of
    /// the compaction, which only grows) is `last`.
    fn removes(self, version: u64, last: u64) -> bool {
        match self {
            Rule::HardDelete | Rule::SoftDelete | Rule::MaxAge => true,
            Rule::TruncateBefore(v) => version < v,
            Rule::MaxCount(keep) => version + keep <= last,
        }
    }
}

#[derive(Debug)]
struct Read {
    key: Key,
    query: Query,
    start: u64,
    end: u64,
    up_to: Option<u64>,
    positions: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The position of its key's event.
    Accepted(u64),
    /// The conflict named.
    Refused(u64),
}

#[derive(Debug)]
struct Attempt {
    key: Key,
    query: Query,
    after: Option<u64>,
    start: u64,
    end: u64,
    outcome: Outcome,
}

/// Everything recorded during the run.
#[derive(Default)]
struct Shared {
    clock: AtomicU64,
    stop: AtomicBool,
    /// The seat the invariant threads fill now.
    seat: AtomicU64,
    written: Mutex<BTreeMap<u64, Written>>,
    reads: Mutex<Vec<Read>>,
    attempts: Mutex<Vec<Attempt>>,
    /// Room streams written, with their room event's position, for the
    /// junk thread to delete or retire.
    rooms_written: Mutex<VecDeque<(String, u64)>>,
    /// Stream → its rule and the stamp taken before the rule was set.
    rules: Mutex<HashMap<String, (Rule, u64)>>,
    /// Position → stamp taken after it was seen erased.
    seen_erased: Mutex<HashMap<u64, u64>>,
    /// Compactions: stamps before and after, and the report.
    compactions: Mutex<Vec<(u64, u64, CompactionReport)>>,
    rewriting_compactions: AtomicU64,
    retries: Mutex<Vec<Retry>>,
}

type Appends = Vec<(String, ExpectedVersion, Vec<EventData>)>;

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    fn record(&self, appends: &Appends, results: &[AppendResult]) {
        let mut written = self.written.lock().unwrap();
        for ((stream, _, events), result) in appends.iter().zip(results) {
            assert_eq!(result.stream, *stream);
            assert!(!result.duplicate);
            for (i, event) in events.iter().enumerate() {
                let old = written.insert(
                    result.first_position + i as u64,
                    Written {
                        stream: stream.clone(),
                        version: result.first_version + i as u64,
                        event_type: event.event_type.clone(),
                        tags: event.tags.clone(),
                    },
                );
                assert!(old.is_none(), "position written twice");
            }
        }
    }
}

/// One invariant thread: alternately takes a place on the current seat
/// and in a random room, each by read → count → conditional append.
fn enforce(store: &Store, shared: &Shared, t: usize) {
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut rooms_taken = 0u64;
    let mut taken: Vec<(Appends, AppendCondition, Vec<AppendResult>)> = Vec::new();
    while !shared.stop.load(SeqCst) {
        let seat = shared.seat.load(SeqCst);
        let mut appends = vec![(
            format!("seat-{t}"),
            ExpectedVersion::Any,
            vec![EventData::new("Booked", "{}")
                .with_tags([format!("seat:{seat}"), format!("by:{t}")])],
        )];
        if rng.below(2) == 0 {
            // A stream under a max-count while it is appended to.
            appends.push((
                format!("audit-{t}"),
                ExpectedVersion::Any,
                vec![EventData::new("Audited", vec![b'a'; 600])],
            ));
        }
        if take(store, shared, &mut rng, Key::Seat(seat), &appends).is_none() {
            // Full: on to the next seat (whoever gets there first).
            let _ = shared.seat.compare_exchange(seat, seat + 1, SeqCst, SeqCst);
        }
        let room = Key::Room(rng.below(ROOMS));
        let stream = format!("room-{t}-{rooms_taken}");
        let appends = vec![(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![
                EventData::new("Entered", "{}").with_tags([room.tag(), format!("by:{t}")]),
                EventData::new("Note", "{}"),
            ],
        )];
        if let Some((condition, results)) = take(store, shared, &mut rng, room, &appends) {
            rooms_taken += 1;
            shared
                .rooms_written
                .lock()
                .unwrap()
                .push_back((stream, results[0].first_position));
            taken.push((appends, condition, results));
        }
        // A retry of an earlier room append (same event ids), perhaps
        // deleted and erased since: recognised, the original result.
        if !taken.is_empty() && rng.below(4) == 0 {
            let (appends, condition, results) = &taken[rng.below(taken.len() as u64) as usize];
            let start = shared.tick();
            let again = store
                .append_with_condition(appends.clone(), condition.clone())
                .unwrap()
                .unwrap();
            let retried = Retry {
                position: results[0].first_position,
                start,
            };
            let want: Vec<_> = results
                .iter()
                .map(|r| AppendResult {
                    duplicate: true,
                    ..r.clone()
                })
                .collect();
            assert_eq!(again, want, "{retried:?}");
            shared.retries.lock().unwrap().push(retried);
        }
    }
}

/// A retry of a stored room append, and the stamp taken before it.
#[derive(Debug)]
struct Retry {
    position: u64,
    start: u64,
}

/// Reads `key`'s events; if fewer than K, appends `appends` (whose first
/// event is the key's) on condition that nothing matching came after the
/// read (or after an older position), again after each failed condition.
/// Returns the condition that was met and the append's results, or
/// `None` if full (or stopped).
fn take(
    store: &Store,
    shared: &Shared,
    rng: &mut Rng,
    key: Key,
    appends: &Appends,
) -> Option<(AppendCondition, Vec<AppendResult>)> {
    while !shared.stop.load(SeqCst) {
        let query = key.query(rng.below(3));
        let start = shared.tick();
        let read = store.read_query(&query, 0, usize::MAX).unwrap();
        let end = shared.tick();
        let positions: Vec<u64> = read.events.iter().map(|e| e.position).collect();
        for e in &read.events {
            assert!(
                matches(&query, &e.event_type, &e.tags),
                "{e:?} for {query:?}"
            );
        }
        let count = positions.len();
        shared.reads.lock().unwrap().push(Read {
            key,
            query: query.clone(),
            start,
            end,
            up_to: read.read_up_to,
            positions: positions.clone(),
        });
        if count >= K {
            return None;
        }
        // Mostly what the read covered; sometimes older (stricter): up to
        // a few thousand positions back (over events erased since, among
        // the writer's recent events and before them), or just before the
        // first match read (which then fails unless that match was erased
        // since).
        let after = match rng.below(8) {
            0 => read.read_up_to.and_then(|r| r.checked_sub(rng.below(4096))),
            1 => match positions.first() {
                Some(&p) => p.checked_sub(1),
                None => read.read_up_to,
            },
            _ => read.read_up_to,
        };
        let condition = AppendCondition::new(query.clone()).after(after);
        let start = shared.tick();
        let outcome = store
            .append_with_condition(appends.clone(), condition.clone())
            .unwrap();
        let end = shared.tick();
        let (outcome, results) = match outcome {
            Ok(results) => {
                shared.record(appends, &results);
                (Outcome::Accepted(results[0].first_position), results)
            }
            Err(AppendRejected::Condition(ConditionFailed { position })) => {
                (Outcome::Refused(position), Vec::new())
            }
            Err(other) => panic!("{key:?}: not a failed condition: {other}"),
        };
        shared.attempts.lock().unwrap().push(Attempt {
            key,
            query,
            after,
            start,
            end,
            outcome,
        });
        if let Outcome::Accepted(_) = outcome {
            return Some((condition, results));
        }
    }
    None
}

/// Sets a rule on `stream` (last version `last`), recording it with the
/// stamp taken before.
fn set_rule(store: &Store, shared: &Shared, stream: &str, rule: Rule) {
    let stamp = shared.tick();
    match rule {
        Rule::HardDelete => {
            store
                .delete_stream(stream, ExpectedVersion::Any)
                .unwrap()
                .unwrap();
        }
        Rule::SoftDelete => {
            store
                .soft_delete_stream(stream, ExpectedVersion::Any)
                .unwrap()
                .unwrap();
        }
        Rule::TruncateBefore(v) => {
            store.set_truncate_before(stream, v).unwrap();
        }
        Rule::MaxCount(keep) => {
            store.set_max_count(stream, keep).unwrap();
        }
        Rule::MaxAge => {
            store.set_max_age(stream, Duration::from_secs(1)).unwrap();
        }
    }
    let old = shared
        .rules
        .lock()
        .unwrap()
        .insert(stream.to_owned(), (rule, stamp));
    assert!(old.is_none());
}

/// A rule for a stream of `len` events that removes its first event (and
/// perhaps more).
fn rule(rng: &mut Rng, len: u64) -> Rule {
    match rng.below(5) {
        0 => Rule::HardDelete,
        1 => Rule::SoftDelete,
        2 => Rule::TruncateBefore(1 + rng.below(len)),
        3 => Rule::MaxCount(1 + rng.below(len - 1)),
        _ => Rule::MaxAge,
    }
}

/// Notes the room events under a rule that are now erased (a stamp taken
/// after seeing it).
fn see_erased(store: &Store, shared: &Shared, pending: &mut Vec<u64>) {
    pending.retain(|&p| {
        let first = store.read_all(p, 1).unwrap();
        if first.first().map(|e| e.position) == Some(p) {
            return true;
        }
        let stamp = shared.tick();
        shared.seen_erased.lock().unwrap().insert(p, stamp);
        false
    });
}

/// The junk thread: throwaway streams, rules on them and on room streams,
/// and compactions, until stopped.
fn churn(store: &Store, shared: &Shared) {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut junk: VecDeque<String> = VecDeque::new();
    let mut pending = Vec::new();
    let junk_len = 4u64;
    let mut n = 0u64;
    while !shared.stop.load(SeqCst) {
        let stream = format!("junk-{n}");
        let events = (0..junk_len)
            .map(|i| {
                EventData::new("Junk", vec![b'j'; 900 + (n * 31 + i * 7) as usize % 600])
                    .with_tags([format!("junk:{}", n % 5)])
            })
            .collect();
        let appends = vec![(stream.clone(), ExpectedVersion::NoStream, events)];
        let results = store.append_many(appends.clone()).unwrap().unwrap();
        shared.record(&appends, &results);
        junk.push_back(stream);
        n += 1;
        if junk.len() > 3 {
            let stream = junk.pop_front().unwrap();
            set_rule(store, shared, &stream, rule(&mut rng, junk_len));
        }
        let rooms: Vec<(String, u64)> = shared.rooms_written.lock().unwrap().drain(..).collect();
        for (stream, position) in rooms {
            set_rule(store, shared, &stream, rule(&mut rng, 2));
            pending.push(position);
        }
        if n.is_multiple_of(3) {
            compact(store, shared);
            see_erased(store, shared, &mut pending);
        }
    }
    compact(store, shared);
    see_erased(store, shared, &mut pending);
}

fn compact(store: &Store, shared: &Shared) {
    let start = shared.tick();
    let report = store.compact(&CompactionOptions::default()).unwrap();
    let end = shared.tick();
    if report.segments_rewritten > 0 {
        shared.rewriting_compactions.fetch_add(1, SeqCst);
    }
    shared
        .compactions
        .lock()
        .unwrap()
        .push((start, end, report));
}

/// How much the compactions met the conditional appends.
#[derive(Debug)]
struct Race {
    /// Compactions that rewrote segments while an append was decided.
    overlapping: usize,
    /// Appends decided while such a compaction ran.
    met: usize,
    /// Merged segment files written.
    merged: u64,
    /// Events removed.
    removed: u64,
}

impl Race {
    fn of(shared: &Shared) -> Race {
        let compactions = shared.compactions.lock().unwrap();
        let attempts = shared.attempts.lock().unwrap();
        let rewriting: Vec<_> = compactions
            .iter()
            .filter(|c| c.2.segments_rewritten > 0)
            .collect();
        let during = |a: &Attempt, c: &(u64, u64, CompactionReport)| a.start < c.1 && c.0 < a.end;
        let race = Race {
            overlapping: rewriting
                .iter()
                .filter(|c| attempts.iter().any(|a| during(a, c)))
                .count(),
            met: attempts
                .iter()
                .filter(|a| rewriting.iter().any(|c| during(a, c)))
                .count(),
            merged: compactions.iter().map(|c| c.2.segments_merged).sum(),
            removed: compactions.iter().map(|c| c.2.removed.total()).sum(),
        };
        eprintln!(
            "{} compactions, {} rewriting, {race:?}; {} conditional appends, {} reads, seat {}",
            compactions.len(),
            rewriting.len(),
            attempts.len(),
            shared.reads.lock().unwrap().len(),
            shared.seat.load(SeqCst),
        );
        race
    }
}

/// In `Fsync`, where group commits hold several requests (a condition
/// counts the events accepted before it in its group).
#[test]
fn conditional_appends_race_compaction_deletes_and_retention_fsync() {
    let stats = race(Durability::Fsync);
    assert!(
        stats.requests > stats.groups + 100,
        "groups held several requests: {stats:?}"
    );
}

/// In `Buffered`, where appends come faster between compactions.
#[test]
fn conditional_appends_race_compaction_deletes_and_retention_buffered() {
    race(Durability::Buffered);
}

/// Runs the race in `durability`, checks it (also after a reopen) and
/// returns the first open's write statistics.
fn race(durability: Durability) -> WriteStats {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(durability)).unwrap();
    let shared = Arc::new(Shared::default());
    for t in 0..THREADS {
        let stream = format!("audit-{t}");
        let appends = vec![(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![EventData::new("Audited", "{}")],
        )];
        let results = store.append_many(appends.clone()).unwrap().unwrap();
        shared.record(&appends, &results);
        set_rule(&store, &shared, &stream, Rule::MaxCount(5));
    }
    let barrier = Arc::new(Barrier::new(THREADS + 2));
    // An actor that fails stops the race at once; the first failure is
    // what the test reports (not a join, nor the poisoned locks after it).
    let mut actors = Actors::new();
    let stopper = |shared: &Arc<Shared>| {
        let shared = Arc::clone(shared);
        move || shared.stop.store(true, SeqCst)
    };
    for t in 0..THREADS {
        let (store, shared, barrier) = (store.clone(), shared.clone(), barrier.clone());
        actors.spawn(format!("enforce-{t}"), stopper(&shared), move || {
            barrier.wait();
            enforce(&store, &shared, t);
        });
    }
    {
        let (store, shared, barrier) = (store.clone(), shared.clone(), barrier.clone());
        actors.spawn("churn", stopper(&shared), move || {
            barrier.wait();
            churn(&store, &shared);
        });
    }
    barrier.wait();
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let rewriting = shared.rewriting_compactions.load(SeqCst);
        let elapsed = started.elapsed();
        if (rewriting >= 30 && elapsed > Duration::from_secs(3))
            || elapsed > Duration::from_secs(8)
            || actors.failed()
        {
            break;
        }
    }
    shared.stop.store(true, SeqCst);
    actors.join();
    let race = Race::of(&shared);
    let live = check(&store, &shared);
    store.verify().unwrap();
    // The race was real: many compactions that rewrote segments ran while
    // conditional appends were being decided (their stamps interleave),
    // removing events and merging segments.
    assert!(race.overlapping >= 10, "{race:?}");
    assert!(race.met >= 100, "{race:?}");
    assert!(race.merged > 0 && race.removed > 0, "{race:?}");
    let stats = store.write_stats();
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options(durability)).unwrap();
    store.verify().unwrap();
    let again = check(&store, &shared);
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        live.keys().collect::<Vec<_>>(),
        "the live events after the reopen"
    );
    // After the reopen nothing is held by the writer: conditions go
    // through the index alone, over the gaps. Nothing new after a read:
    // accepted (if not full); after just before its first match: refused,
    // naming it.
    for x in 0..ROOMS {
        let query = Key::Room(x).query(x);
        let read = store.read_query(&query, 0, usize::MAX).unwrap();
        let event = || EventData::new("Entered", "{}").with_tag(Key::Room(x).tag());
        if let Some(first) = read.events.first() {
            let condition =
                AppendCondition::new(query.clone()).after(first.position.checked_sub(1));
            let outcome = store
                .append_with_condition(
                    vec![(format!("after-{x}"), ExpectedVersion::Any, vec![event()])],
                    condition,
                )
                .unwrap();
            assert_eq!(
                outcome,
                Err(ConditionFailed {
                    position: first.position
                }
                .into())
            );
        }
        if read.events.len() < K {
            let condition = AppendCondition::new(query).after(read.read_up_to);
            let outcome = store
                .append_with_condition(
                    vec![(format!("after-{x}"), ExpectedVersion::Any, vec![event()])],
                    condition,
                )
                .unwrap();
            assert!(outcome.is_ok(), "{outcome:?}");
        }
    }
    store.verify().unwrap();
    stats
}
