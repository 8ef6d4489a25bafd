//! Sticky assignment: a key is hashed with the rollout's salt into one of 10,000 buckets, and the canary
//! owns the buckets below its weight. Raising the weight only adds buckets, so keys only move from control
//! to canary, never back. The hash is spelled out here (FNV-1a with a final mix) so assignments survive
//! restarts and upgrades; a request without a key brings its own random number.

/// Number of buckets; weights are in basis points of this.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `key` under `salt`.
pub fn bucket(salt: &str, key: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.as_bytes().iter().chain([0xff].iter()).chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (mix(h) % u64::from(BUCKETS)) as u32
}

/// The bucket for a request without a key, from a random number the caller drew.
pub fn random_bucket(random: u64) -> u32 {
    (mix(random) % u64::from(BUCKETS)) as u32
}

/// Whether `bucket` belongs to the canary at `weight_bp` basis points (0..=10,000).
pub fn is_canary(bucket: u32, weight_bp: u32) -> bool {
    bucket < weight_bp
}

/// SplitMix64's finaliser: spreads FNV's low-entropy high bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_salted() {
        assert_eq!(bucket("s", b"user-1"), bucket("s", b"user-1"));
        let differ =
            (0..100).filter(|i| bucket("a", format!("u{i}").as_bytes()) != bucket("b", format!("u{i}").as_bytes()));
        assert!(differ.count() > 90);
    }

    /// Pinned values, computed by an independent implementation of the same hash (Python): a change of
    /// code or dependency that moved them would silently move users between arms across an upgrade.
    #[test]
    fn buckets_are_pinned() {
        let table: [(&str, &[u8], u32); 7] = [
            ("scorer", b"user-42", 2941),
            ("scorer", b"user-1", 8820),
            ("mlp", b"user-42", 3906),
            ("", b"", 4141),
            ("salt", b"key-0", 5712),
            ("checkout-v2", b"9f1c2e", 2890),
            ("scorer", b"\xff\x00bin", 8538),
        ];
        for (salt, key, expected) in table {
            assert_eq!(bucket(salt, key), expected, "salt {salt:?}, key {key:?}");
        }
        assert_eq!([0, 1, 12_345].map(random_bucket), [0, 8789, 5873]);
    }

    #[test]
    fn buckets_are_uniform_enough() {
        let n = 100_000;
        let under = (0..n).filter(|i| bucket("salt", format!("key-{i}").as_bytes()) < 2_500).count();
        let share = under as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.01, "{share}");
        let random_under = (0..n as u64).filter(|&i| random_bucket(i) < 500).count();
        assert!(((random_under as f64 / n as f64) - 0.05).abs() < 0.005);
    }

    #[test]
    fn raising_the_weight_only_moves_keys_to_the_canary() {
        let keys: Vec<u32> = (0..10_000).map(|i| bucket("r", format!("k{i}").as_bytes())).collect();
        let mut was_canary = vec![false; keys.len()];
        for weight in [500, 2_500, 5_000, 10_000] {
            for (i, &b) in keys.iter().enumerate() {
                let now = is_canary(b, weight);
                assert!(now || !was_canary[i], "key {i} moved back to control at {weight}");
                was_canary[i] = now;
            }
        }
        assert!(was_canary.iter().all(|&c| c));
        assert!(keys.iter().all(|&b| !is_canary(b, 0)));
    }
}
