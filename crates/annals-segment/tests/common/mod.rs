//! Helpers shared by the segment log's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{LogOptions, LogReader, LogWriter, Record};

/// Owned form of a record, for building batches and comparing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub stream: String,
    pub stream_version: u64,
    pub id: [u8; 16],
    pub timestamp_us: u64,
    pub flags: u16,
    pub event_type: String,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

impl Owned {
    pub fn record(&self) -> Record<'_> {
        Record {
            stream: &self.stream,
            stream_version: self.stream_version,
            id: self.id,
            timestamp_us: self.timestamp_us,
            flags: self.flags,
            event_type: &self.event_type,
            tags: annals_segment::Tags::EMPTY,
            metadata: &self.metadata,
            data: &self.data,
        }
    }

    pub fn from_record(record: Record<'_>) -> Owned {
        Owned {
            stream: record.stream.to_owned(),
            stream_version: record.stream_version,
            id: record.id,
            timestamp_us: record.timestamp_us,
            flags: record.flags,
            event_type: record.event_type.to_owned(),
            metadata: record.metadata.to_vec(),
            data: record.data.to_vec(),
        }
    }
}

/// A deterministic event number `n` with `data_bytes` of data.
pub fn event(n: u64, data_bytes: usize) -> Owned {
    Owned {
        stream: format!("stream-{}", n % 13),
        stream_version: n / 13,
        id: (u128::from(n) * 0x9E37_79B9_7F4A_7C15).to_le_bytes(),
        timestamp_us: 1_700_000_000_000_000 + n,
        flags: (n % 3) as u16,
        event_type: format!("Type{}", n % 5),
        metadata: format!("{{\"n\":{n}}}").into_bytes(),
        data: (0..data_bytes).map(|i| (n as usize + i) as u8).collect(),
    }
}

pub fn open_fs(
    dir: &std::path::Path,
    segment_bytes: u64,
) -> annals_segment::Result<(LogWriter, LogReader)> {
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir).unwrap());
    annals_segment::open(
        storage,
        LogOptions {
            segment_bytes,
            ..Default::default()
        },
    )
    .map(|(w, r, _)| (w, r))
}

/// Appends `events` as one batch and syncs.
pub fn append_sync(writer: &mut LogWriter, events: &[Owned]) -> u64 {
    let records: Vec<Record<'_>> = events.iter().map(Owned::record).collect();
    let first = writer.append(&[&records]).unwrap()[0];
    writer.sync().unwrap();
    first
}

/// Every event in the log, in order.
pub fn read_all(reader: &LogReader) -> Vec<Owned> {
    let mut out = Vec::new();
    reader
        .scan(0, |position, record| {
            assert_eq!(position, out.len() as u64);
            out.push(Owned::from_record(record));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    out
}
