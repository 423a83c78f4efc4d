//! [`EntryDigest`]: an order-independent digest of a set of index entries,
//! to compare a run with the entries the log implies.

use super::*;

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
            u64::from(entry.offset.to_disk()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_ignores_order_and_sees_any_changed_field() {
        let streams: Vec<StreamEntry> = (0..50u64)
            .map(|p| StreamEntry {
                hash: p % 7,
                version: p / 7,
                position: p,
                tombstone: p == 49,
                offset: EventOffset::new(64 + p as u32 * 100),
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
            |s, _| s.offset = EventOffset::new(s.offset.to_disk() + 8),
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
}
