//! The standard workloads, each run on Annals, on SQLite and (where it
//! applies) on the plain-file ceiling, one after another in one process.
//! `cargo bench --bench write_path` and `annals bench` both run these.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{Direction, EventData, EventId, ExpectedVersion, Options, Store};

use crate::workloads::{run_threads, Measured};
use crate::{event_id, payload, SqliteStore};

/// Bytes of data per event in every workload.
pub const DATA_BYTES: usize = 128;

/// Sizes and durations of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Seconds per timed write measurement.
    pub seconds: f64,
    /// Streams of the read workloads' store (100 events each).
    pub read_streams: u64,
    /// Run the write workloads.
    pub writes: bool,
    /// Run the read workloads.
    pub reads: bool,
    /// Rounds of each write workload: every system runs once per round,
    /// one after another, and each figure is the median over the rounds
    /// (this disk's speed drifts ~2x over minutes: one measurement of each
    /// system, minutes apart, can put a ratio anywhere).
    pub rounds: usize,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            seconds: 3.0,
            read_streams: 10_000,
            writes: true,
            reads: true,
            rounds: 1,
        }
    }
}

/// One figure of one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The headline value, in the comparison's unit.
    pub value: f64,
    /// Latency percentiles in µs, where measured.
    pub p50_us: Option<u64>,
    /// 99th percentile latency.
    pub p99_us: Option<u64>,
    /// 99.9th percentile latency.
    pub p999_us: Option<u64>,
    /// Device bytes written per event, where measured.
    pub device_bytes_per_event: Option<f64>,
}

impl Figure {
    fn value(value: f64) -> Self {
        Figure {
            value,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            device_bytes_per_event: None,
        }
    }

    fn rate(m: &Measured, events_per_op: Option<f64>) -> Self {
        let events = events_per_op.map_or(m.events as f64, |per| m.ops as f64 * per);
        Figure {
            value: m.ops_per_sec(),
            p50_us: Some(m.p50_us),
            p99_us: Some(m.p99_us),
            p999_us: Some(m.p999_us),
            device_bytes_per_event: Some(m.device_bytes as f64 / events.max(1.0)),
        }
    }
}

/// One workload on every system.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What was run.
    pub workload: String,
    /// Unit of `value`.
    pub unit: &'static str,
    /// Whether more is better (rates) or less (times).
    pub higher_is_better: bool,
    /// Annals.
    pub annals: Figure,
    /// The SQLite peer.
    pub sqlite: Option<Figure>,
    /// The plain-file ceiling.
    pub ceiling: Option<Figure>,
    /// Rounds measured: each figure is the median over them.
    pub rounds: usize,
    /// With several rounds, the medians of each round's ratios (vs SQLite,
    /// vs the ceiling): each pairs measurements taken seconds apart, where
    /// a ratio of the medians pairs figures from different rounds.
    pub paired: Option<[Option<f64>; 2]>,
}

impl Comparison {
    /// How many times better Annals is than `other` (> 1: Annals ahead),
    /// from the figures.
    pub fn ratio(&self, other: Option<Figure>) -> Option<f64> {
        ratio_of(self.higher_is_better, self.annals, other?)
    }

    /// Annals vs SQLite: the median of the rounds' ratios, or (one round)
    /// the figures' ratio.
    pub fn vs_sqlite(&self) -> Option<f64> {
        match self.paired {
            Some([vs, _]) => vs,
            None => self.ratio(self.sqlite),
        }
    }

    /// Annals vs the ceiling, as [`Comparison::vs_sqlite`].
    pub fn vs_ceiling(&self) -> Option<f64> {
        match self.paired {
            Some([_, vs]) => vs,
            None => self.ratio(self.ceiling),
        }
    }

    /// A write workload measured in rounds: `runs` holds each round's
    /// figures, Annals' at `annals`, SQLite's at `sqlite`, the ceiling's at
    /// `ceiling`.
    fn from_rounds<const N: usize>(
        workload: String,
        runs: &[[Figure; N]],
        annals: usize,
        sqlite: usize,
        ceiling: usize,
    ) -> Self {
        // Rates: more is better.
        let higher_is_better = true;
        let figures = medians(runs);
        let at = |i: usize| figures.get(i).copied();
        let paired = |other: usize| {
            median(
                runs.iter()
                    .filter_map(|run| {
                        ratio_of(higher_is_better, *run.get(annals)?, *run.get(other)?)
                    })
                    .collect(),
            )
        };
        Comparison {
            workload,
            unit: "commits/s",
            higher_is_better,
            annals: at(annals).unwrap_or(Figure::value(0.0)),
            sqlite: at(sqlite),
            ceiling: at(ceiling),
            rounds: runs.len(),
            paired: (runs.len() > 1).then(|| [paired(sqlite), paired(ceiling)]),
        }
    }
}

/// How many times better `annals` is than `other`.
fn ratio_of(higher_is_better: bool, annals: Figure, other: Figure) -> Option<f64> {
    let (annals, other) = (annals.value, other.value);
    if annals <= 0.0 || other <= 0.0 {
        return None;
    }
    Some(if higher_is_better {
        annals / other
    } else {
        other / annals
    })
}

/// Runs the suite, calling `step` with a description before each workload.
pub fn run_suite(config: &SuiteConfig, step: &mut dyn FnMut(&str)) -> Vec<Comparison> {
    let mut out = Vec::new();
    let secs = Duration::from_secs_f64(config.seconds);
    if config.writes {
        let rounds = config.rounds.max(1);
        let mut step_round = |what: &str, round: usize| {
            if rounds == 1 {
                step(what);
            } else {
                step(&format!("{what} (round {}/{rounds})", round + 1));
            }
        };
        for threads in [1usize, 8, 64] {
            let runs = in_rounds(rounds, |round| {
                step_round(&format!("single-event appends, {threads} threads"), round);
                let a = annals_single(threads, secs);
                let p = plain_commits(threads, secs, frame_bytes(1, "writer-10", "Benchmarked"));
                let s = sqlite_single(threads, secs);
                [a, s, p].map(|m| Figure::rate(&m, None))
            });
            out.push(Comparison::from_rounds(
                format!("durable single-event appends, {threads} threads"),
                &runs,
                0,
                1,
                2,
            ));
        }
        let runs = in_rounds(rounds, |round| {
            step_round("command handling, 8 threads", round);
            let a = annals_commands(8, secs);
            let p = plain_commits(8, secs, frame_bytes(2, "agg-1-100", "Handled"));
            let s = sqlite_commands(8, secs);
            [a, s, p].map(|m| Figure::rate(&m, None))
        });
        out.push(Comparison::from_rounds(
            "commands: 8 threads, 1-3 events, exact expectation".into(),
            &runs,
            0,
            1,
            2,
        ));
        let runs = in_rounds(rounds, |round| {
            step_round("bulk appends, 100 x 128 B", round);
            let a = annals_bulk(secs, true);
            let p = plain_commits(1, secs, frame_bytes(100, "bulk-1000", "Bulk"));
            let s = sqlite_bulk(secs);
            step_round("bulk appends, zero-ahead off", round);
            let off = annals_bulk(secs, false);
            [a, s, p, off].map(|m| Figure::rate(&m, Some(100.0)))
        });
        for (annals, label) in [(0, ""), (3, " (zero-ahead off)")] {
            out.push(Comparison::from_rounds(
                format!("bulk: 1 writer, 100 x 128 B per append{label}"),
                &runs,
                annals,
                1,
                2,
            ));
        }
    }
    if config.reads {
        out.extend(read_workloads(config.read_streams, step));
    }
    out
}

/// Runs `measure` (one figure per system) `rounds` times.
fn in_rounds<const N: usize>(
    rounds: usize,
    measure: impl FnMut(usize) -> [Figure; N],
) -> Vec<[Figure; N]> {
    (0..rounds.max(1)).map(measure).collect()
}

/// Each system's median figure over the rounds, field by field.
fn medians<const N: usize>(runs: &[[Figure; N]]) -> [Figure; N] {
    std::array::from_fn(|i| {
        let of = |field: fn(&Figure) -> Option<f64>| {
            median(
                runs.iter()
                    .filter_map(|run| run.get(i).and_then(field))
                    .collect(),
            )
        };
        Figure {
            value: of(|f| Some(f.value)).unwrap_or(0.0),
            p50_us: of(|f| f.p50_us.map(|v| v as f64)).map(|v| v as u64),
            p99_us: of(|f| f.p99_us.map(|v| v as f64)).map(|v| v as u64),
            p999_us: of(|f| f.p999_us.map(|v| v as f64)).map(|v| v as u64),
            device_bytes_per_event: of(|f| f.device_bytes_per_event),
        }
    })
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

/// Encoded size of one Annals frame of `n` events like the workloads'.
pub fn frame_bytes(n: usize, stream: &str, event_type: &str) -> usize {
    let data = payload(0, DATA_BYTES);
    let records: Vec<annals_segment::Record<'_>> = (0..n)
        .map(|_| annals_segment::Record {
            stream,
            stream_version: 0,
            id: [0; 16],
            timestamp_us: 0,
            flags: 0,
            event_type,
            metadata: &[],
            data: &data,
        })
        .collect();
    let bytes = annals_segment::format::frame_bytes(&records).unwrap_or(0) as u64;
    annals_segment::format::align_up(bytes) as usize
}

/// Single-event durable appends, each thread to its own stream.
pub fn annals_single(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("a")).expect("open");
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, _| {
        let event = EventData::new("Benchmarked", data.clone());
        let written = store.append(&format!("writer-{t}"), ExpectedVersion::Any, vec![event]);
        assert!(matches!(written, Ok(Ok(_))));
        1
    })
}

/// The ceiling: each thread appends `bytes` to its own plain file with
/// `write` + `fdatasync` per commit.
pub fn plain_commits(threads: usize, secs: Duration, bytes: usize) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Arc<Vec<Mutex<std::fs::File>>> = Arc::new(
        (0..threads)
            .map(|t| {
                let path = dir.path().join(format!("plain-{t}"));
                Mutex::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("plain file"),
                )
            })
            .collect(),
    );
    let buf = vec![0xA5u8; bytes];
    run_threads(dir.path(), threads, secs, move |t, _| {
        let mut file = files[t].lock().expect("file lock");
        file.write_all(&buf).expect("write");
        file.sync_data().expect("fdatasync");
        1
    })
}

/// Single-event appends on SQLite, each thread its own connection and stream.
pub fn sqlite_single(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).expect("sqlite"));
    type Slot = (SqliteStore, Option<u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).expect("sqlite"), None)))
            .collect(),
    );
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let mut slot = conns[t].lock().expect("slot");
        let (store, version) = &mut *slot;
        let id = event_id(((t as u64) << 40) | i);
        let ok = store.append(
            &format!("writer-{t}"),
            *version,
            &[(id, "Benchmarked", &data)],
        );
        assert_eq!(ok.ok(), Some(true));
        *version = Some(version.map_or(0, |v| v + 1));
        1
    })
}

/// Command handling: each thread appends 1-3 events with an exact
/// expectation to random streams of its own, tracking their versions as an
/// application holding loaded aggregates would.
pub fn annals_commands(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("a")).expect("open");
    let versions: Arc<Vec<Mutex<HashMap<u64, u64>>>> =
        Arc::new((0..threads).map(|_| Mutex::new(HashMap::new())).collect());
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut versions = versions[t].lock().expect("versions");
        let expected = versions
            .get(&k)
            .map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(*v));
        let events = (0..n)
            .map(|_| EventData::new("Handled", data.clone()))
            .collect();
        let written = store.append(&format!("agg-{t}-{k}"), expected, events);
        let Ok(Ok(written)) = written else {
            panic!("append failed: {written:?}")
        };
        versions.insert(k, written.last_version);
        n
    })
}

/// Command handling on SQLite.
pub fn sqlite_commands(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).expect("sqlite"));
    type Slot = (SqliteStore, HashMap<u64, u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).expect("sqlite"), HashMap::new())))
            .collect(),
    );
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut slot = conns[t].lock().expect("slot");
        let (store, versions) = &mut *slot;
        let expected = versions.get(&k).copied();
        let ids: Vec<[u8; 16]> = (0..n)
            .map(|j| event_id(((t as u64) << 40) | (i << 2) | j))
            .collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Handled", &data[..])).collect();
        assert_eq!(
            store
                .append(&format!("agg-{t}-{k}"), expected, &events)
                .ok(),
            Some(true)
        );
        versions.insert(k, expected.map_or(n - 1, |v| v + n));
        n
    })
}

/// Bulk: one writer, 100 events × 128 B per append, exact expectations on
/// 10,000 streams round robin; `zero_ahead` as in [`Options::zero_ahead`]
/// (on is the default for a store on ext4 or XFS).
pub fn annals_bulk(secs: Duration, zero_ahead: bool) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default().zero_ahead(zero_ahead);
    let store = Store::open_with(dir.path().join("a"), options).expect("open");
    let versions = Mutex::new(vec![None::<u64>; 10_000]);
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs, move |_, i| {
        let s = (i % 10_000) as usize;
        let mut versions = versions.lock().expect("versions");
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (0..100)
            .map(|_| EventData::new("Bulk", data.clone()))
            .collect();
        let written = store.append(&format!("bulk-{s}"), expected, events);
        let Ok(Ok(written)) = written else {
            panic!("append failed: {written:?}")
        };
        versions[s] = Some(written.last_version);
        100
    })
}

/// Bulk on SQLite.
pub fn sqlite_bulk(secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("peer.sqlite")).expect("sqlite");
    let store = Mutex::new((store, vec![None::<u64>; 10_000]));
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs, move |_, i| {
        let s = (i % 10_000) as usize;
        let mut slot = store.lock().expect("slot");
        let (store, versions) = &mut *slot;
        let ids: Vec<[u8; 16]> = (0..100).map(|j| event_id((i << 8) | j)).collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Bulk", &data[..])).collect();
        assert_eq!(
            store
                .append(&format!("bulk-{s}"), versions[s], &events)
                .ok(),
            Some(true)
        );
        versions[s] = Some(versions[s].map_or(99, |v| v + 100));
        100
    })
}

/// Fills an Annals store and a SQLite database with `streams` × 100 events,
/// written round robin (each stream's events spread over the whole log).
pub fn build_read_stores(dir: &Path, streams: u64) -> (Store, SqliteStore) {
    let store = Store::open(dir.join("annals")).expect("open");
    let mut sqlite = SqliteStore::open(&dir.join("peer.sqlite")).expect("sqlite");
    let chunk = 1000u64;
    for round in 0..100u64 {
        for first in (0..streams).step_by(chunk as usize) {
            let appends = (first..(first + chunk).min(streams))
                .map(|s| {
                    let n = round * streams + s;
                    let event = EventData::new("Benchmarked", payload(n, DATA_BYTES))
                        .with_id(EventId(event_id(n)));
                    (format!("stream-{s}"), ExpectedVersion::Any, vec![event])
                })
                .collect();
            assert!(matches!(store.append_many(appends), Ok(Ok(_))));
        }
        let tx = sqlite.conn.transaction().expect("tx");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events(stream, version, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .expect("prepare");
            for s in 0..streams {
                let n = round * streams + s;
                insert
                    .execute(rusqlite::params![
                        format!("stream-{s}"),
                        round,
                        &event_id(n)[..],
                        "Benchmarked",
                        payload(n, DATA_BYTES)
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    // As a store that has been running would be: no index merge pending.
    store.maintain_index().expect("index maintenance");
    (store, sqlite)
}

fn percentile(samples: &mut [u64], p: f64) -> u64 {
    samples.sort_unstable();
    let i = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
    samples.get(i).copied().unwrap_or(0)
}

fn load_figure(mut samples_ns: Vec<u64>) -> Figure {
    let p50 = percentile(&mut samples_ns, 0.5);
    let p99 = percentile(&mut samples_ns, 0.99);
    Figure {
        value: p50 as f64 / 1000.0,
        p50_us: Some(p50 / 1000),
        p99_us: Some(p99 / 1000),
        p999_us: None,
        device_bytes_per_event: None,
    }
}

fn read_workloads(streams: u64, step: &mut dyn FnMut(&str)) -> Vec<Comparison> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    step(&format!(
        "building {} events over {streams} streams",
        streams * 100
    ));
    let (store, sqlite) = build_read_stores(dir.path(), streams);
    step("loading 100-event streams");
    out.push(load_stream(&store, &sqlite, streams));
    step("scanning the global feed");
    out.push(scan_feed(&store, &sqlite, dir.path(), streams * 100));
    step("opening stores of two sizes");
    drop(store);
    out.extend(open_times(dir.path(), streams));
    out
}

/// Loading 100-event streams picked across the store, on Annals and SQLite.
fn load_stream(store: &Store, sqlite: &SqliteStore, streams: u64) -> Comparison {
    let samples = 2000u64;
    let pick = |i: u64| format!("stream-{}", i.wrapping_mul(7919) % streams);
    let mut annals_ns = Vec::new();
    let mut sqlite_ns = Vec::new();
    for i in 0..samples {
        let stream = pick(i);
        let started = Instant::now();
        let events = store
            .read_stream(&stream, 0, Direction::Forward, 100)
            .expect("read");
        annals_ns.push(started.elapsed().as_nanos() as u64);
        assert_eq!(events.len(), 100);
        let started = Instant::now();
        let rows = sqlite.read_stream(&stream, 100).expect("read");
        sqlite_ns.push(started.elapsed().as_nanos() as u64);
        assert_eq!(rows.len(), 100);
    }
    Comparison {
        workload: format!("load a 100-event stream of {streams} (p50)"),
        unit: "us",
        higher_is_better: false,
        annals: load_figure(annals_ns),
        sqlite: Some(load_figure(sqlite_ns)),
        ceiling: None,
        rounds: 1,
        paired: None,
    }
}

/// Scanning the whole global feed, on Annals, SQLite and the bytes alone.
fn scan_feed(store: &Store, sqlite: &SqliteStore, dir: &Path, total: u64) -> Comparison {
    let started = Instant::now();
    let mut from = 0;
    while from < total {
        let page = store.read_all(from, 10_000).expect("scan");
        from += page.len() as u64;
        if page.is_empty() {
            break;
        }
    }
    let annals_rate = total as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut rows = 0u64;
    {
        let mut query = sqlite
            .conn
            .prepare(
                "SELECT position, stream, version, id, type, data FROM events ORDER BY position",
            )
            .expect("prepare");
        let mut cursor = query.query([]).expect("query");
        while let Ok(Some(row)) = cursor.next() {
            let data: Vec<u8> = row.get(5).expect("data");
            rows += u64::from(!data.is_empty());
        }
    }
    let sqlite_rate = rows as f64 / started.elapsed().as_secs_f64();
    // The ceiling: reading the bytes that hold the frames, nothing else
    // (not the zero tail of the preallocated active segment).
    let mut files: Vec<(std::path::PathBuf, usize)> = std::fs::read_dir(dir.join("annals"))
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("segment");
            let data_end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            (p, data_end)
        })
        .collect();
    files.sort();
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    for (path, data_end) in &files {
        let mut file = std::fs::File::open(path).expect("segment");
        let mut left = *data_end;
        while left > 0 {
            let want = left.min(buf.len());
            file.read_exact(&mut buf[..want]).expect("read");
            left -= want;
        }
    }
    let ceiling_rate = total as f64 / started.elapsed().as_secs_f64();
    Comparison {
        workload: format!("scan the global feed ({total} events, cached)"),
        unit: "events/s",
        higher_is_better: true,
        annals: Figure::value(annals_rate),
        sqlite: Some(Figure::value(sqlite_rate)),
        ceiling: Some(Figure::value(ceiling_rate)),
        rounds: 1,
        paired: None,
    }
}

/// Opening a store of `streams` × 100 events and one a tenth of its size.
fn open_times(dir: &Path, streams: u64) -> Vec<Comparison> {
    let total = streams * 100;
    let big = open_ms(&dir.join("annals"));
    let small_dir = tempfile::tempdir().expect("temp dir");
    let small_streams = (streams / 10).max(1);
    let (small, _) = build_read_stores(small_dir.path(), small_streams);
    drop(small);
    let small = open_ms(&small_dir.path().join("annals"));
    let sqlite_open = {
        let started = Instant::now();
        let peer = SqliteStore::open(&dir.join("peer.sqlite")).expect("sqlite");
        let _: i64 = peer
            .conn
            .query_row("SELECT MAX(position) FROM events", [], |r| r.get(0))
            .expect("max");
        started.elapsed().as_secs_f64() * 1e3
    };
    vec![
        Comparison {
            workload: format!("open a store of {} events (ms)", small_streams * 100),
            unit: "ms",
            higher_is_better: false,
            annals: Figure::value(small),
            sqlite: None,
            ceiling: None,
            rounds: 1,
            paired: None,
        },
        Comparison {
            workload: format!("open a store of {total} events (ms)"),
            unit: "ms",
            higher_is_better: false,
            annals: Figure::value(big),
            sqlite: Some(Figure::value(sqlite_open)),
            ceiling: None,
            rounds: 1,
            paired: None,
        },
    ]
}

fn open_ms(dir: &Path) -> f64 {
    let started = Instant::now();
    let store = Store::open(dir).expect("open");
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(store);
    ms
}

/// The comparisons as a plain-text table.
pub fn table(rows: &[Comparison]) -> String {
    let mut out = String::new();
    let fmt = |f: Option<Figure>| f.map_or("-".to_owned(), |f| format!("{:.1}", f.value));
    let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
    out.push_str(&format!(
        "{:<52} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>18}\n",
        "workload",
        "unit",
        "annals",
        "sqlite",
        "ceiling",
        "vs sqlite",
        "vs ceiling",
        "annals p99/p99.9"
    ));
    for row in rows {
        let tail = match (row.annals.p99_us, row.annals.p999_us) {
            (Some(a), Some(b)) => format!("{a}/{b} us"),
            (Some(a), None) => format!("{a} us"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<52} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>18}\n",
            row.workload,
            row.unit,
            fmt(Some(row.annals)),
            fmt(row.sqlite),
            fmt(row.ceiling),
            ratio(row.vs_sqlite()),
            ratio(row.vs_ceiling()),
            tail
        ));
    }
    out.push_str("ratios: > 1 means Annals is ahead (more per second, or less time)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(value: f64, p99: u64, bytes: f64) -> Figure {
        Figure {
            value,
            p50_us: Some(p99 / 2),
            p99_us: Some(p99),
            p999_us: None,
            device_bytes_per_event: Some(bytes),
        }
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 100.0]), Some(3.5));
    }

    #[test]
    fn each_system_gets_the_median_of_its_own_figures_field_by_field() {
        let rounds = [
            [figure(100.0, 900, 300.0), figure(50.0, 10, 1.0)],
            [figure(300.0, 100, 320.0), figure(70.0, 30, 3.0)],
            [figure(200.0, 500, 310.0), figure(10.0, 20, 2.0)],
        ];
        let mut calls = Vec::new();
        let runs = in_rounds(3, |round| {
            calls.push(round);
            rounds[round]
        });
        assert_eq!(calls, [0, 1, 2]);
        let [a, b] = medians(&runs);
        assert_eq!(a.value, 200.0);
        assert_eq!(a.p99_us, Some(500));
        assert_eq!(a.p50_us, Some(250));
        assert_eq!(a.p999_us, None);
        assert_eq!(a.device_bytes_per_event, Some(310.0));
        assert_eq!(
            (b.value, b.p99_us, b.device_bytes_per_event),
            (50.0, Some(20), Some(2.0))
        );
    }

    #[test]
    fn ratios_over_rounds_pair_figures_of_the_same_round() {
        // The disk is fast in round 2 and slow in round 3: Annals equals the
        // ceiling in every round but the last, where it is half as fast.
        let runs = [
            [
                figure(100.0, 1, 1.0),
                figure(10.0, 1, 1.0),
                figure(100.0, 1, 1.0),
            ],
            [
                figure(300.0, 1, 1.0),
                figure(30.0, 1, 1.0),
                figure(300.0, 1, 1.0),
            ],
            [
                figure(200.0, 1, 1.0),
                figure(20.0, 1, 1.0),
                figure(400.0, 1, 1.0),
            ],
        ];
        let row = Comparison::from_rounds("w".into(), &runs, 0, 1, 2);
        assert_eq!(
            (row.annals.value, row.ceiling.unwrap().value),
            (200.0, 300.0)
        );
        assert_eq!(row.rounds, 3);
        assert_eq!(row.vs_ceiling(), Some(1.0), "not 200/300");
        assert_eq!(row.vs_sqlite(), Some(10.0));
        let one = Comparison::from_rounds("w".into(), &runs[2..], 0, 1, 2);
        assert_eq!((one.rounds, one.paired), (1, None));
        assert_eq!(one.vs_ceiling(), Some(0.5));
    }
}
