//! Token buckets for rate limits, as pure data (`now` passed in): one bucket per endpoint, or one per
//! client key within a bounded number of keys. A bucket holds up to `burst` tokens and refills at
//! `per_second`; a request takes one, or learns how long until one is there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPolicy {
    pub per_second: f64,
    pub burst: f64,
}

#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(policy: BucketPolicy, now: Instant) -> Self {
        Self { tokens: policy.burst, last: now }
    }

    fn refill(&mut self, policy: BucketPolicy, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * policy.per_second).min(policy.burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, policy: BucketPolicy, now: Instant) -> Result<(), Duration> {
        self.refill(policy, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / policy.per_second))
    }

    /// Whether it has refilled completely (it then holds nothing a new bucket would not).
    fn is_full(&self, policy: BucketPolicy, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * policy.per_second >= policy.burst
    }
}

/// A bucket per key, at most `max_keys` of them: past that, refilled buckets are forgotten first
/// (forgetting them changes nothing), then the least recently used half.
#[derive(Debug, Clone)]
pub struct KeyedBuckets {
    policy: BucketPolicy,
    max_keys: usize,
    buckets: HashMap<Vec<u8>, Bucket>,
}

impl KeyedBuckets {
    pub fn new(policy: BucketPolicy, max_keys: usize) -> Self {
        Self { policy, max_keys: max_keys.max(1), buckets: HashMap::new() }
    }

    pub fn take(&mut self, key: &[u8], now: Instant) -> Result<(), Duration> {
        if let Some(b) = self.buckets.get_mut(key) {
            return b.take(self.policy, now);
        }
        if self.buckets.len() >= self.max_keys {
            self.evict(now);
        }
        let mut b = Bucket::new(self.policy, now);
        let taken = b.take(self.policy, now);
        self.buckets.insert(key.to_vec(), b);
        taken
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let policy = self.policy;
        self.buckets.retain(|_, b| !b.is_full(policy, now));
        if self.buckets.len() >= self.max_keys {
            let mut lasts: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
            lasts.sort();
            let cut = lasts[lasts.len() / 2];
            self.buckets.retain(|_, b| b.last > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BucketPolicy = BucketPolicy { per_second: 10.0, burst: 3.0 };

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(P, t0);
        assert!((0..3).all(|_| b.take(P, t0).is_ok()));
        let wait = b.take(P, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(P, t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(P, t0 + Duration::from_millis(100)).is_err());
        // It never holds more than the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(P, later).is_ok()));
        assert!(b.take(P, later).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets_and_their_number_stays_bounded() {
        let t0 = Instant::now();
        let mut k = KeyedBuckets::new(P, 100);
        assert!((0..3).all(|_| k.take(b"alice", t0).is_ok()));
        assert!(k.take(b"alice", t0).is_err());
        assert!(k.take(b"bob", t0).is_ok(), "another key is not limited by alice");
        for i in 0..10_000u32 {
            let _ = k.take(&i.to_le_bytes(), t0 + Duration::from_micros(u64::from(i)));
            assert!(k.len() <= 100);
        }
        // Evicting recent keys can only forget a limit, never invent one: a fresh key is allowed.
        assert!(k.take(b"carol", t0).is_ok());
    }
}
