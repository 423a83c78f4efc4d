//! Durable bulk append through the segment writer — 100 events × 128 B per
//! frame, `sync()` after each — beside the same bytes written to a plain
//! file with `write` + `fdatasync` (the physical ceiling), in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use annals_segment::storage::FsStorage;
use annals_segment::{LogOptions, Record};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const EVENTS_PER_FRAME: u64 = 100;
const EVENT_DATA_BYTES: usize = 128;

fn bench(c: &mut Criterion) {
    let streams: Vec<String> = (0..EVENTS_PER_FRAME)
        .map(|i| format!("stream-{i}"))
        .collect();
    let data: Vec<Vec<u8>> = (0..EVENTS_PER_FRAME)
        .map(|i| annals_benches::payload(i, EVENT_DATA_BYTES))
        .collect();
    let records: Vec<Record<'_>> = (0..EVENTS_PER_FRAME as usize)
        .map(|i| Record {
            stream: &streams[i],
            stream_version: 0,
            id: annals_benches::event_id(i as u64),
            timestamp_us: 1_700_000_000_000_000,
            flags: 0,
            event_type: "Benchmarked",
            tags: annals_segment::Tags::EMPTY,
            metadata: &[],
            data: &data[i],
        })
        .collect();
    let frame_bytes = annals_segment::format::align_up(
        annals_segment::format::frame_bytes(&records).unwrap() as u64,
    );

    let mut group = c.benchmark_group("durable_append_100x128B");
    group.throughput(Throughput::Bytes(frame_bytes));

    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FsStorage::open(dir.path().join("annals")).unwrap());
    let (mut writer, _reader, _) = annals_segment::open(storage, LogOptions::default()).unwrap();
    group.bench_function("annals_segment", |b| {
        b.iter(|| {
            writer.append(&[&records]).unwrap();
            writer.sync().unwrap();
        })
    });

    let bytes = vec![0xA5u8; frame_bytes as usize];
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("plain.log"))
        .unwrap();
    group.bench_function("plain_file", |b| {
        b.iter(|| {
            file.write_all(&bytes).unwrap();
            file.sync_data().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
