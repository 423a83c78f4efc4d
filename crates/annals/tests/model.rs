//! Property: a random sequence of appends (every expectation kind), multi-
//! stream appends, deletes (hard and soft), max-count rules, compactions,
//! retries, stream and global reads, reopens and crashes (images that drop,
//! tear or garble unsynced bytes) never diverges from a plain in-memory
//! model. A compaction may remove only events the model says are hidden
//! (the model then adopts which it removed); it never changes a survivor. Method: proptest over the memory backend
//! with small segments, checked after every operation and in full at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    CompactionOptions, CurrentVersion, Direction, Error, EventData, ExpectedVersion, Options, Store,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Exp {
    Any,
    NoStream,
    Exists,
    Current,
    Off(i8),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: u8,
        exp: Exp,
        n: u8,
    },
    AppendMany {
        a: u8,
        b: u8,
        exp_a: Exp,
        exp_b: Exp,
    },
    Delete {
        stream: u8,
        exp: Exp,
    },
    Retry,
    ReadStream {
        stream: u8,
        from: u8,
        backward: bool,
        max: u8,
    },
    ReadAll {
        from: u16,
        max: u8,
    },
    Reopen,
    Crash {
        seed: u64,
        mode: u8,
    },
    SoftDelete {
        stream: u8,
    },
    MaxCount {
        stream: u8,
        n: u8,
    },
    Compact,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        Just(Exp::Any),
        Just(Exp::NoStream),
        Just(Exp::Exists),
        Just(Exp::Current),
        Just(Exp::Current),
        (-2i8..3).prop_map(Exp::Off)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..5, exp(), 1u8..4).prop_map(|(stream, exp, n)| Op::Append { stream, exp, n }),
        2 => (0u8..5, 0u8..5, exp(), exp()).prop_map(|(a, b, exp_a, exp_b)| Op::AppendMany { a, b, exp_a, exp_b }),
        1 => (0u8..5, exp()).prop_map(|(stream, exp)| Op::Delete { stream, exp }),
        1 => Just(Op::Retry),
        2 => (0u8..5, 0u8..12, any::<bool>(), 0u8..6).prop_map(|(stream, from, backward, max)| Op::ReadStream { stream, from, backward, max }),
        1 => (0u16..80, 0u8..20).prop_map(|(from, max)| Op::ReadAll { from, max }),
        1 => Just(Op::Reopen),
        1 => (any::<u64>(), 0u8..3).prop_map(|(seed, mode)| Op::Crash { seed, mode }),
        1 => (0u8..5).prop_map(|stream| Op::SoftDelete { stream }),
        1 => (0u8..5, 1u8..4).prop_map(|(stream, n)| Op::MaxCount { stream, n }),
        1 => Just(Op::Compact),
    ]
}

/// The model: every stream's event data, deletes, and the global feed;
/// each stream's rules (truncate-before, max-count) and the positions a
/// compaction removed.
#[derive(Default)]
struct Model {
    streams: BTreeMap<String, (Vec<String>, bool)>,
    all: Vec<(String, u64, String)>,
    rules: BTreeMap<String, (u64, Option<u64>)>,
    gone: BTreeSet<u64>,
}

impl Model {
    fn current(&self, stream: &str) -> CurrentVersion {
        match self.streams.get(stream) {
            None => CurrentVersion::NoStream,
            Some((events, _)) if events.is_empty() => CurrentVersion::NoStream,
            Some((events, true)) => CurrentVersion::Deleted {
                last: events.len() as u64 - 1,
            },
            Some((events, false)) => CurrentVersion::Version(events.len() as u64 - 1),
        }
    }

    fn expected(&self, stream: &str, exp: &Exp) -> ExpectedVersion {
        let last = match self.current(stream) {
            CurrentVersion::Version(v) | CurrentVersion::Deleted { last: v } => Some(v),
            CurrentVersion::NoStream => None,
        };
        match exp {
            Exp::Any => ExpectedVersion::Any,
            Exp::NoStream => ExpectedVersion::NoStream,
            Exp::Exists => ExpectedVersion::StreamExists,
            Exp::Current => ExpectedVersion::Exact(last.unwrap_or(0)),
            Exp::Off(d) => {
                ExpectedVersion::Exact(last.unwrap_or(0).saturating_add_signed(i64::from(*d)))
            }
        }
    }

    /// The model's own reading of the semantics (not the library's).
    fn holds(&self, stream: &str, expected: ExpectedVersion) -> bool {
        match (self.current(stream), expected) {
            (CurrentVersion::Deleted { .. }, _) => false,
            (_, ExpectedVersion::Any) => true,
            (CurrentVersion::NoStream, ExpectedVersion::NoStream) => true,
            (CurrentVersion::Version(_), ExpectedVersion::StreamExists) => true,
            (CurrentVersion::Version(v), ExpectedVersion::Exact(e)) => v == e,
            _ => false,
        }
    }

    /// The first version stream reads show.
    fn first_visible(&self, stream: &str) -> u64 {
        let len = self.streams.get(stream).map_or(0, |(e, _)| e.len() as u64);
        let (truncate, max_count) = self.rules.get(stream).copied().unwrap_or((0, None));
        truncate.max(max_count.map_or(0, |m| len.saturating_sub(m)))
    }

    /// Whether a compaction may remove the event at `position`.
    fn hidden(&self, position: usize) -> bool {
        let (stream, version, data) = &self.all[position];
        if stream.starts_with('$') {
            return false;
        }
        match self.streams.get(stream) {
            // Tombstones stay; everything else of a deleted stream goes.
            Some((events, true)) => !(data.is_empty() && *version + 1 == events.len() as u64),
            _ => *version < self.first_visible(stream),
        }
    }

    fn write(&mut self, stream: &str, data: &[String], tombstone: bool) {
        let entry = self.streams.entry(stream.to_owned()).or_default();
        for d in data {
            self.all
                .push((stream.to_owned(), entry.0.len() as u64, d.clone()));
            entry.0.push(d.clone());
        }
        entry.1 |= tombstone;
    }
}

fn name(i: u8) -> String {
    format!("agg-{i}")
}

fn options() -> Options {
    Options::default().segment_bytes(8 << 10)
}

fn run(ops: Vec<Op>) {
    let mut mem = MemStorage::new();
    let mut store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
    let mut model = Model::default();
    let mut counter = 0u64;
    let mut last_ok: Option<(String, ExpectedVersion, Vec<EventData>, u64)> = None;
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append { stream, exp, n } => {
                let stream = name(stream);
                let expected = model.expected(&stream, &exp);
                let data: Vec<String> = (0..n)
                    .map(|_| {
                        counter += 1;
                        format!("{stream}#{counter}")
                    })
                    .collect();
                let events: Vec<EventData> = data
                    .iter()
                    .map(|d| EventData::new("E", d.clone()))
                    .collect();
                let holds = model.holds(&stream, expected);
                match s.append(&stream, expected, events.clone()).unwrap() {
                    Ok(result) => {
                        assert!(
                            holds,
                            "accepted {expected} against {}",
                            model.current(&stream)
                        );
                        assert_eq!(result.first_position, model.all.len() as u64);
                        model.write(&stream, &data, false);
                        last_ok = Some((stream, expected, events, result.first_position));
                    }
                    Err(conflict) => {
                        assert!(
                            !holds,
                            "rejected {expected} against {}",
                            model.current(&stream)
                        );
                        assert_eq!(conflict.actual, model.current(&stream));
                    }
                }
            }
            Op::AppendMany { a, b, exp_a, exp_b } => {
                let (sa, sb) = (name(a), name(b));
                let ea = model.expected(&sa, &exp_a);
                // The second part sees the first when both name one stream.
                let holds_a = model.holds(&sa, ea);
                counter += 2;
                let (da, db) = (format!("{sa}#{}", counter - 1), format!("{sb}#{counter}"));
                let mut after = Model {
                    streams: model.streams.clone(),
                    all: model.all.clone(),
                    ..Model::default()
                };
                after.write(&sa, std::slice::from_ref(&da), false);
                let eb = after.expected(&sb, &exp_b);
                let holds_b = after.holds(&sb, eb);
                let request = vec![
                    (sa.clone(), ea, vec![EventData::new("E", da.clone())]),
                    (sb.clone(), eb, vec![EventData::new("E", db.clone())]),
                ];
                match s.append_many(request).unwrap() {
                    Ok(_) => {
                        assert!(holds_a && holds_b);
                        model.write(&sa, &[da], false);
                        model.write(&sb, &[db], false);
                    }
                    Err(rejected) => {
                        assert!(!(holds_a && holds_b));
                        assert_eq!(rejected.index, if holds_a { 1 } else { 0 });
                    }
                }
            }
            Op::Delete { stream, exp } => {
                let stream = name(stream);
                let expected = model.expected(&stream, &exp);
                let holds = model.holds(&stream, expected);
                match s.delete_stream(&stream, expected).unwrap() {
                    Ok(_) => {
                        assert!(holds);
                        model.write(&stream, &["".to_owned()], true);
                    }
                    Err(conflict) => {
                        assert!(!holds);
                        assert_eq!(conflict.actual, model.current(&stream));
                    }
                }
            }
            Op::Retry => {
                if let Some((stream, expected, events, position)) = &last_ok {
                    let result = s
                        .append(stream, *expected, events.clone())
                        .unwrap()
                        .unwrap();
                    assert!(result.duplicate);
                    assert_eq!(result.first_position, *position);
                }
            }
            Op::ReadStream {
                stream,
                from,
                backward,
                max,
            } => {
                let stream = name(stream);
                let direction = if backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let got = s.read_stream(&stream, u64::from(from), direction, usize::from(max));
                match model.streams.get(&stream) {
                    Some((_, true)) => assert!(matches!(got, Err(Error::StreamDeleted(_)))),
                    entry => {
                        let events = entry.map(|(e, _)| e.clone()).unwrap_or_default();
                        let first = model.first_visible(&stream);
                        let versions: Vec<u64> = if backward {
                            (0..=u64::from(from).min((events.len() as u64).saturating_sub(1)))
                                .rev()
                                .filter(|v| *v >= first && (*v as usize) < events.len())
                                .take(usize::from(max))
                                .collect()
                        } else {
                            (u64::from(from).max(first)..events.len() as u64)
                                .take(usize::from(max))
                                .collect()
                        };
                        let got = got.unwrap();
                        let got_pairs: Vec<(u64, String)> = got
                            .iter()
                            .map(|e| (e.version, String::from_utf8(e.data.to_vec()).unwrap()))
                            .collect();
                        let want: Vec<(u64, String)> = versions
                            .iter()
                            .map(|v| (*v, events[*v as usize].clone()))
                            .collect();
                        assert_eq!(got_pairs, want);
                    }
                }
            }
            Op::ReadAll { from, max } => {
                let got = s.read_all(u64::from(from), usize::from(max)).unwrap();
                let want: Vec<_> = model
                    .all
                    .iter()
                    .enumerate()
                    .skip(usize::from(from))
                    .filter(|(p, _)| !model.gone.contains(&(*p as u64)))
                    .take(usize::from(max))
                    .collect();
                assert_eq!(got.len(), want.len());
                for (g, (position, (stream, version, data))) in got.iter().zip(want) {
                    assert_eq!((&g.stream, g.version), (stream, *version));
                    assert_eq!(g.position, position as u64);
                    if !g.is_tombstone() {
                        assert_eq!(&g.data[..], data.as_bytes());
                    }
                }
            }
            Op::SoftDelete { stream } => {
                let stream = name(stream);
                let got = s.soft_delete_stream(&stream, ExpectedVersion::Any);
                match model.current(&stream) {
                    CurrentVersion::NoStream => {
                        assert!(matches!(got, Err(Error::StreamNotFound(_))), "{got:?}")
                    }
                    CurrentVersion::Deleted { .. } => {
                        assert!(matches!(got, Err(Error::StreamDeleted(_))), "{got:?}")
                    }
                    CurrentVersion::Version(v) => {
                        let deleted = got.unwrap().unwrap();
                        assert_eq!(deleted.truncate_before, v + 1);
                        assert_eq!(deleted.written.first_position, model.all.len() as u64);
                        let meta = format!("$meta-{stream}");
                        model.write(&meta, &[(v + 1).to_string()], false);
                        model.rules.entry(stream).or_default().0 = v + 1;
                    }
                }
            }
            Op::MaxCount { stream, n } => {
                let stream = name(stream);
                let got = s.set_max_count(&stream, u64::from(n));
                match model.current(&stream) {
                    CurrentVersion::NoStream => {
                        assert!(matches!(got, Err(Error::StreamNotFound(_))), "{got:?}")
                    }
                    CurrentVersion::Deleted { .. } => {
                        assert!(matches!(got, Err(Error::StreamDeleted(_))), "{got:?}")
                    }
                    CurrentVersion::Version(_) => {
                        let written = got.unwrap();
                        assert_eq!(written.first_position, model.all.len() as u64);
                        let meta = format!("$meta-{stream}");
                        model.write(&meta, &[n.to_string()], false);
                        model.rules.entry(stream).or_default().1 = Some(u64::from(n));
                    }
                }
            }
            Op::Compact => {
                let report = s.compact(&CompactionOptions::default()).unwrap();
                let now: BTreeMap<u64, (String, u64, Vec<u8>)> = s
                    .read_all(0, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.position, (e.stream, e.version, e.data.to_vec())))
                    .collect();
                let mut removed = 0;
                for (position, (stream, version, data)) in model.all.iter().enumerate() {
                    let p = position as u64;
                    match now.get(&p) {
                        Some(event) => {
                            assert!(!model.gone.contains(&p), "{p} came back");
                            assert_eq!((&event.0, event.1), (stream, *version));
                            if !data.is_empty() {
                                assert_eq!(&event.2[..], data.as_bytes());
                            }
                        }
                        None => {
                            assert!(model.hidden(position), "removed visible {stream}@{version}");
                            removed += u64::from(model.gone.insert(p));
                        }
                    }
                }
                assert_eq!(removed, report.removed.total());
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
            }
            Op::Crash { seed, mode } => {
                let mode = [
                    CrashMode::DropUnsynced,
                    CrashMode::TearUnsynced,
                    CrashMode::GarbleUnsynced,
                ][usize::from(mode)];
                let image = mem.crash_image(seed, mode);
                drop(store.take());
                mem = image;
                store = Some(Store::open_storage(Arc::new(mem.handle()), options()).unwrap());
            }
        }
    }
    // In full: the feed, every stream, and the index against a rescan.
    let s = store.as_ref().unwrap();
    assert_eq!(s.position_end(), model.all.len() as u64);
    for (stream, _) in model.streams.iter() {
        assert_eq!(s.stream_version(stream).unwrap(), model.current(stream));
    }
    s.verify().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_store_never_diverges_from_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
