//! Reading a run: [`Run`] opens and checks a file, and reads its entries,
//! verifying each page on first use.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use annals_segment::storage::{Mapping, Storage};
use annals_segment::Error as LogError;

use crate::Error;

use super::*;

/// An open, immutable index run.
pub struct Run {
    pub(super) name: String,
    pub(super) map: Mapping,
    pub(super) header: Header,
    pub(super) layout: Layout,
    /// One bit per page: verified already.
    pub(super) verified: Box<[AtomicU64]>,
    pub(super) broken: AtomicBool,
    /// The smallest and largest id in the run (read on first lookup).
    pub(super) id_range: std::sync::OnceLock<([u8; 16], [u8; 16])>,
    /// The first fence of each page of fences (read on first lookup): 16
    /// bytes per ~37,000 events, so a lookup reads one page of fences.
    pub(super) fence_pages: std::sync::OnceLock<Box<[(u64, u64)]>>,
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
    pub fn open(storage: &Arc<dyn Storage>, name: &str) -> Result<Run, Error> {
        let corrupt = |offset: u64, reason: String| Error::corrupt(name, offset, reason);
        let (start, end) = parse_run_file_name(name)
            .ok_or_else(|| corrupt(0, "not an index run file name".into()))?;
        let file = storage.open(name).map_err(|e| Error::io("open", name, e))?;
        let map = file.map().map_err(|e| Error::io("mmap", name, e))?;
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
            return Err(Error::Storage(LogError::UnsupportedVersion {
                file: name.to_owned(),
                version,
            }));
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
    pub(super) fn page(&self, page: u64) -> Result<&[u8], Error> {
        let offset = page as usize * PAGE_BYTES;
        let bytes = self
            .map
            .bytes()
            .get(offset..offset + PAGE_BYTES)
            .ok_or_else(|| Error::corrupt(&self.name, offset as u64, "page out of range"))?;
        let (payload, crc) = bytes.split_at(PAYLOAD_BYTES);
        let word = self.verified.get((page / 64) as usize);
        let bit = 1u64 << (page % 64);
        if word.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            return Ok(payload);
        }
        if le_u32(crc, 0) != page_crc(self.header.salt, page, payload) {
            self.broken.store(true, Ordering::Release);
            return Err(Error::corrupt(
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

    pub(super) fn item(
        &self,
        first_page: u64,
        per_page: usize,
        size: usize,
        i: u64,
    ) -> Result<&[u8], Error> {
        let page = self.page(first_page + i / per_page as u64)?;
        let at = (i % per_page as u64) as usize * size;
        page.get(at..at + size)
            .ok_or_else(|| Error::corrupt(&self.name, 0, "item out of range"))
    }

    pub(super) fn check_position(&self, position: u64) -> Result<u64, Error> {
        if (self.header.start..self.header.end).contains(&position) {
            Ok(position)
        } else {
            self.broken.store(true, Ordering::Release);
            Err(Error::corrupt(
                &self.name,
                0,
                format!("entry points at position {position}, outside the run"),
            ))
        }
    }

    /// The `i`th stream entry, in (hash, version, position) order.
    pub fn stream_entry(&self, i: u64) -> Result<StreamEntry, Error> {
        if i >= self.layout.streams {
            return Err(Error::corrupt(&self.name, 0, "stream entry out of range"));
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
            return Err(Error::corrupt(
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
            offset: EventOffset::from_disk(le_u32(item, 24)),
            count,
        })
    }

    /// The `i`th id entry, in id order.
    pub fn id_entry(&self, i: u64) -> Result<IdEntry, Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

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
                Err(Error::Storage(LogError::Corrupt { .. })) => true,
                Err(other) => panic!("offset {offset}: {other}"),
                Ok(run) => run.verify().is_err() && run.is_broken(),
            };
            assert!(caught, "flip at {offset} not detected");
        }
    }
}
