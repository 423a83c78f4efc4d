//! Helpers shared by the index and subscription integration tests: a model
//! of the streams, filling a store, checking reads against the model, and
//! finding, measuring and damaging run files.

#![allow(dead_code)]

pub mod actors;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::storage::{FsStorage, Storage};
use annals::{
    Direction, EventData, ExpectedVersion, Options, Query, RecordedEvent, Store, SubscriptionItem,
    SubscriptionOptions,
};

/// The model of a query's match (issue 22): an item matches an event whose
/// type is one of its types (any, if none) and whose tags include all of
/// its tags; the query, if any of its items does.
pub fn query_matches(query: &Query, event_type: &str, tags: &[String]) -> bool {
    query.items.iter().any(|item| {
        (item.types.is_empty() || item.types.iter().any(|t| t == event_type))
            && item.tags.iter().all(|t| tags.contains(t))
    })
}

/// The position of the first event of `log` (the whole feed, from 0) in
/// `from..below` that `query` matches ([`query_matches`]).
pub fn first_match_in(log: &[RecordedEvent], query: &Query, from: u64, below: u64) -> Option<u64> {
    log.iter()
        .take(below as usize)
        .skip(from as usize)
        .find(|e| query_matches(query, &e.event_type, &e.tags))
        .map(|e| e.position)
}

pub fn event(stream: &str, version: u64) -> EventData {
    EventData::new("E", format!("{stream}@{version}"))
}

/// What the test expects: stream → positions in version order.
pub type Model = HashMap<String, Vec<u64>>;

pub fn check_against(store: &Store, model: &Model) {
    for (stream, positions) in model {
        let events = store
            .read_stream(stream, 0, Direction::Forward, usize::MAX)
            .unwrap();
        let got: Vec<u64> = events.iter().map(|e| e.position).collect();
        assert_eq!(&got, positions, "stream {stream}");
        for (v, e) in events.iter().enumerate() {
            assert_eq!(e.version, v as u64);
            assert_eq!(&e.data[..], format!("{stream}@{v}").as_bytes());
        }
        let back = store
            .read_stream(stream, u64::MAX, Direction::Backward, 3)
            .unwrap();
        let want: Vec<u64> = positions.iter().rev().take(3).copied().collect();
        assert_eq!(back.iter().map(|e| e.position).collect::<Vec<_>>(), want);
        assert_eq!(
            store.stream_version(stream).unwrap(),
            annals::CurrentVersion::Version(positions.len() as u64 - 1)
        );
    }
}

/// Appends `count` single-event appends spread over `streams` streams
/// (stream k gets every `streams`-th event: scattered over time).
pub fn fill(store: &Store, model: &mut Model, count: u64, streams: u64, salt: u64) {
    for i in 0..count {
        let stream = format!("s-{}", (i * 7 + salt) % streams);
        let positions = model.entry(stream.clone()).or_default();
        let expected = match positions.len() {
            0 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n as u64 - 1),
        };
        let written = store
            .append(
                &stream,
                expected,
                vec![event(&stream, positions.len() as u64)],
            )
            .unwrap()
            .unwrap();
        positions.push(written.first_position);
    }
}

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn run_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut runs: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(n, _)| n.ends_with(".run"))
        .collect();
    runs.sort();
    runs
}

/// The number of events a run file covers, from its name.
pub fn events_of(name: &str) -> u64 {
    let (start, end) = annals_index::parse_run_file_name(name).unwrap();
    end - start
}

pub fn flip(path: &std::path::Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// A store of 200 events over 5 streams whose one run was rewritten —
/// valid pages, sorted — with its stream entries changed by `change`.
pub fn with_rewritten_run(
    change: impl FnOnce(&mut Vec<annals_index::StreamEntry>),
) -> (tempfile::TempDir, Store) {
    use annals_index::{write_run, Run, StreamEntry};
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 200, 5, 0);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let run = Run::open(&storage, &runs[0].0).unwrap();
    let mut streams: Vec<StreamEntry> = (0..run.stream_entries())
        .map(|i| run.stream_entry(i).unwrap())
        .collect();
    let ids: Vec<_> = (0..run.events())
        .map(|i| run.id_entry(i).unwrap())
        .collect();
    change(&mut streams);
    let (start, end, new_streams) = (run.start(), run.end(), run.new_streams());
    drop(run);
    std::fs::remove_file(dir.path().join(&runs[0].0)).unwrap();
    write_run(
        &storage,
        start,
        end,
        new_streams,
        || streams.iter().copied().map(Ok),
        || ids.iter().copied().map(Ok),
    )
    .unwrap();
    drop(storage);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().replayed,
        0,
        "the run is trusted at open"
    );
    (dir, store)
}

/// Appends of `per_append` events each, `count` of them, to `streams`
/// streams in turn (a stream's appends are scattered over time).
pub fn fill_appends(store: &Store, model: &mut Model, count: u64, per_append: u64, streams: u64) {
    for i in 0..count {
        let stream = format!("m-{}", (i * 3) % streams);
        let positions = model.entry(stream.clone()).or_default();
        let n = positions.len() as u64;
        let expected = n
            .checked_sub(1)
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (n..n + per_append).map(|v| event(&stream, v)).collect();
        let written = store.append(&stream, expected, events).unwrap().unwrap();
        positions.extend(written.first_position..=written.last_position);
    }
}

/// The stream entries of every run file in `dir`, and the events they cover.
pub fn stream_entries_on_disk(dir: &std::path::Path) -> (u64, u64) {
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir).unwrap());
    run_files(dir)
        .iter()
        .fold((0, 0), |(entries, events), (name, _)| {
            let run = annals_index::Run::open(&storage, name).unwrap();
            (entries + run.stream_entries(), events + run.events())
        })
}

/// Every version of every stream, read forward and backward from it
/// (from the middle of an append, too), matches the model.
pub fn check_reads_from_every_version(store: &Store, model: &Model) {
    for (stream, positions) in model {
        for from in 0..positions.len() {
            let forward = store
                .read_stream(stream, from as u64, Direction::Forward, 4)
                .unwrap();
            let want: Vec<u64> = positions.iter().skip(from).take(4).copied().collect();
            let got: Vec<u64> = forward.iter().map(|e| e.position).collect();
            assert_eq!(got, want, "{stream} forward from {from}");
            let backward = store
                .read_stream(stream, from as u64, Direction::Backward, 4)
                .unwrap();
            let want: Vec<u64> = positions[..=from].iter().rev().take(4).copied().collect();
            let got: Vec<u64> = backward.iter().map(|e| e.position).collect();
            assert_eq!(got, want, "{stream} backward from {from}");
        }
    }
}

/// Everything up to `CaughtUp` (history only), then the `CaughtUp` position.
pub fn history(
    store: &Store,
    options: SubscriptionOptions,
) -> (Vec<SubscriptionItem>, Option<u64>) {
    let mut subscription = store.subscribe(options);
    let mut items = Vec::new();
    loop {
        let item = subscription.try_next().expect("history is ready").unwrap();
        if let SubscriptionItem::CaughtUp { position } = item {
            return (items, position);
        }
        items.push(item);
    }
}

/// The positions of the events among `items`.
pub fn events(items: &[SubscriptionItem]) -> Vec<u64> {
    items
        .iter()
        .filter_map(|i| match i {
            SubscriptionItem::Event(e) => Some(e.position),
            _ => None,
        })
        .collect()
}

/// A small deterministic generator (xorshift, no dependency), seeded per
/// test or per thread.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next value below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
