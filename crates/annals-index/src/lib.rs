//! The Annals per-stream index: for every stream, the global position of
//! each of its versions, so that loading one aggregate reads only its own
//! events — O(1) to find the stream (hash, then full-name comparison), O(k)
//! for k events. It also answers the expected-version check: the current
//! version of a stream and whether it was deleted.
//!
//! The index is derived data: it knows nothing of how events are framed and
//! can always be rebuilt from the log.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod hash;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

pub use hash::{Fnv1aMix, StreamHasher};

/// Errors of the index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An entry would break the density of stream versions.
    #[error("stream {stream}: version {version} does not follow {expected}")]
    VersionGap {
        /// The stream.
        stream: String,
        /// The version offered.
        version: u64,
        /// The version that was due.
        expected: u64,
    },
    /// An entry for a stream that was deleted.
    #[error("stream {0} was deleted")]
    Deleted(String),
}

/// The state of one stream, as the expected-version check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// Number of entries (events, and the tombstone if deleted).
    pub len: u64,
    /// Whether the stream was deleted (its last entry is the tombstone).
    pub deleted: bool,
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Box<str>,
    positions: Vec<u64>,
    deleted: bool,
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

/// Stream name → (version → global position), in memory.
#[derive(Debug)]
pub struct StreamIndex<H: StreamHasher = Fnv1aMix> {
    hasher: H,
    buckets: HashMap<u64, Vec<Entry>, PremixedKey>,
    stream_count: u64,
    entry_count: u64,
}

impl Default for StreamIndex {
    fn default() -> Self {
        Self::with_hasher(Fnv1aMix)
    }
}

impl StreamIndex {
    /// An empty index with the default hash.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<H: StreamHasher> StreamIndex<H> {
    /// An empty index with the given hash (tests use a deliberately weak one).
    pub fn with_hasher(hasher: H) -> Self {
        StreamIndex {
            hasher,
            buckets: HashMap::default(),
            stream_count: 0,
            entry_count: 0,
        }
    }

    fn entry(&self, stream: &str) -> Option<&Entry> {
        self.buckets
            .get(&self.hasher.hash(stream))?
            .iter()
            .find(|e| &*e.name == stream)
    }

    fn entry_mut(&mut self, stream: &str) -> &mut Entry {
        let bucket = self.buckets.entry(self.hasher.hash(stream)).or_default();
        if !bucket.iter().any(|e| &*e.name == stream) {
            self.stream_count += 1;
        }
        // The new entry goes first in its bucket, where the search finds it.
        let i = bucket
            .iter()
            .position(|e| &*e.name == stream)
            .unwrap_or_else(|| {
                bucket.insert(
                    0,
                    Entry {
                        name: stream.into(),
                        positions: Vec::new(),
                        deleted: false,
                    },
                );
                0
            });
        let (_, rest) = bucket.split_at_mut(i);
        match rest.first_mut() {
            Some(entry) => entry,
            None => unreachable!("index {i} was just found or inserted"),
        }
    }

    /// The stream's state, or `None` if it has no entries.
    pub fn state(&self, stream: &str) -> Option<StreamState> {
        self.entry(stream).map(|e| StreamState {
            len: e.positions.len() as u64,
            deleted: e.deleted,
        })
    }

    /// Records that `stream`'s `version` is at `position`. Versions must be
    /// dense: `version` is the stream's current length. A `tombstone` entry
    /// marks the stream deleted; nothing may follow it.
    pub fn push(
        &mut self,
        stream: &str,
        version: u64,
        position: u64,
        tombstone: bool,
    ) -> Result<(), Error> {
        self.push_run(stream, version, position, 1, tombstone)
    }

    /// Records `count` consecutive versions of `stream`, from `version`, at
    /// consecutive positions from `position` (one append's events). Only the
    /// last may be a `tombstone`. One lookup for the whole run.
    pub fn push_run(
        &mut self,
        stream: &str,
        version: u64,
        position: u64,
        count: u64,
        tombstone: bool,
    ) -> Result<(), Error> {
        let entry = self.entry_mut(stream);
        if entry.deleted {
            return Err(Error::Deleted(stream.to_owned()));
        }
        let expected = entry.positions.len() as u64;
        if version != expected {
            return Err(Error::VersionGap {
                stream: stream.to_owned(),
                version,
                expected,
            });
        }
        entry.positions.extend(position..position + count);
        entry.deleted = tombstone;
        self.entry_count += count;
        Ok(())
    }

    /// Up to `max` (version, position) pairs of `stream`, starting at version
    /// `from` (inclusive) in `direction`. Backward from a version past the
    /// end starts at the last one.
    pub fn read(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Vec<(u64, u64)> {
        let Some(entry) = self.entry(stream) else {
            return Vec::new();
        };
        let len = entry.positions.len() as u64;
        match direction {
            Direction::Forward => (from..len)
                .take(max)
                .filter_map(|v| Some((v, *entry.positions.get(v as usize)?)))
                .collect(),
            Direction::Backward => {
                if len == 0 {
                    return Vec::new();
                }
                let start = from.min(len - 1);
                (0..=start)
                    .rev()
                    .take(max)
                    .filter_map(|v| Some((v, *entry.positions.get(v as usize)?)))
                    .collect()
            }
        }
    }

    /// Number of streams.
    pub fn stream_count(&self) -> u64 {
        self.stream_count
    }

    /// Number of entries over all streams.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// A canonical, ordered copy of the whole index, for comparing an index
    /// with one rebuilt from the log.
    pub fn dump(&self) -> BTreeMap<String, (Vec<u64>, bool)> {
        self.buckets
            .values()
            .flatten()
            .map(|e| (e.name.to_string(), (e.positions.clone(), e.deleted)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash that sends every stream to one of two buckets.
    #[derive(Debug)]
    struct Weak;
    impl StreamHasher for Weak {
        fn hash(&self, stream: &str) -> u64 {
            stream.len() as u64 % 2
        }
    }

    #[test]
    fn collisions_are_resolved_by_the_full_name() {
        let mut index = StreamIndex::with_hasher(Weak);
        let names: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
        let mut position = 0;
        for round in 0..3u64 {
            for name in &names {
                index.push(name, round, position, false).unwrap();
                position += 1;
            }
        }
        assert_eq!(index.stream_count(), 200);
        assert_eq!(index.buckets.len(), 2);
        for (i, name) in names.iter().enumerate() {
            let i = i as u64;
            assert_eq!(
                index.read(name, 0, Direction::Forward, 10),
                vec![(0, i), (1, 200 + i), (2, 400 + i)]
            );
            assert_eq!(
                index.state(name),
                Some(StreamState {
                    len: 3,
                    deleted: false
                })
            );
        }
        assert_eq!(index.state("order-200"), None);
    }

    #[test]
    fn versions_must_be_dense_and_nothing_follows_a_tombstone() {
        let mut index = StreamIndex::new();
        index.push("a", 0, 0, false).unwrap();
        assert_eq!(
            index.push("a", 2, 1, false),
            Err(Error::VersionGap {
                stream: "a".into(),
                version: 2,
                expected: 1
            })
        );
        index.push("a", 1, 5, true).unwrap();
        assert_eq!(
            index.state("a"),
            Some(StreamState {
                len: 2,
                deleted: true
            })
        );
        assert_eq!(
            index.push("a", 2, 6, false),
            Err(Error::Deleted("a".into()))
        );
    }

    #[test]
    fn reads_forward_and_backward() {
        let mut index = StreamIndex::new();
        for v in 0..10 {
            index.push("s", v, v * 10, false).unwrap();
        }
        assert_eq!(
            index.read("s", 7, Direction::Forward, 5),
            vec![(7, 70), (8, 80), (9, 90)]
        );
        assert_eq!(
            index.read("s", u64::MAX, Direction::Backward, 3),
            vec![(9, 90), (8, 80), (7, 70)]
        );
        assert_eq!(
            index.read("s", 1, Direction::Backward, 5),
            vec![(1, 10), (0, 0)]
        );
        assert_eq!(index.read("s", 10, Direction::Forward, 5), vec![]);
        assert_eq!(index.read("none", 0, Direction::Backward, 5), vec![]);
    }
}
