//! Secondary indexes: for every *key* — an event's category, its event
//! type (and, later, its tags) — the global positions of the events that
//! carry it, so that a filtered read touches only matching events.
//!
//! A key is a virtual stream in a namespace of its own: its entries map the
//! key's hash to positions, sorted by (hash, position). Positions increase
//! within a key, so "the first event of key K after position P" is a binary
//! search. The memtable holds recent positions by full key; immutable,
//! checksummed [`SecondaryRun`] files hold a contiguous range of positions
//! each, like the stream index's runs. Keys are stored as hashes: the store
//! confirms a run's candidate by reading its event, so a hash collision
//! costs a read, never a wrong answer.
//!
//! The files of this module:
//!
//! - `mod.rs`: [`SecondaryKind`], [`SecondaryKey`], [`SecondaryEntry`];
//! - `memtable.rs`: [`SecondaryMemtable`];
//! - `run.rs`: [`SecondaryRun`] (format, writing, reading, verifying).

mod memtable;
mod run;

pub use memtable::SecondaryMemtable;
pub use run::{parse_secondary_file_name, secondary_file_name, SecondaryRun};

use crate::hash::fnv1a_mix;

/// The kinds of secondary key. Each is its own namespace: the kind is part
/// of the key's hash and of its identity. Its number is persisted (it
/// salts the hash): never renumber a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SecondaryKind {
    /// The category of the event's stream (its name up to the first `-`).
    Category = 1,
    /// The event's type.
    EventType = 2,
}

/// One secondary key: a kind and a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecondaryKey<'a> {
    /// What the name is.
    pub kind: SecondaryKind,
    /// The category, event type, ….
    pub name: &'a str,
}

impl<'a> SecondaryKey<'a> {
    /// The key of a category.
    pub fn category(name: &'a str) -> Self {
        SecondaryKey {
            kind: SecondaryKind::Category,
            name,
        }
    }

    /// The key of an event type.
    pub fn event_type(name: &'a str) -> Self {
        SecondaryKey {
            kind: SecondaryKind::EventType,
            name,
        }
    }

    /// The persisted hash: FNV-1a over the kind's number then the name's
    /// bytes, then the SplitMix64 finalizer (stable across builds).
    pub fn hash(&self) -> u64 {
        fnv1a_mix(&[self.kind as u8], self.name.as_bytes())
    }
}

/// One entry of a secondary run: an event at `position` carries a key
/// whose hash is `hash`. Sorted by (hash, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecondaryEntry {
    /// [`SecondaryKey::hash`] of the key.
    pub hash: u64,
    /// The event's global position.
    pub position: u64,
}
