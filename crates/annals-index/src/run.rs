//! Index runs: immutable, checksummed files holding every index entry of one
//! contiguous range of global positions `[start, end)`.
//!
//! A run has two sorted tables — stream entries `(stream hash, version,
//! position, count)`, one per stream per append (the events one append
//! wrote to one stream are consecutive in version and position) — and
//! event ids `(id, position)`, one per event; and a blocked Bloom filter
//! for each, so a lookup skips a run that cannot hold its key after touching
//! one 64-byte block. The file is a sequence of 4 KiB pages, each ending in
//! a CRC-32 bound to the file's salt and the page's number; a page is
//! verified the first time it is read (one bit per page remembers it), so
//! opening a run reads one page whatever its size. The byte layout is in
//! `docs/FORMAT.md`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use annals_segment::format;
use annals_segment::storage::{Mapping, Storage, StorageFile};
use annals_segment::Error as LogError;

/// Size of every page of a run file.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of a page before its checksum.
const PAYLOAD_BYTES: usize = PAGE_BYTES - 4;
/// Size of one stream entry: hash, version, position word (position,
/// count, tombstone bit), segment offset.
const STREAM_ENTRY_BYTES: usize = 28;
/// Stream entries per page (146; the remaining 4 bytes of the payload are
/// zero).
const STREAMS_PER_PAGE: usize = PAYLOAD_BYTES / STREAM_ENTRY_BYTES;
/// Size of one id entry.
const ID_ENTRY_BYTES: usize = 24;
/// Id entries per page (170; the remaining 12 bytes of the payload are
/// zero).
const IDS_PER_PAGE: usize = PAYLOAD_BYTES / ID_ENTRY_BYTES;
/// A Bloom block: one cache line, 512 bits.
const BLOCK_BYTES: usize = 64;
/// Bloom blocks per page (63; the remaining 60 bytes are zero).
const BLOCKS_PER_PAGE: usize = PAYLOAD_BYTES / BLOCK_BYTES;
/// A fence: the (hash, version) of the first stream entry of a page.
const FENCE_BYTES: usize = 16;
/// Fences per page (255; the remaining 12 bytes are zero).
const FENCES_PER_PAGE: usize = PAYLOAD_BYTES / FENCE_BYTES;
/// Filter bits per key: about 1% false positives with 6 probes.
const BITS_PER_KEY: u64 = 10;
/// Bits set per key.
const PROBES: u32 = 6;
const MAGIC: &[u8; 8] = b"ANNALSIX";
/// 3: a stream entry covers the events one append wrote to one stream (2:
/// one entry per event, with its offset; 1: without offsets). Runs of
/// another version are discarded and rebuilt from the log, like any
/// invalid run.
const FORMAT_VERSION: u32 = 3;
/// Position bit marking a tombstone in a stored stream entry.
const TOMBSTONE_BIT: u64 = 1 << 63;
/// Where a stored stream entry's `count − 1` sits in its position word
/// (bits 48..63).
const COUNT_SHIFT: u32 = 48;
/// The most events one stream entry covers (a longer append to one stream
/// takes several entries).
pub const MAX_ENTRY_EVENTS: u32 = 1 << 15;
/// Positions a run can hold: below 2⁴⁸ (at a million events a second,
/// about nine years of them).
pub const POSITION_LIMIT: u64 = 1 << COUNT_SHIFT;
/// Bytes the writer gathers before one `write`.
const WRITE_CHUNK: usize = 1 << 20;

/// An entry of the stream table: `count` events of one stream written by
/// one append, at versions `version..version + count` and positions
/// `position..position + count` (so in one frame, one after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamEntry {
    /// Hash of the stream name ([`Fnv1aMix`](crate::Fnv1aMix)).
    pub hash: u64,
    /// The first event's version in its stream.
    pub version: u64,
    /// The first event's global position.
    pub position: u64,
    /// Whether the last event is the stream's tombstone.
    pub tombstone: bool,
    /// Where the first event starts in its segment file, so a read goes
    /// straight to it (`LogReader::with_stream_events`). 0 where not known
    /// (a memtable entry nobody recorded an offset for); runs are written
    /// with the offsets the log reports.
    pub offset: u32,
    /// Number of events: 1 to [`MAX_ENTRY_EVENTS`].
    pub count: u32,
}

impl StreamEntry {
    /// The first event's offset in its segment, if the entry knows it (0
    /// is never an event's offset: the segment header is there).
    pub fn known_offset(&self) -> Option<u32> {
        (self.offset != 0).then_some(self.offset)
    }

    /// One past the last event's version.
    pub fn end_version(&self) -> u64 {
        self.version.saturating_add(u64::from(self.count))
    }

    /// Whether `next` could extend this entry: same hash, the next version
    /// at the next position, this one not ending in a tombstone nor full
    /// ([`MAX_ENTRY_EVENTS`]). (That both belong to one append to one
    /// stream is the caller's to know.)
    pub fn is_continued_by(&self, next: &StreamEntry) -> bool {
        self.hash == next.hash
            && !self.tombstone
            && self.count < MAX_ENTRY_EVENTS
            && next.version == self.end_version()
            && next.position == self.position.saturating_add(u64::from(self.count))
    }
}

/// One event's entry in the id table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdEntry {
    /// The event id.
    pub id: [u8; 16],
    /// The event's global position.
    pub position: u64,
}

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

/// The Bloom key of an event id (fixed: it is persisted).
pub fn id_key(id: &[u8; 16]) -> u64 {
    let (a, b) = id.split_at(8);
    let word = |s: &[u8]| {
        let mut le = [0u8; 8];
        le.copy_from_slice(s);
        u64::from_le_bytes(le)
    };
    mix(word(a) ^ mix(word(b)))
}

/// The SplitMix64 finalizer.
fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Which block of `blocks` a key's bits live in.
fn bloom_block(key: u64, blocks: u64) -> u64 {
    ((u128::from(key) * u128::from(blocks)) >> 64) as u64
}

/// The bits (0..512) a key sets in its block.
fn bloom_bits(key: u64) -> impl Iterator<Item = usize> {
    let h = mix(key ^ 0x9e37_79b9_7f4a_7c15);
    (0..PROBES).map(move |i| ((h >> (i * 9)) & 511) as usize)
}

fn bloom_blocks_for(keys: u64) -> u64 {
    (keys * BITS_PER_KEY)
        .div_ceil(BLOCK_BYTES as u64 * 8)
        .max(1)
}

/// Where each table of a run of `events` events in `streams` stream
/// entries starts, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    events: u64,
    streams: u64,
    /// Blocks of the stream filter (one key per stream entry).
    stream_blocks: u64,
    /// Blocks of the id filter (one key per event).
    id_blocks: u64,
    /// Pages of stream entries (one fence each).
    entry_pages: u64,
    streams_first: u64,
    ids_first: u64,
    fences_first: u64,
    stream_bloom_first: u64,
    id_bloom_first: u64,
    pages: u64,
}

impl Layout {
    fn new(events: u64, streams: u64) -> Layout {
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

/// The checksum that ends page `page` of a run file whose salt is `salt`:
/// CRC-32 of `salt ‖ page ‖ payload` (FORMAT.md).
pub fn page_crc(salt: u64, page: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&page.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The little-endian `u64` at `at` (0 past the end: callers index inside
/// pages whose size they checked).
fn le_u64(bytes: &[u8], at: usize) -> u64 {
    format::get_u64(bytes, at).unwrap_or_default()
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    format::get_u32(bytes, at).unwrap_or_default()
}

/// The fields of a run's header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    start: u64,
    end: u64,
    salt: u64,
    new_streams: u64,
    /// Stream entries.
    streams: u64,
    /// The most events one stream entry covers.
    max_count: u64,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
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

/// Bloom blocks built per pass over the keys: 4 MiB of filter at a time,
/// whatever the size of the run (a whole page's worth of blocks per step).
const BLOOM_PASS_BLOCKS: u64 = BLOCKS_PER_PAGE as u64 * 1024;

/// Writes one section of a run file, page by page from its first page, in
/// chunks of about [`WRITE_CHUNK`] bytes. Several sections are written at
/// once, each at its own offset (the layout is known in advance), so
/// nothing proportional to the run is held in memory.
struct SectionWriter {
    file: Arc<dyn StorageFile>,
    name: String,
    salt: u64,
    page: Vec<u8>,
    /// Number of the next page to finish.
    page_no: u64,
    pending: Vec<u8>,
    /// Page number of the first page in `pending`.
    pending_first: u64,
}

impl SectionWriter {
    fn new(file: &Arc<dyn StorageFile>, name: &str, salt: u64, first_page: u64) -> Self {
        SectionWriter {
            file: Arc::clone(file),
            name: name.to_owned(),
            salt,
            page: Vec::with_capacity(PAYLOAD_BYTES),
            page_no: first_page,
            pending: Vec::new(),
            pending_first: first_page,
        }
    }

    fn push_payload(&mut self, payload: &[u8]) -> Result<(), LogError> {
        let crc = page_crc(self.salt, self.page_no, payload);
        self.pending.extend_from_slice(payload);
        self.pending.extend_from_slice(&crc.to_le_bytes());
        self.page_no += 1;
        if self.pending.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.pending, self.pending_first * PAGE_BYTES as u64)
            .map_err(|e| LogError::io("write", self.name.clone(), e))?;
        self.pending_first = self.page_no;
        self.pending.clear();
        Ok(())
    }

    /// Adds one item to the page being filled, `per_page` items a page.
    fn push_item(&mut self, item: &[u8], per_page: usize) -> Result<(), LogError> {
        self.page.extend_from_slice(item);
        if self.page.len() == per_page * item.len() {
            self.end_page()?;
        }
        Ok(())
    }

    /// Pads and writes the page being filled, if it holds anything.
    fn end_page(&mut self) -> Result<(), LogError> {
        if self.page.is_empty() {
            return Ok(());
        }
        let mut page = std::mem::take(&mut self.page);
        page.resize(PAYLOAD_BYTES, 0);
        self.push_payload(&page)?;
        page.clear();
        self.page = page;
        Ok(())
    }

    /// Ends the section: its last page, then everything still buffered.
    fn finish(&mut self) -> Result<(), LogError> {
        self.end_page()?;
        self.flush()
    }
}

fn set_bloom_bits(bits: &mut [u8], block: usize, key: u64) {
    let base = block * BLOCK_BYTES;
    for bit in bloom_bits(key) {
        if let Some(byte) = bits.get_mut(base + bit / 8) {
            *byte |= 1 << (bit % 8);
        }
    }
}

/// Writes a Bloom filter section over the keys `keys()` yields, in passes
/// of at most [`BLOOM_PASS_BLOCKS`] blocks (each pass reads every key).
fn write_bloom<I: Iterator<Item = Result<u64, LogError>>>(
    section: &mut SectionWriter,
    blocks: u64,
    pass_blocks: u64,
    keys: impl Fn() -> I,
) -> Result<(), LogError> {
    let mut first = 0;
    while first < blocks {
        let last = (first + pass_blocks.max(1)).min(blocks);
        let mut bits = vec![0u8; ((last - first) as usize) * BLOCK_BYTES];
        for key in keys() {
            let key = key?;
            let block = bloom_block(key, blocks);
            if (first..last).contains(&block) {
                set_bloom_bits(&mut bits, (block - first) as usize, key);
            }
        }
        for block in bits.chunks(BLOCK_BYTES) {
            section.push_item(block, BLOCKS_PER_PAGE)?;
        }
        first = last;
    }
    section.finish()
}

fn encode_stream(entry: StreamEntry) -> [u8; STREAM_ENTRY_BYTES] {
    let mut item = [0u8; STREAM_ENTRY_BYTES];
    item[..8].copy_from_slice(&entry.hash.to_le_bytes());
    item[8..16].copy_from_slice(&entry.version.to_le_bytes());
    let word = entry.position
        | u64::from(entry.count.saturating_sub(1)) << COUNT_SHIFT
        | if entry.tombstone { TOMBSTONE_BIT } else { 0 };
    item[16..24].copy_from_slice(&word.to_le_bytes());
    item[24..].copy_from_slice(&entry.offset.to_le_bytes());
    item
}

fn encode_id(entry: IdEntry) -> [u8; ID_ENTRY_BYTES] {
    let mut item = [0u8; ID_ENTRY_BYTES];
    item[..16].copy_from_slice(&entry.id);
    item[16..].copy_from_slice(&entry.position.to_le_bytes());
    item
}

/// Writes the run `[start, end)` from sorted entries (stream entries that
/// cover each position once, one id entry per position), durably: a
/// temporary file, `fsync`, rename, directory `fsync`. Returns the opened
/// run. `streams` and `ids` must yield the same entries each time they are
/// called: the table sizes are counted and the Bloom filters built in
/// bounded passes over them, so writing a run of any size holds only a few
/// MiB.
pub fn write_run<S, I>(
    storage: &Arc<dyn Storage>,
    start: u64,
    end: u64,
    new_streams: u64,
    streams: impl Fn() -> S,
    ids: impl Fn() -> I,
) -> Result<Run, LogError>
where
    S: Iterator<Item = Result<StreamEntry, LogError>>,
    I: Iterator<Item = Result<IdEntry, LogError>>,
{
    if end > POSITION_LIMIT {
        return Err(LogError::Invalid(format!(
            "index runs hold positions below {POSITION_LIMIT}, not {start}..{end}"
        )));
    }
    let name = run_file_name(start, end);
    let temp = format!("{name}.tmp");
    match storage.remove(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io("remove", temp, e)),
    }
    let wrong_count = |what: &str, count: u64| {
        LogError::Invalid(format!(
            "index run {start}..{end} given {count} {what} for {} positions",
            end - start
        ))
    };
    // The stream table's size and widest entry, before anything is written.
    let (mut stream_entries, mut covered, mut max_count) = (0u64, 0u64, 0u64);
    for entry in streams() {
        let entry = entry?;
        let past = entry.position.checked_add(u64::from(entry.count));
        if entry.count == 0
            || entry.count > MAX_ENTRY_EVENTS
            || entry.position < start
            || past.is_none_or(|past| past > end)
        {
            return Err(wrong_count(
                "stream entries, one misplaced,",
                stream_entries,
            ));
        }
        stream_entries += 1;
        covered += u64::from(entry.count);
        max_count = max_count.max(u64::from(entry.count));
    }
    if covered != end - start {
        return Err(wrong_count("stream entries' events", covered));
    }
    let file = storage
        .create(&temp)
        .map_err(|e| LogError::io("create", temp.clone(), e))?;
    let layout = Layout::new(end - start, stream_entries);
    let salt = annals_segment::random_u64();
    let section = |first_page| SectionWriter::new(&file, &temp, salt, first_page);
    let header = Header {
        start,
        end,
        salt,
        new_streams,
        streams: stream_entries,
        max_count,
    };
    let mut header_page = section(0);
    header_page.push_payload(&header.encode())?;
    header_page.finish()?;
    let (mut entries, mut fences) = (section(layout.streams_first), section(layout.fences_first));
    let mut count = 0u64;
    for entry in streams() {
        let entry = entry?;
        if entries.page.is_empty() {
            let mut fence = [0u8; FENCE_BYTES];
            fence[..8].copy_from_slice(&entry.hash.to_le_bytes());
            fence[8..].copy_from_slice(&entry.version.to_le_bytes());
            fences.push_item(&fence, FENCES_PER_PAGE)?;
        }
        entries.push_item(&encode_stream(entry), STREAMS_PER_PAGE)?;
        count += 1;
    }
    entries.finish()?;
    fences.finish()?;
    if count != layout.streams {
        return Err(wrong_count("stream entries (a second pass)", count));
    }
    let mut entries = section(layout.ids_first);
    count = 0;
    for entry in ids() {
        let entry = entry?;
        if !(start..end).contains(&entry.position) {
            return Err(wrong_count("id entries, one misplaced,", count));
        }
        entries.push_item(&encode_id(entry), IDS_PER_PAGE)?;
        count += 1;
    }
    entries.finish()?;
    if count != layout.events {
        return Err(wrong_count("id entries", count));
    }
    let pass = BLOOM_PASS_BLOCKS;
    write_bloom(
        &mut section(layout.stream_bloom_first),
        layout.stream_blocks,
        pass,
        || streams().map(|e| e.map(|e| e.hash)),
    )?;
    write_bloom(
        &mut section(layout.id_bloom_first),
        layout.id_blocks,
        pass,
        || ids().map(|e| e.map(|e| id_key(&e.id))),
    )?;
    file.sync_all()
        .map_err(|e| LogError::io("fsync", temp.clone(), e))?;
    drop(file);
    storage
        .rename(&temp, &name)
        .map_err(|e| LogError::io("rename", temp.clone(), e))?;
    storage
        .sync_dir()
        .map_err(|e| LogError::io("fsync dir", storage.describe(), e))?;
    Run::open(storage, &name)
}

/// An open, immutable index run.
pub struct Run {
    name: String,
    map: Mapping,
    header: Header,
    layout: Layout,
    /// One bit per page: verified already.
    verified: Box<[AtomicU64]>,
    broken: AtomicBool,
    /// The smallest and largest id in the run (read on first lookup).
    id_range: std::sync::OnceLock<([u8; 16], [u8; 16])>,
    /// The first fence of each page of fences (read on first lookup): 16
    /// bytes per ~37,000 events, so a lookup reads one page of fences.
    fence_pages: std::sync::OnceLock<Box<[(u64, u64)]>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("name", &self.name)
            .field("start", &self.header.start)
            .field("end", &self.header.end)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Opens a run file, verifying its header page and its size (the other
    /// pages are verified when first read).
    pub fn open(storage: &Arc<dyn Storage>, name: &str) -> Result<Run, LogError> {
        let corrupt = |offset: u64, reason: String| LogError::corrupt(name, offset, reason);
        let (start, end) = parse_run_file_name(name)
            .ok_or_else(|| corrupt(0, "not an index run file name".into()))?;
        let file = storage
            .open(name)
            .map_err(|e| LogError::io("open", name, e))?;
        let map = file.map().map_err(|e| LogError::io("mmap", name, e))?;
        let bytes = map.bytes();
        let first = bytes
            .get(..PAGE_BYTES)
            .ok_or_else(|| corrupt(0, format!("{} bytes: no header page", bytes.len())))?;
        let (payload, crc) = first.split_at(PAYLOAD_BYTES);
        let salt = le_u64(payload, 32);
        if payload.get(..8) != Some(MAGIC.as_slice()) {
            return Err(corrupt(0, "bad magic".into()));
        }
        if le_u32(crc, 0) != page_crc(salt, 0, payload) {
            return Err(corrupt(0, "header page checksum mismatch".into()));
        }
        let version = le_u32(payload, 8);
        if version != FORMAT_VERSION {
            return Err(LogError::UnsupportedVersion {
                file: name.to_owned(),
                version,
            });
        }
        let header = Header {
            start: le_u64(payload, 16),
            end: le_u64(payload, 24),
            salt,
            new_streams: le_u64(payload, 40),
            streams: le_u64(payload, 48),
            max_count: le_u64(payload, 56),
        };
        let events = end - start;
        if (header.start, header.end) != (start, end)
            || end > POSITION_LIMIT
            || header.new_streams > events
            || !(1..=events).contains(&header.streams)
            || !(1..=events.min(u64::from(MAX_ENTRY_EVENTS))).contains(&header.max_count)
        {
            return Err(corrupt(
                16,
                format!(
                    "header says {}..{} with {} new streams, {} stream entries of at most {} \
                     events, the name {start}..{end}",
                    header.start, header.end, header.new_streams, header.streams, header.max_count
                ),
            ));
        }
        let layout = Layout::new(events, header.streams);
        if bytes.len() as u64 != layout.pages * PAGE_BYTES as u64 {
            return Err(corrupt(
                0,
                format!(
                    "{} bytes, the layout needs {}",
                    bytes.len(),
                    layout.pages * PAGE_BYTES as u64
                ),
            ));
        }
        let verified = (0..layout.pages.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Run {
            name: name.to_owned(),
            map,
            header,
            layout,
            verified,
            broken: AtomicBool::new(false),
            id_range: std::sync::OnceLock::new(),
            fence_pages: std::sync::OnceLock::new(),
        })
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First position covered.
    pub fn start(&self) -> u64 {
        self.header.start
    }

    /// One past the last position covered.
    pub fn end(&self) -> u64 {
        self.header.end
    }

    /// Number of events (positions) covered: as many id entries.
    pub fn events(&self) -> u64 {
        self.layout.events
    }

    /// Number of stream entries (one per stream per append).
    pub fn stream_entries(&self) -> u64 {
        self.layout.streams
    }

    /// The most events one stream entry covers: an entry holding version
    /// `v` starts at a version above `v − max_count`.
    pub fn max_count(&self) -> u64 {
        self.header.max_count
    }

    /// Streams whose first event (version 0) lies in this run.
    pub fn new_streams(&self) -> u64 {
        self.header.new_streams
    }

    /// Size of the file.
    pub fn file_bytes(&self) -> u64 {
        self.layout.pages * PAGE_BYTES as u64
    }

    /// Whether a page of this run failed its checksum.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// The payload of page `page`, verified on first use.
    fn page(&self, page: u64) -> Result<&[u8], LogError> {
        let offset = page as usize * PAGE_BYTES;
        let bytes = self
            .map
            .bytes()
            .get(offset..offset + PAGE_BYTES)
            .ok_or_else(|| LogError::corrupt(&self.name, offset as u64, "page out of range"))?;
        let (payload, crc) = bytes.split_at(PAYLOAD_BYTES);
        let word = self.verified.get((page / 64) as usize);
        let bit = 1u64 << (page % 64);
        if word.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            return Ok(payload);
        }
        if le_u32(crc, 0) != page_crc(self.header.salt, page, payload) {
            self.broken.store(true, Ordering::Release);
            return Err(LogError::corrupt(
                &self.name,
                offset as u64,
                "index page checksum mismatch",
            ));
        }
        if let Some(word) = word {
            word.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(payload)
    }

    fn item(
        &self,
        first_page: u64,
        per_page: usize,
        size: usize,
        i: u64,
    ) -> Result<&[u8], LogError> {
        let page = self.page(first_page + i / per_page as u64)?;
        let at = (i % per_page as u64) as usize * size;
        page.get(at..at + size)
            .ok_or_else(|| LogError::corrupt(&self.name, 0, "item out of range"))
    }

    fn check_position(&self, position: u64) -> Result<u64, LogError> {
        if (self.header.start..self.header.end).contains(&position) {
            Ok(position)
        } else {
            self.broken.store(true, Ordering::Release);
            Err(LogError::corrupt(
                &self.name,
                0,
                format!("entry points at position {position}, outside the run"),
            ))
        }
    }

    /// The `i`th stream entry, in (hash, version, position) order.
    pub fn stream_entry(&self, i: u64) -> Result<StreamEntry, LogError> {
        if i >= self.layout.streams {
            return Err(LogError::corrupt(
                &self.name,
                0,
                "stream entry out of range",
            ));
        }
        let item = self.item(
            self.layout.streams_first,
            STREAMS_PER_PAGE,
            STREAM_ENTRY_BYTES,
            i,
        )?;
        let raw = le_u64(item, 16);
        let count = ((raw & !TOMBSTONE_BIT) >> COUNT_SHIFT) as u32 + 1;
        let position = self.check_position(raw & (POSITION_LIMIT - 1))?;
        let version = le_u64(item, 8);
        // Every event it covers is in the run, its versions fit, and it is
        // no wider than the header says.
        let last = position.checked_add(u64::from(count).saturating_sub(1));
        if u64::from(count) > self.header.max_count
            || version.checked_add(u64::from(count)).is_none()
        {
            self.broken.store(true, Ordering::Release);
            return Err(LogError::corrupt(
                &self.name,
                0,
                format!("stream entry {i} covers {count} events"),
            ));
        }
        self.check_position(last.unwrap_or(u64::MAX))?;
        Ok(StreamEntry {
            hash: le_u64(item, 0),
            version,
            position,
            tombstone: raw & TOMBSTONE_BIT != 0,
            offset: le_u32(item, 24),
            count,
        })
    }

    /// The `i`th id entry, in id order.
    pub fn id_entry(&self, i: u64) -> Result<IdEntry, LogError> {
        let item = self.item(self.layout.ids_first, IDS_PER_PAGE, ID_ENTRY_BYTES, i)?;
        let mut id = [0u8; 16];
        if let Some(bytes) = item.get(..16) {
            id.copy_from_slice(bytes);
        }
        Ok(IdEntry {
            id,
            position: self.check_position(le_u64(item, 16))?,
        })
    }

    fn bloom_has(&self, first_page: u64, blocks: u64, key: u64) -> Result<bool, LogError> {
        let block = bloom_block(key, blocks);
        let bytes = self.item(first_page, BLOCKS_PER_PAGE, BLOCK_BYTES, block)?;
        Ok(bloom_bits(key).all(|bit| {
            bytes
                .get(bit / 8)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        }))
    }

    /// Whether the run may hold entries of streams with this hash.
    pub fn may_hold_stream(&self, hash: u64) -> Result<bool, LogError> {
        self.bloom_has(
            self.layout.stream_bloom_first,
            self.layout.stream_blocks,
            hash,
        )
    }

    /// The fence of stream entry page `page`: its first (hash, version).
    fn fence(&self, page: u64) -> Result<(u64, u64), LogError> {
        let item = self.item(self.layout.fences_first, FENCES_PER_PAGE, FENCE_BYTES, page)?;
        Ok((le_u64(item, 0), le_u64(item, 8)))
    }

    /// The first fence of each page of fences.
    fn fence_pages(&self) -> Result<&[(u64, u64)], LogError> {
        if let Some(firsts) = self.fence_pages.get() {
            return Ok(firsts);
        }
        let per_page = FENCES_PER_PAGE as u64;
        let firsts = (0..self.layout.entry_pages.div_ceil(per_page))
            .map(|page| self.fence(page * per_page))
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(self.fence_pages.get_or_init(|| firsts))
    }

    /// Index of the first stream entry at or after `(hash, version)`: the
    /// page of fences from the first fence of each (in memory), a binary
    /// search in that page, then in one page of entries — each page's lines
    /// fetched together before its search probes them one after another.
    pub fn seek_stream(&self, hash: u64, version: u64) -> Result<u64, LogError> {
        let key = (hash, version);
        // First page whose fence is not below the key. Fence page `f - 1`
        // starts below the key and page `f` does not, so the answer is in
        // page `f - 1` after its first fence, or is page `f`'s first.
        let per_fence_page = FENCES_PER_PAGE as u64;
        let f = self.fence_pages()?.partition_point(|first| *first < key) as u64;
        let (mut low, mut high) = match f.checked_sub(1) {
            None => (0, 0),
            Some(page) => {
                annals_segment::prefetch_all(self.page(self.layout.fences_first + page)?);
                (
                    page * per_fence_page + 1,
                    (f * per_fence_page).min(self.layout.entry_pages),
                )
            }
        };
        while low < high {
            let mid = low + (high - low) / 2;
            if self.fence(mid)? < key {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        // Every entry before the page ahead of it is below the key, every
        // entry from that page on is not.
        let per_page = STREAMS_PER_PAGE as u64;
        let page = low.saturating_sub(1);
        // The search probes ~8 cache lines of the page, each depending on
        // the last: ask for all of them at once.
        if page < self.layout.entry_pages {
            annals_segment::prefetch_all(self.page(self.layout.streams_first + page)?);
        }
        let (mut low, mut high) = (page * per_page, (low * per_page).min(self.layout.streams));
        while low < high {
            let mid = low + (high - low) / 2;
            let entry = self.stream_entry(mid)?;
            if (entry.hash, entry.version) < (hash, version) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        Ok(low)
    }

    /// The position of the event with this id, if it is in this run.
    pub fn find_id(&self, id: &[u8; 16]) -> Result<Option<u64>, LogError> {
        // Outside the run's id range, it is not there: time-ordered ids
        // made after the run was written skip it without a filter probe
        // (a cache miss per run and id otherwise).
        let Some(last) = self.layout.events.checked_sub(1) else {
            return Ok(None);
        };
        let (low, high) = match self.id_range.get() {
            Some(range) => *range,
            None => {
                let range = (self.id_entry(0)?.id, self.id_entry(last)?.id);
                *self.id_range.get_or_init(|| range)
            }
        };
        if id < &low || id > &high {
            return Ok(None);
        }
        let (first, blocks) = (self.layout.id_bloom_first, self.layout.id_blocks);
        if !self.bloom_has(first, blocks, id_key(id))? {
            return Ok(None);
        }
        let (mut low, mut high) = (0u64, self.layout.events);
        while low < high {
            let mid = low + (high - low) / 2;
            let entry = self.id_entry(mid)?;
            match entry.id.cmp(id) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(Some(entry.position)),
            }
        }
        Ok(None)
    }

    /// Reads and verifies every page, and checks that both tables are
    /// sorted and cover each position once. Returns the digest of its
    /// entries, to compare with one of the entries the log implies.
    pub fn verify(&self) -> Result<EntryDigest, LogError> {
        let mut digest = EntryDigest::default();
        for page in 0..self.layout.pages {
            self.page(page)?;
        }
        // Two bits per position (stream table, id table): a quarter byte
        // per event of the run.
        let mut seen = vec![0u64; (self.layout.events as usize).div_ceil(32)];
        let mut mark = |position: u64, table: u8| -> Result<(), LogError> {
            let k = position.wrapping_sub(self.header.start);
            let bit = 1u64 << ((k % 32) * 2 + u64::from(table));
            let slot = usize::try_from(k / 32)
                .ok()
                .filter(|_| k < self.layout.events)
                .and_then(|i| seen.get_mut(i));
            match slot {
                Some(s) if *s & bit == 0 => {
                    *s |= bit;
                    Ok(())
                }
                _ => Err(LogError::corrupt(
                    &self.name,
                    0,
                    format!("position {position} indexed twice"),
                )),
            }
        };
        let out_of_order = |what: &str, i: u64| {
            LogError::corrupt(&self.name, 0, format!("{what} entry {i} out of order"))
        };
        let mut last_stream: Option<StreamEntry> = None;
        for i in 0..self.layout.streams {
            let stream = self.stream_entry(i)?;
            // Sorted. (Entries of one hash may overlap in versions: two
            // streams can share a hash.)
            if last_stream.is_some_and(|l| l >= stream) {
                return Err(out_of_order("stream", i));
            }
            if i % STREAMS_PER_PAGE as u64 == 0
                && self.fence(i / STREAMS_PER_PAGE as u64)? != (stream.hash, stream.version)
            {
                return Err(LogError::corrupt(
                    &self.name,
                    0,
                    format!("fence of entry {i} is wrong"),
                ));
            }
            for k in 0..u64::from(stream.count) {
                mark(stream.position + k, 0)?;
            }
            digest.add_stream(&stream);
            last_stream = Some(stream);
        }
        let mut last_id: Option<IdEntry> = None;
        for i in 0..self.layout.events {
            let id = self.id_entry(i)?;
            if last_id.is_some_and(|l| l.id >= id.id) {
                return Err(out_of_order("id", i));
            }
            mark(id.position, 1)?;
            digest.add_id(&id);
            last_id = Some(id);
        }
        Ok(digest)
    }
}

/// An order-independent digest of a set of index entries: two sums of
/// differently seeded 64-bit mixes of each entry, and the count. Comparing
/// a run's digest with one of the entries rebuilt from the log needs no
/// memory per entry (sorting the rebuilt entries to compare them one by one
/// needed 48 bytes per event of the run); two different sets share a digest
/// with probability about 2⁻¹²⁸.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryDigest {
    count: u64,
    a: u64,
    b: u64,
}

impl EntryDigest {
    /// Adds a stream entry.
    pub fn add_stream(&mut self, entry: &StreamEntry) {
        let tombstone = u64::from(entry.tombstone) << 63;
        self.add(&[
            1,
            entry.hash,
            entry.version,
            entry.position | tombstone,
            u64::from(entry.offset),
            u64::from(entry.count),
        ]);
    }

    /// Adds an id entry.
    pub fn add_id(&mut self, entry: &IdEntry) {
        let (low, high) = entry.id.split_at(8);
        let word = |bytes: &[u8]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            u64::from_le_bytes(b)
        };
        self.add(&[2, word(low), word(high), entry.position]);
    }

    fn add(&mut self, words: &[u64]) {
        let fold = |seed: u64| words.iter().fold(seed, |h, w| mix(h ^ w));
        self.count += 1;
        self.a = self.a.wrapping_add(fold(0x243f_6a88_85a3_08d3));
        self.b = self.b.wrapping_add(fold(0x1319_8a2e_0370_7344));
    }
}

/// The entries of several adjacent runs merged into one sorted sequence.
fn merged<'a, T: Ord + Copy + 'a>(
    runs: &'a [Arc<Run>],
    len: impl Fn(&Run) -> u64 + 'a,
    get: impl Fn(&Run, u64) -> Result<T, LogError> + 'a,
) -> impl Iterator<Item = Result<T, LogError>> + 'a {
    let mut cursors = vec![0u64; runs.len()];
    let mut heads: Vec<Option<T>> = vec![None; runs.len()];
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let mut best: Option<(usize, T)> = None;
        for (k, run) in runs.iter().enumerate() {
            let (Some(head), Some(cursor)) = (heads.get_mut(k), cursors.get(k)) else {
                continue;
            };
            if head.is_none() && *cursor < len(run) {
                match get(run, *cursor) {
                    Ok(entry) => *head = Some(entry),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            if let Some(entry) = *head {
                if best.is_none_or(|(_, b)| entry < b) {
                    best = Some((k, entry));
                }
            }
        }
        let (k, entry) = best?;
        if let (Some(head), Some(cursor)) = (heads.get_mut(k), cursors.get_mut(k)) {
            *head = None;
            *cursor += 1;
        }
        Some(Ok(entry))
    })
}

/// Merges adjacent runs (sorted by position, each starting where the one
/// before ends) into one run file covering them all.
pub fn merge_runs(storage: &Arc<dyn Storage>, runs: &[Arc<Run>]) -> Result<Run, LogError> {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return Err(LogError::Invalid("merge of no runs".into()));
    };
    if runs.windows(2).any(|w| match w {
        [a, b] => a.end() != b.start(),
        _ => false,
    }) {
        return Err(LogError::Invalid(
            "merge of runs that are not adjacent".into(),
        ));
    }
    let new_streams = runs.iter().map(|r| r.new_streams()).sum();
    write_run(
        storage,
        first.start(),
        last.end(),
        new_streams,
        || merged(runs, Run::stream_entries, Run::stream_entry),
        || merged(runs, Run::events, Run::id_entry),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_segment::storage::MemStorage;

    #[test]
    fn verify_refuses_a_position_indexed_twice_and_writing_refuses_one_outside() {
        let storage = storage();
        let (streams, ids) = entries(100, 164);
        let write_with = |stream_position: u64, start: u64| {
            let mut streams = streams.clone();
            if let Some(e) = streams.get_mut(1) {
                e.position = stream_position;
            }
            write_run(
                &storage,
                start,
                start + 64,
                0,
                || streams.iter().copied().map(Ok),
                || ids.iter().copied().map(Ok),
            )
        };
        // Entry 1 takes entry 0's position: sorted, in range, but twice.
        let run = write_with(streams[0].position, 100).unwrap();
        let error = run.verify().unwrap_err();
        assert!(error.to_string().contains("indexed twice"), "{error}");
        for outside in [5, 164, u64::MAX] {
            assert!(write_with(outside, 100).is_err(), "{outside}");
        }
    }

    #[test]
    fn a_digest_ignores_order_and_sees_any_changed_field() {
        let streams: Vec<StreamEntry> = (0..50u64)
            .map(|p| StreamEntry {
                hash: p % 7,
                version: p / 7,
                position: p,
                tombstone: p == 49,
                offset: 64 + p as u32 * 100,
                count: 1 + (p % 3) as u32,
            })
            .collect();
        let ids: Vec<IdEntry> = (0..50u64)
            .map(|p| IdEntry {
                id: [p as u8; 16],
                position: p,
            })
            .collect();
        let digest = |streams: &[StreamEntry], ids: &[IdEntry]| {
            let mut d = EntryDigest::default();
            streams.iter().for_each(|e| d.add_stream(e));
            ids.iter().for_each(|e| d.add_id(e));
            d
        };
        let base = digest(&streams, &ids);
        let (mut rs, mut ri) = (streams.clone(), ids.clone());
        rs.reverse();
        ri.rotate_left(13);
        assert_eq!(digest(&rs, &ri), base, "order does not matter");
        let changes: [fn(&mut StreamEntry, &mut IdEntry); 7] = [
            |s, _| s.hash ^= 1,
            |s, _| s.version += 1,
            |s, _| s.position ^= 1 << 40,
            |s, _| s.tombstone = !s.tombstone,
            |_, i| i.id[15] ^= 0x80,
            |s, _| s.offset += 8,
            |s, _| s.count += 1,
        ];
        for (k, change) in changes.iter().enumerate() {
            let (mut s, mut i) = (streams.clone(), ids.clone());
            change(&mut s[k * 7], &mut i[k * 7]);
            assert_ne!(digest(&s, &i), base, "change {k}");
        }
        // Two entries swapping positions: the same multiset of positions,
        // a different set of entries.
        let mut s = streams.clone();
        let (a, b) = (s[3].position, s[4].position);
        s[3].position = b;
        s[4].position = a;
        assert_ne!(digest(&s, &ids), base);
        assert_ne!(digest(&streams[1..], &ids[1..]), base, "count");
    }

    fn storage() -> Arc<dyn Storage> {
        Arc::new(MemStorage::new())
    }

    /// Appends of 3 events (`SPAN`), to 7 streams in turn, cut at `start`
    /// and `end`.
    fn entries(start: u64, end: u64) -> (Vec<StreamEntry>, Vec<IdEntry>) {
        let mut streams: Vec<StreamEntry> = (start / SPAN..end.div_ceil(SPAN))
            .map(|j| {
                let (first, past) = ((j * SPAN).max(start), (j * SPAN + SPAN).min(end));
                StreamEntry {
                    hash: mix(j % 7),
                    version: j / 7 * SPAN + (first - j * SPAN),
                    position: first,
                    tombstone: j % 11 == 0,
                    offset: (mix(first) >> 32) as u32,
                    count: (past - first) as u32,
                }
            })
            .collect();
        let mut ids: Vec<IdEntry> = (start..end)
            .map(|p| IdEntry {
                id: mix(p).to_le_bytes().repeat(2).try_into().unwrap(),
                position: p,
            })
            .collect();
        streams.sort_unstable();
        ids.sort_unstable();
        (streams, ids)
    }

    const SPAN: u64 = 3;

    fn write(storage: &Arc<dyn Storage>, start: u64, end: u64) -> Run {
        let (streams, ids) = entries(start, end);
        let new = streams.iter().filter(|e| e.version == 0).count() as u64;
        write_run(
            storage,
            start,
            end,
            new,
            || streams.iter().copied().map(Ok),
            || ids.iter().copied().map(Ok),
        )
        .unwrap()
    }

    /// A run of several pages of fences (the in-memory first fence of each
    /// page picks one): the search equals a lower bound over the entries,
    /// for keys at, just before and just after every page boundary.
    #[test]
    fn a_seek_through_several_pages_of_fences_finds_the_lower_bound() {
        let storage = storage();
        let (start, end) = (
            0,
            SPAN * (3 * FENCES_PER_PAGE as u64 * STREAMS_PER_PAGE as u64 + 777),
        );
        let run = write(&storage, start, end);
        let (streams, _) = entries(start, end);
        assert_eq!(run.fence_pages().unwrap().len(), 4);
        let keys = streams
            .iter()
            .step_by(STREAMS_PER_PAGE)
            .flat_map(|e| {
                [
                    (e.hash, e.version),
                    (e.hash, e.version.wrapping_sub(1)),
                    (e.hash, e.version + 1),
                ]
            })
            .chain([(0, 0), (u64::MAX, u64::MAX), (streams[0].hash, 0)]);
        assert_seeks_find_lower_bounds(&run, &streams, keys);
    }

    /// `seek_stream` of each key equals a lower bound over `streams`.
    fn assert_seeks_find_lower_bounds(
        run: &Run,
        streams: &[StreamEntry],
        keys: impl Iterator<Item = (u64, u64)>,
    ) {
        for (hash, version) in keys {
            let lower = streams.partition_point(|e| (e.hash, e.version) < (hash, version));
            assert_eq!(
                run.seek_stream(hash, version).unwrap(),
                lower as u64,
                "{hash:x}/{version}"
            );
        }
    }

    #[test]
    fn a_written_run_reads_back_every_entry_and_id() {
        let storage = storage();
        let run = write(&storage, 100, 1100);
        run.verify().unwrap();
        let (streams, ids) = entries(100, 1100);
        for (i, entry) in streams.iter().enumerate() {
            assert_eq!(run.stream_entry(i as u64).unwrap(), *entry);
            assert!(run.may_hold_stream(entry.hash).unwrap());
            let at = run.seek_stream(entry.hash, entry.version).unwrap();
            assert_eq!(run.stream_entry(at).unwrap(), *entry);
        }
        for entry in &ids {
            assert_eq!(run.find_id(&entry.id).unwrap(), Some(entry.position));
        }
        assert_eq!(run.find_id(&[7; 16]).unwrap(), None);
        // Any key, present or not: the fence-guided search equals a linear
        // lower bound.
        let keys = streams
            .iter()
            .flat_map(|e| {
                [
                    (e.hash, e.version),
                    (e.hash, e.version + 1),
                    (e.hash.wrapping_sub(1), 0),
                ]
            })
            .chain([(0, 0), (u64::MAX, u64::MAX)]);
        assert_seeks_find_lower_bounds(&run, &streams, keys);
        let absent = (1000..2000)
            .filter(|k| run.may_hold_stream(mix(*k)).unwrap())
            .count();
        assert!(
            absent < 100,
            "{absent} of 1000 absent streams passed the filter"
        );
        assert_eq!(run.new_streams(), 0, "no version 0 lies in 100..1100");
        assert_eq!(write(&storage, 0, 50).new_streams(), 7);
    }

    #[test]
    fn ids_outside_a_run_s_range_are_answered_without_its_filter() {
        let storage = storage();
        let run = write(&storage, 1, 400);
        let (_, ids) = entries(1, 400);
        // (Position 0's id would be all zeros: start at 1.)
        assert!(ids[0].id > [0; 16] && ids[ids.len() - 1].id < [0xff; 16]);
        let (low, high) = (ids[0].id, ids[ids.len() - 1].id);
        let name = run.name().to_owned();
        let mut bytes = run.map.bytes().to_vec();
        let filter_page = run.layout.id_bloom_first as usize;
        drop(run);
        // Damage every page of the id filter: a lookup that reads it fails.
        let filter_pages = bloom_blocks_for(399).div_ceil(BLOCKS_PER_PAGE as u64) as usize;
        for page in filter_page..filter_page + filter_pages {
            bytes[page * PAGE_BYTES + 1] ^= 0x40;
        }
        storage
            .open(&name)
            .unwrap()
            .write_all_at(&bytes, 0)
            .unwrap();
        let run = Run::open(&storage, &name).unwrap();
        let mut below = low;
        below[15] = below[15].wrapping_sub(1);
        if below > low {
            below = [0; 16];
        }
        assert_eq!(run.find_id(&[0; 16]).unwrap(), None);
        assert_eq!(run.find_id(&[0xff; 16]).unwrap(), None);
        let mut above = high;
        above[15] = above[15].wrapping_add(1);
        if above < high {
            above = [0xff; 16];
        }
        assert_eq!(run.find_id(&below).unwrap(), None);
        assert_eq!(run.find_id(&above).unwrap(), None);
        // Inside the range the filter is read, and its damage found.
        assert!(run.find_id(&low).is_err());
        assert!(run.is_broken());
        // The bounds themselves are in the run.
        let run = write(&storage, 1, 400);
        assert_eq!(run.find_id(&low).unwrap(), Some(ids[0].position));
        assert_eq!(
            run.find_id(&high).unwrap(),
            Some(ids[ids.len() - 1].position)
        );
    }

    #[test]
    fn merging_adjacent_runs_equals_writing_them_at_once() {
        let storage = storage();
        // Cut where appends end (runs do: a run holds whole appends).
        let parts: Vec<Arc<Run>> = [(0, 300), (300, 303), (303, 1000)]
            .iter()
            .map(|&(s, e)| Arc::new(write(&storage, s, e)))
            .collect();
        let merged = merge_runs(&storage, &parts).unwrap();
        merged.verify().unwrap();
        let (streams, ids) = entries(0, 1000);
        assert_eq!(merged.events(), 1000);
        assert_eq!(merged.stream_entries(), streams.len() as u64);
        for (i, s) in streams.iter().enumerate() {
            assert_eq!(merged.stream_entry(i as u64).unwrap(), *s);
        }
        for (i, d) in ids.iter().enumerate() {
            assert_eq!(merged.id_entry(i as u64).unwrap(), *d);
        }
        assert_eq!(merged.new_streams(), 7);
        let gap = [Arc::clone(&parts[0]), Arc::clone(&parts[2])];
        assert!(merge_runs(&storage, &gap).is_err());
    }

    #[test]
    fn every_flipped_byte_is_caught_by_open_or_by_the_page_check() {
        let storage = storage();
        let run = write(&storage, 0, 400);
        let name = run.name().to_owned();
        let pristine = run.map.bytes().to_vec();
        drop(run);
        for offset in (0..pristine.len()).step_by(97) {
            let mut bytes = pristine.clone();
            bytes[offset] ^= 0x10;
            let file = storage.open(&name).unwrap();
            file.write_all_at(&bytes, 0).unwrap();
            let caught = match Run::open(&storage, &name) {
                Err(LogError::Corrupt { .. }) => true,
                Err(other) => panic!("offset {offset}: {other}"),
                Ok(run) => run.verify().is_err() && run.is_broken(),
            };
            assert!(caught, "flip at {offset} not detected");
        }
    }

    #[test]
    fn a_filter_built_in_many_passes_equals_one_built_at_once() {
        let storage = storage();
        let keys: Vec<u64> = (0..20_000u64).map(mix).collect();
        let blocks = bloom_blocks_for(keys.len() as u64);
        assert!(blocks > 5 * BLOCKS_PER_PAGE as u64);
        let mut files = Vec::new();
        for (name, pass) in [
            ("one", u64::MAX),
            ("many", BLOCKS_PER_PAGE as u64),
            ("odd", 7),
        ] {
            let file = storage.create(name).unwrap();
            let mut section = SectionWriter::new(&file, name, 42, 0);
            write_bloom(&mut section, blocks, pass, || keys.iter().copied().map(Ok)).unwrap();
            files.push(storage.open(name).unwrap().map().unwrap().bytes().to_vec());
        }
        assert_eq!(
            files[0].len() as u64,
            blocks.div_ceil(BLOCKS_PER_PAGE as u64) * PAGE_BYTES as u64
        );
        assert_eq!(files[0], files[1]);
        assert_eq!(files[0], files[2]);
        assert!(files[0].iter().any(|b| *b != 0));
    }

    #[test]
    fn the_widest_entries_at_the_highest_positions_round_trip_and_wider_are_refused() {
        let storage = storage();
        let max = u64::from(MAX_ENTRY_EVENTS);
        let (start, end) = (POSITION_LIMIT - max - 1, POSITION_LIMIT);
        let wide = StreamEntry {
            hash: 7,
            version: u64::MAX - max,
            position: start,
            tombstone: true,
            offset: u32::MAX,
            count: MAX_ENTRY_EVENTS,
        };
        let one = StreamEntry {
            hash: 8,
            version: 0,
            position: end - 1,
            tombstone: false,
            offset: 64,
            count: 1,
        };
        let ids: Vec<IdEntry> = (start..end)
            .map(|p| IdEntry {
                id: mix(p).to_le_bytes().repeat(2).try_into().unwrap(),
                position: p,
            })
            .collect();
        let mut ids = ids;
        ids.sort_unstable();
        let write = |streams: &[StreamEntry], start: u64, end: u64| {
            write_run(
                &storage,
                start,
                end,
                1,
                || streams.iter().copied().map(Ok),
                || ids.iter().copied().map(Ok),
            )
        };
        let run = write(&[wide, one], start, end).unwrap();
        run.verify().unwrap();
        assert_eq!(run.stream_entry(0).unwrap(), wide);
        assert_eq!(run.stream_entry(1).unwrap(), one);
        assert_eq!(run.max_count(), max);
        // One event wider, or a run past the position limit: refused.
        let wider = StreamEntry {
            count: MAX_ENTRY_EVENTS + 1,
            ..wide
        };
        assert!(write(&[wider], start, end).is_err());
        let shifted = [
            StreamEntry {
                position: start + 1,
                ..wide
            },
            StreamEntry {
                position: end,
                ..one
            },
        ];
        assert!(write(&shifted, start + 1, end + 1).is_err());
    }

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(parse_run_file_name(&run_file_name(5, 9)), Some((5, 9)));
        assert_eq!(parse_run_file_name("index-0-1.run"), None);
        assert_eq!(parse_run_file_name(&run_file_name(9, 9)), None);
        assert_eq!(parse_run_file_name("00000000000000000000.seg"), None);
    }
}
