//! Loading a frame index file from arbitrary bytes: verified or rejected,
//! never a panic, and a loaded index answers lookups within bounds.
#![no_main]

use std::sync::Arc;

use annals_segment::format::SegmentHeader;
use annals_segment::frame_index::FrameIndex;
use annals_segment::storage::Mapping;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = SegmentHeader { position_first: 0, salt: 7, segment_bytes: 1 << 20 };
    let map = Mapping::new(Arc::new(data.to_vec()), false);
    if let Ok((index, summary)) = FrameIndex::decode(map, "fuzz.fidx", &header) {
        for position in [0, 1, summary.position_end.saturating_sub(1), u64::MAX] {
            if let Some(i) = index.find(position) {
                assert!(index.get(i).is_some());
            }
        }
    }
});
