//! Why bytes at an offset are not a valid frame or event: [`FrameFault`],
//! whose text is the reason corruption errors give.

/// Why bytes at an offset are not a valid frame (or event of a frame).
///
/// Its [`Display`](std::fmt::Display) text is the reason a corruption
/// error ([`Error::Corrupt`](crate::Error::Corrupt)) gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameFault {
    /// Fewer bytes than a frame header remain.
    TruncatedFrameHeader,
    /// The frame header's CRC (bound to the frame's offset) does not match.
    FrameHeaderChecksum,
    /// The frame's salt is not its segment's: bytes of another segment or file.
    FrameSaltMismatch,
    /// `frame_bytes` is below the smallest frame or above
    /// [`FRAME_BYTES_MAX`](super::FRAME_BYTES_MAX).
    FrameLengthOutOfRange,
    /// `event_count` is zero or above [`FRAME_EVENTS_MAX`](super::FRAME_EVENTS_MAX).
    EventCountOutOfRange,
    /// `frame_bytes` cannot hold `event_count` offset entries and event headers.
    FrameTooShortForEvents,
    /// `position_first + event_count` overflows a `u64`.
    FramePositionOverflow,
    /// The frame's length reaches past the bytes the segment holds.
    FramePastSegmentEnd,
    /// Fewer bytes than the frame's length remain.
    TruncatedFrame,
    /// An offset table entry does not point where its event starts.
    OffsetTableMismatch,
    /// The events do not end where the frame's length says.
    FrameLengthMismatch,
    /// The alignment padding after the frame holds a non-zero byte.
    PaddingNotZero,
    /// A valid frame whose first position is not the one after the frame before it
    /// (recovery's scan).
    PositionOutOfSequence,
    /// A valid frame of a sealed segment that reaches into the next segment's positions
    /// (recovery's scan).
    PastNextSegment,
    /// Fewer bytes than an event header remain.
    TruncatedEventHeader,
    /// `event_bytes` is below [`EVENT_HEADER_BYTES`](super::EVENT_HEADER_BYTES) or above
    /// [`EVENT_BYTES_MAX`](super::EVENT_BYTES_MAX).
    EventLengthOutOfRange,
    /// The event's length reaches past the end of its frame.
    EventPastFrameEnd,
    /// The event's CRC (bound to the segment's salt and the event's position) does not match.
    EventChecksum,
    /// The header's field lengths do not add up to `event_bytes`.
    EventFieldLengths,
    /// The stream name is not UTF-8.
    StreamNotUtf8,
    /// The event type is not UTF-8.
    TypeNotUtf8,
    /// The tag region is not a valid list of tags (`tags.rs`).
    TagsMalformed,
    /// The position asked for is not one of the frame's.
    PositionNotInFrame,
    /// The frame's bytes end before the position's offset table entry.
    TruncatedOffsetTable,
    /// An offset table entry points at or before its own entry (a point read through
    /// [`locate_event`](super::locate_event)).
    EventOffsetBelowEntry,
    /// An offset table entry points before the frame's first event (a read through
    /// [`decode_event_in_frame`](super::decode_event_in_frame)).
    EventOffsetInFrameHeader,
    /// An offset table entry points past the end of its frame.
    EventOffsetPastFrameEnd,
}

impl FrameFault {
    /// The reason as text, as corruption errors give it.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameFault::TruncatedFrameHeader => "truncated frame header",
            FrameFault::FrameHeaderChecksum => "frame header checksum mismatch",
            FrameFault::FrameSaltMismatch => "frame salt does not match its segment",
            FrameFault::FrameLengthOutOfRange => "frame length out of range",
            FrameFault::EventCountOutOfRange => "frame event count out of range",
            FrameFault::FrameTooShortForEvents => "frame too short for its event count",
            FrameFault::FramePositionOverflow => "frame position overflows",
            FrameFault::FramePastSegmentEnd => "frame runs past the end of the segment",
            FrameFault::TruncatedFrame => "truncated frame",
            FrameFault::OffsetTableMismatch => "event offset table does not match the events",
            FrameFault::FrameLengthMismatch => "frame length does not match its events",
            FrameFault::PaddingNotZero => "frame padding is not zero",
            FrameFault::PositionOutOfSequence => "frame position out of sequence",
            FrameFault::PastNextSegment => "frame runs past the next segment's first position",
            FrameFault::TruncatedEventHeader => "truncated event header",
            FrameFault::EventLengthOutOfRange => "event length out of range",
            FrameFault::EventPastFrameEnd => "event runs past the end of its frame",
            FrameFault::EventChecksum => "event checksum mismatch",
            FrameFault::EventFieldLengths => "event field lengths do not add up",
            FrameFault::StreamNotUtf8 => "stream name is not UTF-8",
            FrameFault::TypeNotUtf8 => "event type is not UTF-8",
            FrameFault::TagsMalformed => "event tags are malformed",
            FrameFault::PositionNotInFrame => "position not in this frame",
            FrameFault::TruncatedOffsetTable => "truncated event offset table",
            FrameFault::EventOffsetBelowEntry => {
                "event offset points into the frame's header or offset table"
            }
            FrameFault::EventOffsetInFrameHeader => "event offset points into the frame header",
            FrameFault::EventOffsetPastFrameEnd => "event offset past the end of its frame",
        }
    }
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FrameFault {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::format::{
        decode_event_at, decode_frame, decode_frame_header, encode_frame, FramePlace, Record,
    };

    #[test]
    fn a_fault_reads_as_the_reason_corruption_errors_give() {
        let record = Record {
            stream: "s",
            stream_version: 0,
            id: [1; 16],
            timestamp_us: 2,
            flags: 0,
            event_type: "t",
            tags: crate::format::Tags::EMPTY,
            metadata: b"",
            data: b"d",
        };
        let place = FramePlace {
            salt: 7,
            offset: 64,
            position_first: 0,
            synced_before: 64,
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, place, &[record]).unwrap();
        assert_eq!(
            decode_frame_header(&frame, 64, 8),
            Err(FrameFault::FrameSaltMismatch)
        );
        frame[16] ^= 1; // position_first, under the header checksum
        let fault = decode_frame(&frame, 64, 7).unwrap_err();
        assert_eq!(fault, FrameFault::FrameHeaderChecksum);
        assert_eq!(fault.to_string(), "frame header checksum mismatch");
        assert_eq!(
            Error::corrupt("f", 64, fault.as_str()).to_string(),
            "corrupt log: f at offset 64: frame header checksum mismatch"
        );
        assert_eq!(
            decode_event_at(&frame, 7, 1, 0).unwrap_err().to_string(),
            "position not in this frame"
        );
    }
}
