//! Seeded random streams.
//!
//! Every random draw in the project comes from a [`Stream`]: a ChaCha20 generator whose 256-bit
//! seed is the SHA-256 digest of a canonical encoding of `(seed, purpose, ids...)`. Two streams
//! with the same inputs produce the same numbers in every process and on every machine; any
//! change to the seed, the purpose string or any id gives an unrelated stream.
//!
//! The derivation is part of the project's reproducibility contract: changing [`DERIVATION`] or
//! the encoding below changes every artifact, so both are versioned together.
//!
//! Encoding (all integers little-endian):
//! `DERIVATION || seed:u64 || len(purpose):u64 || purpose bytes || n_ids:u64 || id_0:u64 || ...`
//!
//! Floats and integer ranges are derived from raw `u64` words here rather than through `rand`'s
//! distributions, so an upgrade of `rand` cannot silently change a sampled token.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// Version tag of the seed derivation. Part of the hashed input.
pub const DERIVATION: &[u8] = b"mcts-ps/rng/v1";

/// A deterministic random stream identified by `(seed, purpose, ids)`.
#[derive(Clone, Debug)]
pub struct Stream {
    rng: ChaCha20Rng,
}

/// The 32-byte ChaCha seed for `(seed, purpose, ids)`.
pub fn derive_seed(seed: u64, purpose: &str, ids: &[u64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DERIVATION);
    h.update(seed.to_le_bytes());
    h.update((purpose.len() as u64).to_le_bytes());
    h.update(purpose.as_bytes());
    h.update((ids.len() as u64).to_le_bytes());
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.finalize().into()
}

impl Stream {
    /// The stream for `(seed, purpose, ids)`.
    pub fn new(seed: u64, purpose: &str, ids: &[u64]) -> Self {
        Self { rng: ChaCha20Rng::from_seed(derive_seed(seed, purpose, ids)) }
    }

    /// Next raw 64-bit word.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform float in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[0, n)` (unbiased, by rejection). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Stream::below(0)");
        // Reject the top partial block so every residue is equally likely.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform integer in the inclusive range `[lo, hi]`.
    pub fn range_inclusive(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "range_inclusive({lo}, {hi})");
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// One element of `items`, uniformly.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// `k` distinct indices from `0..n`, in draw order (a partial shuffle). `k` is capped at `n`.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below((n - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &mut Stream, n: usize) -> Vec<u64> {
        (0..n).map(|_| s.next_u64()).collect()
    }

    #[test]
    fn same_inputs_give_same_stream() {
        let a = words(&mut Stream::new(7, "mcts", &[1, 2, 3]), 16);
        let b = words(&mut Stream::new(7, "mcts", &[1, 2, 3]), 16);
        assert_eq!(a, b);
    }

    #[test]
    fn any_different_input_gives_a_different_stream() {
        let base = words(&mut Stream::new(7, "mcts", &[1, 2, 3]), 4);
        let variants = [
            Stream::new(8, "mcts", &[1, 2, 3]),
            Stream::new(7, "eval", &[1, 2, 3]),
            Stream::new(7, "mcts", &[1, 2, 4]),
            Stream::new(7, "mcts", &[1, 2]),
            Stream::new(7, "mcts", &[1, 2, 3, 0]),
            Stream::new(7, "mcts", &[3, 2, 1]),
        ];
        for mut v in variants {
            assert_ne!(words(&mut v, 4), base);
        }
    }

    #[test]
    fn purpose_and_ids_do_not_alias() {
        // Length prefixes keep ("ab", []) and ("a", [..]) apart even if bytes would concatenate.
        assert_ne!(derive_seed(0, "ab", &[]), derive_seed(0, "a", &[0x62]));
        assert_ne!(derive_seed(0, "", &[0]), derive_seed(0, "", &[]));
    }

    #[test]
    fn derivation_is_pinned() {
        // Guards the reproducibility contract: this digest changes only if the derivation does.
        // Expected value computed independently with Python:
        //   import hashlib, struct
        //   m = b"mcts-ps/rng/v1" + struct.pack("<Q", 0) + struct.pack("<Q", 4) + b"test"
        //   m += struct.pack("<Q", 1) + struct.pack("<Q", 42)
        //   hashlib.sha256(m).hexdigest()
        let hex: String = derive_seed(0, "test", &[42]).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, PINNED_DIGEST);
    }
    const PINNED_DIGEST: &str = "bede88959e3425805ecaf11945fcc52cdd4798a83c3f30626819f21e7a324cd7";

    #[test]
    fn floats_are_in_unit_interval_and_below_is_in_range() {
        let mut s = Stream::new(1, "t", &[]);
        for _ in 0..10_000 {
            let x = s.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!(s.below(7) < 7);
            let r = s.range_inclusive(-3, 3);
            assert!((-3..=3).contains(&r));
        }
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut s = Stream::new(3, "uniform", &[]);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[s.below(5) as usize] += 1;
        }
        // Expected 10_000 each; 5 sigma of a binomial(50_000, 0.2) is about 450.
        for c in counts {
            assert!((9_550..=10_450).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn sample_indices_are_distinct() {
        let mut s = Stream::new(0, "idx", &[]);
        let mut v = s.sample_indices(100, 30);
        assert_eq!(v.len(), 30);
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 30);
        assert_eq!(Stream::new(0, "idx", &[]).sample_indices(3, 10).len(), 3);
    }
}
