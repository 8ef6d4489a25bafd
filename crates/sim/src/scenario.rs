//! One simulated rollout: a stream of requests at a fixed rate, each sent to the canary with a fixed
//! probability (or, blue-green, when the rollout's weight says so), failing and taking time as its arm's
//! distribution says, judged after every request by the real decision code and every 60 s by a
//! Flagger-style check.

use crate::rng::Rng;
use switchyard_core::rollout::{Analysis, Decision, FULL_WEIGHT, Plan, Rollout, Schedule, Side};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub rps: f64,
    pub seconds: f64,
    pub canary_share: f64,
    /// Blue-green instead of a fixed split: control alone for `.0` seconds (the baseline), then the canary
    /// takes all traffic for `.1` seconds, judged against control's frozen figures.
    pub blue_green: Option<(f64, f64)>,
    pub control_error: f64,
    pub canary_error: f64,
    /// Canary latency = control's distribution times this.
    pub latency_factor: f64,
    /// Log-normal latency: median and log-space spread.
    pub median_seconds: f64,
    pub sigma: f64,
    /// Rare outliers on both arms: this share of requests is this much slower.
    pub outlier_rate: f64,
    pub outlier_factor: f64,
    /// At the start both arms are slower (cold caches), by this factor for this long.
    pub warmup_seconds: f64,
    pub warmup_factor: f64,
    pub alpha: f64,
    pub analysis: Analysis,
    /// Flagger-style check: fixed p99 bound and minimum success rate per 60 s interval.
    pub flagger_p99_seconds: f64,
    pub flagger_min_success: f64,
    pub flagger_failed_checks: u32,
}

impl Scenario {
    pub fn baseline(seconds: f64) -> Self {
        let (median_seconds, sigma): (f64, f64) = (0.020, 0.6);
        let healthy_p99 = median_seconds * (2.326 * sigma).exp();
        let alpha = 0.01;
        Self {
            rps: 200.0,
            seconds,
            canary_share: 0.2,
            blue_green: None,
            control_error: 0.001,
            canary_error: 0.001,
            latency_factor: 1.0,
            median_seconds,
            sigma,
            outlier_rate: 0.002,
            outlier_factor: 10.0,
            warmup_seconds: 30.0,
            warmup_factor: 2.0,
            alpha,
            analysis: Analysis {
                min_requests: 200,
                error_max_ratio: 2.0,
                error_min_increase: 0.0,
                latency_quantile: 0.95,
                latency_max_ratio: 1.5,
                alpha,
            },
            flagger_p99_seconds: 2.0 * healthy_p99,
            flagger_min_success: 0.99,
            flagger_failed_checks: 5,
        }
    }

    pub fn describe(&self) -> String {
        let a = &self.analysis;
        format!(
            "Canary share {:.0} %, {} s per run, checked after every request. Control: {:.1} % errors, log-normal latency \
             (median {:.0} ms, sigma {}), {:.1} % outliers x{}, both arms x{} slower for the first {} s. Ours: alpha {}, \
             error rate max_ratio {} with min_increase {}, latency p{} max_ratio {}. Flagger-style: every 60 s, canary \
             success rate < {:.0} % or p99 > {:.0} ms (2x the healthy p99) fails a check; {} failed checks roll back.",
            100.0 * self.canary_share,
            self.seconds,
            100.0 * self.control_error,
            1000.0 * self.median_seconds,
            self.sigma,
            100.0 * self.outlier_rate,
            self.outlier_factor,
            self.warmup_factor,
            self.warmup_seconds,
            a.alpha,
            a.error_max_ratio,
            a.error_min_increase,
            100.0 * a.latency_quantile,
            a.latency_max_ratio,
            100.0 * self.flagger_min_success,
            1000.0 * self.flagger_p99_seconds,
            self.flagger_failed_checks
        )
    }

    /// The regressions to measure at `rps`.
    pub fn regressions(&self, rps: f64) -> Vec<(String, Scenario)> {
        let mut out = Vec::new();
        for e in [0.005, 0.01, 0.05, 0.2] {
            let s = Scenario { rps, canary_error: e, ..self.clone() };
            out.push((format!("errors {:.1} % -> {} %", 100.0 * self.control_error, 100.0 * e), s));
        }
        for f in [1.5, 2.0, 4.0] {
            out.push((format!("latency x{f}"), Scenario { rps, latency_factor: f, ..self.clone() }));
        }
        out
    }

    /// The same traffic as a blue-green rollout at `rps`: control alone for `baseline_seconds`, then the
    /// canary with all traffic for the rest of the run (the hold covers it, so it is never promoted).
    pub fn blue_green(&self, rps: f64, baseline_seconds: f64) -> Self {
        Self { rps, blue_green: Some((baseline_seconds, self.seconds)), ..self.clone() }
    }

    /// The blue-green regressions: errors 0.1 % -> 5 %, latency x2 and x4.
    pub fn blue_green_regressions(&self) -> Vec<(String, Scenario)> {
        let e = 0.05;
        vec![
            (
                format!("errors {:.1} % -> {} %", 100.0 * self.control_error, 100.0 * e),
                Scenario { canary_error: e, ..self.clone() },
            ),
            ("latency x2".into(), Scenario { latency_factor: 2.0, ..self.clone() }),
            ("latency x4".into(), Scenario { latency_factor: 4.0, ..self.clone() }),
        ]
    }

    /// The same traffic judged by a latency test on the `quantile` with `max_ratio`.
    pub fn with_latency_test(&self, quantile: f64, max_ratio: f64) -> Self {
        let analysis = Analysis { latency_quantile: quantile, latency_max_ratio: max_ratio, ..self.analysis };
        Self { analysis, ..self.clone() }
    }

    /// Latency regressions only, at `rps`: the canary this many times slower than control.
    pub fn latency_regressions(&self, rps: f64, factors: &[f64]) -> Vec<(f64, Scenario)> {
        factors.iter().map(|&f| (f, Scenario { rps, latency_factor: f, ..self.clone() })).collect()
    }

    /// How many times worse the canary is, on its worse dimension.
    pub fn severity(&self) -> f64 {
        (self.canary_error / self.control_error).max(self.latency_factor)
    }

    /// Whether the canary is outside what the analysis allows (else it sits at or inside the threshold).
    pub fn is_regression(&self) -> bool {
        let a = &self.analysis;
        let allowed = (a.error_max_ratio * self.control_error).max(self.control_error + a.error_min_increase);
        self.canary_error > allowed || self.latency_factor > a.latency_max_ratio
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    Ours,
    Flagger,
}

impl Judge {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "Switchyard (sequential)",
            Self::Flagger => "Flagger-style (60 s checks)",
        }
    }
}

/// When a judge rolled back: (requests so far, seconds so far); blue-green, counted from the switch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub rollback: Option<(u64, f64)>,
}

/// One seeded run through both judges.
pub fn run(s: &Scenario, seed: u64) -> (Outcome, Outcome) {
    let mut rng = Rng::new(seed);
    let schedule = match s.blue_green {
        None => Schedule::Fixed((s.canary_share * 10_000.0) as u32),
        Some((baseline, hold)) => Schedule::Steps(Plan::blue_green(ms(baseline), ms(hold))),
    };
    let mut ours = Rollout::new(Plan { schedule, analysis: s.analysis }, 0);
    let (mut mine, mut theirs) = (Outcome::default(), Outcome::default());
    let mut window: Vec<f64> = Vec::new();
    let (mut window_errors, mut failed_checks, mut next_check) = (0u64, 0u32, 60.0);
    // Blue-green: (requests, seconds) before the first request the canary took.
    let mut switch: Option<(u64, f64)> = None;
    let total = (s.rps * s.seconds) as u64;
    for i in 0..total {
        let t = i as f64 / s.rps;
        let canary = match s.blue_green {
            None => rng.bernoulli(s.canary_share),
            Some((baseline, _)) => {
                // The rollout's weight routes the request; once our judge has finished, the stream goes
                // on as the plan has it (all canary after the baseline), so the Flagger-style check sees
                // the same traffic whatever our judge decided.
                let all = if ours.is_judging() { ours.weight_bp() >= FULL_WEIGHT } else { t >= baseline };
                if all && switch.is_none() {
                    switch = Some((i, t));
                }
                switch.is_some()
            }
        };
        let failed = rng.bernoulli(if canary { s.canary_error } else { s.control_error });
        let mut latency = s.median_seconds * (s.sigma * rng.normal()).exp();
        if rng.bernoulli(s.outlier_rate) {
            latency *= s.outlier_factor;
        }
        if t < s.warmup_seconds {
            latency *= s.warmup_factor;
        }
        if canary {
            latency *= s.latency_factor;
        }
        if mine.rollback.is_none() {
            ours.record(if canary { Side::Canary } else { Side::Control }, failed, latency);
            if let Some(Decision::RolledBack { .. }) = ours.evaluate(ms(t)) {
                mine.rollback = Some((i + 1, t));
            }
        }
        if theirs.rollback.is_none() {
            if t >= next_check {
                next_check += 60.0;
                if !window.is_empty() {
                    let n = window.len() as f64;
                    window.sort_by(f64::total_cmp);
                    let p99 = window[((n * 0.99).ceil() as usize).clamp(1, window.len()) - 1];
                    let success = 1.0 - window_errors as f64 / n;
                    if success < s.flagger_min_success || p99 > s.flagger_p99_seconds {
                        failed_checks += 1;
                    }
                }
                window.clear();
                window_errors = 0;
                if failed_checks >= s.flagger_failed_checks {
                    theirs.rollback = Some((i + 1, t));
                }
            }
            if canary {
                window.push(latency);
                window_errors += u64::from(failed);
            }
        }
        if mine.rollback.is_some() && theirs.rollback.is_some() {
            break;
        }
    }
    if s.blue_green.is_some() {
        // Counted from the switch (a rollback before it, which the canary cannot cause, counts as 0).
        let (n0, t0) = switch.unwrap_or((total, s.seconds));
        for o in [&mut mine, &mut theirs] {
            o.rollback = o.rollback.map(|(n, t)| (n.saturating_sub(n0), (t - t0).max(0.0)));
        }
    }
    (mine, theirs)
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0) as u64
}
