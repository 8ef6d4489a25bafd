//! Is the canary's latency worse than `ratio` times control's? A conditional test on tail events that
//! stays valid when both arms slow down together (cold starts, load swings):
//! - a threshold `tau` is set from control's recent latencies: `ratio` times their `q`-quantile;
//! - a canary request slower than `tau`, or a control request slower than `tau / ratio`, is an event;
//! - if the canary is no worse than `ratio` times control (in distribution), an event comes from the
//!   canary with probability at most `w`, the canary's share of traffic, whatever `tau` is at the time;
//! - over the sequence of events, a one-sample e-process against `w` (with a predictable plug-in
//!   alternative kept at least `w`) rolls back when it reaches `1/alpha`.
//!
//! Requests are assigned independently of their latency, which is what makes `w` the null's rate; `w`
//! may change between steps (each event uses the share in force when it happened).
//!
//! Latencies live in fixed log-spaced histograms (1 µs to about 100 s, 2 % wide buckets): bounded memory.
//! Control's threshold comes from its last one or two epochs of `EPOCH` requests, so a slow start ages out.

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
        Self::order_statistic_of(&[self], rank)
    }

    /// The `rank`-th smallest value of several histograms taken together.
    pub fn order_statistic_of(parts: &[&Self], rank: u64) -> f64 {
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += parts.iter().map(|h| h.counts[i]).sum::<u64>();
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

/// Control requests per epoch of the threshold's window.
pub const EPOCH: u64 = 4_096;

/// The latency comparison for one rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyTest {
    quantile: f64,
    ratio: f64,
    /// All control and canary latencies (for reporting).
    control: LogHistogram,
    canary: LogHistogram,
    /// Control's previous and current epochs (the threshold's window).
    previous: LogHistogram,
    current: LogHistogram,
    /// Control's recent `q`-quantile as last computed, and the window size it was computed at.
    reference: f64,
    reference_at: u64,
    /// Tail events seen and how many came from the canary.
    events: u64,
    canary_events: u64,
    log_e: f64,
}

impl LatencyTest {
    pub fn new(quantile: f64, ratio: f64) -> Self {
        Self {
            quantile: quantile.clamp(0.5, 0.9999),
            ratio: ratio.max(1.0),
            control: LogHistogram::default(),
            canary: LogHistogram::default(),
            previous: LogHistogram::default(),
            current: LogHistogram::default(),
            reference: f64::INFINITY,
            reference_at: 0,
            events: 0,
            canary_events: 0,
            log_e: 0.0,
        }
    }

    /// Records a successful control request; `share` is the canary's share of traffic now.
    pub fn observe_control(&mut self, seconds: f64, share: f64) {
        if seconds > self.reference {
            self.event(false, share);
        }
        self.control.record(seconds);
        self.current.record(seconds);
        if self.current.count() == EPOCH {
            self.previous = std::mem::take(&mut self.current);
            self.reference_at = 0;
        }
        let n = self.previous.count() + self.current.count();
        // Enough samples to place the quantile, refreshed as the window grows by 1 %.
        let needed = (10.0 / (1.0 - self.quantile)).ceil() as u64;
        if n >= needed && n >= self.reference_at + 1 + self.reference_at / 100 {
            let rank = ((n as f64 * self.quantile).ceil() as u64).max(1);
            self.reference = LogHistogram::order_statistic_of(&[&self.previous, &self.current], rank);
            self.reference_at = n;
        }
    }

    /// Records a successful canary request; `share` is the canary's share of traffic now.
    pub fn observe_canary(&mut self, seconds: f64, share: f64) {
        self.canary.record(seconds);
        if seconds > self.ratio * self.reference {
            self.event(true, share);
        }
    }

    fn event(&mut self, from_canary: bool, share: f64) {
        if !(share > 0.0 && share < 1.0) {
            return;
        }
        let rho = ((self.canary_events as f64 + 1.0) / (self.events as f64 + 1.5)).clamp(share, 0.999);
        self.log_e += if from_canary { (rho / share).ln() } else { ((1.0 - rho) / (1.0 - share)).ln() };
        self.events += 1;
        self.canary_events += u64::from(from_canary);
    }

    /// `log E_t`; roll back when it reaches `ln(1/alpha_test)`.
    pub fn log_e_value(&self) -> f64 {
        self.log_e
    }

    /// Control's recent `q`-quantile, the reference the threshold is built from (infinite at first).
    pub fn control_reference(&self) -> f64 {
        self.reference
    }

    /// Observed `q`-quantiles over the whole rollout: `(control, canary)`.
    pub fn observed_quantiles(&self) -> (f64, f64) {
        (self.control.quantile(self.quantile), self.canary.quantile(self.quantile))
    }

    /// Tail events and how many came from the canary.
    pub fn events(&self) -> (u64, u64) {
        (self.canary_events, self.events)
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

    fn drive(factor: f64, slow_start: bool) -> LatencyTest {
        let lat = |i: u64| 0.001 + ((i * 7919) % 100) as f64 * 0.0001; // 1..11 ms, spread evenly
        let mut t = LatencyTest::new(0.95, 1.5);
        for i in 0..40_000u64 {
            let warm = if slow_start && i < 5_000 { 3.0 } else { 1.0 };
            if i % 5 == 0 {
                t.observe_canary(lat(i) * factor * warm, 0.2);
            } else {
                t.observe_control(lat(i) * warm, 0.2);
            }
        }
        t
    }

    #[test]
    fn a_slower_canary_builds_evidence_and_a_same_one_does_not() {
        let same = drive(1.0, true);
        assert!(same.control_reference().is_finite());
        assert!(same.log_e_value() <= 1.0, "{}", same.log_e_value());
        let slow = drive(2.5, true);
        assert!(slow.log_e_value() > (1.0f64 / 0.005).ln(), "{}", slow.log_e_value());
        let (canary, all) = slow.events();
        assert!(canary * 2 > all, "{canary} of {all}");
    }

    #[test]
    fn no_share_no_evidence() {
        let mut t = LatencyTest::new(0.95, 1.5);
        for i in 0..10_000 {
            t.observe_control(0.01, 1.0);
            t.observe_canary(if i % 2 == 0 { 1.0 } else { 0.01 }, 1.0);
        }
        assert_eq!(t.log_e_value(), 0.0);
    }
}
