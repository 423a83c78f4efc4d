//! The on-disk format of a segment file. `docs/FORMAT.md` is the spec;
//! each file below repeats its structure's table beside the `const`
//! offsets that encode it.
//!
//! - `header.rs`: the segment header ([`SegmentHeader`]).
//! - `frame.rs`: the batch frame ([`FrameHeader`], [`encode_frame`],
//!   [`decode_frame`], [`decode_frame_into`]) and finding one event through its offset table
//!   ([`locate_event`], [`decode_event_at`]).
//! - `record.rs`: the event record ([`Record`], [`decode_record`]).
//! - `tags.rs`: an event's tags ([`Tags`], [`encode_tags`], [`check_tags`]).
//! - `fault.rs`: why bytes are not a valid frame or event ([`FrameFault`]).

mod fault;
mod frame;
mod header;
mod record;
mod tags;

pub use fault::FrameFault;
pub(crate) use frame::decode_frame_salted_into;
pub use frame::{
    decode_event_at, decode_event_in_frame, decode_frame, decode_frame_header, decode_frame_into,
    encode_frame, event_offset, frame_bytes, locate_event, FrameHeader, FramePlace,
};
pub use header::{HeaderError, SegmentHeader};
pub use record::{decode_record, decode_record_of, Record};
pub(crate) use record::{decode_record_salted, SaltedCrc};
pub use tags::{
    check_tag, check_tags, encode_tags, TagIter, Tags, TAGS_BYTES_MAX, TAGS_MAX, TAG_BYTES_MAX,
};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ANNALSEG";
/// The segment format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
/// Size of a frame header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: u64 = 8;
/// Size of an event record's fixed part.
pub const EVENT_HEADER_BYTES: usize = 56;
/// Size of one entry of a frame's event offset table.
pub const EVENT_OFFSET_BYTES: usize = 4;

/// Longest stream name, in bytes.
pub const STREAM_BYTES_MAX: usize = 1024;
/// Longest event type, in bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = 256;
/// Largest event record (header, names, metadata and data).
pub const EVENT_BYTES_MAX: usize = 4 << 20;
/// Largest frame (one atomic append).
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Most events in one frame.
pub const FRAME_EVENTS_MAX: u32 = 1 << 20;
/// Smallest allowed segment size.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest allowed segment size.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;

const _: () = assert!((FRAME_HEADER_BYTES as u64).is_multiple_of(FRAME_ALIGN));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(EVENT_BYTES_MAX + FRAME_HEADER_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(STREAM_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(EVENT_TYPE_BYTES_MAX <= u16::MAX as usize);

/// Reads a little-endian integer of `N` bytes at `at`; `None` if out of bounds.
fn le<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn get_u16(bytes: &[u8], at: usize) -> Option<u16> {
    le::<2>(bytes, at).map(u16::from_le_bytes)
}
/// The little-endian `u32` at `at`, if `bytes` holds it.
pub fn get_u32(bytes: &[u8], at: usize) -> Option<u32> {
    le::<4>(bytes, at).map(u32::from_le_bytes)
}
/// The little-endian `u64` at `at`, if `bytes` holds it.
pub fn get_u64(bytes: &[u8], at: usize) -> Option<u64> {
    le::<8>(bytes, at).map(u64::from_le_bytes)
}
fn put(buf: &mut [u8], at: usize, value: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + value.len()) {
        dst.copy_from_slice(value);
    }
}

/// Rounds `n` up to the frame alignment.
pub const fn align_up(n: u64) -> u64 {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}
