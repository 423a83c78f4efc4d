//! The read workloads: the shared read store (Annals and SQLite), loading
//! 100-event streams and scanning the global feed.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use annals::{Direction, EventData, EventId, ExpectedVersion, Store};

use super::open::open_times;
use super::report::{Comparison, Figure};
use super::DATA_BYTES;
use crate::{event_id, payload, SqliteStore};

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

/// The read workloads on a store of `streams` × 100 events, then the open
/// times, calling `step` before each.
pub(super) fn read_workloads(streams: u64, step: &mut dyn FnMut(&str)) -> Vec<Comparison> {
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
