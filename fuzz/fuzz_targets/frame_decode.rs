//! The frame decoder on arbitrary bytes: returns a value or an error, never
//! panics, never allocates beyond its bounds.
#![no_main]

use annals_segment::format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (salt, offset) = (0x5A17_5A17_5A17_5A17u64, 64u64);
    let _ = format::SegmentHeader::decode(data);
    if let Ok((header, records)) = format::decode_frame(data, offset, salt) {
        assert_eq!(records.len(), header.event_count as usize);
        for i in 0..u64::from(header.event_count) {
            let one = format::decode_event_in_frame(data, offset, salt, header.position_first + i);
            assert!(one.is_ok());
        }
    }
    let _ = format::decode_event_in_frame(data, offset, salt, 3);
});
