//! Is the canary's latency quantile more than `ratio` times control's? Turned into a rate test against a
//! threshold taken from control (see `shared/rollout-statistics.md`):
//! 1. an anytime-valid upper confidence bound `U` on control's `q`-quantile, from a confidence sequence
//!    on the count of control latencies below the true quantile (a mixture of likelihood ratios, each a
//!    supermartingale, so the bound holds at every moment with probability `1 - alpha_bound`);
//! 2. for each canary request, `Y = 1` when its latency exceeds `ratio * U`; under the null
//!    `P(Y = 1) <= 1 - q`;
//! 3. a one-sample e-process on `Y` against rate `1 - q` with a predictable, clipped plug-in alternative.
//!
//! Latencies live in a fixed log-spaced histogram (1 µs to about 100 s, 2 % wide buckets, read at their
//! upper edge so the bound stays conservative): bounded memory, O(buckets) per bound.

/// Log-spaced latency histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

const MIN_SECONDS: f64 = 1e-6;
const GROWTH: f64 = 1.02;
const BUCKETS: usize = 931; // 1.02^931 * 1 µs ≈ 100 s

impl Default for LogHistogram {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0 }
    }
}

impl LogHistogram {
    fn index(seconds: f64) -> usize {
        if seconds <= MIN_SECONDS {
            return 0;
        }
        (((seconds / MIN_SECONDS).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
    }

    /// The upper edge of bucket `i`.
    fn edge(i: usize) -> f64 {
        if i == BUCKETS - 1 { f64::INFINITY } else { MIN_SECONDS * GROWTH.powi(i as i32) }
    }

    pub fn record(&mut self, seconds: f64) {
        self.counts[Self::index(seconds)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `rank`-th smallest value (1-based), read at its bucket's upper edge.
    pub fn order_statistic(&self, rank: u64) -> f64 {
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::edge(i);
            }
        }
        f64::INFINITY
    }

    /// The `q`-quantile as observed (for reporting).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.order_statistic(((self.total as f64 * q).ceil() as u64).max(1))
    }
}

/// Largest count `S` of `n` Bernoulli(`q`) trials for which the mixture martingale stays below `1/alpha`:
/// with probability `1 - alpha`, at every `n` at most this many observations fall below the true
/// `q`-quantile.
pub fn quantile_rank_bound(n: u64, q: f64, alpha: f64) -> u64 {
    // A fixed mixture over alternatives p_j > q; each component is a supermartingale whenever the
    // true chance of falling below the quantile is at most q.
    const SPREAD: [f64; 16] =
        [0.001, 0.002, 0.004, 0.007, 0.012, 0.02, 0.035, 0.06, 0.1, 0.15, 0.22, 0.3, 0.4, 0.55, 0.7, 0.85];
    let threshold = (1.0 / alpha).ln();
    let log_m = |s: u64| {
        let (s, f) = (s as f64, (n - s) as f64);
        let terms = SPREAD.map(|d| {
            let p = q + (1.0 - q) * d;
            s * (p / q).ln() + f * ((1.0 - p) / (1.0 - q)).ln()
        });
        let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        max + (terms.iter().map(|t| (t - max).exp()).sum::<f64>() / SPREAD.len() as f64).ln()
    };
    // log_m grows with s: find the largest s with log_m(s) < threshold.
    let (mut lo, mut hi) = (0u64, n);
    if log_m(n) < threshold {
        return n;
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if log_m(mid) < threshold { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// The latency comparison for one rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyTest {
    quantile: f64,
    ratio: f64,
    alpha_bound: f64,
    control: LogHistogram,
    canary: LogHistogram,
    /// Control's upper bound as last computed, and the control count it was computed at.
    bound: f64,
    bound_at: u64,
    /// Canary requests judged against a bound, and how many exceeded it.
    judged: u64,
    exceeded: u64,
    log_e: f64,
}

impl LatencyTest {
    /// `alpha_bound` is the share of the error budget spent on control's confidence bound.
    pub fn new(quantile: f64, ratio: f64, alpha_bound: f64) -> Self {
        Self {
            quantile: quantile.clamp(0.5, 0.9999),
            ratio: ratio.max(1.0),
            alpha_bound,
            control: LogHistogram::default(),
            canary: LogHistogram::default(),
            bound: f64::INFINITY,
            bound_at: 0,
            judged: 0,
            exceeded: 0,
            log_e: 0.0,
        }
    }

    pub fn observe_control(&mut self, seconds: f64) {
        self.control.record(seconds);
        let n = self.control.count();
        // A stale bound is still a valid bound: refresh it as control's sample grows by 1 %.
        if n >= self.bound_at + 1 + self.bound_at / 100 {
            let rank = quantile_rank_bound(n, self.quantile, self.alpha_bound) + 1;
            if rank <= n {
                self.bound = self.control.order_statistic(rank);
            }
            self.bound_at = n;
        }
    }

    pub fn observe_canary(&mut self, seconds: f64) {
        self.canary.record(seconds);
        if !self.bound.is_finite() {
            return;
        }
        let theta0 = 1.0 - self.quantile;
        let s = ((self.exceeded as f64 + 0.5) / (self.judged as f64 + 1.0)).clamp(theta0, 0.999);
        let over = seconds > self.ratio * self.bound;
        self.log_e += if over { (s / theta0).ln() } else { ((1.0 - s) / (1.0 - theta0)).ln() };
        self.judged += 1;
        self.exceeded += u64::from(over);
    }

    /// `log E_t` of the canary-exceeds test; roll back when it reaches `ln(1/alpha_test)`.
    pub fn log_e_value(&self) -> f64 {
        self.log_e
    }

    /// Control's anytime-valid upper bound on its quantile (infinite until there is enough data).
    pub fn control_bound(&self) -> f64 {
        self.bound
    }

    pub fn observed_quantiles(&self) -> (f64, f64) {
        (self.control.quantile(self.quantile), self.canary.quantile(self.quantile))
    }

    /// Canary requests judged and how many exceeded `ratio` times control's bound.
    pub fn exceedances(&self) -> (u64, u64) {
        (self.exceeded, self.judged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_reads_upper_edges() {
        let mut h = LogHistogram::default();
        for ms in 1..=100 {
            h.record(ms as f64 / 1000.0);
        }
        let p50 = h.quantile(0.5);
        assert!((0.050..0.0511).contains(&p50), "{p50}");
        assert!(h.quantile(1.0) >= 0.1);
        assert_eq!(LogHistogram::index(0.0), 0);
        assert_eq!(LogHistogram::index(1e9), BUCKETS - 1);
    }

    #[test]
    fn the_rank_bound_is_above_nq_and_tightens() {
        let q = 0.99;
        assert_eq!(quantile_rank_bound(10, q, 0.0025), 10, "too few samples for a bound");
        let b = quantile_rank_bound(100_000, q, 0.0025);
        assert!(b > 99_000 && b < 99_200, "{b}");
        let slack = |n: u64| (quantile_rank_bound(n, q, 0.0025) as f64 - n as f64 * q) / n as f64;
        assert!(slack(1_000_000) < slack(100_000));
    }

    #[test]
    fn a_slower_canary_builds_evidence_and_a_same_one_does_not() {
        let lat = |i: u64| 0.001 + (i % 100) as f64 * 0.0001; // 1..11 ms, uniform
        let mut same = LatencyTest::new(0.99, 1.5, 0.0025);
        let mut slow = LatencyTest::new(0.99, 1.5, 0.0025);
        for i in 0..50_000 {
            same.observe_control(lat(i));
            slow.observe_control(lat(i));
            if i % 4 == 0 {
                same.observe_canary(lat(i / 4 * 7));
                slow.observe_canary(lat(i / 4 * 7) * 3.0);
            }
        }
        assert!(same.control_bound().is_finite());
        assert!(same.log_e_value() <= 0.0, "{}", same.log_e_value());
        assert!(slow.log_e_value() > (1.0f64 / 0.0025).ln(), "{}", slow.log_e_value());
    }
}
