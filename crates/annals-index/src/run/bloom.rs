//! The blocked Bloom filters of a run: keys, bits, writing a filter in
//! bounded passes, and probing one.

use crate::Error;

use super::*;

/// Filter bits per key: about 1% false positives with 6 probes.
pub(super) const BITS_PER_KEY: u64 = 10;
/// Bits set per key.
pub(super) const PROBES: u32 = 6;

/// Bloom blocks built per pass over the keys: 4 MiB of filter at a time,
/// whatever the size of the run (a whole page's worth of blocks per step).
pub(super) const BLOOM_PASS_BLOCKS: u64 = BLOCKS_PER_PAGE as u64 * 1024;

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
pub(super) fn mix(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Which block of `blocks` a key's bits live in.
pub(super) fn bloom_block(key: u64, blocks: u64) -> u64 {
    ((u128::from(key) * u128::from(blocks)) >> 64) as u64
}

/// The bits (0..512) a key sets in its block.
pub(super) fn bloom_bits(key: u64) -> impl Iterator<Item = usize> {
    let h = mix(key ^ 0x9e37_79b9_7f4a_7c15);
    (0..PROBES).map(move |i| ((h >> (i * 9)) & 511) as usize)
}

pub(super) fn bloom_blocks_for(keys: u64) -> u64 {
    (keys * BITS_PER_KEY)
        .div_ceil(BLOCK_BYTES as u64 * 8)
        .max(1)
}

pub(super) fn set_bloom_bits(bits: &mut [u8], block: usize, key: u64) {
    let base = block * BLOCK_BYTES;
    for bit in bloom_bits(key) {
        if let Some(byte) = bits.get_mut(base + bit / 8) {
            *byte |= 1 << (bit % 8);
        }
    }
}

/// Writes a Bloom filter section over the keys `keys()` yields, in passes
/// of at most [`BLOOM_PASS_BLOCKS`] blocks (each pass reads every key).
pub(super) fn write_bloom<I: Iterator<Item = Result<u64, Error>>>(
    section: &mut SectionWriter,
    blocks: u64,
    pass_blocks: u64,
    keys: impl Fn() -> I,
) -> Result<(), Error> {
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

impl Run {
    pub(super) fn bloom_has(&self, first_page: u64, blocks: u64, key: u64) -> Result<bool, Error> {
        let block = bloom_block(key, blocks);
        let bytes = self.item(first_page, BLOCKS_PER_PAGE, BLOCK_BYTES, block)?;
        Ok(bloom_bits(key).all(|bit| {
            bytes
                .get(bit / 8)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        }))
    }

    /// Whether the run may hold entries of streams with this hash.
    pub fn may_hold_stream(&self, hash: u64) -> Result<bool, Error> {
        self.bloom_has(
            self.layout.stream_bloom_first,
            self.layout.stream_blocks,
            hash,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

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
}
