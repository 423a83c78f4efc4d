//! Every byte of a snapshot log file (`snapshots-NNNNNNNNNNNNNNNN.snap`),
//! as `docs/FORMAT.md` specifies it. CRC-32/IEEE (`crc32fast`) throughout;
//! integers little-endian.
//!
//! File header (32 bytes):
//!
//! | offset | bytes | field |
//! |---:|---:|---|
//! |  0 |  8 | magic `ANNSNAP\0` |
//! |  8 |  2 | format version (u16) = 1 |
//! | 10 |  6 | reserved, zero |
//! | 16 |  8 | salt: random per file (u64), bound into every frame's CRC |
//! | 24 |  4 | reserved, zero |
//! | 28 |  4 | CRC-32/IEEE of bytes 0..28 |
//!
//! Frame (one snapshot, 32-byte header then the variable fields):
//!
//! | offset | bytes | field |
//! |---:|---:|---|
//! |  0 | 4 | frame length in bytes, header included (u32) |
//! |  4 | 4 | CRC-32/IEEE of the file's salt (8 bytes LE), then bytes 8..length |
//! |  8 | 8 | stream version the snapshot stands for (u64) |
//! | 16 | 8 | saved at, microseconds since the Unix epoch (u64) |
//! | 24 | 2 | stream name length (u16) |
//! | 26 | 2 | snapshot type length (u16) |
//! | 28 | 4 | data length (u32) |
//! | 32 | … | stream name (UTF-8), snapshot type (UTF-8), data |

use crate::error::{Error, Result};

/// Magic at the start of every snapshot log file.
pub(crate) const MAGIC: [u8; 8] = *b"ANNSNAP\0";
/// The only format version written and read.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes of the file header.
pub(crate) const FILE_HEADER_BYTES: usize = 32;
/// Bytes of a frame's fixed header.
pub(crate) const FRAME_HEADER_BYTES: usize = 32;
/// Largest snapshot data, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 16 << 20;
/// Longest snapshot type, in bytes.
pub const SNAPSHOT_TYPE_BYTES_MAX: usize = crate::EVENT_TYPE_BYTES_MAX;
/// Largest frame: header, the longest name and type, the largest data.
pub(crate) const FRAME_BYTES_MAX: usize =
    FRAME_HEADER_BYTES + crate::STREAM_BYTES_MAX + SNAPSHOT_TYPE_BYTES_MAX + SNAPSHOT_BYTES_MAX;

const FH_CRC: usize = 28;
const F_CRC: usize = 4;
const F_VERSION: usize = 8;
const F_SAVED: usize = 16;
const F_STREAM_LEN: usize = 24;
const F_TYPE_LEN: usize = 26;
const F_DATA_LEN: usize = 28;

const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(crate::STREAM_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(SNAPSHOT_TYPE_BYTES_MAX <= u16::MAX as usize);

/// A file header with `salt`.
pub(crate) fn encode_file_header(salt: u64) -> [u8; FILE_HEADER_BYTES] {
    let mut head = [0u8; FILE_HEADER_BYTES];
    head[..8].copy_from_slice(&MAGIC);
    head[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[16..24].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32fast::hash(&head[..FH_CRC]);
    head[FH_CRC..].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The salt of a verified file header; `Corrupt` (naming `file`) otherwise.
pub(crate) fn decode_file_header(file: &str, head: &[u8]) -> Result<u64> {
    let corrupt =
        |reason: &str| -> Error { annals_segment::Error::corrupt(file, 0, reason).into() };
    let (Some(body), Some(crc)) = (head.get(..FH_CRC), head.get(FH_CRC..FILE_HEADER_BYTES)) else {
        return Err(corrupt("snapshot file shorter than its header"));
    };
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(corrupt("snapshot file header checksum mismatch"));
    }
    if body.get(..8) != Some(&MAGIC[..]) {
        return Err(corrupt("not a snapshot file (bad magic)"));
    }
    let version = u16::from_le_bytes([byte(body, 8), byte(body, 9)]);
    if version != FORMAT_VERSION {
        return Err(corrupt(&format!(
            "snapshot file format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    Ok(get_u64(body, 16))
}

/// One snapshot as written.
pub(crate) struct FrameFields<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub saved_us: u64,
    pub snapshot_type: &'a str,
    pub data: &'a [u8],
}

/// Encodes one frame. The caller has bounded every length.
pub(crate) fn encode_frame(salt: u64, fields: &FrameFields<'_>) -> Vec<u8> {
    let len =
        FRAME_HEADER_BYTES + fields.stream.len() + fields.snapshot_type.len() + fields.data.len();
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&fields.version.to_le_bytes());
    frame.extend_from_slice(&fields.saved_us.to_le_bytes());
    frame.extend_from_slice(&(fields.stream.len() as u16).to_le_bytes());
    frame.extend_from_slice(&(fields.snapshot_type.len() as u16).to_le_bytes());
    frame.extend_from_slice(&(fields.data.len() as u32).to_le_bytes());
    frame.extend_from_slice(fields.stream.as_bytes());
    frame.extend_from_slice(fields.snapshot_type.as_bytes());
    frame.extend_from_slice(fields.data);
    let crc = frame_crc(salt, frame.get(F_VERSION..).unwrap_or_default());
    if let Some(slot) = frame.get_mut(F_CRC..F_VERSION) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    frame
}

/// The length a frame header claims, if it is one a frame can have.
pub(crate) fn claimed_len(head: &[u8]) -> Option<usize> {
    let len = get_u32(head, 0) as usize;
    (FRAME_HEADER_BYTES..=FRAME_BYTES_MAX)
        .contains(&len)
        .then_some(len)
}

/// Why bytes are not a valid frame.
pub(crate) type Fault = &'static str;

/// Verifies a whole frame (`frame` holds exactly its claimed length): the
/// CRC first, then that the field lengths add up.
pub(crate) fn decode_frame(salt: u64, frame: &[u8]) -> std::result::Result<FrameFields<'_>, Fault> {
    let Some(body) = frame.get(F_VERSION..) else {
        return Err("frame shorter than its header");
    };
    if frame_crc(salt, body) != get_u32(frame, F_CRC) {
        return Err("snapshot frame checksum mismatch");
    }
    let stream_len = usize::from(get_u16(frame, F_STREAM_LEN));
    let type_len = usize::from(get_u16(frame, F_TYPE_LEN));
    let data_len = get_u32(frame, F_DATA_LEN) as usize;
    if FRAME_HEADER_BYTES + stream_len + type_len + data_len != frame.len() {
        return Err("snapshot frame field lengths do not add up to its length");
    }
    let rest = frame.get(FRAME_HEADER_BYTES..).unwrap_or_default();
    let (stream, rest) = rest.split_at(stream_len);
    let (snapshot_type, data) = rest.split_at(type_len);
    let (Ok(stream), Ok(snapshot_type)) = (
        std::str::from_utf8(stream),
        std::str::from_utf8(snapshot_type),
    ) else {
        return Err("snapshot frame stream or type is not UTF-8");
    };
    Ok(FrameFields {
        stream,
        version: get_u64(frame, F_VERSION),
        saved_us: get_u64(frame, F_SAVED),
        snapshot_type,
        data,
    })
}

fn frame_crc(salt: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([byte(bytes, at), byte(bytes, at + 1)])
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut out = [0u8; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = byte(bytes, at + i);
    }
    u32::from_le_bytes(out)
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = byte(bytes, at + i);
    }
    u64::from_le_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_every_flipped_bit_is_caught() {
        let fields = FrameFields {
            stream: "order-1",
            version: 7,
            saved_us: 99,
            snapshot_type: "Order.v1",
            data: b"state",
        };
        let frame = encode_frame(5, &fields);
        assert_eq!(claimed_len(&frame), Some(frame.len()));
        let back = decode_frame(5, &frame).unwrap();
        assert_eq!(
            (back.stream, back.version, back.snapshot_type, back.data),
            ("order-1", 7, "Order.v1", &b"state"[..])
        );
        assert!(
            decode_frame(6, &frame).is_err(),
            "the salt binds the frame to its file"
        );
        for bit in 32..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(5, &bad).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn file_header_round_trips_and_is_checked() {
        let head = encode_file_header(42);
        assert_eq!(decode_file_header("f", &head).unwrap(), 42);
        let mut bad = head;
        bad[3] ^= 1;
        assert!(decode_file_header("f", &bad).unwrap_err().is_corruption());
        assert!(decode_file_header("f", &head[..10])
            .unwrap_err()
            .is_corruption());
    }
}
