//! The write path at the disk's limit: concurrent durable appends on Annals,
//! the plain file (`write` + `fdatasync` per commit, the ceiling) and SQLite
//! (WAL, synchronous=FULL, the check in `BEGIN IMMEDIATE`), in one run.
//! A custom harness (not criterion): what matters here is commits/s under
//! concurrency and latency percentiles, which criterion does not measure.
//!
//! `cargo bench -p annals-benches --bench write_path` (ANNALS_BENCH_SECS
//! sets seconds per measurement, default 4).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Store};
use annals_benches::workloads::{run_threads, Measured};
use annals_benches::{payload, SqliteStore};
use std::sync::Mutex;

const DATA_BYTES: usize = 128;

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("ANNALS_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4.0),
    )
}

fn row(name: &str, m: &Measured) {
    println!(
        "{name:<44} {:>10.0} commits/s {:>9.0} events/s  p50 {:>6} us  p99 {:>6} us  p99.9 {:>7} us  device {:>8.1} B/event",
        m.ops_per_sec(),
        m.events as f64 / m.elapsed.as_secs_f64(),
        m.p50_us,
        m.p99_us,
        m.p999_us,
        m.device_bytes as f64 / m.events.max(1) as f64
    );
}

/// Single-event durable appends, each thread to its own stream.
fn annals_single(threads: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs(), move |t, _| {
        let event = EventData::new("Benchmarked", data.clone());
        store
            .append(&format!("writer-{t}"), ExpectedVersion::Any, vec![event])
            .unwrap()
            .unwrap();
        1
    })
}

/// The same bytes per commit to a plain file per thread, `write` + `fdatasync`.
fn plain_single(threads: usize, bytes_per_commit: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<Mutex<std::fs::File>> = (0..threads)
        .map(|t| {
            Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join(format!("plain-{t}")))
                    .unwrap(),
            )
        })
        .collect();
    let buf = vec![0xA5u8; bytes_per_commit];
    let path = dir.path().to_path_buf();
    let files = Arc::new(files);
    let m = run_threads(&path, threads, secs(), move |t, _| {
        let mut file = files[t].lock().unwrap();
        file.write_all(&buf).unwrap();
        file.sync_data().unwrap();
        1
    });
    drop(dir);
    m
}

fn sqlite_single(threads: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    type Slot = (SqliteStore, Option<u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).unwrap(), None)))
            .collect(),
    );
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs(), move |t, i| {
        let mut slot = conns[t].lock().unwrap();
        let (store, version) = &mut *slot;
        let id = annals_benches::event_id((t as u64) << 40 | i);
        assert!(store
            .append(
                &format!("writer-{t}"),
                *version,
                &[(id, "Benchmarked", &data)]
            )
            .unwrap());
        *version = Some(version.map_or(0, |v| v + 1));
        1
    })
}

/// Command handling: 8 threads, each appending 1-3 events with an exact
/// expectation to random streams of its own (it tracks their versions, as
/// an application holding loaded aggregates would).
fn annals_commands(threads: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let versions: Arc<Vec<Mutex<HashMap<u64, u64>>>> =
        Arc::new((0..threads).map(|_| Mutex::new(HashMap::new())).collect());
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs(), move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut versions = versions[t].lock().unwrap();
        let expected = versions
            .get(&k)
            .map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(*v));
        let events = (0..n)
            .map(|_| EventData::new("Handled", data.clone()))
            .collect();
        let written = store
            .append(&format!("agg-{t}-{k}"), expected, events)
            .unwrap()
            .unwrap();
        versions.insert(k, written.last_version);
        n
    })
}

fn sqlite_commands(threads: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    type Slot = (SqliteStore, HashMap<u64, u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).unwrap(), HashMap::new())))
            .collect(),
    );
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs(), move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut slot = conns[t].lock().unwrap();
        let (store, versions) = &mut *slot;
        let expected = versions.get(&k).copied();
        let ids: Vec<[u8; 16]> = (0..n)
            .map(|j| annals_benches::event_id((t as u64) << 40 | i << 2 | j))
            .collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Handled", &data[..])).collect();
        assert!(store
            .append(&format!("agg-{t}-{k}"), expected, &events)
            .unwrap());
        versions.insert(k, expected.map_or(n - 1, |v| v + n));
        n
    })
}

/// Bulk: one writer, 100 events × 128 B per append, exact expectations on
/// 10,000 streams round robin (each append goes to one stream).
fn annals_bulk() -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("a")).unwrap();
    let versions = Mutex::new(vec![None::<u64>; 10_000]);
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs(), move |_, i| {
        let s = (i % 10_000) as usize;
        let mut versions = versions.lock().unwrap();
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (0..100)
            .map(|_| EventData::new("Bulk", data.clone()))
            .collect();
        let written = store
            .append(&format!("bulk-{s}"), expected, events)
            .unwrap()
            .unwrap();
        versions[s] = Some(written.last_version);
        100
    })
}

fn sqlite_bulk() -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Mutex::new((
        SqliteStore::open(&dir.path().join("peer.sqlite")).unwrap(),
        vec![None::<u64>; 10_000],
    ));
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs(), move |_, i| {
        let s = (i % 10_000) as usize;
        let mut slot = store.lock().unwrap();
        let (store, versions) = &mut *slot;
        let ids: Vec<[u8; 16]> = (0..100)
            .map(|j| annals_benches::event_id(i << 8 | j))
            .collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Bulk", &data[..])).collect();
        assert!(store
            .append(&format!("bulk-{s}"), versions[s], &events)
            .unwrap());
        versions[s] = Some(versions[s].map_or(99, |v| v + 100));
        100
    })
}

/// Encoded size of one Annals frame of `n` events like the workloads'.
fn annals_frame_bytes(n: usize, stream: &str, event_type: &str) -> usize {
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
    annals_segment::format::align_up(annals_segment::format::frame_bytes(&records).unwrap() as u64)
        as usize
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!(
        "write path, {}s per measurement (medians are p50)\n",
        secs().as_secs_f64()
    );
    let single_bytes = annals_frame_bytes(1, "writer-10", "Benchmarked");
    let mut one = None;
    for threads in [1, 8, 64] {
        let a = annals_single(threads);
        let p = plain_single(threads, single_bytes);
        let s = sqlite_single(threads);
        row(&format!("single event, {threads} threads: annals"), &a);
        row(&format!("single event, {threads} threads: plain file"), &p);
        row(&format!("single event, {threads} threads: sqlite"), &s);
        if threads == 1 {
            one = Some(a.ops_per_sec());
        }
        println!(
            "  ratios: annals/plain {:.2}x  annals/sqlite {:.2}x  annals/annals@1 {:.1}x  annals p99 / plain p50 fsync {:.2}x\n",
            a.ops_per_sec() / p.ops_per_sec(),
            a.ops_per_sec() / s.ops_per_sec(),
            a.ops_per_sec() / one.unwrap_or(1.0),
            a.p99_us as f64 / p.p50_us.max(1) as f64,
        );
    }
    let a = annals_commands(8);
    let p = plain_single(8, annals_frame_bytes(2, "agg-1-100", "Handled"));
    let s = sqlite_commands(8);
    row("commands, 8 threads: annals", &a);
    row("commands, 8 threads: plain file", &p);
    row("commands, 8 threads: sqlite", &s);
    println!(
        "  ratios: annals/plain {:.2}x  annals/sqlite {:.2}x\n",
        a.ops_per_sec() / p.ops_per_sec(),
        a.ops_per_sec() / s.ops_per_sec()
    );
    let a = annals_bulk();
    let p = plain_single(1, annals_frame_bytes(100, "bulk-1000", "Bulk"));
    let s = sqlite_bulk();
    row("bulk 100x128B, 1 writer: annals", &a);
    row("bulk 100x128B, 1 writer: plain file", &p);
    row("bulk 100x128B, 1 writer: sqlite", &s);
    let per_event = |m: &Measured, events_per_op: f64| {
        m.device_bytes as f64 / (m.ops as f64 * events_per_op).max(1.0)
    };
    println!(
        "  ratios: annals/plain {:.2}x  annals/sqlite {:.2}x  device bytes/event annals/plain {:.2}x  sqlite/plain {:.2}x",
        a.ops_per_sec() / p.ops_per_sec(),
        a.ops_per_sec() / s.ops_per_sec(),
        per_event(&a, 100.0) / per_event(&p, 100.0),
        per_event(&s, 100.0) / per_event(&p, 100.0),
    );
}
