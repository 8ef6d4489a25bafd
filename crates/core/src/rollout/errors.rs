//! Is the canary's error rate worse than control's? An anytime-valid test (an e-process built by
//! universal inference): the running likelihood of a predictable alternative over the null's maximum
//! likelihood. Null: `p_canary <= max(ratio * p_control, p_control + min_increase)`. Under it the
//! statistic exceeds `1/alpha` with probability at most `alpha`, however often it is checked, so the
//! canary can be judged after every request. O(1) per request; the null's maximum needs a search only
//! while the canary's observed rate is worse than the null allows.

/// Counts and the running alternative likelihood for the two arms.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRateTest {
    ratio: f64,
    min_increase: f64,
    /// `[control, canary]` requests and errors.
    pub(super) n: [u64; 2],
    pub(super) e: [u64; 2],
    pub(super) log_alt: f64,
    /// Other replicas' `[control, canary]` requests and errors, as last read: a head start for the
    /// predictions (data from the past, so the test stays valid; zero on a single server).
    pub(super) prior_n: [u64; 2],
    pub(super) prior_e: [u64; 2],
    /// Where the null's maximum was last found (a warm start for the next check).
    last_p0: f64,
}

/// Which side of the comparison a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Control = 0,
    Canary = 1,
}

impl ErrorRateTest {
    pub fn new(ratio: f64, min_increase: f64) -> Self {
        Self {
            ratio: ratio.max(1.0),
            min_increase: min_increase.max(0.0),
            n: [0; 2],
            e: [0; 2],
            log_alt: 0.0,
            prior_n: [0; 2],
            prior_e: [0; 2],
            last_p0: 0.0,
        }
    }

    /// The largest canary rate the null allows for a control rate `p0`.
    fn bound(&self, p0: f64) -> f64 {
        (self.ratio * p0).max(p0 + self.min_increase).min(1.0)
    }

    /// Records one request's outcome. The alternative predicts it from earlier requests only.
    pub fn observe(&mut self, side: Side, failed: bool) {
        let i = side as usize;
        // A small prior mass on failure: error rates are usually low, and an estimate that starts at
        // one half would make the first successes cost the alternative dearly. It may approach 1 (never
        // reach it): capped at one half, a canary failing every request against a healthy control at an
        // even split could never be told from "both arms fail half the time" (found through the binary).
        let estimate = |e: u64, n: u64| ((e as f64 + 0.1) / (n as f64 + 1.0)).min(1.0 - 0.5 / (n as f64 + 1.0));
        let seen = |j: usize| (self.e[j] + self.prior_e[j], self.n[j] + self.prior_n[j]);
        let (e, n) = seen(i);
        let mut q = estimate(e, n);
        if side == Side::Canary {
            // Push the prediction to the null's edge at least: it costs nothing in validity (any
            // prediction from earlier requests keeps the e-process valid) and makes the test bite sooner
            // when the canary is bad.
            let (e0, n0) = seen(0);
            q = q.max(self.bound(estimate(e0, n0))).min(1.0 - 0.5 / (n as f64 + 1.0));
        }
        self.log_alt += if failed { q.ln() } else { (1.0 - q).ln() };
        self.n[i] += 1;
        self.e[i] += u64::from(failed);
    }

    pub fn requests(&self, side: Side) -> u64 {
        self.n[side as usize]
    }

    pub fn errors(&self, side: Side) -> u64 {
        self.e[side as usize]
    }

    pub fn rate(&self, side: Side) -> f64 {
        let i = side as usize;
        if self.n[i] == 0 { 0.0 } else { self.e[i] as f64 / self.n[i] as f64 }
    }

    /// `log E_t`: the log of the e-value. Roll back when it reaches `ln(1/alpha)`.
    pub fn log_e_value(&self) -> f64 {
        self.clone().log_e_value_mut()
    }

    fn log_e_value_mut(&mut self) -> f64 {
        let (p0, p1) = (self.rate(Side::Control), self.rate(Side::Canary));
        // When the unconstrained estimate satisfies the null it is also the null's maximum: O(1).
        // Otherwise (the canary looks worse than allowed) search the null's boundary.
        if p1 <= self.bound(p0) {
            return self.log_alt - self.log_lik(p0, p1);
        }
        self.log_alt - self.null_max()
    }

    /// Whether `log E_t` has reached `log_threshold`: the decision, checked after every request. A point
    /// on the null's boundary near the last maximum bounds the null's maximum from below, which is
    /// enough to say "no" almost always without searching.
    pub fn crosses(&mut self, log_threshold: f64) -> bool {
        let (p0, p1) = (self.rate(Side::Control), self.rate(Side::Canary));
        if p1 <= self.bound(p0) {
            return self.log_alt - self.log_lik(p0, p1) >= log_threshold;
        }
        let near = self.log_lik(self.last_p0, self.bound(self.last_p0));
        if self.log_alt - near < log_threshold {
            return false;
        }
        self.log_alt - self.null_max() >= log_threshold
    }

    fn log_lik(&self, p0: f64, p1: f64) -> f64 {
        ll(self.e[0], self.n[0], p0) + ll(self.e[1], self.n[1], p1)
    }

    /// Maximum log-likelihood over the null. The unconstrained maximum lies outside it, so the
    /// constrained one lies on its boundary `p1 = bound(p0)`: two linear pieces, each concave along p0.
    fn null_max(&mut self) -> f64 {
        let kink = if self.ratio > 1.0 { self.min_increase / (self.ratio - 1.0) } else { 1.0 };
        let top = ((1.0 - 1e-12) / self.ratio).min(1.0 - self.min_increase - 1e-12).max(0.0);
        let along_shift = |p0: f64| self.log_lik(p0, (p0 + self.min_increase).min(1.0));
        let along_ratio = |p0: f64| self.log_lik(p0, (self.ratio * p0).min(1.0));
        let a = maximise(along_shift, 0.0, kink.min(1.0 - self.min_increase).max(0.0));
        let b = if kink < top { maximise(along_ratio, kink, top) } else { (0.0, f64::NEG_INFINITY) };
        let (p0, best) = if a.1 >= b.1 { a } else { b };
        self.last_p0 = p0;
        best
    }
}

/// The errors-only test (after Lindon et al.): when requests go to the canary with probability `w`
/// independently of their outcome, an error comes from the canary with probability
/// `w p1 / (w p1 + (1 - w) p0)`, at most `rho0 = w r / (w r + 1 - w)` under `p1 <= r p0`. Over the
/// sequence of errors, a plug-in e-process against `rho0` needs no estimate of either rate, so it is much
/// quicker when errors are rare. It tests the ratio alone: it runs only when `min_increase` is 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorsOnlyTest {
    ratio: f64,
    pub(super) errors: u64,
    pub(super) canary_errors: u64,
    pub(super) log_e: f64,
    /// Other replicas' `[canary errors, errors]`, as last read (a head start for the plug-in).
    pub(super) prior: [u64; 2],
}

impl ErrorsOnlyTest {
    pub fn new(ratio: f64) -> Self {
        Self { ratio: ratio.max(1.0), errors: 0, canary_errors: 0, log_e: 0.0, prior: [0; 2] }
    }

    /// Records an error; `share` is the canary's share of traffic when it happened.
    pub fn observe_error(&mut self, side: Side, share: f64) {
        if !(share > 0.0 && share < 1.0) {
            return;
        }
        let rho0 = share * self.ratio / (share * self.ratio + 1.0 - share);
        let (canary, all) = (self.canary_errors + self.prior[0], self.errors + self.prior[1]);
        let rho = ((canary as f64 + 1.0) / (all as f64 + 1.5)).clamp(rho0, 0.999);
        let from_canary = side == Side::Canary;
        self.log_e += if from_canary { (rho / rho0).ln() } else { ((1.0 - rho) / (1.0 - rho0)).ln() };
        self.errors += 1;
        self.canary_errors += u64::from(from_canary);
    }

    pub fn log_e_value(&self) -> f64 {
        self.log_e
    }
}

/// Bernoulli log-likelihood of `e` failures in `n`, with `0 ln 0 = 0`.
fn ll(e: u64, n: u64, p: f64) -> f64 {
    let (e, s) = (e as f64, (n - e) as f64);
    let term = |k: f64, q: f64| if k == 0.0 { 0.0 } else { k * q.max(1e-300).ln() };
    term(e, p) + term(s, 1.0 - p)
}

/// Maximum of a concave function on `[lo, hi]` by golden-section search: `(argmax, max)`.
fn maximise(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> (f64, f64) {
    const G: f64 = 0.618_033_988_749_895;
    let (mut x1, mut x2) = (hi - G * (hi - lo), lo + G * (hi - lo));
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..80 {
        if f1 < f2 {
            lo = x1;
            (x1, f1) = (x2, f2);
            x2 = lo + G * (hi - lo);
            f2 = f(x2);
        } else {
            hi = x2;
            (x2, f2) = (x1, f1);
            x1 = hi - G * (hi - lo);
            f1 = f(x1);
        }
    }
    [(x1, f1), (x2, f2), (lo, f(lo)), (hi, f(hi))]
        .into_iter()
        .fold((lo, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(test: &mut ErrorRateTest, n: u64, control_every: u64, canary_every: u64) {
        for i in 0..n {
            let side = if i % 5 == 0 { Side::Canary } else { Side::Control };
            let every = if side == Side::Canary { canary_every } else { control_every };
            test.observe(side, every > 0 && (i / 5) % every == 0);
        }
    }

    #[test]
    fn a_clearly_failing_canary_is_caught_quickly() {
        let mut t = ErrorRateTest::new(2.0, 0.005);
        let threshold = (1.0f64 / 0.01).ln();
        let mut caught_at = None;
        for i in 0..20_000u64 {
            let canary = i % 5 == 0;
            let failed = if canary { (i / 5) % 5 == 0 } else { i % 1000 == 1 }; // 20 % vs 0.1 %
            t.observe(if canary { Side::Canary } else { Side::Control }, failed);
            if t.crosses(threshold) {
                assert!(t.log_e_value() >= threshold);
                caught_at = Some(i);
                break;
            }
        }
        let at = caught_at.expect("never caught");
        assert!(at < 400, "caught after {at} requests");
    }

    #[test]
    fn identical_arms_do_not_build_evidence() {
        let mut t = ErrorRateTest::new(2.0, 0.005);
        run(&mut t, 100_000, 100, 100);
        assert!(t.log_e_value() < 1.0, "{}", t.log_e_value());
        assert!((t.rate(Side::Canary) - 0.01).abs() < 1e-9);
    }

    #[test]
    fn an_increase_below_min_increase_is_not_a_regression() {
        // 0.4 % vs 0.1 %: four times worse, but within the 0.5 point allowance.
        let mut t = ErrorRateTest::new(2.0, 0.005);
        run(&mut t, 200_000, 1000, 250);
        assert!(t.log_e_value() < 1.0, "{}", t.log_e_value());
    }

    #[test]
    fn errors_only_test_catches_a_canary_with_most_errors_and_spares_a_fair_one() {
        let mut bad = ErrorsOnlyTest::new(2.0);
        let mut fair = ErrorsOnlyTest::new(2.0);
        for i in 0..200u64 {
            // At a 20 % share a fair canary has 20 % of the errors; this one has 60 %.
            bad.observe_error(if i % 5 < 3 { Side::Canary } else { Side::Control }, 0.2);
            fair.observe_error(if i % 5 == 0 { Side::Canary } else { Side::Control }, 0.2);
        }
        assert!(bad.log_e_value() > (400.0f64).ln(), "{}", bad.log_e_value());
        assert!(fair.log_e_value() < 1.0, "{}", fair.log_e_value());
    }

    #[test]
    fn null_maximum_matches_a_grid_search() {
        let mut t = ErrorRateTest::new(2.0, 0.01);
        t.n = [1000, 300];
        t.e = [20, 30];
        let mut best = f64::NEG_INFINITY;
        for i in 1..10_000 {
            let p0 = i as f64 / 10_000.0;
            let p1 = t.bound(p0);
            if p1 < 1.0 {
                best = best.max(t.log_lik(p0, p1));
            }
        }
        let found = t.null_max();
        assert!((found - best).abs() < 1e-3, "{found} vs {best}");
    }
}
