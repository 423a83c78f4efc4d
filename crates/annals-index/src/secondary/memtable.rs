//! The secondary memtable: the positions of each key for a contiguous
//! range of recent global positions, in memory, by full key.

use std::collections::HashMap;

use super::{SecondaryEntry, SecondaryKey, SecondaryKind};
use crate::Error;

#[derive(Debug, Clone)]
struct Keyed {
    kind: SecondaryKind,
    name: Box<str>,
    /// Increasing.
    positions: Vec<u64>,
}

/// Key → positions for the events at positions `start..end`.
#[derive(Debug, Clone)]
pub struct SecondaryMemtable {
    /// Key hash → the keys of that hash (almost always one).
    buckets: HashMap<u64, Vec<Keyed>>,
    start: u64,
    end: u64,
    entries: u64,
}

impl SecondaryMemtable {
    /// An empty memtable whose first event will be at `start`.
    pub fn new(start: u64) -> Self {
        SecondaryMemtable {
            buckets: HashMap::new(),
            start,
            end: start,
            entries: 0,
        }
    }

    /// Records the event at `position` (which must be this memtable's end)
    /// with its keys (any number, repeats ignored).
    pub fn push_event(&mut self, position: u64, keys: &[SecondaryKey<'_>]) -> Result<(), Error> {
        if position != self.end {
            return Err(Error::PositionGap {
                position,
                end: self.end,
            });
        }
        for key in keys {
            let bucket = self.buckets.entry(key.hash()).or_default();
            let found = bucket
                .iter_mut()
                .find(|k| k.kind == key.kind && &*k.name == key.name);
            let keyed = match found {
                Some(keyed) => keyed,
                None => {
                    bucket.push(Keyed {
                        kind: key.kind,
                        name: key.name.into(),
                        positions: Vec::new(),
                    });
                    match bucket.last_mut() {
                        Some(keyed) => keyed,
                        None => unreachable!("a key was just pushed"),
                    }
                }
            };
            if keyed.positions.last() != Some(&position) {
                keyed.positions.push(position);
                self.entries += 1;
            }
        }
        self.end = position + 1;
        Ok(())
    }

    fn keyed(&self, key: &SecondaryKey<'_>) -> Option<&Keyed> {
        self.buckets
            .get(&key.hash())?
            .iter()
            .find(|k| k.kind == key.kind && &*k.name == key.name)
    }

    /// Up to `max` positions of `key` held here, from `from` (inclusive),
    /// in increasing order.
    pub fn positions(&self, key: &SecondaryKey<'_>, from: u64, max: usize) -> Vec<u64> {
        let Some(keyed) = self.keyed(key) else {
            return Vec::new();
        };
        let first = keyed.positions.partition_point(|&p| p < from);
        keyed
            .positions
            .get(first..)
            .unwrap_or_default()
            .iter()
            .take(max)
            .copied()
            .collect()
    }

    /// How many positions of `key` held here are at or after `from`.
    pub fn count(&self, key: &SecondaryKey<'_>, from: u64) -> u64 {
        self.keyed(key).map_or(0, |keyed| {
            let first = keyed.positions.partition_point(|&p| p < from);
            (keyed.positions.len() - first) as u64
        })
    }

    /// The last position of `key` held here.
    pub fn last_position(&self, key: &SecondaryKey<'_>) -> Option<u64> {
        self.keyed(key)?.positions.last().copied()
    }

    /// Splits off the events below `at` (clamped to this memtable's range)
    /// as a memtable of their own; this one keeps `at..end`.
    pub fn split_off_below(&mut self, at: u64) -> SecondaryMemtable {
        let at = at.clamp(self.start, self.end);
        let mut below = SecondaryMemtable::new(self.start);
        below.end = at;
        for (hash, bucket) in self.buckets.iter_mut() {
            for keyed in bucket.iter_mut() {
                let cut = keyed.positions.partition_point(|&p| p < at);
                if cut == 0 {
                    continue;
                }
                let rest = keyed.positions.split_off(cut);
                let low = std::mem::replace(&mut keyed.positions, rest);
                below.entries += low.len() as u64;
                below.buckets.entry(*hash).or_default().push(Keyed {
                    kind: keyed.kind,
                    name: keyed.name.clone(),
                    positions: low,
                });
            }
            bucket.retain(|k| !k.positions.is_empty());
        }
        self.buckets.retain(|_, bucket| !bucket.is_empty());
        self.entries -= below.entries;
        self.start = at;
        below
    }

    /// Every entry, sorted as a run stores them (one per hash per event).
    pub fn entries(&self) -> Vec<SecondaryEntry> {
        let mut entries: Vec<SecondaryEntry> = self
            .buckets
            .iter()
            .flat_map(|(hash, bucket)| {
                bucket.iter().flat_map(move |keyed| {
                    keyed.positions.iter().map(move |&position| SecondaryEntry {
                        hash: *hash,
                        position,
                    })
                })
            })
            .collect();
        entries.sort_unstable();
        // Two keys of one event with the same hash make one entry: a run
        // entry only says "an event here may carry a key of this hash".
        entries.dedup();
        entries
    }

    /// Appends to `out` the entries of the events below `at`, unsorted and
    /// with repeats (sort and dedup them for a run, as
    /// [`entries`](SecondaryMemtable::entries) does): what
    /// `split_off_below(at).entries()` holds, without copying the
    /// memtable. One pass, no allocation but `out`'s, so that a caller
    /// holding a lock holds it briefly (issue 22: a clone and split of a
    /// 65,536-event memtable under the lock stalled conditional appends for
    /// tens of milliseconds).
    pub fn entries_below(&self, at: u64, out: &mut Vec<SecondaryEntry>) {
        for (hash, bucket) in &self.buckets {
            for keyed in bucket {
                let cut = keyed.positions.partition_point(|&p| p < at);
                out.extend(
                    keyed
                        .positions
                        .iter()
                        .take(cut)
                        .map(|&position| SecondaryEntry {
                            hash: *hash,
                            position,
                        }),
                );
            }
        }
    }

    /// Drops the events below `at` (clamped to this memtable's range): what
    /// [`split_off_below`](SecondaryMemtable::split_off_below) leaves here,
    /// without building the part split off.
    pub fn remove_below(&mut self, at: u64) {
        let at = at.clamp(self.start, self.end);
        let mut removed = 0u64;
        self.buckets.retain(|_, bucket| {
            bucket.retain_mut(|keyed| {
                let cut = keyed.positions.partition_point(|&p| p < at);
                if cut > 0 {
                    removed += cut as u64;
                    keyed.positions.drain(..cut);
                }
                !keyed.positions.is_empty()
            });
            !bucket.is_empty()
        });
        self.entries -= removed;
        self.start = at;
    }

    /// First position covered.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last position covered.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Events covered.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether no event is covered.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Entries held (one per key per event).
    pub fn entry_count(&self) -> u64 {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_split_and_entries_follow_the_pushes() {
        let mut m = SecondaryMemtable::new(10);
        for p in 10..30u64 {
            let cat = if p % 3 == 0 { "a" } else { "b" };
            let ty = if p % 2 == 0 { "Even" } else { "Odd" };
            m.push_event(
                p,
                &[SecondaryKey::category(cat), SecondaryKey::event_type(ty)],
            )
            .unwrap();
        }
        assert_eq!(m.entry_count(), 40);
        let a = SecondaryKey::category("a");
        assert_eq!(m.positions(&a, 0, 100), vec![12, 15, 18, 21, 24, 27]);
        assert_eq!(m.positions(&a, 16, 2), vec![18, 21]);
        assert_eq!(m.last_position(&a), Some(27));
        assert_eq!(
            (m.count(&a, 0), m.count(&a, 16), m.count(&a, 28)),
            (6, 4, 0)
        );
        // "a" as a type is another key.
        assert_eq!(m.positions(&SecondaryKey::event_type("a"), 0, 9), vec![]);
        assert!(m.push_event(31, &[a]).is_err());
        let below = m.split_off_below(20);
        assert_eq!(
            (below.start(), below.end(), m.start(), m.end()),
            (10, 20, 20, 30)
        );
        assert_eq!(below.positions(&a, 0, 100), vec![12, 15, 18]);
        assert_eq!(m.positions(&a, 0, 100), vec![21, 24, 27]);
        assert_eq!(below.entry_count() + m.entry_count(), 40);
        let entries = below.entries();
        assert_eq!(entries.len(), 20);
        assert!(entries.windows(2).all(|w| w[0] < w[1]));
    }

    /// `entries_below` and `remove_below` give what a split gives, without
    /// the copy: the entries below the cut (once sorted and deduplicated),
    /// and the memtable above it, for cuts inside, at and beyond its range.
    #[test]
    fn entries_below_and_remove_below_match_a_split() {
        let mut m = SecondaryMemtable::new(10);
        for p in 10..40u64 {
            let tag = format!("t{}", p % 7);
            let mut keys = vec![SecondaryKey::event_type(if p % 2 == 0 { "E" } else { "O" })];
            keys.push(SecondaryKey::tag(&tag));
            if p % 5 == 0 {
                keys.push(SecondaryKey::category("c"));
            }
            m.push_event(p, &keys).unwrap();
        }
        for at in [0, 10, 11, 23, 39, 40, 99] {
            let mut split = m.clone();
            let below = split.split_off_below(at);
            let mut got = Vec::new();
            m.entries_below(at, &mut got);
            got.sort_unstable();
            got.dedup();
            assert_eq!(got, below.entries(), "cut at {at}");
            let mut removed = m.clone();
            removed.remove_below(at);
            assert_eq!(
                (removed.start(), removed.end(), removed.entry_count()),
                (split.start(), split.end(), split.entry_count()),
                "cut at {at}"
            );
            assert_eq!(removed.entries(), split.entries(), "cut at {at}");
            for key in [SecondaryKey::category("c"), SecondaryKey::tag("t3")] {
                assert_eq!(
                    removed.positions(&key, 0, 100),
                    split.positions(&key, 0, 100)
                );
            }
        }
    }
}
