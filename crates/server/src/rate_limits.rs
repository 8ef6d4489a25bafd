//! The config's `rate_limits:` as the runtime's rate limits: checked whole (every problem named), and
//! the buckets kept across a reload when the limits did not change.

use std::sync::Arc;
use switchyard_config::protect::RateLimitConfig;
use switchyard_runtime::{RateLimitSpec, RateLimits};

/// Default number of client keys a keyed limit remembers.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// The configured limits, or every problem with them.
pub fn specs(cfg: &[RateLimitConfig]) -> Result<Vec<RateLimitSpec>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, c) in cfg.iter().enumerate() {
        if cfg[..i].iter().any(|earlier| earlier.endpoint == c.endpoint) {
            problems.push(format!("rate_limits: endpoint '{}' has more than one entry", c.endpoint));
        }
        match c.checked_burst() {
            Ok(burst) => out.push(RateLimitSpec {
                endpoint: c.endpoint.clone(),
                per_second: c.requests_per_second,
                burst,
                key_header: c.key.as_ref().map(|k| k.header.to_ascii_lowercase()),
                max_keys: c.max_keys.unwrap_or(DEFAULT_MAX_KEYS),
            }),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// The limits to serve with: `current` when they are the same (its buckets keep their tokens).
pub fn build(specs: Vec<RateLimitSpec>, current: Option<&Arc<RateLimits>>) -> Arc<RateLimits> {
    match current {
        Some(c) if c.specs() == specs => c.clone(),
        _ => Arc::new(RateLimits::new(specs)),
    }
}
