//! The frame decoder on arbitrary bytes: returns a value or an error, never
//! panics, never allocates beyond its bounds. Input: salt (8 bytes LE) ‖
//! frame offset (8 bytes LE) ‖ frame bytes, so real frames can seed it.
#![no_main]

use annals_segment::format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let word = |at: usize| data.get(at..at + 8).map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let (salt, offset) = (word(0), word(8));
    let frame = data.get(16..).unwrap_or_default();
    let _ = format::SegmentHeader::decode(data);
    let decoded = format::decode_frame(frame, offset, salt);
    // A scan's reused buffer, holding another frame's events: the same
    // verdict, the same events.
    let mut reused = vec![format::Record {
        stream: "s",
        stream_version: 0,
        id: [0; 16],
        timestamp_us: 0,
        flags: 0,
        event_type: "t",
        tags: format::Tags::EMPTY,
        metadata: b"",
        data: b"",
    }];
    let into = format::decode_frame_into(frame, offset, salt, &mut reused);
    assert_eq!(into, decoded.as_ref().map(|(header, _)| *header).map_err(|f| *f));
    if let Ok((header, records)) = decoded {
        assert_eq!(reused, records);
        assert_eq!(records.len(), header.event_count as usize);
        for (i, record) in records.iter().enumerate() {
            let one = format::decode_event_in_frame(frame, offset, salt, header.position_first + i as u64);
            assert_eq!(one.as_ref(), Ok(record));
            let located = format::decode_event_at(frame, salt, header.position_first, header.position_first + i as u64);
            assert_eq!(located.as_ref(), Ok(record));
            // A decoded record's tags passed the region check: bounded, each a
            // non-empty string of at most TAG_BYTES_MAX bytes.
            assert!(record.tags.len() <= format::TAGS_MAX);
            assert!(record.tags.iter().all(|t| !t.is_empty() && t.len() <= format::TAG_BYTES_MAX));
        }
    }
    let _ = format::decode_event_in_frame(frame, offset, salt, word(16));
    let _ = format::decode_event_at(frame, salt, word(16) / 2, word(16));
});
