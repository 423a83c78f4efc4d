//! The end-of-race check of `dcb_compaction_race.rs`: everything the final
//! log lets one verify about the calls the race recorded.

use super::*;

/// Everything checkable from the final log (see the file's comment).
/// Returns the live events.
pub(super) fn check(store: &Store, shared: &Shared) -> BTreeMap<u64, RecordedEvent> {
    let live: BTreeMap<u64, RecordedEvent> = store
        .read_all(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e))
        .collect();
    let written = shared.written.lock().unwrap();
    let rules = shared.rules.lock().unwrap();
    let seen_erased = shared.seen_erased.lock().unwrap();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for w in written.values() {
        let v = last.entry(&w.stream).or_default();
        *v = (*v).max(w.version);
    }
    // Only events under a rule are gone; the rest are as written.
    for (p, w) in written.iter() {
        match live.get(p) {
            Some(e) => assert_eq!(
                (&e.stream, e.version, &e.event_type, &e.tags),
                (&w.stream, w.version, &w.event_type, &w.tags),
                "at {p}"
            ),
            None => {
                let rule = rules.get(&w.stream).map(|r| r.0);
                assert!(
                    rule.is_some_and(|r| r.removes(w.version, last[w.stream.as_str()])),
                    "{w:?} at {p} is gone under {rule:?}"
                );
            }
        }
    }
    for e in live.values().filter(|e| !e.tags.is_empty()) {
        assert!(written.contains_key(&e.position), "unknown {e:?}");
    }
    for p in seen_erased.keys() {
        assert!(!live.contains_key(p), "{p} seen erased, live again");
    }
    // Live while a call that ended at `end` decided.
    let surely_live = |p: u64, end: u64| {
        live.contains_key(&p)
            || written
                .get(&p)
                .and_then(|w| rules.get(&w.stream))
                .is_some_and(|r| r.1 > end)
    };
    // Gone before a call that started at `start`.
    let surely_gone = |p: u64, start: u64| seen_erased.get(&p).is_some_and(|&seen| seen < start);
    // The positions written with each key's tag (every event its
    // queries match has it), in order.
    let mut by_tag: HashMap<&str, Vec<u64>> = HashMap::new();
    for (&p, w) in written.iter() {
        for tag in &w.tags {
            by_tag.entry(tag).or_default().push(p);
        }
    }
    let matching = |key: Key, query: &Query, from: u64, to: u64| {
        let positions = by_tag.get(key.tag().as_str()).map_or(&[][..], |v| &v[..]);
        let lo = positions.partition_point(|&p| p < from);
        let hi = positions.partition_point(|&p| p < to);
        positions[lo..hi.max(lo)]
            .iter()
            .copied()
            .filter(|p| {
                let w = &written[p];
                matches(query, &w.event_type, &w.tags)
            })
            .collect::<Vec<u64>>()
    };
    for read in shared.reads.lock().unwrap().iter() {
        assert!(read.positions.windows(2).all(|w| w[0] < w[1]), "{read:?}");
        let covered = read.up_to.map_or(0, |u| u + 1);
        for &p in &read.positions {
            assert!(p < covered, "{read:?}");
            let w = &written[&p];
            assert!(matches(&read.query, &w.event_type, &w.tags), "{read:?}");
            assert!(
                !surely_gone(p, read.start),
                "{p} was erased before {read:?}"
            );
        }
        for p in matching(read.key, &read.query, 0, covered) {
            if surely_live(p, read.end) {
                assert!(read.positions.contains(&p), "{p} missed by {read:?}");
            }
        }
    }
    let attempts = shared.attempts.lock().unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for a in attempts.iter() {
        let from = a.after.map_or(0, |after| after + 1);
        match a.outcome {
            Outcome::Accepted(own) => {
                accepted += 1;
                let w = &written[&own];
                assert!(w.tags.contains(&a.key.tag()), "{a:?}");
                let before = matching(a.key, &a.query, 0, own);
                for &p in &before {
                    if p >= from {
                        assert!(!surely_live(p, a.end), "{a:?} accepted over {p}");
                    }
                }
                let surely = before.iter().filter(|&&p| surely_live(p, a.end)).count();
                assert!(surely < K, "{a:?} accepted over {surely} live");
            }
            Outcome::Refused(conflict) => {
                refused += 1;
                assert!(conflict >= from, "{a:?}");
                let w = written.get(&conflict);
                assert!(
                    w.is_some_and(|w| matches(&a.query, &w.event_type, &w.tags)),
                    "{a:?} named {w:?}"
                );
                assert!(
                    !surely_gone(conflict, a.start),
                    "{a:?} named an erased event"
                );
                for p in matching(a.key, &a.query, from, conflict) {
                    assert!(!surely_live(p, a.end), "{a:?} passed over {p}");
                }
            }
        }
    }
    // How often the interesting cases came up.
    let room_accepted = attempts
        .iter()
        .filter(|a| matches!((a.key, a.outcome), (Key::Room(_), Outcome::Accepted(_))))
        .count();
    let named_erased = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused(c) if !live.contains_key(&c)))
        .count();
    let reads_erased = shared
        .reads
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.positions.iter().any(|p| !live.contains_key(p)))
        .count();
    let retries_erased = shared
        .retries
        .lock()
        .unwrap()
        .iter()
        .filter(|r| surely_gone(r.position, r.start))
        .count();
    eprintln!(
        "{retries_erased} retries of appends erased before; {accepted} accepted ({room_accepted} in rooms), {refused} refused ({named_erased} naming \
         an event erased since); {reads_erased} reads returned an event erased since; \
         {} room events seen erased",
        seen_erased.len()
    );
    assert!(
        accepted > 50 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
    assert!(
        room_accepted > 3 * K,
        "rooms were taken again after erasures: {room_accepted}"
    );
    // The invariants on the final log.
    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for e in live.values() {
        for tag in &e.tags {
            let key = match tag.split_once(':') {
                Some(("seat", x)) => Key::Seat(x.parse().unwrap()),
                Some(("room", x)) => Key::Room(x.parse().unwrap()),
                _ => continue,
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    for (key, count) in &counts {
        assert!(*count <= K, "{count} live events of {key:?}");
    }
    // Seats are never deleted: never more than K written.
    let mut ever: HashMap<String, usize> = HashMap::new();
    for w in written.values() {
        for tag in w.tags.iter().filter(|t| t.starts_with("seat:")) {
            *ever.entry(tag.clone()).or_default() += 1;
        }
    }
    assert!(ever.values().all(|&n| n <= K), "{ever:?}");
    live
}
