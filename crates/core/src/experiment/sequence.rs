//! The confidence sequence behind every experiment verdict: for one metric, the running sums that give
//! any contrast `mu_canary - k * mu_control` at any moment, and an anytime-valid interval around it.
//!
//! Each outcome is turned into an inverse-propensity pseudo-outcome `psi = a - k b` with
//! `a = y * [canary] / p` and `b = y * [control] / (1 - p)`, where `p` is the canary's share at the
//! moment the request was assigned (known: the server assigned it). Whatever the traffic split did over
//! time, each `psi` has mean `mu_canary - k mu_control` given the past, so the running mean of `psi`
//! estimates the contrast. Since `a * b = 0` (a request has one arm), the sums of `a`, `b`, `a^2`, `b^2`
//! give the mean and variance of `psi` for every `k` at once: O(1) per outcome, and the kill and ship
//! thresholds (`k = 1 - drop`, `k = 1 + effect`) read the same sums.
//!
//! The interval is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
//! ("Time-uniform central limit theory and asymptotic confidence sequences", 2021/2024): a Robbins
//! normal-mixture boundary with the running variance plugged in,
//! `mean +- sqrt(2 (t s^2 rho^2 + 1) / (t^2 rho^2) * ln(sqrt(t s^2 rho^2 + 1) / alpha))`,
//! which covers the true contrast at every `t` simultaneously with probability tending to `1 - alpha`,
//! so it can be read after every outcome. `rho` sets where it is tightest (`tuned_for` outcomes). Being
//! asymptotic, it is only read once each arm has `min_outcomes` outcomes (`Plan`); the simulation checks
//! the error rate that results (README, "Experiments").

/// Running sums of one metric's inverse-propensity pseudo-outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sums {
    /// Outcomes so far, both arms.
    pub t: u64,
    /// `[control, canary]` outcomes and their plain sums (for the per-arm means shown).
    pub n: [u64; 2],
    pub y: [f64; 2],
    /// Sums of `a`, `b`, `a^2`, `b^2` (module header).
    pub a: f64,
    pub b: f64,
    pub aa: f64,
    pub bb: f64,
}

/// A contrast's estimate and its confidence sequence at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Sums {
    /// Records one outcome `y` of a request served by the canary (`canary`) or control, assigned while
    /// the canary's share was `p` (0 < p < 1; an outcome assigned at 0 or 1 carries no comparison and
    /// is ignored, returning false).
    pub fn record(&mut self, canary: bool, p: f64, y: f64) -> bool {
        if !(p > 0.0 && p < 1.0 && y.is_finite()) {
            return false;
        }
        self.t += 1;
        let arm = usize::from(canary);
        self.n[arm] += 1;
        self.y[arm] += y;
        if canary {
            let a = y / p;
            self.a += a;
            self.aa += a * a;
        } else {
            let b = y / (1.0 - p);
            self.b += b;
            self.bb += b * b;
        }
        true
    }

    /// The arm's plain mean so far (`None` before its first outcome).
    pub fn mean(&self, canary: bool) -> Option<f64> {
        let arm = usize::from(canary);
        (self.n[arm] > 0).then(|| self.y[arm] / self.n[arm] as f64)
    }

    /// The contrast `mu_canary - k mu_control` and its confidence sequence at level `alpha` (two-sided:
    /// each bound is wrong with probability at most `alpha / 2`), tightest near `tuned_for` outcomes.
    pub fn contrast(&self, k: f64, alpha: f64, tuned_for: u64) -> Option<Interval> {
        if self.t == 0 {
            return None;
        }
        let t = self.t as f64;
        let mean = (self.a - k * self.b) / t;
        let var = ((self.aa + k * k * self.bb) / t - mean * mean).max(0.0);
        let half = half_width(t, var, alpha, tuned_for);
        Some(Interval { estimate: mean, low: mean - half, high: mean + half })
    }

    /// Adds another replica's or period's sums.
    pub fn add(&mut self, other: &Sums) {
        self.t += other.t;
        for arm in 0..2 {
            self.n[arm] += other.n[arm];
            self.y[arm] += other.y[arm];
        }
        self.a += other.a;
        self.b += other.b;
        self.aa += other.aa;
        self.bb += other.bb;
    }
}

/// The normal-mixture boundary's half-width after `t` outcomes of variance `var` (module header).
pub fn half_width(t: f64, var: f64, alpha: f64, tuned_for: u64) -> f64 {
    let rho2 = rho_squared(alpha, tuned_for);
    let v = t * var * rho2 + 1.0;
    (2.0 * v / (t * t * rho2) * (v.sqrt() / alpha).ln()).sqrt()
}

/// The mixture's `rho^2` that makes the boundary tightest at `tuned_for` outcomes of unit variance
/// (Waudby-Smith et al., eq. for the optimal `rho`).
fn rho_squared(alpha: f64, tuned_for: u64) -> f64 {
    let l = -2.0 * alpha.ln();
    (l + (l + 1.0).ln()) / tuned_for.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift, enough for these checks.
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn contrasts_share_the_sums_and_estimate_the_difference() {
        let mut s = Sums::default();
        let mut rng = 7u64;
        for _ in 0..200_000 {
            let canary = uniform(&mut rng) < 0.3;
            let y = f64::from(u8::from(uniform(&mut rng) < if canary { 0.12 } else { 0.10 }));
            assert!(s.record(canary, 0.3, y));
        }
        let diff = s.contrast(1.0, 0.05, 100_000).unwrap();
        assert!((diff.estimate - 0.02).abs() < 0.005, "{diff:?}");
        assert!(diff.low < 0.02 && 0.02 < diff.high && diff.low > 0.0, "{diff:?}");
        // mu_c - 1.2 mu_0 = 0 here: the interval for k = 1.2 straddles 0.
        let edge = s.contrast(1.2, 0.05, 100_000).unwrap();
        assert!(edge.low < 0.0 && edge.high > 0.0, "{edge:?}");
        assert!((s.mean(true).unwrap() - 0.12).abs() < 0.005 && (s.mean(false).unwrap() - 0.10).abs() < 0.003);
        // Shares of 0 or 1 carry no comparison; neither do non-finite values.
        assert!(!s.record(true, 1.0, 1.0) && !s.record(false, 0.0, 1.0) && !s.record(true, 0.5, f64::NAN));
    }

    #[test]
    fn the_interval_narrows_like_one_over_root_t_and_widens_with_confidence() {
        let w = |t: f64, alpha: f64| half_width(t, 1.0, alpha, 10_000);
        assert!(w(40_000.0, 0.05) < w(10_000.0, 0.05) * 0.6);
        assert!(w(10_000.0, 0.01) > w(10_000.0, 0.05));
        // Near its tuning point the boundary is within a small factor of a fixed-sample 95 % interval.
        assert!(w(10_000.0, 0.05) < 3.0 * 1.96 / 100.0, "{}", w(10_000.0, 0.05));
    }

    #[test]
    fn an_aa_stream_stays_covered_when_read_after_every_outcome() {
        // 200 A/A streams of 20,000 outcomes, read after each: the interval for the difference should
        // exclude 0 at some point in about alpha of them at most (asymptotic; generous slack).
        let mut misses = 0;
        let mut rng = 99u64;
        for _ in 0..200 {
            let mut s = Sums::default();
            let mut missed = false;
            for i in 0..20_000 {
                let canary = uniform(&mut rng) < 0.5;
                s.record(canary, 0.5, f64::from(u8::from(uniform(&mut rng) < 0.2)));
                if i >= 200 && !missed {
                    let c = s.contrast(1.0, 0.05, 10_000).unwrap();
                    missed = c.low > 0.0 || c.high < 0.0;
                }
            }
            misses += u32::from(missed);
        }
        assert!(misses <= 20, "{misses} of 200 A/A streams excluded the truth at alpha 0.05");
    }

    #[test]
    fn sums_add_up() {
        let (mut x, mut y) = (Sums::default(), Sums::default());
        x.record(true, 0.5, 1.0);
        y.record(false, 0.25, 2.0);
        x.add(&y);
        assert_eq!((x.t, x.n, x.a, x.b), (2, [1, 1], 2.0, 2.0 / 0.75));
    }
}
