//! Judging a canary that takes all traffic (blue-green, or a last step at 100 %), when no live control
//! runs beside it: its own error rate and latency against control's figures from before the switch.
//!
//! At the switch, control's requests so far are frozen into two bounds, each wrong with probability at
//! most `delta` (a Chernoff bound, so valid for any sample size):
//! - an upper bound `p̄` on control's error rate: the largest `p` with `n · KL(p̂ ‖ p) ≤ ln(1/delta)`;
//! - an upper bound `Ū` on control's `q`-quantile: the order statistic at the smallest rank `k` with
//!   `n · KL(k/n ‖ q) ≥ ln(1/delta)` (then `P(X_(k) < ξ_q) = P(Bin(n, q) ≥ k) ≤ delta`); none when even
//!   the largest latency is not far enough out (too few control requests for that quantile).
//!
//! After the switch each canary request is a Bernoulli trial: an error, and (when it succeeded) a latency
//! above `max_ratio · Ū`. If the canary is no worse than the null allows and the bounds hold, the first
//! happens with probability at most `max(r · p̄, p̄ + min_increase)` and the second at most `1 − q`; a
//! one-sample plug-in e-process against each (the estimate kept at least the null rate, so each factor's
//! expectation is at most 1) rolls back when it reaches its threshold. Each half of the budget is split
//! between its bound (`delta`) and its e-process, so a canary as good as control is rolled back with
//! probability at most the budget.
//!
//! What this needs that the live comparison does not: traffic that stays alike across the switch (the
//! same mix of requests, no time-of-day swing between the baseline and the judgement). Switching at a
//! quiet hour after a baseline at a busy one makes the canary look better, not worse; the reverse can
//! make a good canary look slower. The bounds are durable (saved in the state file), so a restart during
//! the 100 % step keeps judging against the same baseline.

use super::errors::ErrorRateTest;
use super::errors::Side;
use super::latency::LogHistogram;

/// Control's figures frozen at the switch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    pub control_requests: u64,
    pub control_errors: u64,
    /// The canary error rate the null allows (`max(r · p̄, p̄ + min_increase)`, capped at 1).
    pub error_rate_bound: f64,
    /// Control's `q`-quantile bound `Ū` in seconds; `None` when control's sample was too small.
    pub latency_bound_seconds: Option<f64>,
}

impl Baseline {
    /// Freezes control's errors and latencies; each bound is wrong with probability at most `delta`.
    pub fn freeze(
        errors: &ErrorRateTest,
        latencies: &LogHistogram,
        quantile: f64,
        error_bound: impl Fn(f64) -> f64,
        delta: f64,
    ) -> Self {
        let (n, e) = (errors.requests(Side::Control), errors.errors(Side::Control));
        let p_bar = rate_upper_bound(e, n, delta);
        let m = latencies.count();
        let latency_bound_seconds = quantile_rank(m, quantile, delta).map(|k| latencies.order_statistic(k));
        Self {
            control_requests: n,
            control_errors: e,
            error_rate_bound: error_bound(p_bar).min(1.0),
            latency_bound_seconds,
        }
    }
}

/// A one-sample e-process: Bernoulli trials against a null rate, with a predictable plug-in alternative
/// kept at least the null rate.
#[derive(Debug, Clone, PartialEq)]
pub struct OneSampleTest {
    null_rate: f64,
    pub(super) trials: u64,
    pub(super) hits: u64,
    pub(super) log_e: f64,
}

impl OneSampleTest {
    pub fn new(null_rate: f64) -> Self {
        Self { null_rate: null_rate.clamp(0.0, 1.0), trials: 0, hits: 0, log_e: 0.0 }
    }

    pub fn observe(&mut self, hit: bool) {
        let p0 = self.null_rate;
        if p0 >= 1.0 {
            return; // the null allows everything: no evidence can build
        }
        let s = ((self.hits as f64 + 0.5) / (self.trials as f64 + 1.0)).clamp(p0, 0.999);
        self.log_e +=
            if hit { if p0 <= 0.0 { f64::INFINITY } else { (s / p0).ln() } } else { ((1.0 - s) / (1.0 - p0)).ln() };
        self.trials += 1;
        self.hits += u64::from(hit);
    }

    pub fn log_e_value(&self) -> f64 {
        self.log_e
    }

    /// `(hits, trials)`.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.trials)
    }
}

/// The canary's tests against a frozen baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineTests {
    pub baseline: Baseline,
    pub errors: OneSampleTest,
    /// Canary requests slower than `max_ratio · Ū`, against `1 − q`; `None` without a latency bound.
    pub latency: Option<(f64, OneSampleTest)>,
}

impl BaselineTests {
    pub fn new(baseline: Baseline, quantile: f64, max_ratio: f64) -> Self {
        let latency = baseline.latency_bound_seconds.map(|u| (max_ratio * u, OneSampleTest::new(1.0 - quantile)));
        Self { baseline, errors: OneSampleTest::new(baseline.error_rate_bound), latency }
    }

    /// One canary request: an error, or a success (or a censored latency) taking `seconds`.
    pub fn observe(&mut self, failed: Option<bool>, seconds: f64) {
        if let Some(failed) = failed {
            self.errors.observe(failed);
        }
        if failed != Some(true)
            && let Some((threshold, test)) = &mut self.latency
        {
            test.observe(seconds > *threshold);
        }
    }
}

/// Kullback–Leibler divergence between Bernoulli(`a`) and Bernoulli(`b`).
fn kl(a: f64, b: f64) -> f64 {
    let term = |x: f64, y: f64| if x <= 0.0 { 0.0 } else { x * (x / y.max(1e-300)).ln() };
    term(a, b) + term(1.0 - a, 1.0 - b)
}

/// The largest rate `p ≥ e/n` with `n · KL(e/n ‖ p) ≤ ln(1/delta)`: an upper confidence bound on a rate
/// wrong with probability at most `delta`. 1 without data.
pub fn rate_upper_bound(e: u64, n: u64, delta: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (phat, budget) = (e as f64 / n as f64, (1.0 / delta).ln() / n as f64);
    let (mut lo, mut hi) = (phat, 1.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if kl(phat, mid) > budget { hi = mid } else { lo = mid }
    }
    hi
}

/// The smallest rank `k ≤ n` whose order statistic bounds the `q`-quantile from above except with
/// probability `delta`; `None` when no rank is far enough out.
pub fn quantile_rank(n: u64, q: f64, delta: f64) -> Option<u64> {
    let need = (1.0 / delta).ln();
    let start = ((n as f64 * q).ceil() as u64).max(1);
    (start..=n).find(|&k| k as f64 / n as f64 > q && n as f64 * kl(k as f64 / n as f64, q) >= need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_sit_above_the_estimates_and_shrink_with_data() {
        let b100 = rate_upper_bound(1, 100, 0.0025);
        let b10k = rate_upper_bound(100, 10_000, 0.0025);
        assert!(b100 > 0.01 && b10k > 0.01 && b10k < b100, "{b100} {b10k}");
        assert!(b10k < 0.015, "{b10k}");
        assert_eq!(rate_upper_bound(0, 0, 0.01), 1.0);
        assert_eq!(quantile_rank(50, 0.99, 0.0025), None, "50 requests cannot bound a p99");
        let k = quantile_rank(10_000, 0.95, 0.0025).unwrap();
        assert!((9_520..9_600).contains(&k), "{k}");
    }

    #[test]
    fn a_canary_at_the_null_builds_no_evidence_and_a_worse_one_does() {
        let mut fair = OneSampleTest::new(0.05);
        let mut bad = OneSampleTest::new(0.05);
        for i in 0..2_000u64 {
            fair.observe(i % 20 == 0);
            bad.observe(i % 5 == 0);
        }
        assert!(fair.log_e_value() < 1.0, "{}", fair.log_e_value());
        assert!(bad.log_e_value() > 50.0, "{}", bad.log_e_value());
    }
}
