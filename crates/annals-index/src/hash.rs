//! Hashing stream names. The hash only spreads names over buckets; equality
//! is always decided by the full name, so a weak hash costs speed, never
//! correctness.

use std::fmt::Debug;

/// Maps a stream name to a 64-bit hash.
pub trait StreamHasher: Send + Sync + Debug {
    /// The hash of `stream`.
    fn hash(&self, stream: &str) -> u64;
}

/// FNV-1a over the bytes, then the SplitMix64 finalizer for avalanche.
/// Stable across builds and platforms, so it can be persisted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fnv1aMix;

impl StreamHasher for Fnv1aMix {
    fn hash(&self, stream: &str) -> u64 {
        fnv1a_mix(&[], stream.as_bytes())
    }
}

/// FNV-1a over `prefix` then `bytes`, then the SplitMix64 finalizer: the
/// hash of stream names (no prefix) and of secondary keys (their kind's
/// number as prefix).
pub(crate) fn fnv1a_mix(prefix: &[u8], bytes: &[u8]) -> u64 {
    {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        // Two loops, not a chain: stream names are hashed on every append.
        for byte in prefix {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for byte in bytes {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        #[cfg(feature = "test-collisions")]
        if collisions::FORCED.load(std::sync::atomic::Ordering::Relaxed) {
            return h & 3;
        }
        h
    }
}

/// Forcing hash collisions, for tests that check that every lookup
/// resolves them by the full name (feature `test-collisions`; never in a
/// build that does not ask for it).
#[cfg(feature = "test-collisions")]
pub mod collisions {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(crate) static FORCED: AtomicBool = AtomicBool::new(false);

    /// From now on, in this process, [`Fnv1aMix`](super::Fnv1aMix) maps
    /// every stream name to one of four hashes. Call before opening any
    /// store, in a process of its own (a test binary with one test): a
    /// store whose index was built with the real hash would not find its
    /// streams.
    pub fn force() {
        FORCED.store(true, Ordering::Relaxed);
    }
}
