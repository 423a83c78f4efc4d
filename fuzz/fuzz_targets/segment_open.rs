//! Opening a log whose only segment has a valid header and a fuzzed body:
//! recovery truncates, refuses with `Corrupt`, or opens — never panics —
//! and whatever opens reads back and verifies. Input: salt (8 bytes LE) ‖
//! body, so real segments can seed it.
#![no_main]

use std::sync::Arc;

use annals_segment::format::{SegmentHeader, SEGMENT_HEADER_BYTES};
use annals_segment::storage::MemStorage;
use annals_segment::{segment_file_name, LogOptions};
use libfuzzer_sys::fuzz_target;

const SEGMENT_BYTES: u64 = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let salt = data.get(..8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let body = data.get(8..).unwrap_or_default();
    let header = SegmentHeader { position_first: 0, salt, segment_bytes: SEGMENT_BYTES };
    let mut file = header.encode().to_vec();
    let room = (SEGMENT_BYTES - SEGMENT_HEADER_BYTES) as usize;
    file.extend_from_slice(&body[..body.len().min(room)]);
    let storage = MemStorage::new();
    storage.write_file(&segment_file_name(0), &file);
    if let Ok((_, reader, _)) = annals_segment::open(Arc::new(storage), LogOptions { segment_bytes: SEGMENT_BYTES, ..Default::default() }) {
        let events = reader.verify().expect("an opened log verifies");
        let mut seen = 0u64;
        reader
            .scan(0, |_, _| {
                seen += 1;
                std::ops::ControlFlow::Continue(())
            })
            .expect("an opened log scans");
        assert_eq!(seen, events);
    }
});
