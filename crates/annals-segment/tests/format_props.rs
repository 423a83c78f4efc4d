//! Property: any batch of records round-trips through a frame byte-for-byte,
//! and no byte string makes a decoder panic. Method: proptest.

use annals_segment::format::{self, FramePlace, Record};
use proptest::prelude::*;

/// (stream, version, id, timestamp, flags, type, metadata, data, tags)
type Fields = (
    String,
    u64,
    [u8; 16],
    u64,
    u16,
    String,
    Vec<u8>,
    Vec<u8>,
    std::collections::BTreeSet<String>,
);

/// Each event's encoded tag region.
fn tag_regions(events: &[Fields]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            format::encode_tags(&e.8.iter().collect::<Vec<_>>(), &mut out).unwrap();
            out
        })
        .collect()
}

fn arb_owned() -> impl Strategy<Value = Fields> {
    (
        "[a-zA-Z0-9_\\-é]{1,40}",
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u16>(),
        "[A-Za-z]{1,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::btree_set("[a-z:0-9é]{1,20}", 0..4),
    )
}

proptest! {
    #[test]
    fn any_batch_round_trips(
        events in proptest::collection::vec(arb_owned(), 1..20),
        salt in any::<u64>(),
        offset in (8u64..1 << 30).prop_map(|o| o / 8 * 8),
        position_first in 0u64..1 << 50,
    ) {
        let regions = tag_regions(&events);
        let records: Vec<Record<'_>> = events.iter().zip(&regions).map(|(e, tags)| Record {
            stream: &e.0, stream_version: e.1, id: e.2, timestamp_us: e.3, flags: e.4,
            event_type: &e.5, tags: format::Tags::from_encoded(tags).unwrap(), metadata: &e.6, data: &e.7,
        }).collect();
        let mut buf = Vec::new();
        let place = FramePlace { salt, offset, position_first, synced_before: 64 };
        let size = format::encode_frame(&mut buf, place, &records).unwrap();
        prop_assert_eq!(buf.len() as u64, format::align_up(size as u64));
        let (header, decoded) = format::decode_frame(&buf, offset, salt).unwrap();
        prop_assert_eq!(header.position_first, position_first);
        prop_assert_eq!(header.event_count as usize, records.len());
        prop_assert_eq!(&decoded, &records);
        for (i, record) in records.iter().enumerate() {
            let position = position_first + i as u64;
            prop_assert!(decoded[i].tags.iter().eq(events[i].8.iter().map(String::as_str)));
            let one = format::decode_event_in_frame(&buf, offset, salt, position).unwrap();
            prop_assert_eq!(&one, record);
            // Point reads locate the event through the offset table alone.
            let located = format::decode_event_at(&buf, salt, position_first, position).unwrap();
            prop_assert_eq!(&located, record);
            prop_assert!(format::decode_event_at(&buf, salt ^ 1, position_first, position).is_err());
            // A reader of one stream gets its records, and `None` (checksum
            // verified) for another stream's; a bad checksum is an error
            // either way.
            let at = format::locate_event(&buf, position_first, position).unwrap();
            let rest = &buf[at..];
            let (own, _) = format::decode_record_of(rest, salt, position, Some(record.stream)).unwrap();
            prop_assert_eq!(own.as_ref(), Some(record));
            let other = format!("{}~", record.stream);
            let (none, _) = format::decode_record_of(rest, salt, position, Some(&other)).unwrap();
            prop_assert!(none.is_none());
            prop_assert!(format::decode_record_of(rest, salt ^ 1, position, Some(&other)).is_err());
            prop_assert!(format::decode_record_of(rest, salt, position + 1, Some(record.stream)).is_err());
        }
        let past = position_first + records.len() as u64;
        prop_assert!(format::decode_event_at(&buf, salt, position_first, past).is_err());
        prop_assert!(format::decode_event_at(&buf, salt, position_first + 1, position_first).is_err());
        // The frame is bound to its place: another offset or salt rejects it.
        prop_assert!(format::decode_frame(&buf, offset + 8, salt).is_err());
        prop_assert!(format::decode_frame(&buf, offset, salt ^ 1).is_err());
    }

    #[test]
    fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), offset in any::<u64>(), salt in any::<u64>(), position in any::<u64>()) {
        let _ = format::decode_frame(&bytes, offset, salt);
        let _ = format::decode_frame_header(&bytes, offset, salt);
        let _ = format::decode_event_in_frame(&bytes, offset, salt, position);
        let _ = format::decode_event_at(&bytes, salt, position / 2, position);
        let _ = format::locate_event(&bytes, offset, position);
        let _ = format::decode_record(&bytes, salt, position);
        let _ = format::SegmentHeader::decode(&bytes);
    }

    #[test]
    fn a_flipped_bit_is_always_detected(
        events in proptest::collection::vec(arb_owned(), 1..5),
        bit in any::<prop::sample::Index>(),
    ) {
        let regions = tag_regions(&events);
        let records: Vec<Record<'_>> = events.iter().zip(&regions).map(|(e, tags)| Record {
            stream: &e.0, stream_version: e.1, id: e.2, timestamp_us: e.3, flags: e.4,
            event_type: &e.5, tags: format::Tags::from_encoded(tags).unwrap(), metadata: &e.6, data: &e.7,
        }).collect();
        let mut buf = Vec::new();
        let place = FramePlace { salt: 7, offset: 64, position_first: 0, synced_before: 64 };
        let size = format::encode_frame(&mut buf, place, &records).unwrap();
        // Every bit of the frame, padding included.
        let _ = size;
        let bit = bit.index(buf.len() * 8);
        buf[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(format::decode_frame(&buf, 64, 7).is_err());
        // Reading one event never returns a wrong one: an error, or the
        // original when the flip was elsewhere in the frame.
        for (i, record) in records.iter().enumerate() {
            if let Ok(read) = format::decode_event_in_frame(&buf, 64, 7, i as u64) {
                prop_assert_eq!(&read, record);
            }
            // Without the frame header: a flip in the offset table or the
            // event is caught by the event's checksum.
            if let Ok(read) = format::decode_event_at(&buf, 7, 0, i as u64) {
                prop_assert_eq!(&read, record);
            }
        }
    }
}

#[test]
fn limits_are_checked_before_encoding() {
    let long_stream = "s".repeat(format::STREAM_BYTES_MAX + 1);
    let big = vec![0u8; format::EVENT_BYTES_MAX];
    let base = Record {
        stream: "s",
        stream_version: 0,
        id: [0; 16],
        timestamp_us: 0,
        flags: 0,
        event_type: "T",
        tags: annals_segment::Tags::EMPTY,
        metadata: &[],
        data: &[],
    };
    let cases = [
        Record { stream: "", ..base },
        Record {
            stream: &long_stream,
            ..base
        },
        Record {
            event_type: "",
            ..base
        },
        Record { data: &big, ..base },
    ];
    for case in cases {
        let mut buf = Vec::new();
        let place = FramePlace {
            salt: 1,
            offset: 64,
            position_first: 0,
            synced_before: 64,
        };
        assert!(format::encode_frame(&mut buf, place, &[case]).is_err());
        assert!(buf.is_empty(), "a rejected frame writes nothing");
    }
    assert!(format::frame_bytes(&[]).is_err());
}
