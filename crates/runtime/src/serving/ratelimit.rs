//! Rate limits on endpoints, checked before anything else is done for a call: per endpoint (a model or
//! a rollout endpoint, or `*` for every one without its own), optionally per client key (a header's
//! value; calls without it share one bucket). A call over its limit is refused (`RateLimited`, 429 with
//! `Retry-After`) and counts for no rollout arm.

use super::{Metadata, ServeError};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use switchyard_core::ratelimit::{Bucket, BucketPolicy, KeyedBuckets};

/// One configured limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    /// A model or rollout endpoint name, or `*`.
    pub endpoint: String,
    pub per_second: f64,
    pub burst: f64,
    /// A bucket per value of this header.
    pub key_header: Option<String>,
    /// Most keys remembered at once (memory stays bounded).
    pub max_keys: usize,
}

enum Limiter {
    One(Bucket),
    Keyed(KeyedBuckets),
}

/// Every configured limit with its buckets.
#[derive(Default)]
pub struct RateLimits {
    limits: Vec<(RateLimitSpec, Mutex<Limiter>)>,
}

impl RateLimits {
    pub fn new(specs: Vec<RateLimitSpec>) -> Self {
        let now = Instant::now();
        let limits = specs
            .into_iter()
            .map(|s| {
                let policy = BucketPolicy { per_second: s.per_second, burst: s.burst };
                let limiter = match s.key_header {
                    Some(_) => Limiter::Keyed(KeyedBuckets::new(policy, s.max_keys)),
                    None => Limiter::One(Bucket::new(policy, now)),
                };
                (s, Mutex::new(limiter))
            })
            .collect();
        Self { limits }
    }

    pub fn specs(&self) -> Vec<RateLimitSpec> {
        self.limits.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Takes a token for a call of `endpoint`, or refuses it.
    pub(crate) fn check(&self, endpoint: &str, metadata: &dyn Metadata) -> Result<(), ServeError> {
        let own = self.limits.iter().find(|(s, _)| s.endpoint == endpoint);
        let Some((spec, limiter)) = own.or_else(|| self.limits.iter().find(|(s, _)| s.endpoint == "*")) else {
            return Ok(());
        };
        let policy = BucketPolicy { per_second: spec.per_second, burst: spec.burst };
        let now = Instant::now();
        let taken = match &mut *limiter.lock().unwrap_or_else(PoisonError::into_inner) {
            Limiter::One(b) => b.take(policy, now),
            Limiter::Keyed(k) => {
                let key = spec.key_header.as_deref().and_then(|h| metadata.get(h)).unwrap_or_default();
                k.take(key, now)
            }
        };
        taken.map_err(|retry_after| {
            metrics::counter!("switchyard_rate_limited_total", "limit" => spec.endpoint.clone()).increment(1);
            ServeError::RateLimited { endpoint: endpoint.to_owned(), retry_after }
        })
    }
}
