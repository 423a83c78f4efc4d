//! Property: a log reopened with another segment size than it was written
//! with keeps every segment within the size its own header gives (new
//! segments get the new size), and opens again afterwards. Method: write
//! with 4 KiB segments, append with 1 MiB, then with 4 KiB again, reopen
//! and read everything (`annals stress --segment-bytes` followed by plain
//! `annals append` does exactly this).

mod common;

use std::sync::Arc;

use annals_segment::storage::{MemStorage, Storage};
use annals_segment::{LogOptions, Record};
use common::{event, read_all, Owned};

fn open(
    storage: &Arc<dyn Storage>,
    segment_bytes: u64,
) -> (annals_segment::LogWriter, annals_segment::LogReader) {
    let options = LogOptions {
        segment_bytes,
        zero_ahead: Some(false),
    };
    let (writer, reader, _) = annals_segment::open(Arc::clone(storage), options).unwrap();
    (writer, reader)
}

#[test]
fn a_log_reopened_with_another_segment_size_keeps_each_segment_within_its_own() {
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let mut all: Vec<Owned> = Vec::new();
    for (round, segment_bytes) in [(0u64, 4096u64), (1, 1 << 20), (2, 4096), (3, 1 << 20)] {
        let (mut writer, reader) = open(&storage, segment_bytes);
        assert_eq!(read_all(&reader), all, "round {round}");
        for n in 0..30 {
            let e = event(round * 100 + n, 500);
            writer.append(&[&[e.record()] as &[Record<'_>]]).unwrap();
            writer.sync().unwrap();
            all.push(e);
        }
        for segment in reader.segments() {
            assert!(
                segment.data_bytes <= segment.segment_bytes,
                "round {round}: {} holds {} bytes of frames in a segment of {}",
                segment.name,
                segment.data_bytes,
                segment.segment_bytes
            );
        }
        reader.verify().unwrap();
    }
    let (_, reader) = open(&storage, 4096);
    assert_eq!(read_all(&reader), all);
}
