//! SplitMix64: a small, fast generator. Seeded per thread for salts and
//! ids (`random_u64`), and from a test's seed for crash simulation, so
//! every simulated crash replays.

/// SplitMix64 state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability 1/n.
    pub(crate) fn chance(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n.max(1))
    }
}
