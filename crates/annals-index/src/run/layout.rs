//! The layout of a run file: its page and entry sizes, the format
//! version, the header page, where each table starts, and the file names.

use super::*;

/// Size of every page of a run file.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of a page before its checksum.
pub(super) const PAYLOAD_BYTES: usize = PAGE_BYTES - 4;
/// Size of one stream entry: hash, version, position word (position,
/// count, tombstone bit), segment offset.
pub(super) const STREAM_ENTRY_BYTES: usize = 28;
/// Stream entries per page (146; the remaining 4 bytes of the payload are
/// zero).
pub(super) const STREAMS_PER_PAGE: usize = PAYLOAD_BYTES / STREAM_ENTRY_BYTES;
/// Size of one id entry.
pub(super) const ID_ENTRY_BYTES: usize = 24;
/// Id entries per page (170; the remaining 12 bytes of the payload are
/// zero).
pub(super) const IDS_PER_PAGE: usize = PAYLOAD_BYTES / ID_ENTRY_BYTES;
/// A Bloom block: one cache line, 512 bits.
pub(super) const BLOCK_BYTES: usize = 64;
/// Bloom blocks per page (63; the remaining 60 bytes are zero).
pub(super) const BLOCKS_PER_PAGE: usize = PAYLOAD_BYTES / BLOCK_BYTES;
/// A fence: the (hash, version) of the first stream entry of a page.
pub(super) const FENCE_BYTES: usize = 16;
/// Fences per page (255; the remaining 12 bytes are zero).
pub(super) const FENCES_PER_PAGE: usize = PAYLOAD_BYTES / FENCE_BYTES;
pub(super) const MAGIC: &[u8; 8] = b"ANNALSIX";
/// 3: a stream entry covers the events one append wrote to one stream (2:
/// one entry per event, with its offset; 1: without offsets). Runs of
/// another version are discarded and rebuilt from the log, like any
/// invalid run.
pub(super) const FORMAT_VERSION: u32 = 3;
/// Position bit marking a tombstone in a stored stream entry.
pub(super) const TOMBSTONE_BIT: u64 = 1 << 63;
/// Where a stored stream entry's `count − 1` sits in its position word
/// (bits 48..63).
pub(super) const COUNT_SHIFT: u32 = 48;
/// The most events one stream entry covers (a longer append to one stream
/// takes several entries).
pub const MAX_ENTRY_EVENTS: u32 = 1 << 15;
/// Positions a run can hold: below 2⁴⁸ (at a million events a second,
/// about nine years of them).
pub const POSITION_LIMIT: u64 = 1 << COUNT_SHIFT;
/// Bytes the writer gathers before one `write`.
pub(super) const WRITE_CHUNK: usize = 1 << 20;

/// The file name of the run covering `[start, end)`.
pub fn run_file_name(start: u64, end: u64) -> String {
    format!("index-{start:016x}-{end:016x}.run")
}

/// The range of a run file name, if `name` is one.
pub fn parse_run_file_name(name: &str) -> Option<(u64, u64)> {
    let middle = name.strip_prefix("index-")?.strip_suffix(".run")?;
    let (start, end) = middle.split_once('-')?;
    if start.len() != 16 || end.len() != 16 {
        return None;
    }
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

/// Where each table of a run of `events` events in `streams` stream
/// entries starts, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) events: u64,
    pub(super) streams: u64,
    /// Blocks of the stream filter (one key per stream entry).
    pub(super) stream_blocks: u64,
    /// Blocks of the id filter (one key per event).
    pub(super) id_blocks: u64,
    /// Pages of stream entries (one fence each).
    pub(super) entry_pages: u64,
    pub(super) streams_first: u64,
    pub(super) ids_first: u64,
    pub(super) fences_first: u64,
    pub(super) stream_bloom_first: u64,
    pub(super) id_bloom_first: u64,
    pub(super) pages: u64,
}

impl Layout {
    pub(super) fn new(events: u64, streams: u64) -> Layout {
        let entry_pages = streams.div_ceil(STREAMS_PER_PAGE as u64);
        let id_pages = events.div_ceil(IDS_PER_PAGE as u64);
        let stream_blocks = bloom_blocks_for(streams);
        let id_blocks = bloom_blocks_for(events);
        let bloom_pages = |blocks: u64| blocks.div_ceil(BLOCKS_PER_PAGE as u64);
        let streams_first = 1;
        let ids_first = streams_first + entry_pages;
        let fences_first = ids_first + id_pages;
        let stream_bloom_first = fences_first + entry_pages.div_ceil(FENCES_PER_PAGE as u64);
        let id_bloom_first = stream_bloom_first + bloom_pages(stream_blocks);
        Layout {
            events,
            streams,
            stream_blocks,
            id_blocks,
            entry_pages,
            streams_first,
            ids_first,
            fences_first,
            stream_bloom_first,
            id_bloom_first,
            pages: id_bloom_first + bloom_pages(id_blocks),
        }
    }
}

/// The fields of a run's header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) salt: u64,
    pub(super) new_streams: u64,
    /// Stream entries.
    pub(super) streams: u64,
    /// The most events one stream entry covers.
    pub(super) max_count: u64,
}

impl Header {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut payload = vec![0u8; PAYLOAD_BYTES];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(slot) = payload.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        put(0, MAGIC);
        put(8, &FORMAT_VERSION.to_le_bytes());
        put(16, &self.start.to_le_bytes());
        put(24, &self.end.to_le_bytes());
        put(32, &self.salt.to_le_bytes());
        put(40, &self.new_streams.to_le_bytes());
        put(48, &self.streams.to_le_bytes());
        put(56, &self.max_count.to_le_bytes());
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(parse_run_file_name(&run_file_name(5, 9)), Some((5, 9)));
        assert_eq!(parse_run_file_name("index-0-1.run"), None);
        assert_eq!(parse_run_file_name(&run_file_name(9, 9)), None);
        assert_eq!(parse_run_file_name("00000000000000000000.seg"), None);
    }
}
