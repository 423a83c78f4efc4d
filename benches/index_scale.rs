//! Index at scale, measured in one run:
//!
//! - `open_clean`: a clean open of a 100k-event store vs a 10M-event store
//!   (one event per stream: 100k and 10M streams). Issue target: ≤ 2×.
//! - `load_100_event_stream_of_1m_streams`: a store of 1M one-event streams
//!   plus 1,000 streams of 100 events written round-robin among them (so
//!   each is spread over the whole log); load one 100-event stream, Annals
//!   vs SQLite. Issue target: ≥ 10×. p50/p99 of 5,000 loads are printed.
//!   Two shapes, each the same on both sides: `collect` returns owned
//!   events (Annals: whole `RecordedEvent`s; SQLite: version, position,
//!   data copied out), `fold` folds version and data into an
//!   aggregate without copying (`Store::read_stream_with` vs stepping the
//!   SQLite rows with borrowed blobs).
//!
//! Stores are built once and kept in `$ANNALS_BENCH_STORES` (default: a
//! directory under the system temp dir); building the 10M store takes
//! about a minute and a half here.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals::{Direction, EventData, EventId, ExpectedVersion, Store};
use annals_benches::{event_id, payload, SqliteStore};
use criterion::{criterion_group, criterion_main, Criterion};

const DATA_BYTES: usize = 64;
const HOT_STREAMS: u64 = 1_000;
const HOT_EVENTS: u64 = 100;

fn stores_dir() -> PathBuf {
    std::env::var_os("ANNALS_BENCH_STORES")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("annals-bench-stores"))
}

/// `dir` holds a complete store of this kind (built by an earlier run).
fn built(dir: &Path) -> bool {
    dir.join("BUILT").exists()
}

fn mark_built(dir: &Path) {
    std::fs::write(dir.join("BUILT"), b"").expect("mark");
}

/// One event per stream, 1,000 streams per atomic append.
fn build_flat(dir: &Path, streams: u64) {
    if built(dir) {
        // (An index written by an older format is rebuilt here, not timed.)
        settle(dir);
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    eprintln!(
        "building {streams} one-event streams in {}...",
        dir.display()
    );
    let store = Store::open(dir).expect("open");
    for first in (0..streams).step_by(1000) {
        let appends = (first..(first + 1000).min(streams))
            .map(|k| {
                let event = EventData::new("Opened", payload(k, DATA_BYTES));
                (
                    format!("flat-{k:08}"),
                    ExpectedVersion::NoStream,
                    vec![event],
                )
            })
            .collect();
        assert!(matches!(store.append_many(appends), Ok(Ok(_))));
    }
    drop(store);
    // Let the background merges of the first open settle, as a long-running
    // store would have.
    settle(dir);
    mark_built(dir);
}

fn settle(dir: &Path) {
    let store = Store::open(dir).expect("open");
    store.maintain_index().expect("index maintenance");
}

fn hot(k: u64) -> String {
    format!("hot-{k:04}")
}

/// 1M one-event streams with 1,000 streams of 100 events spread among them.
fn build_mixed(dir: &Path) -> (Store, SqliteStore) {
    let annals_dir = dir.join("annals");
    let sqlite_path = dir.join("peer.sqlite");
    if !built(dir) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("dir");
        eprintln!("building 1M streams + {HOT_STREAMS} × {HOT_EVENTS} in Annals and SQLite...");
        let store = Store::open(&annals_dir).expect("open");
        let mut sqlite = SqliteStore::open(&sqlite_path).expect("sqlite");
        let cold_per_round = 1_000_000 / HOT_EVENTS;
        let mut n = 0u64;
        for round in 0..HOT_EVENTS {
            let cold = (round * cold_per_round..(round + 1) * cold_per_round)
                .map(|k| (format!("cold-{k:08}"), 0u64));
            let hot = (0..HOT_STREAMS).map(|k| (hot(k), round));
            let events: Vec<(String, u64)> = cold.chain(hot).collect();
            for chunk in events.chunks(1000) {
                let appends = chunk
                    .iter()
                    .map(|(stream, _)| {
                        n += 1;
                        let event = EventData::new("Benchmarked", payload(n, DATA_BYTES))
                            .with_id(EventId(event_id(n)));
                        (stream.clone(), ExpectedVersion::Any, vec![event])
                    })
                    .collect();
                assert!(matches!(store.append_many(appends), Ok(Ok(_))));
            }
            let tx = sqlite.conn.transaction().expect("tx");
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO events(stream, version, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .expect("prepare");
                let first_n = n - events.len() as u64;
                for (i, (stream, version)) in events.iter().enumerate() {
                    let m = first_n + i as u64 + 1;
                    insert
                        .execute(rusqlite::params![
                            stream,
                            version,
                            &event_id(m)[..],
                            "Benchmarked",
                            payload(m, DATA_BYTES)
                        ])
                        .expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        drop(store);
        drop(sqlite);
        settle(&annals_dir);
        mark_built(dir);
    }
    let store = Store::open(&annals_dir).expect("open");
    store.maintain_index().expect("index maintenance");
    let sqlite = SqliteStore::open(&sqlite_path).expect("sqlite");
    (store, sqlite)
}

/// What an aggregate load computes from each event (both stores alike).
fn fold(state: u64, version: u64, data: &[u8]) -> u64 {
    let tail = data.last().copied().unwrap_or(0);
    state
        .wrapping_mul(31)
        .wrapping_add(version)
        .wrapping_add(data.len() as u64 + u64::from(tail))
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn bench_open(c: &mut Criterion) {
    let small = stores_dir().join("flat-100k");
    let large = stores_dir().join("flat-10m");
    build_flat(&small, 100_000);
    build_flat(&large, 10_000_000);
    let mut group = c.benchmark_group("open_clean");
    group.sample_size(30);
    for (label, dir) in [("100k_events", &small), ("10m_events", &large)] {
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let started = Instant::now();
                    let store = Store::open(dir).expect("open");
                    total += started.elapsed();
                    assert_eq!(store.index_report().replayed, 0);
                    // The close (its fsyncs) is not part of the open.
                    drop(store);
                }
                total
            })
        });
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let (store, sqlite) = build_mixed(&stores_dir().join("mixed-1m"));
    let stats = store.stats();
    eprintln!(
        "store: {} streams, {} events, {} index runs",
        stats.streams, stats.events, stats.index_runs
    );
    let load_annals = |k: u64| {
        let events = store
            .read_stream(&hot(k), 0, Direction::Forward, 100)
            .expect("read");
        assert_eq!(events.len(), HOT_EVENTS as usize);
        events
    };
    let load_sqlite = |k: u64| {
        let events = sqlite.read_stream(&hot(k), 100).expect("read");
        assert_eq!(events.len(), HOT_EVENTS as usize);
        events
    };
    // Loading an aggregate by folding its events, without collecting
    // copies: the same fold over the same fields on both sides.
    let fold_annals = |k: u64| {
        let mut state = 0u64;
        let count = store
            .read_stream_with(&hot(k), 0, Direction::Forward, 100, |event| {
                state = fold(state, event.version, event.data);
                ControlFlow::Continue(())
            })
            .expect("read");
        assert_eq!(count, HOT_EVENTS as usize);
        state
    };
    let fold_sqlite = |k: u64| {
        let mut state = 0u64;
        let count = sqlite
            .fold_stream(&hot(k), 100, |version, _, data| {
                state = fold(state, version, data);
            })
            .expect("read");
        assert_eq!(count, HOT_EVENTS as usize);
        state
    };
    assert_eq!(fold_annals(7), fold_sqlite(7));
    // Percentiles, interleaved so that both see the same machine.
    let (mut a, mut s, mut af, mut sf) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..5_000u64 {
        let k = (i * 7919) % HOT_STREAMS;
        let t = Instant::now();
        std::hint::black_box(load_annals(k));
        a.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(load_sqlite(k));
        s.push(t.elapsed());
        // Another stream than the one just collected: neither store may
        // find it in its own cache from the previous load.
        let k = (k + HOT_STREAMS / 2) % HOT_STREAMS;
        let t = Instant::now();
        std::hint::black_box(fold_annals(k));
        af.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(fold_sqlite(k));
        sf.push(t.elapsed());
    }
    for (what, annals, sqlite) in [("collect", a, s), ("fold", af, sf)] {
        let ((a50, a99), (s50, s99)) = (percentiles(annals), percentiles(sqlite));
        eprintln!(
            "load a 100-event stream among 1M streams ({what}): Annals p50 {a50:.1} µs p99 {a99:.1} µs; \
             SQLite p50 {s50:.1} µs p99 {s99:.1} µs; SQLite/Annals p50 {:.2}× p99 {:.2}×",
            s50 / a50,
            s99 / a99
        );
    }
    let mut group = c.benchmark_group("load_100_event_stream_of_1m_streams");
    let mut k = 0u64;
    group.bench_function("annals", |b| {
        b.iter(|| {
            k = (k + 7919) % HOT_STREAMS;
            load_annals(k)
        })
    });
    group.bench_function("sqlite", |b| {
        b.iter(|| {
            k = (k + 7919) % HOT_STREAMS;
            load_sqlite(k)
        })
    });
    group.bench_function("annals_fold", |b| {
        b.iter(|| {
            k = (k + 7919) % HOT_STREAMS;
            fold_annals(k)
        })
    });
    group.bench_function("sqlite_fold", |b| {
        b.iter(|| {
            k = (k + 7919) % HOT_STREAMS;
            fold_sqlite(k)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_open, bench_load);
criterion_main!(benches);
