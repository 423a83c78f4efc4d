//! Opening a store on a directory built from fuzz bytes: two segments with
//! valid headers and fuzzed bodies, and a fuzzed frame index of the first.
//! The open succeeds or returns an error; an opened store reads and
//! verifies. Input: salt (8 bytes LE) ‖ first body length (4 bytes LE) ‖
//! first body ‖ second body and frame index, halved.
#![no_main]

use std::sync::Arc;

use annals::storage::MemStorage;
use annals::{Options, Store};
use annals_segment::format::SegmentHeader;
use annals_segment::{frame_index_file_name, segment_file_name};
use libfuzzer_sys::fuzz_target;

const SEGMENT_BYTES: u64 = 16 << 10;

fuzz_target!(|data: &[u8]| {
    let salt = data.get(..8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let first_len = data.get(8..12).map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap_or_default()) as usize);
    let rest = data.get(12..).unwrap_or_default();
    let (first, rest) = rest.split_at(first_len.min(rest.len()));
    let (second, index) = rest.split_at(rest.len() / 2);
    let storage = MemStorage::new();
    let second_first = u64::from(second.first().copied().unwrap_or(0));
    for (position_first, body, salt) in [(0u64, first, salt), (second_first, second, salt ^ 0xABCD)] {
        if position_first == 0 && !body.is_empty() || position_first > 0 {
            let header = SegmentHeader { position_first, salt, segment_bytes: SEGMENT_BYTES };
            let mut file = header.encode().to_vec();
            file.extend_from_slice(&body[..body.len().min(SEGMENT_BYTES as usize - 64)]);
            storage.write_file(&segment_file_name(position_first), &file);
        }
    }
    if !index.is_empty() {
        storage.write_file(&frame_index_file_name(0), index);
    }
    let options = Options::default().segment_bytes(SEGMENT_BYTES);
    if let Ok(store) = Store::open_storage(Arc::new(storage), options) {
        let all = store.read_all(0, usize::MAX).expect("an opened store reads");
        assert_eq!(all.len() as u64, store.position_end());
        store.verify().expect("an opened store verifies");
    }
});
