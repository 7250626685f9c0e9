//! A fast, deterministic hasher for the simulator's lookup tables.
//!
//! `std`'s default SipHash is keyed at random per process (so iteration order differs run
//! to run) and slow for short keys. [`FastHasher`] is the multiply-rotate scheme of
//! `rustc-hash` (FxHash): deterministic and a few instructions per word. It is not
//! resistant to chosen keys, which a simulation does not face. Maps built on it are only
//! ever used for lookups, never iterated, so nothing in a run depends on their order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`]; look up, never iterate (see the module docs).
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The multiplier of `rustc-hash` 2.
const SEED: u64 = 0xf135_7aea_2e62_a9c5;

/// FxHash-style hasher: add each word, multiply.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(rest) {
                *slot = *byte;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weakest; hashbrown takes its bucket from them.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_nearby_keys_differ() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let hash = |key: &([u8; 32], u64)| build.hash_one(key);
        let a = ([7; 32], 1);
        assert_eq!(hash(&a), hash(&a));
        let mut seen = std::collections::BTreeSet::new();
        for seq in 0..1_000u64 {
            assert!(seen.insert(hash(&([7; 32], seq))));
        }
        let mut map = FastMap::default();
        map.insert(a, 3);
        assert_eq!(map.get(&a), Some(&3));
        assert_eq!(map.get(&([7; 32], 2)), None);
    }
}
