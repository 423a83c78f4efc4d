//! Load one aggregate: read a 100-event stream from a store of 10,000
//! streams (1M events, written round-robin so each stream's events are
//! spread over the whole log), on Annals and on SQLite, in the same run.
//! `ANNALS_BENCH_SCALE=N` divides nothing and multiplies the stream count.

use annals::{Direction, EventData, ExpectedVersion, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const EVENTS_PER_STREAM: u64 = 100;
const EVENT_DATA_BYTES: usize = 128;

fn bench(c: &mut Criterion) {
    let streams = 10_000 * annals_benches::scale() as u64;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("annals")).unwrap();
    let mut sqlite = annals_benches::SqliteStore::open(&dir.path().join("peer.sqlite")).unwrap();
    eprintln!(
        "building {} events over {streams} streams in Annals and SQLite...",
        streams * EVENTS_PER_STREAM
    );
    let chunk = 1000u64;
    for round in 0..EVENTS_PER_STREAM {
        for first in (0..streams).step_by(chunk as usize) {
            let appends = (first..(first + chunk).min(streams))
                .map(|s| {
                    let n = round * streams + s;
                    let event =
                        EventData::new("Benchmarked", annals_benches::payload(n, EVENT_DATA_BYTES))
                            .with_id(annals::EventId(annals_benches::event_id(n)));
                    (format!("stream-{s}"), ExpectedVersion::Any, vec![event])
                })
                .collect();
            store.append_many(appends).unwrap().unwrap();
        }
        let tx = sqlite.conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events(stream, version, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for s in 0..streams {
                let n = round * streams + s;
                insert
                    .execute(rusqlite::params![
                        format!("stream-{s}"),
                        round,
                        &annals_benches::event_id(n)[..],
                        "Benchmarked",
                        annals_benches::payload(n, EVENT_DATA_BYTES)
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    let mut group = c.benchmark_group("load_100_event_stream_of_10k");
    let mut k = 0u64;
    let mut next_stream = move || {
        k = (k + 7919) % streams;
        format!("stream-{k}")
    };
    group.bench_function("annals", |b| {
        b.iter_batched(
            &mut next_stream,
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
    let mut k = 0u64;
    let mut next_stream = move || {
        k = (k + 7919) % streams;
        format!("stream-{k}")
    };
    group.bench_function("sqlite", |b| {
        b.iter_batched(
            &mut next_stream,
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
