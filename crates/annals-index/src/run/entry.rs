//! The entries a run holds (a stream entry per stream per append, an id
//! entry per event) and their encoding in a page.

use std::num::NonZeroU32;

use super::*;

/// Where an event starts in its segment file, if known: the byte offset
/// that lets a read go straight to it.
///
/// No event starts at offset 0 (the segment header is there), so a run
/// stores an unknown offset as 0 (`docs/FORMAT.md`); only the encoding and
/// decoding of a stream entry see that 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventOffset(Option<NonZeroU32>);

impl EventOffset {
    /// No offset known.
    pub const UNKNOWN: EventOffset = EventOffset(None);

    /// The offset a log reported (0, never an event's offset, is unknown).
    pub fn new(offset: u32) -> EventOffset {
        EventOffset(NonZeroU32::new(offset))
    }

    /// The offset, if known.
    pub fn known(self) -> Option<u32> {
        self.0.map(NonZeroU32::get)
    }

    /// The offset as a run stores it: 0 where unknown.
    pub(crate) fn to_disk(self) -> u32 {
        self.known().unwrap_or(0)
    }

    /// The offset a run stored (0: unknown).
    pub(crate) fn from_disk(raw: u32) -> EventOffset {
        EventOffset::new(raw)
    }
}

impl From<Option<u32>> for EventOffset {
    fn from(offset: Option<u32>) -> EventOffset {
        offset.map_or(EventOffset::UNKNOWN, EventOffset::new)
    }
}

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
    /// straight to it (`LogReader::with_stream_events`). Unknown for a
    /// memtable entry nobody recorded an offset for; runs are written with
    /// the offsets the log reports.
    pub offset: EventOffset,
    /// Number of events: 1 to [`MAX_ENTRY_EVENTS`].
    pub count: u32,
}

impl StreamEntry {
    /// The first event's offset in its segment, if the entry knows it.
    pub fn known_offset(&self) -> Option<u32> {
        self.offset.known()
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

pub(super) fn encode_stream(entry: StreamEntry) -> [u8; STREAM_ENTRY_BYTES] {
    let mut item = [0u8; STREAM_ENTRY_BYTES];
    item[..8].copy_from_slice(&entry.hash.to_le_bytes());
    item[8..16].copy_from_slice(&entry.version.to_le_bytes());
    let word = entry.position
        | u64::from(entry.count.saturating_sub(1)) << COUNT_SHIFT
        | if entry.tombstone { TOMBSTONE_BIT } else { 0 };
    item[16..24].copy_from_slice(&word.to_le_bytes());
    item[24..].copy_from_slice(&entry.offset.to_disk().to_le_bytes());
    item
}

pub(super) fn encode_id(entry: IdEntry) -> [u8; ID_ENTRY_BYTES] {
    let mut item = [0u8; ID_ENTRY_BYTES];
    item[..16].copy_from_slice(&entry.id);
    item[16..].copy_from_slice(&entry.position.to_le_bytes());
    item
}
