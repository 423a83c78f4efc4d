//! The memtable: every index entry of a contiguous range of recent global
//! positions, in memory, by full stream name.

use std::collections::{BTreeMap, HashMap};

use crate::hash::{Fnv1aMix, StreamHasher};
use crate::ids::IdTable;
use crate::run::{EventOffset, IdEntry, StreamEntry};
use crate::{Direction, Error, StreamState};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Box<str>,
    /// Version of `positions[0]`: earlier versions live in older runs.
    first_version: u64,
    positions: Vec<u64>,
    deleted: bool,
}

impl Entry {
    fn len(&self) -> u64 {
        self.first_version + self.positions.len() as u64
    }
}

/// The bucket map's keys are already mixed by the [`StreamHasher`]: hashing
/// them again (SipHash) cost more than the rest of an index update.
#[derive(Debug, Clone, Copy, Default)]
struct PremixedKey;

impl std::hash::BuildHasher for PremixedKey {
    type Hasher = PremixedHasher;
    fn build_hasher(&self) -> PremixedHasher {
        PremixedHasher(0)
    }
}

#[derive(Debug)]
struct PremixedHasher(u64);

impl std::hash::Hasher for PremixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Stream name → (version → position) and id → position for the events at
/// positions `start..end`, in memory.
#[derive(Debug)]
pub struct Memtable<H: StreamHasher = Fnv1aMix> {
    hasher: H,
    buckets: HashMap<u64, Vec<Entry>, PremixedKey>,
    ids: IdTable,
    /// Each event's byte offset in its segment, by position − `start`;
    /// unknown until recorded (see [`Memtable::record_offsets`]). 4 bytes
    /// per event, not per stream: positions here are dense.
    offsets: Vec<EventOffset>,
    /// One bit per event, by position − `start`: set where the event
    /// continues the stream entry of the event before it (same append,
    /// same stream), so that [`Memtable::stream_entries`] gives one entry
    /// per stream per append, as the log's flags imply.
    continues: Vec<u64>,
    start: u64,
    end: u64,
    new_streams: u64,
}

impl Memtable {
    /// An empty memtable whose first entry will be at `start`.
    pub fn new(start: u64) -> Self {
        Self::with_hasher(Fnv1aMix, start)
    }
}

impl<H: StreamHasher> Memtable<H> {
    /// An empty memtable with the given hash (tests use a deliberately weak one).
    pub fn with_hasher(hasher: H, start: u64) -> Self {
        Memtable {
            hasher,
            buckets: HashMap::default(),
            ids: IdTable::default(),
            offsets: Vec::new(),
            continues: Vec::new(),
            start,
            end: start,
            new_streams: 0,
        }
    }

    fn entry(&self, stream: &str) -> Option<&Entry> {
        self.buckets
            .get(&self.hasher.hash(stream))?
            .iter()
            .find(|e| &*e.name == stream)
    }

    /// The stream's state, if the memtable holds any of its entries.
    pub fn state(&self, stream: &str) -> Option<StreamState> {
        self.entry(stream).map(|e| StreamState {
            len: e.len(),
            deleted: e.deleted,
        })
    }

    /// Records the events one append wrote to `stream`: versions from
    /// `version`, positions from `position` (which must be this memtable's
    /// end), one per id. Only the last may be a `tombstone`. Versions of a
    /// stream already here must follow on densely; a stream new to the
    /// memtable starts at whatever version the caller found in older runs.
    /// `starts_append`: whether these are the first events of an append
    /// (later events of the same append, in the same stream right after the
    /// previous ones, extend its stream entry).
    pub fn push_stream_events(
        &mut self,
        stream: &str,
        version: u64,
        position: u64,
        ids: &[[u8; 16]],
        tombstone: bool,
        starts_append: bool,
    ) -> Result<(), Error> {
        if position != self.end {
            return Err(Error::PositionGap {
                position,
                end: self.end,
            });
        }
        let bucket = self.buckets.entry(self.hasher.hash(stream)).or_default();
        let entry = match bucket.iter_mut().position(|e| &*e.name == stream) {
            Some(i) => {
                let Some(entry) = bucket.get_mut(i) else {
                    unreachable!("index {i} was just found")
                };
                if entry.deleted {
                    return Err(Error::Deleted(stream.to_owned()));
                }
                if version != entry.len() {
                    return Err(Error::VersionGap {
                        stream: stream.to_owned(),
                        version,
                        expected: entry.len(),
                    });
                }
                entry
            }
            None => {
                // New entries go first in their bucket, where the search finds them.
                bucket.insert(
                    0,
                    Entry {
                        name: stream.into(),
                        first_version: version,
                        positions: Vec::new(),
                        deleted: false,
                    },
                );
                match bucket.first_mut() {
                    Some(entry) => entry,
                    None => unreachable!("an entry was just inserted"),
                }
            }
        };
        if version == 0 {
            self.new_streams += 1;
        }
        let count = ids.len() as u64;
        let joins_previous = !starts_append
            && entry
                .positions
                .last()
                .is_some_and(|&last| last + 1 == position);
        entry.positions.extend(position..position + count);
        entry.deleted = tombstone;
        for (i, id) in ids.iter().enumerate() {
            self.ids.insert(*id, position + i as u64);
        }
        let first = usize::try_from(position - self.start).unwrap_or(usize::MAX);
        self.end += count;
        let len = usize::try_from(self.end - self.start).unwrap_or(0);
        self.offsets.resize(len, EventOffset::UNKNOWN);
        self.continues.resize(len.div_ceil(64), 0);
        let skip = usize::from(!joins_previous);
        for i in first.saturating_add(skip)..len {
            if let Some(word) = self.continues.get_mut(i / 64) {
                *word |= 1 << (i % 64);
            }
        }
        Ok(())
    }

    /// Whether the event at `position` continues the stream entry of the
    /// one before it.
    fn continues(&self, position: u64) -> bool {
        let i = usize::try_from(position.wrapping_sub(self.start)).unwrap_or(usize::MAX);
        self.continues
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Records where the events from `position` on sit in their segments
    /// (byte offsets, as the log writer reported them), so that reads and
    /// the run written from this memtable go straight to them. The
    /// positions must already be here.
    pub fn record_offsets(&mut self, position: u64, offsets: &[u32]) -> Result<(), Error> {
        let from = position
            .checked_sub(self.start)
            .and_then(|i| usize::try_from(i).ok());
        let slots = from.and_then(|from| self.offsets.get_mut(from..from + offsets.len()));
        match slots {
            Some(slots) => {
                for (slot, &offset) in slots.iter_mut().zip(offsets) {
                    *slot = EventOffset::new(offset);
                }
                Ok(())
            }
            None => Err(Error::PositionGap {
                position: position + offsets.len() as u64,
                end: self.end,
            }),
        }
    }

    /// The byte offset recorded for the event at `position`, if any.
    pub fn offset_of(&self, position: u64) -> Option<u32> {
        let i = usize::try_from(position.checked_sub(self.start)?).ok()?;
        self.offsets.get(i)?.known()
    }

    /// Up to `max` (version, position, byte offset if recorded) of
    /// `stream` held here, from version `from` (inclusive) in `direction`.
    /// Backward from a version past the end starts at the last one.
    pub fn read(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Vec<(u64, u64, Option<u32>)> {
        let Some(entry) = self.entry(stream) else {
            return Vec::new();
        };
        let first = entry.first_version;
        let len = entry.len();
        let at = |v: u64| {
            let position = *entry.positions.get((v - first) as usize)?;
            Some((v, position, self.offset_of(position)))
        };
        match direction {
            Direction::Forward => (from.max(first)..len).take(max).filter_map(at).collect(),
            Direction::Backward => {
                if len == first || from < first {
                    return Vec::new();
                }
                (first..=from.min(len - 1))
                    .rev()
                    .take(max)
                    .filter_map(at)
                    .collect()
            }
        }
    }

    /// The position of the event with this id, if it is here.
    pub fn find_id(&self, id: &[u8; 16]) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// First position covered.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last position covered.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Number of events held.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Streams whose version 0 is here.
    pub fn new_streams(&self) -> u64 {
        self.new_streams
    }

    /// Every stream entry (one per stream per append), sorted as a run
    /// stores them, with the offsets recorded (unknown where none was).
    pub fn stream_entries(&self) -> Vec<StreamEntry> {
        let mut entries = Vec::new();
        for entry in self.buckets.values().flatten() {
            let hash = self.hasher.hash(&entry.name);
            let last = entry.positions.len().saturating_sub(1);
            for (i, &position) in entry.positions.iter().enumerate() {
                let event = StreamEntry {
                    hash,
                    version: entry.first_version + i as u64,
                    position,
                    tombstone: entry.deleted && i == last,
                    offset: self.offset_of(position).into(),
                    count: 1,
                };
                // Same append, same stream: the rule the log scan applies.
                let open = entries.last_mut().filter(|open: &&mut StreamEntry| {
                    i > 0 && self.continues(position) && open.is_continued_by(&event)
                });
                match open {
                    Some(open) => {
                        open.count += 1;
                        open.tombstone = event.tombstone;
                    }
                    None => entries.push(event),
                }
            }
        }
        entries.sort_unstable();
        entries
    }

    /// Every id entry, sorted as a run stores them.
    pub fn id_entries(&self) -> Vec<IdEntry> {
        let mut entries: Vec<IdEntry> = self
            .ids
            .iter()
            .map(|(id, &position)| IdEntry { id: *id, position })
            .collect();
        entries.sort_unstable();
        entries
    }

    /// A canonical, ordered copy: stream → (version → position), deleted.
    pub fn dump(&self) -> BTreeMap<String, (BTreeMap<u64, u64>, bool)> {
        self.buckets
            .values()
            .flatten()
            .map(|e| {
                let versions = (e.first_version..)
                    .zip(e.positions.iter().copied())
                    .collect();
                (e.name.to_string(), (versions, e.deleted))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::MAX_ENTRY_EVENTS;

    /// A hash that sends every stream to one of two buckets.
    #[derive(Debug)]
    struct Weak;
    impl StreamHasher for Weak {
        fn hash(&self, stream: &str) -> u64 {
            stream.len() as u64 % 2
        }
    }

    fn id(n: u64) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id
    }

    #[test]
    fn collisions_are_resolved_by_the_full_name() {
        let mut table = Memtable::with_hasher(Weak, 0);
        let names: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
        let mut position = 0;
        for round in 0..3u64 {
            for name in &names {
                table
                    .push_stream_events(name, round, position, &[id(position)], false, true)
                    .unwrap();
                position += 1;
            }
        }
        assert_eq!(table.new_streams(), 200);
        assert_eq!(table.buckets.len(), 2);
        for (i, name) in names.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                table.read(name, 0, Direction::Forward, 10),
                vec![(0, i, None), (1, 200 + i, None), (2, 400 + i, None)]
            );
            assert_eq!(
                table.state(name),
                Some(StreamState {
                    len: 3,
                    deleted: false
                })
            );
            assert_eq!(table.find_id(&id(400 + i)), Some(400 + i));
        }
        assert_eq!(table.state("order-200"), None);
        assert_eq!(table.stream_entries().len(), 600);
        assert_eq!(table.id_entries().len(), 600);
    }

    #[test]
    fn versions_and_positions_must_be_dense_and_nothing_follows_a_tombstone() {
        let mut table = Memtable::new(10);
        assert_eq!(
            table.push_stream_events("a", 0, 11, &[id(1)], false, true),
            Err(Error::PositionGap {
                position: 11,
                end: 10
            })
        );
        table
            .push_stream_events("a", 0, 10, &[id(1)], false, true)
            .unwrap();
        assert_eq!(
            table.push_stream_events("a", 2, 11, &[id(2)], false, true),
            Err(Error::VersionGap {
                stream: "a".into(),
                version: 2,
                expected: 1
            })
        );
        table
            .push_stream_events("a", 1, 11, &[id(2)], true, true)
            .unwrap();
        assert_eq!(
            table.state("a"),
            Some(StreamState {
                len: 2,
                deleted: true
            })
        );
        assert_eq!(
            table.push_stream_events("a", 2, 12, &[id(3)], false, true),
            Err(Error::Deleted("a".into()))
        );
        let entries = table.stream_entries();
        assert_eq!(entries.len(), 2);
        assert!(!entries[0].tombstone && entries[1].tombstone);
    }

    #[test]
    fn a_stream_continued_from_older_runs_reads_only_its_recent_versions() {
        let mut table = Memtable::new(100);
        table
            .push_stream_events(
                "s",
                5,
                100,
                &[id(0), id(1), id(2), id(3), id(4)],
                false,
                true,
            )
            .unwrap();
        assert_eq!(
            table.state("s"),
            Some(StreamState {
                len: 10,
                deleted: false
            })
        );
        assert_eq!(table.new_streams(), 0);
        assert_eq!(
            table.read("s", 7, Direction::Forward, 5),
            vec![(7, 102, None), (8, 103, None), (9, 104, None)]
        );
        assert_eq!(
            table.read("s", 0, Direction::Forward, 2),
            vec![(5, 100, None), (6, 101, None)]
        );
        assert_eq!(
            table.read("s", u64::MAX, Direction::Backward, 2),
            vec![(9, 104, None), (8, 103, None)]
        );
        assert_eq!(table.read("s", 4, Direction::Backward, 5), vec![]);
        assert_eq!(table.read("s", 10, Direction::Forward, 5), vec![]);
        assert_eq!(table.read("none", 0, Direction::Backward, 5), vec![]);
    }

    #[test]
    fn stream_entries_hold_one_append_to_one_stream_each() {
        let mut table = Memtable::new(0);
        let ids = |from: u64, n: u64| (from..from + n).map(id).collect::<Vec<_>>();
        // a: 3 events; then a again in a new append right after it (its
        // own entry); then one append that writes a twice in a row (one
        // entry), then b; then a in a later append, after b.
        table
            .push_stream_events("a", 0, 0, &ids(0, 3), false, true)
            .unwrap();
        table
            .push_stream_events("a", 3, 3, &ids(3, 2), false, true)
            .unwrap();
        table
            .push_stream_events("a", 5, 5, &ids(5, 1), false, true)
            .unwrap();
        table
            .push_stream_events("a", 6, 6, &ids(6, 2), false, false)
            .unwrap();
        table
            .push_stream_events("b", 0, 8, &ids(8, 2), false, false)
            .unwrap();
        table
            .push_stream_events("a", 8, 10, &ids(10, 1), true, true)
            .unwrap();
        let spans: Vec<(u64, u64, u32, bool)> = table
            .stream_entries()
            .iter()
            .map(|e| (e.version, e.position, e.count, e.tombstone))
            .collect();
        let hash = |name: &str| Fnv1aMix.hash(name);
        let mut expected = vec![
            (hash("a"), (0, 0, 3, false)),
            (hash("a"), (3, 3, 2, false)),
            (hash("a"), (5, 5, 3, false)),
            (hash("a"), (8, 10, 1, true)),
            (hash("b"), (0, 8, 2, false)),
        ];
        expected.sort_unstable();
        let expected: Vec<_> = expected.into_iter().map(|(_, span)| span).collect();
        assert_eq!(spans, expected);
    }

    #[test]
    fn an_append_longer_than_an_entry_takes_several() {
        let mut table = Memtable::new(0);
        let n = u64::from(MAX_ENTRY_EVENTS) * 2 + 5;
        let ids: Vec<[u8; 16]> = (0..n).map(id).collect();
        table
            .push_stream_events("a", 0, 0, &ids, true, true)
            .unwrap();
        let spans: Vec<(u64, u64, u32, bool)> = table
            .stream_entries()
            .iter()
            .map(|e| (e.version, e.position, e.count, e.tombstone))
            .collect();
        let max = u64::from(MAX_ENTRY_EVENTS);
        assert_eq!(
            spans,
            vec![
                (0, 0, MAX_ENTRY_EVENTS, false),
                (max, max, MAX_ENTRY_EVENTS, false),
                (2 * max, 2 * max, 5, true),
            ]
        );
    }

    #[test]
    fn recorded_offsets_come_back_from_reads_and_entries() {
        let mut table = Memtable::new(100);
        table
            .push_stream_events("a", 0, 100, &[id(0), id(1)], false, true)
            .unwrap();
        table
            .push_stream_events("b", 0, 102, &[id(2)], false, true)
            .unwrap();
        // Offsets of the middle events only; the first stays unknown.
        table.record_offsets(101, &[4096, 8192]).unwrap();
        assert_eq!(
            table.read("a", 0, Direction::Forward, 5),
            vec![(0, 100, None), (1, 101, Some(4096))]
        );
        assert_eq!(
            table.read("b", 0, Direction::Forward, 5),
            vec![(0, 102, Some(8192))]
        );
        // An entry carries its first event's offset.
        let mut offsets: Vec<(u64, u32, u32)> = table
            .stream_entries()
            .iter()
            .map(|e| (e.position, e.offset.to_disk(), e.count))
            .collect();
        offsets.sort_unstable();
        assert_eq!(offsets, vec![(100, 0, 2), (102, 8192, 1)]);
        // Positions not here are refused, not recorded.
        assert!(table.record_offsets(102, &[1, 2]).is_err());
        assert!(table.record_offsets(99, &[1]).is_err());
        assert_eq!(table.offset_of(103), None);
        assert_eq!(table.offset_of(99), None);
    }
}
