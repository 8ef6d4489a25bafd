//! What protects a model and an endpoint, as configured: a model's circuit breaker and fallback (its
//! `config.yaml`), and the server's rate limits (`rate_limits:`). Each is checked with the field named.

use serde::Deserialize;
use switchyard_core::breaker::BreakerPolicy;

/// A field whose value cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

/// `circuit_breaker:` in a model's config.yaml; every field has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failures in a row that open it [5; 0: never on this rule].
    pub consecutive_failures: Option<u32>,
    /// Failure ratio over `window` that opens it [0.5; 1.0: never on this rule].
    pub failure_ratio: Option<f64>,
    /// [10s]
    pub window: Option<crate::rollout::Seconds>,
    /// Outcomes the window needs before its ratio counts [20].
    pub min_requests: Option<u32>,
    /// How long it stays open before one probe request [5s].
    pub open_for: Option<crate::rollout::Seconds>,
}

impl BreakerConfig {
    pub fn policy(&self) -> Result<BreakerPolicy, InvalidField> {
        let d = BreakerPolicy::default();
        let at = |f: &str, message: String| InvalidField { field: format!("circuit_breaker.{f}"), message };
        let ratio = self.failure_ratio.unwrap_or(d.failure_ratio);
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(at("failure_ratio", format!("{ratio} is not in (0, 1]")));
        }
        let open_for = self.open_for.map_or(d.open_for, |s| s.0);
        if open_for.is_zero() {
            return Err(at("open_for", "must be more than 0".into()));
        }
        Ok(BreakerPolicy {
            consecutive_failures: self.consecutive_failures.unwrap_or(d.consecutive_failures),
            failure_ratio: ratio,
            window: self.window.map_or(d.window, |s| s.0),
            min_requests: self.min_requests.unwrap_or(d.min_requests),
            open_for,
        })
    }
}

/// `fallback:` in a model's config.yaml: `fallback: rules` or `fallback: { model: rules, version: 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FallbackConfig {
    Model(String),
    Target { model: String, version: Option<u64> },
}

impl FallbackConfig {
    pub fn model(&self) -> &str {
        match self {
            Self::Model(m) | Self::Target { model: m, .. } => m,
        }
    }

    pub fn version(&self) -> Option<u64> {
        match self {
            Self::Model(_) => None,
            Self::Target { version, .. } => *version,
        }
    }
}

/// One entry of `rate_limits:`: a token bucket for an endpoint (or `*`), optionally one per client key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// A model or rollout endpoint name, or `*` for every endpoint without its own entry.
    pub endpoint: String,
    pub requests_per_second: f64,
    /// Requests allowed at once after a quiet spell [requests_per_second, at least 1].
    pub burst: Option<f64>,
    /// `{ header: x-api-key }`: a bucket per value of this header.
    pub key: Option<RateLimitKey>,
    /// Most client keys remembered at once [10000].
    pub max_keys: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitKey {
    pub header: String,
}

impl RateLimitConfig {
    /// The burst, checked; the error names the field.
    pub fn checked_burst(&self) -> Result<f64, InvalidField> {
        let at = |f: &str, message: &str| InvalidField {
            field: format!("rate_limits[{}].{f}", self.endpoint),
            message: message.to_owned(),
        };
        if !(self.requests_per_second > 0.0 && self.requests_per_second.is_finite()) {
            return Err(at("requests_per_second", "must be more than 0"));
        }
        let burst = self.burst.unwrap_or(self.requests_per_second.max(1.0));
        if !(burst >= 1.0 && burst.is_finite()) {
            return Err(at("burst", "must be at least 1"));
        }
        if self.max_keys == Some(0) {
            return Err(at("max_keys", "must be at least 1"));
        }
        if self.key.as_ref().is_some_and(|k| header_name(&k.header).is_none()) {
            return Err(at("key.header", "not a header name"));
        }
        Ok(burst)
    }
}

/// A lower-cased header name, when it is one (token characters only).
fn header_name(name: &str) -> Option<String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then(|| name.to_ascii_lowercase())
}
