//! Load one aggregate: read a 100-event stream from a store of 10,000
//! streams (1M events, written round-robin so each stream's events are
//! spread over the whole log), on Annals and on SQLite, in the same run.
//! `ANNALS_BENCH_SCALE=N` multiplies the stream count.

use annals::Direction;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn bench(c: &mut Criterion) {
    let streams = 10_000 * annals_benches::scale() as u64;
    let dir = tempfile::tempdir().unwrap();
    eprintln!(
        "building {} events over {streams} streams in Annals and SQLite...",
        streams * 100
    );
    let (store, sqlite) = annals_benches::suite::build_read_stores(dir.path(), streams);

    let mut group = c.benchmark_group("load_100_event_stream_of_10k");
    let picker = || {
        let mut k = 0u64;
        move || {
            k = (k + 7919) % streams;
            format!("stream-{k}")
        }
    };
    group.bench_function("annals", |b| {
        b.iter_batched(
            picker(),
            |stream| {
                let events = store
                    .read_stream(&stream, 0, Direction::Forward, 100)
                    .unwrap();
                assert_eq!(events.len(), 100);
                events
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("sqlite", |b| {
        b.iter_batched(
            picker(),
            |stream| {
                let events = sqlite.read_stream(&stream, 100).unwrap();
                assert_eq!(events.len(), 100);
                events
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
