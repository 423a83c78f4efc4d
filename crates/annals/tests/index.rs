//! The persisted index: runs written and merged in the background, a clean
//! open replays nothing, a crash replays only the tail after the checkpoint,
//! damaged or misplaced run files are never trusted.
//!
//! Crash images are taken by a storage wrapper at every step of every index
//! file write, rename and removal (so "killed while an index file is being
//! written or merged" is covered at each step, not by chance).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::storage::{CrashMode, FsStorage, Mapping, MemStorage, Storage, StorageFile};
use annals::{Direction, EventData, ExpectedVersion, Options, Store};
use parking_lot::Mutex;

fn event(stream: &str, version: u64) -> EventData {
    EventData::new("E", format!("{stream}@{version}"))
}

/// What the test expects: stream → positions in version order.
type Model = HashMap<String, Vec<u64>>;

fn check_against(store: &Store, model: &Model) {
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
fn fill(store: &Store, model: &mut Model, count: u64, streams: u64, salt: u64) {
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

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn runs_are_merged_a_clean_open_replays_nothing_and_reads_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(50);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 5_000, 37, 0);
        check_against(&store, &model);
        // 100 buffers were frozen; merging keeps at most 3 runs per size
        // class (4 classes for 100 buffers).
        store.maintain_index().unwrap();
        let stats = store.stats();
        assert!(
            stats.index_checkpoint >= 4_950 && stats.index_runs <= 12,
            "{stats:?}"
        );
        let stats = store.stats();
        assert_eq!(stats.streams, 37);
        assert_eq!(stats.index_error, None);
        let report = store.verify().unwrap();
        assert_eq!(report.index_entries, 5_000);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().replayed,
        0,
        "a clean close persists everything"
    );
    assert_eq!(store.index_report().checkpoint, 5_000);
    assert!(store.index_report().discarded.is_empty());
    check_against(&store, &model);
    // Append more: streams continue across runs and the memtable.
    fill(&store, &mut model, 321, 41, 3);
    check_against(&store, &model);
    store.verify().unwrap();
    assert_eq!(store.stats().streams, 41);
}

#[test]
fn after_a_crash_only_the_tail_after_the_checkpoint_is_replayed() {
    let mem = MemStorage::new();
    let options = Options::default().index_buffer_events(64);
    let mut model = Model::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    fill(&store, &mut model, 1_000, 13, 1);
    wait_for("runs", || store.stats().index_checkpoint >= 960);
    let image = mem.crash_image(7, CrashMode::TearUnsynced);
    drop(store);
    let store = Store::open_storage(Arc::new(image), options).unwrap();
    let report = store.index_report().clone();
    assert!(report.checkpoint >= 960, "{report:?}");
    assert_eq!(report.replayed, 1_000 - report.checkpoint);
    check_against(&store, &model);
    store.verify().unwrap();
}

/// A storage that takes a crash image of its memory backend before every
/// index file operation, recording how many appends were acknowledged then.
#[derive(Debug)]
struct Imaging {
    inner: MemStorage,
    acked: Arc<Mutex<usize>>,
    images: Arc<Mutex<Vec<Image>>>,
}

/// A crash image, the appends acknowledged when it was taken, and the step.
type Image = (MemStorage, usize, &'static str);

impl Imaging {
    fn image(&self, step: &'static str) {
        let acked = *self.acked.lock();
        let mut images = self.images.lock();
        let mode = match images.len() % 3 {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TearUnsynced,
            _ => CrashMode::GarbleUnsynced,
        };
        let image = self.inner.crash_image(images.len() as u64, mode);
        images.push((image, acked, step));
    }
}

fn is_index(name: &str) -> bool {
    name.starts_with("index-")
}

impl Storage for Imaging {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let file = self.inner.create(name)?;
        if !is_index(name) {
            return Ok(file);
        }
        self.image("created");
        Ok(Arc::new(ImagingFile {
            inner: file,
            storage: Imaging {
                inner: self.inner.handle(),
                acked: Arc::clone(&self.acked),
                images: Arc::clone(&self.images),
            },
        }))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        if is_index(name) {
            self.image("before remove");
        }
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let index = is_index(from);
        if index {
            self.image("before rename");
        }
        self.inner.rename(from, to)?;
        if index {
            self.image("after rename");
        }
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn try_lock(&self) -> io::Result<()> {
        self.inner.try_lock()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[derive(Debug)]
struct ImagingFile {
    inner: Arc<dyn StorageFile>,
    storage: Imaging,
}

impl StorageFile for ImagingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)?;
        self.storage.image("written");
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()?;
        self.storage.image("synced");
        Ok(())
    }
    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ImagingFile {
            inner: self.inner.reopen()?,
            storage: Imaging {
                inner: self.storage.inner.handle(),
                acked: Arc::clone(&self.storage.acked),
                images: Arc::clone(&self.storage.images),
            },
        }))
    }
}

#[test]
fn a_crash_at_any_step_of_writing_or_merging_index_files_loses_nothing() {
    let mem = MemStorage::new();
    let acked = Arc::new(Mutex::new(0usize));
    let images = Arc::new(Mutex::new(Vec::new()));
    let storage = Imaging {
        inner: mem.handle(),
        acked: Arc::clone(&acked),
        images: Arc::clone(&images),
    };
    // Small segments: every image copies every file.
    let options = || {
        Options::default()
            .index_buffer_events(16)
            .segment_bytes(32 << 10)
    };
    let store = Store::open_storage(Arc::new(storage), options()).unwrap();
    let mut log: Vec<(String, u64, u64)> = Vec::new();
    let mut model = Model::new();
    for i in 0..400u64 {
        let stream = format!("c-{}", i % 9);
        let positions = model.entry(stream.clone()).or_default();
        let version = positions.len() as u64;
        let written = store
            .append(&stream, ExpectedVersion::Any, vec![event(&stream, version)])
            .unwrap()
            .unwrap();
        positions.push(written.first_position);
        log.push((stream, version, written.first_position));
        *acked.lock() = log.len();
    }
    drop(store);
    let images = std::mem::take(&mut *images.lock());
    let steps: std::collections::BTreeSet<&str> = images.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(
        steps.len(),
        6,
        "every step of an index write was imaged: {steps:?}"
    );
    assert!(
        images.iter().any(|(_, _, s)| *s == "before remove"),
        "merges ran (their inputs were removed)"
    );
    let mut replayed_less_than_all = 0;
    for (k, (image, acked, step)) in images.into_iter().enumerate() {
        let store = Store::open_storage(Arc::new(image), options())
            .unwrap_or_else(|e| panic!("image {k} ({step}): {e}"));
        let end = store.position_end();
        assert!(
            end >= acked as u64,
            "image {k} ({step}): lost acknowledged appends"
        );
        let report = store.index_report().clone();
        assert_eq!(report.replayed, end - report.checkpoint, "image {k}");
        replayed_less_than_all += usize::from(report.checkpoint > 0);
        for (stream, version, position) in log.iter().take(acked) {
            let got = store
                .read_stream(stream, *version, Direction::Forward, 1)
                .unwrap();
            let first = got
                .first()
                .unwrap_or_else(|| panic!("image {k} ({step}): {stream}@{version} missing"));
            assert_eq!(first.position, *position, "image {k} ({step})");
        }
        store
            .verify()
            .unwrap_or_else(|e| panic!("image {k} ({step}): {e}"));
    }
    assert!(
        replayed_less_than_all > 0,
        "some images had a persisted checkpoint"
    );
}

fn run_files(dir: &std::path::Path) -> Vec<(String, u64)> {
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
fn events_of(name: &str) -> u64 {
    let (start, end) = annals_index::parse_run_file_name(name).unwrap();
    end - start
}

fn flip(path: &std::path::Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_index_page_is_detected_and_the_run_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 3_000, 50, 2);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = dir.path().join(&runs[0].0);
    // A byte in the stream table (page 1 on): found when first read.
    flip(&run, 4096 + 1000);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().checkpoint,
        3_000,
        "the header is intact"
    );
    check_against(&store, &model);
    store.verify().unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.verify().unwrap();
    drop(store);

    // A byte of the header page: discarded at open, the log replayed.
    flip(&run, 40);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().discarded, vec![runs[0].0.clone()]);
    assert_eq!(store.index_report().replayed, 3_000);
    check_against(&store, &model);
    store.verify().unwrap();
}

#[test]
fn verify_reports_a_damaged_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    {
        let store = Store::open(dir.path()).unwrap();
        fill(&store, &mut model, 500, 5, 0);
    }
    let runs = run_files(dir.path());
    let last_page = runs[0].1 - 4096;
    flip(&dir.path().join(&runs[0].0), last_page + 7);
    let store = Store::open(dir.path()).unwrap();
    let error = store.verify().unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(error.to_string().contains(&runs[0].0), "{error}");
}

#[test]
fn runs_ahead_of_the_log_or_off_the_chain_are_discarded() {
    let long = tempfile::tempdir().unwrap();
    let short = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100);
    let mut long_model = Model::new();
    {
        let store = Store::open_with(long.path(), options()).unwrap();
        fill(&store, &mut long_model, 200, 3, 0);
    }
    let mut model = Model::new();
    {
        let store = Store::open_with(short.path(), options()).unwrap();
        fill(&store, &mut model, 100, 3, 1);
    }
    // The long store's second run covers 100..200: past the short log's end.
    let ahead = run_files(long.path())
        .into_iter()
        .find(|(n, _)| n.contains("-0000000000000064-"))
        .map(|(n, _)| n)
        .unwrap();
    std::fs::copy(long.path().join(&ahead), short.path().join(&ahead)).unwrap();
    // And a run that leaves a gap after the chain.
    let gap = "index-00000000000000c8-00000000000000c9.run";
    std::fs::write(short.path().join(gap), b"not a run").unwrap();
    let store = Store::open_with(short.path(), options()).unwrap();
    let mut discarded = store.index_report().discarded.clone();
    discarded.sort();
    assert_eq!(discarded, vec![ahead, gap.to_string()]);
    assert_eq!(store.index_report().checkpoint, 100);
    check_against(&store, &model);
    store.verify().unwrap();
}

#[test]
fn retries_are_recognised_from_index_files_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(32);
    let events: Vec<EventData> = (0..3).map(|v| event("r", v)).collect();
    let first = {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let first = store
            .append("r", ExpectedVersion::NoStream, events.clone())
            .unwrap()
            .unwrap();
        let mut model = Model::new();
        fill(&store, &mut model, 500, 11, 0);
        first
    };
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    let retried = store
        .append("r", ExpectedVersion::NoStream, events.clone())
        .unwrap()
        .unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.first_position, first.first_position);
    let partial = store.append("r", ExpectedVersion::Any, events[1..].to_vec());
    assert!(
        matches!(partial, Err(annals::Error::InvalidInput(_))),
        "{partial:?}"
    );
    assert_eq!(
        store.stream_version("r").unwrap(),
        annals::CurrentVersion::Version(2)
    );
}

#[test]
fn an_index_on_a_real_directory_survives_deletes_and_many_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(7);
    let mut model = Model::new();
    let doomed = "doomed";
    for round in 0..12u64 {
        let store =
            Store::open_storage(Arc::new(FsStorage::open(dir.path()).unwrap()), options()).unwrap();
        assert_eq!(store.index_report().replayed, 0, "round {round}");
        fill(&store, &mut model, 23, 5, round);
        if round < 6 {
            store
                .append(doomed, ExpectedVersion::Any, vec![EventData::new("D", "")])
                .unwrap()
                .unwrap();
        }
        if round == 6 {
            store
                .delete_stream(doomed, ExpectedVersion::Exact(5))
                .unwrap()
                .unwrap();
        }
        check_against(&store, &model);
        if round >= 6 {
            assert!(matches!(
                store.read_stream(doomed, 0, Direction::Forward, 1),
                Err(annals::Error::StreamDeleted(_))
            ));
            assert_eq!(
                store.stream_version(doomed).unwrap(),
                annals::CurrentVersion::Deleted { last: 6 }
            );
        }
        store.verify().unwrap();
    }
}

/// Regression: the background worker recorded the persist result and then
/// the merge result, so a merge with nothing to do cleared a failed
/// persist's error while the buffers were still only in memory.
#[test]
fn a_failing_index_write_stays_reported_until_a_write_succeeds() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    let mem = MemStorage::new();
    let faulty = Arc::new(FaultyStorage::new(Arc::new(mem.handle())));
    let options = Options::default().index_buffer_events(10);
    let store = Store::open_storage(Arc::clone(&faulty) as Arc<dyn Storage>, options).unwrap();
    // The first rename is an index run's (no segment rolls, no clean close yet).
    faulty.inject(Fault {
        op: FaultOp::Rename,
        nth: 0,
        persistent: true,
        kind: FaultKind::Eio,
    });
    let mut model = Model::new();
    fill(&store, &mut model, 25, 3, 0);
    wait_for("a failed index write", || {
        faulty.calls(FaultOp::Rename) >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let stats = store.stats();
    assert!(stats.index_error.is_some(), "{stats:?}");
    assert_eq!(stats.index_buffered, 25, "entries kept in memory");
    check_against(&store, &model);

    faulty.heal();
    fill(&store, &mut model, 10, 3, 1);
    wait_for("the retried index write", || {
        let stats = store.stats();
        stats.index_error.is_none() && stats.index_checkpoint >= 30
    });
    check_against(&store, &model);
    store.verify().unwrap();
}

/// Merges run on their own thread and report their own failures: a failed
/// merge stays reported (a successful run write does not clear it) until a
/// merge succeeds; the store stays correct throughout and after reopening.
#[test]
fn a_failing_merge_is_reported_until_a_merge_succeeds() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    let mem = MemStorage::new();
    let faulty = Arc::new(FaultyStorage::new(Arc::new(mem.handle())));
    let options = || Options::default().index_buffer_events(10);
    let store = Store::open_storage(Arc::clone(&faulty) as Arc<dyn Storage>, options()).unwrap();
    let mut model = Model::new();
    fill(&store, &mut model, 30, 3, 0);
    wait_for("three runs", || {
        let stats = store.stats();
        stats.index_checkpoint == 30 && stats.index_runs == 3
    });
    // Writing a run first removes a stale temp file, and so does a merge:
    // the next run write passes, the merge it triggers fails.
    let removes = faulty.calls(FaultOp::Remove);
    faulty.inject(Fault {
        op: FaultOp::Remove,
        nth: 1,
        persistent: false,
        kind: FaultKind::Eio,
    });
    fill(&store, &mut model, 10, 3, 1);
    wait_for("the failed merge", || {
        faulty.calls(FaultOp::Remove) >= removes + 2
    });
    std::thread::sleep(Duration::from_millis(200));
    let stats = store.stats();
    assert_eq!(stats.index_checkpoint, 40, "{stats:?}");
    assert_eq!(stats.index_runs, 4, "{stats:?}");
    let error = stats.index_error.expect("the merge failure is reported");
    assert!(error.contains("remove"), "{error}");
    check_against(&store, &model);

    // The next run write kicks the merger again; this merge succeeds.
    fill(&store, &mut model, 10, 3, 2);
    wait_for("the retried merge", || {
        let stats = store.stats();
        stats.index_error.is_none() && stats.index_checkpoint == 50 && stats.index_runs < 5
    });
    check_against(&store, &model);
    store.verify().unwrap();
    drop(store);
    drop(faulty);
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    check_against(&store, &model);
    store.verify().unwrap();
}

/// Long reads gather candidates from runs, frozen buffers and the active
/// buffer in batches and read the log in between: every window of a long,
/// scattered stream reads exactly its events, across batch boundaries.
#[test]
fn long_reads_of_a_scattered_stream_return_exactly_the_window_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .index_buffer_events(64)
        .segment_bytes(64 << 10);
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut model = Model::new();
    fill(&store, &mut model, 2_100, 3, 0);
    store.maintain_index().unwrap();
    let stream = "s-0";
    let positions = &model[stream];
    let n = positions.len() as u64;
    assert_eq!(n, 700);
    assert!(store.stats().index_runs > 1 && store.stats().segments > 1);
    for from in [0, 1, 255, 256, 257, 400, 699, 700, u64::MAX] {
        for max in [0, 1, 255, 256, 257, 513, 699, 700, usize::MAX] {
            let forward: Vec<u64> = (from.min(n)..n).take(max).collect();
            let backward: Vec<u64> = if n == 0 {
                vec![]
            } else {
                (0..=from.min(n - 1)).rev().take(max).collect()
            };
            for (direction, versions) in [
                (Direction::Forward, forward),
                (Direction::Backward, backward),
            ] {
                let events = store.read_stream(stream, from, direction, max).unwrap();
                let got: Vec<(u64, u64)> = events.iter().map(|e| (e.version, e.position)).collect();
                let want: Vec<(u64, u64)> = versions
                    .iter()
                    .map(|v| (*v, positions[*v as usize]))
                    .collect();
                assert_eq!(got, want, "from {from} max {max} {direction:?}");
            }
        }
    }
}

/// A read that meets a damaged index page halfway rebuilds the run and
/// resumes after the last event it delivered: each event visited once.
#[test]
fn a_read_repairing_a_run_halfway_visits_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(1_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 2_000, 1, 0);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 2, "{runs:?}");
    // The newer run holds versions 1,000..2,000 of the one stream; its
    // second page of stream entries (versions 1,146..) is damaged, so a
    // forward read delivers the older run's events and more before it
    // finds the damage.
    let newer = dir.path().join(&runs[1].0);
    flip(&newer, 2 * 4096 + 500);
    let damaged = std::fs::read(&newer).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut seen = Vec::new();
    let count = store
        .read_stream_with("s-0", 0, Direction::Forward, usize::MAX, |event| {
            seen.push((event.version, event.position));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let want: Vec<(u64, u64)> = model["s-0"]
        .iter()
        .enumerate()
        .map(|(v, p)| (v as u64, *p))
        .collect();
    assert_eq!(count, want.len());
    assert_eq!(seen, want);
    assert_ne!(
        std::fs::read(&newer).unwrap(),
        damaged,
        "the read rebuilt the damaged run"
    );
    store.verify().unwrap();
}

/// `verify` compares each run with the entries the log implies (by an
/// order-independent digest, in constant memory): a run that is internally
/// valid — pages verify, sorted, each position once — but maps two events
/// to each other's positions is reported.
#[test]
fn verify_finds_a_valid_run_whose_entries_differ_from_the_log() {
    let (dir, store) = with_rewritten_run(|streams| {
        // Two entries of different streams swap positions: still sorted by
        // (hash, version), still each position once.
        let other = streams
            .iter()
            .position(|e| e.hash != streams[0].hash)
            .unwrap();
        let (a, b) = (streams[0].position, streams[other].position);
        streams[0].position = b;
        streams[other].position = a;
    });
    let error = store.verify().unwrap_err();
    assert!(error.to_string().contains("differ from the log"), "{error}");
    drop(dir);
}

/// A run entry whose offset points at another event (a valid place, the
/// wrong event): the read fails on the event's checksum, bound to the
/// position the entry names, instead of returning the other event; and
/// `verify` reports the run.
#[test]
fn a_run_offset_pointing_at_another_event_is_an_error_not_that_event() {
    let mut victim = None;
    let (dir, store) = with_rewritten_run(|streams| {
        let other = streams
            .iter()
            .position(|e| e.hash != streams[0].hash)
            .unwrap();
        streams[0].offset = streams[other].offset;
        victim = Some(streams[0].hash);
    });
    let victim = victim.unwrap();
    let stream = (0..5)
        .map(|k| format!("s-{k}"))
        .find(|s| annals_index::StreamHasher::hash(&annals_index::Fnv1aMix, s) == victim)
        .unwrap();
    let error = store
        .read_stream(&stream, 0, Direction::Forward, usize::MAX)
        .unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    let error = store.verify().unwrap_err();
    assert!(error.to_string().contains("differ from the log"), "{error}");
    drop(dir);
}

/// A store of 200 events over 5 streams whose one run was rewritten —
/// valid pages, sorted — with its stream entries changed by `change`.
fn with_rewritten_run(
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

/// Rebuilding a damaged run holds at most four buffers' worth of entries:
/// a large run is rebuilt as sorted pieces merged four at a time. The
/// result replaces the damaged file under the same name, and no piece is
/// left behind.
#[test]
fn a_large_damaged_run_is_rebuilt_in_pieces_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(10);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 2_500, 5, 0);
        store.maintain_index().unwrap();
    }
    let before = run_files(dir.path());
    let (name, bytes) = before
        .iter()
        .max_by_key(|(name, _)| events_of(name))
        .unwrap()
        .clone();
    let events = events_of(&name);
    assert!(events > 4 * 4 * 10, "{events} events: two levels of pieces");
    // A byte of the first page of stream entries, which every read of a
    // stream whose entries live there reaches.
    flip(&dir.path().join(&name), 4096 + 100);
    let damaged = std::fs::read(dir.path().join(&name)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    check_against(&store, &model);
    eprintln!("{:?}", run_files(dir.path()));
    let rebuilt = std::fs::read(dir.path().join(&name)).unwrap();
    assert_ne!(rebuilt, damaged, "the reads rebuilt the damaged run");
    assert_eq!(rebuilt.len() as u64, bytes);
    store.verify().unwrap();
    assert_eq!(
        run_files(dir.path())
            .iter()
            .map(|r| &r.0)
            .collect::<Vec<_>>(),
        before.iter().map(|r| &r.0).collect::<Vec<_>>(),
        "same run files, no pieces left"
    );
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.index_report().replayed, 0);
    assert!(store.index_report().discarded.is_empty());
    check_against(&store, &model);
    store.verify().unwrap();
}

/// Appends of `per_append` events each, `count` of them, to `streams`
/// streams in turn (a stream's appends are scattered over time).
fn fill_appends(store: &Store, model: &mut Model, count: u64, per_append: u64, streams: u64) {
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
fn stream_entries_on_disk(dir: &std::path::Path) -> (u64, u64) {
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
fn check_reads_from_every_version(store: &Store, model: &Model) {
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

/// A run keeps one stream entry per stream per append, however the run
/// came to be: written from the writer's memtables, from memtables a
/// replay filled (which freeze only where an append begins), merged, or
/// rebuilt from the log in pieces (which end where an append begins). Each
/// way must give the entries `verify` derives from the log: a run cut
/// inside an append is refused when merged.
#[test]
fn runs_hold_one_stream_entry_per_append_however_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    // A buffer of 10 events fills in the middle of a 3-event append.
    let options = || Options::default().index_buffer_events(10);
    let mut model = Model::new();
    let appends = 400;
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill_appends(&store, &mut model, appends, 3, 5);
        store.maintain_index().unwrap();
        store.verify().unwrap();
        check_reads_from_every_version(&store, &model);
    }
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));

    // Replay: no run files, the whole log replayed into buffers of 10.
    for (name, _) in run_files(dir.path()) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(store.index_report().replayed, 3 * appends);
        store.maintain_index().unwrap();
        store.verify().unwrap();
        check_reads_from_every_version(&store, &model);
    }
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));

    // Rebuild: the largest run damaged, rebuilt by the reads in pieces of
    // four buffers (40 events: inside an append).
    let (name, _) = run_files(dir.path())
        .into_iter()
        .max_by_key(|(name, _)| events_of(name))
        .unwrap();
    assert!(events_of(&name) > 40, "{name}: rebuilt in several pieces");
    flip(&dir.path().join(&name), 4096 + 40);
    let damaged = std::fs::read(dir.path().join(&name)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_reads_from_every_version(&store, &model);
    store.verify().unwrap();
    // (The rebuilt run may have been merged since: its name can be gone.)
    let rebuilt = run_files(dir.path())
        .iter()
        .all(|(n, _)| std::fs::read(dir.path().join(n)).unwrap() != damaged);
    assert!(rebuilt, "the reads rebuilt the damaged run");
    drop(store);
    assert_eq!(stream_entries_on_disk(dir.path()), (appends, 3 * appends));
}

/// An append of more events to one stream than one stream entry holds
/// takes several entries, cut at the same events whether the run comes
/// from the writer's memtable, a replay or `verify`'s reading of the log;
/// every version reads back across the cuts.
#[test]
fn an_append_wider_than_a_stream_entry_is_indexed_in_several() {
    let dir = tempfile::tempdir().unwrap();
    let max = u64::from(annals_index::MAX_ENTRY_EVENTS);
    let n = max + 100;
    let events = |from: u64, count: u64| -> Vec<EventData> {
        (from..from + count)
            .map(|v| EventData::new("Tiny", v.to_le_bytes().to_vec()))
            .collect()
    };
    for replay in [false, true] {
        let path = dir.path().join(format!("replay-{replay}"));
        {
            let store = Store::open(&path).unwrap();
            store
                .append("wide", ExpectedVersion::NoStream, events(0, n))
                .unwrap()
                .unwrap();
            store
                .append("wide", ExpectedVersion::Exact(n - 1), events(n, 3))
                .unwrap()
                .unwrap();
            store.verify().unwrap();
        }
        if replay {
            for (name, _) in run_files(&path) {
                std::fs::remove_file(path.join(name)).unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.index_report().replayed,
            if replay { n + 3 } else { 0 }
        );
        store.maintain_index().unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        store.verify().unwrap();
        for from in [0, max - 2, max - 1, max, n - 1, n] {
            let forward = store
                .read_stream("wide", from, Direction::Forward, 4)
                .unwrap();
            let versions: Vec<u64> = forward.iter().map(|e| e.version).collect();
            assert_eq!(versions, (from..(from + 4).min(n + 3)).collect::<Vec<_>>());
            for e in &forward {
                assert_eq!(&e.data[..], &e.version.to_le_bytes()[..]);
            }
            let backward = store
                .read_stream("wide", from, Direction::Backward, 3)
                .unwrap();
            let versions: Vec<u64> = backward.iter().map(|e| e.version).collect();
            let want: Vec<u64> = (from.saturating_sub(2)..=from).rev().collect();
            assert_eq!(versions, want);
        }
        drop(store);
        // The append's entries: one full, one of 100; then the next append.
        assert_eq!(stream_entries_on_disk(&path), (3, n + 3), "replay {replay}");
    }
}

/// A run written by another format version (here: format 2, one entry per
/// event) is discarded at open and its events replayed from the log; the
/// store reads and verifies as before, and writes format 3 runs again.
#[test]
fn a_run_of_an_older_format_is_discarded_and_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill_appends(&store, &mut model, 100, 3, 4);
    }
    let runs = run_files(dir.path());
    assert!(!runs.is_empty());
    let (name, _) = &runs[0];
    // Rewrite the header's version field, with a valid page checksum.
    let path = dir.path().join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let salt = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    let crc = annals_index::page_crc(salt, 0, &bytes[..4092]);
    bytes[4092..4096].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.index_report();
    assert!(report.discarded.contains(name), "{report:?}");
    assert_eq!(
        report.checkpoint, 0,
        "the chain starts at the discarded run"
    );
    assert_eq!(report.replayed, 300);
    check_reads_from_every_version(&store, &model);
    store.verify().unwrap();
    drop(store);
    assert_eq!(stream_entries_on_disk(dir.path()), (100, 300));
}
