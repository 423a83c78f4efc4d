//! Compaction (issue 20), in the same run:
//! - `compaction_throughput`: MB/s of sealed log rewritten by
//!   `Store::compact` (half of the events removed: a hard-deleted stream
//!   interleaved with a kept one) beside a plain copy of the same segment
//!   files (read, write, fsync: the ceiling), per byte of log before.
//! - `appends_during_compaction`: 2 threads each committing 200 durable
//!   single-event appends (default durability: each acknowledged after
//!   `fdatasync`), alone and while a compaction of the same store (~16 MiB
//!   of sealed log, half of it removable) runs (commits/s = 400 / time; the
//!   compaction may end before the appenders); also with the compaction
//!   throttled to 32 MiB/s (`CompactionOptions::throttle_bytes_per_sec`).
//! - `compaction_merge`: a store where three quarters of the events are
//!   removed (three hard-deleted streams interleaved with a kept one), so
//!   the rewritten segments are small: `Store::compact` without merging
//!   (`merge: false`), with merging (the default: the small segments
//!   become a quarter as many files or fewer), and a plain copy of the
//!   same segment files, per byte of log before.
//!
//! Run: `cargo bench -p annals-benches --bench compaction -- --warm-up-time 1 --measurement-time 3`.

use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use annals::{CompactionOptions, Durability, EventData, ExpectedVersion, Options, Store};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SEGMENT_BYTES: u64 = 4 << 20;
/// Events of each of the two streams (~330 bytes each on disk).
const EVENTS: u64 = 25_000;

fn build(dir: &Path) -> Store {
    let options = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Buffered);
    let store = Store::open_with(dir, options).unwrap();
    for batch in 0..EVENTS / 50 {
        for stream in ["kept-1", "gone-1"] {
            let events = (0..50)
                .map(|k| EventData::new("Changed", annals_benches::payload(batch * 50 + k, 256)))
                .collect();
            store
                .append(stream, ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
    }
    store.flush().unwrap();
    store
        .delete_stream("gone-1", ExpectedVersion::Any)
        .unwrap()
        .unwrap();
    store
}

fn sealed_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop();
    segments
}

fn copy_files(files: &[std::path::PathBuf], to: &Path) {
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let mut out = std::fs::File::create(to.join(file.file_name().unwrap())).unwrap();
        out.write_all(&bytes).unwrap();
        out.sync_all().unwrap();
    }
    std::fs::File::open(to).unwrap().sync_all().unwrap();
}

fn throughput(c: &mut Criterion) {
    let probe = tempfile::tempdir().unwrap();
    drop(build(probe.path()));
    let log_bytes: u64 = sealed_segments(probe.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let mut group = c.benchmark_group("compaction_throughput");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(log_bytes));
    group.bench_function("annals_compact", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let store = build(dir.path());
                let started = Instant::now();
                let report = store.compact(&CompactionOptions::default()).unwrap();
                total += started.elapsed();
                assert!(report.removed.hard_delete > 0);
            }
            total
        })
    });
    group.bench_function("plain_copy", |b| {
        let files = sealed_segments(probe.path());
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let to = tempfile::tempdir().unwrap();
                let started = Instant::now();
                copy_files(&files, to.path());
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn appenders(store: &Store) {
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for n in 0..200u64 {
                    let event = EventData::new("Tick", annals_benches::payload(n, 100));
                    store
                        .append(&format!("live-{t}"), ExpectedVersion::Any, vec![event])
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn during(c: &mut Criterion) {
    let mut group = c.benchmark_group("appends_during_compaction");
    group.sample_size(10);
    group.throughput(Throughput::Elements(400));
    // (name, compaction running?, its throttle)
    let cases: [(&str, bool, Option<u64>); 3] = [
        ("alone", false, None),
        ("while_compacting", true, None),
        ("while_compacting_throttled_32MiBps", true, Some(32 << 20)),
    ];
    for (name, compacting, throttle) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    // Built quickly (buffered), then reopened durable: each
                    // append is a commit (fdatasync) as in production.
                    build(dir.path()).close().unwrap();
                    let store = Store::open_with(
                        dir.path(),
                        Options::default().segment_bytes(SEGMENT_BYTES),
                    )
                    .unwrap();
                    let compaction = compacting.then(|| {
                        let store = store.clone();
                        let options = CompactionOptions {
                            throttle_bytes_per_sec: throttle,
                            ..CompactionOptions::default()
                        };
                        thread::spawn(move || store.compact(&options))
                    });
                    let started = Instant::now();
                    appenders(&store);
                    total += started.elapsed();
                    if let Some(compaction) = compaction {
                        compaction.join().unwrap().unwrap();
                    }
                }
                total
            })
        });
    }
    group.finish();
}

/// Like [`build`], with three streams deleted beside the kept one.
fn build_sparse(dir: &Path) -> Store {
    let options = Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .durability(Durability::Buffered);
    let store = Store::open_with(dir, options).unwrap();
    let streams = ["kept-1", "gone-1", "gone-2", "gone-3"];
    for batch in 0..EVENTS / 100 {
        for stream in streams {
            let events = (0..50)
                .map(|k| EventData::new("Changed", annals_benches::payload(batch * 50 + k, 256)))
                .collect();
            store
                .append(stream, ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
    }
    store.flush().unwrap();
    for stream in streams.iter().skip(1) {
        store
            .delete_stream(stream, ExpectedVersion::Any)
            .unwrap()
            .unwrap();
    }
    store
}

fn merge(c: &mut Criterion) {
    let probe = tempfile::tempdir().unwrap();
    drop(build_sparse(probe.path()));
    let files = sealed_segments(probe.path());
    let log_bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let mut group = c.benchmark_group("compaction_merge");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(log_bytes));
    for (name, merge) in [
        ("annals_compact_no_merge", false),
        ("annals_compact_merge", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = build_sparse(dir.path());
                    let options = CompactionOptions {
                        merge,
                        ..CompactionOptions::default()
                    };
                    let started = Instant::now();
                    let report = store.compact(&options).unwrap();
                    total += started.elapsed();
                    assert!(report.removed.hard_delete > 0);
                    assert_eq!(report.segments_merged > 0, merge, "{report:?}");
                }
                total
            })
        });
    }
    group.bench_function("plain_copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let to = tempfile::tempdir().unwrap();
                let started = Instant::now();
                copy_files(&files, to.path());
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, throughput, during, merge);
criterion_main!(benches);
