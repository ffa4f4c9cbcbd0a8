//! A tiny deterministic generator (SplitMix64).
//!
//! Fixtures must be identical for a given seed on every platform and every `rand` release, and
//! per-device details (apps, volumes, library-item statuses) are derived lazily from
//! `(seed, device, salt)` instead of being stored, so a keyed generator is what we need.

use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct Gen(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(mix(seed ^ GOLDEN))
    }

    /// A generator for one purpose (`salt`) of one entity (`key`), independent of the others.
    pub fn keyed(seed: u64, key: u64, salt: &str) -> Self {
        let mut h = mix(seed ^ GOLDEN) ^ mix(key.wrapping_add(0x632B_E59B_D9B4_E019));
        for b in salt.bytes() {
            h = mix(h ^ u64::from(b));
        }
        Gen(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks by integer weights.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut r = self.below(total);
        for (item, w) in items {
            if r < u64::from(*w) {
                return item;
            }
            r -= u64::from(*w);
        }
        &items[items.len() - 1].0
    }

    pub fn uuid(&mut self) -> Uuid {
        let hi = self.next_u64().to_be_bytes();
        let lo = self.next_u64().to_be_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi);
        bytes[8..].copy_from_slice(&lo);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    pub fn chars_from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_sequence_and_salts_differ() {
        let a: Vec<u64> = (0..4)
            .map(|_| Gen::keyed(42, 7, "apps").next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Gen::keyed(42, 7, "apps").next_u64(),
            Gen::keyed(42, 7, "volumes").next_u64()
        );
        assert_ne!(
            Gen::keyed(42, 7, "apps").next_u64(),
            Gen::keyed(43, 7, "apps").next_u64()
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut g = Gen::new(1);
        assert!((0..10_000).all(|_| g.below(7) < 7));
        assert_eq!(g.uuid().get_version_num(), 4);
    }
}
