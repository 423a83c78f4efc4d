//! The segment header: the first 64 bytes of every segment file.
//!
//! Layout (at offset 0):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! |   0 |    8 | magic `ANNALSEG` |
//! |   8 |    4 | format version (u32) |
//! |  12 |    4 | reserved, zero |
//! |  16 |    8 | position_first: global position of the first event (u64) |
//! |  24 |    8 | salt: random per segment (u64) |
//! |  32 |    8 | segment_bytes: preallocated size (u64) |
//! |  40 |   20 | reserved, zero |
//! |  60 |    4 | header_crc: CRC-32/IEEE of bytes 0..60 |

use super::{
    get_u32, get_u64, put, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_FORMAT_VERSION,
    SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
};

// Offsets.
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = 8;
const SH_POSITION_FIRST: usize = 16;
const SH_SALT: usize = 24;
const SH_SEGMENT_BYTES: usize = 32;
const SH_CRC: usize = 60;

const _: () = assert!(SH_CRC + 4 == SEGMENT_HEADER_BYTES as usize);

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Global position of the first event in the segment.
    pub position_first: u64,
    /// Random value that every frame of the segment repeats.
    pub salt: u64,
    /// Preallocated size of the segment file.
    pub segment_bytes: u64,
}

/// Why a segment header did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Every byte is zero: a file whose creation did not complete.
    Zeroed,
    /// Wrong magic or checksum.
    Invalid(&'static str),
    /// A format version this build does not know.
    UnsupportedVersion(u32),
}

impl SegmentHeader {
    /// Encodes the 64-byte header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut buf = [0u8; SEGMENT_HEADER_BYTES as usize];
        put(&mut buf, SH_MAGIC, &SEGMENT_MAGIC);
        put(&mut buf, SH_VERSION, &SEGMENT_FORMAT_VERSION.to_le_bytes());
        put(
            &mut buf,
            SH_POSITION_FIRST,
            &self.position_first.to_le_bytes(),
        );
        put(&mut buf, SH_SALT, &self.salt.to_le_bytes());
        put(
            &mut buf,
            SH_SEGMENT_BYTES,
            &self.segment_bytes.to_le_bytes(),
        );
        let crc = crc32fast::hash(buf.get(..SH_CRC).unwrap_or_default());
        put(&mut buf, SH_CRC, &crc.to_le_bytes());
        buf
    }

    /// Decodes and verifies a header: checksum first, then the fields.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(head) = bytes.get(..SEGMENT_HEADER_BYTES as usize) else {
            return Err(if bytes.iter().all(|b| *b == 0) {
                HeaderError::Zeroed
            } else {
                HeaderError::Invalid("file shorter than a segment header")
            });
        };
        if head.iter().all(|b| *b == 0) {
            return Err(HeaderError::Zeroed);
        }
        let crc_stored = get_u32(head, SH_CRC).ok_or(HeaderError::Invalid("short header"))?;
        if crc32fast::hash(head.get(..SH_CRC).unwrap_or_default()) != crc_stored {
            return Err(HeaderError::Invalid("segment header checksum mismatch"));
        }
        if head.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(HeaderError::Invalid("bad segment magic"));
        }
        let version = get_u32(head, SH_VERSION).unwrap_or(0);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let header = SegmentHeader {
            position_first: get_u64(head, SH_POSITION_FIRST).unwrap_or(0),
            salt: get_u64(head, SH_SALT).unwrap_or(0),
            segment_bytes: get_u64(head, SH_SEGMENT_BYTES).unwrap_or(0),
        };
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&header.segment_bytes) {
            return Err(HeaderError::Invalid("segment size out of range"));
        }
        Ok(header)
    }
}
