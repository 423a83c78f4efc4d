//! Property: a random sequence of appends (every expectation kind), multi-
//! stream appends, deletes, retries, stream and global reads, reopens and
//! crashes (images that drop, tear or garble unsynced bytes) never diverges
//! from a plain in-memory model. Method: proptest over the memory backend
//! with small segments, checked after every operation and in full at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use annals::storage::{CrashMode, MemStorage};
use annals::{CurrentVersion, Direction, Error, EventData, ExpectedVersion, Options, Store};
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
    ]
}

/// The model: every stream's event data, deletes, and the global feed.
#[derive(Default)]
struct Model {
    streams: BTreeMap<String, (Vec<String>, bool)>,
    all: Vec<(String, u64, String)>,
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
                        let versions: Vec<u64> = if backward {
                            if events.is_empty() {
                                vec![]
                            } else {
                                (0..=u64::from(from).min(events.len() as u64 - 1))
                                    .rev()
                                    .take(usize::from(max))
                                    .collect()
                            }
                        } else {
                            (u64::from(from)..events.len() as u64)
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
                    .skip(usize::from(from))
                    .take(usize::from(max))
                    .collect();
                assert_eq!(got.len(), want.len());
                for (g, (stream, version, data)) in got.iter().zip(want) {
                    assert_eq!((&g.stream, g.version), (stream, *version));
                    if !g.is_tombstone() {
                        assert_eq!(&g.data[..], data.as_bytes());
                    }
                }
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
