//! Load one aggregate of 10,000 events (100-byte payloads, written 10 per
//! append and interleaved with another stream's appends, so the aggregate's
//! events are spread over the log): from a 1 KiB snapshot at version 9,989
//! plus the 10 events after it, against replaying all 10,000 — each as the
//! zero-copy fold (`load_aggregate_with` vs `read_stream_with`) and as the
//! collected form (`load_aggregate` vs `read_stream`), in the same run.
//! Run: `cargo bench -p annals-benches --bench load_aggregate`.

use std::ops::ControlFlow;

use annals::{AggregatePart, Direction, Durability, EventData, ExpectedVersion, Options, Store};
use criterion::{criterion_group, criterion_main, Criterion};

const EVENTS: u64 = 10_000;
const SNAPSHOT_VERSION: u64 = 9_989;

fn build(dir: &std::path::Path) -> Store {
    let store = Store::open_with(dir, Options::default().durability(Durability::Buffered)).unwrap();
    for batch in 0..EVENTS / 10 {
        let events = |stream: u64| {
            (0..10)
                .map(|k| {
                    EventData::new(
                        "Changed",
                        annals_benches::payload(stream * EVENTS + batch * 10 + k, 100),
                    )
                })
                .collect::<Vec<_>>()
        };
        store
            .append("aggregate-1", ExpectedVersion::Any, events(0))
            .unwrap()
            .unwrap();
        store
            .append("other-1", ExpectedVersion::Any, events(1))
            .unwrap()
            .unwrap();
    }
    store.flush().unwrap();
    store
        .save_snapshot("aggregate-1", SNAPSHOT_VERSION, "State.v1", &[7u8; 1024])
        .unwrap();
    store
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = build(dir.path());
    let mut group = c.benchmark_group("load_aggregate_10k");
    group.bench_function("fold_snapshot_plus_10", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let loaded = store
                .load_aggregate_with("aggregate-1", |part| {
                    bytes += match part {
                        AggregatePart::Snapshot(s) => s.data.len(),
                        AggregatePart::Event(e) => e.data.len(),
                    };
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(loaded.events, 10);
            bytes
        })
    });
    group.bench_function("fold_replay_all", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let events = store
                .read_stream_with("aggregate-1", 0, Direction::Forward, usize::MAX, |e| {
                    bytes += e.data.len();
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(events as u64, EVENTS);
            bytes
        })
    });
    group.bench_function("collect_snapshot_plus_10", |b| {
        b.iter(|| {
            let loaded = store.load_aggregate("aggregate-1").unwrap();
            assert_eq!(loaded.events.len(), 10);
            loaded
        })
    });
    group.bench_function("collect_replay_all", |b| {
        b.iter(|| {
            let events = store
                .read_stream("aggregate-1", 0, Direction::Forward, usize::MAX)
                .unwrap();
            assert_eq!(events.len() as u64, EVENTS);
            events
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
