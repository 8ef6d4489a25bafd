//! One rollout's state machine. Observations (arm, failed, latency) feed the sequential tests; `evaluate`
//! (called after every request or on a short tick, with the time passed in) decides: roll back now when
//! either test has the evidence, advance a step once its hold has passed and both arms saw
//! `min_requests`, promote after the last step, otherwise wait. Admin actions go through here too, so
//! every change of weight has one place and one record.
//!
//! A step at 100 % (blue-green, or a last step of a progressive plan) leaves no live control to compare
//! with: on entering it, control's figures so far are frozen into a [`Baseline`] and the canary is judged
//! against that (see `baseline.rs`). A plan with such a step gives half of `alpha` to the live tests and
//! half to the baseline tests, so the whole rollout stays within `alpha`.
//!
//! Restoring a saved state takes only what the current plan can hold: the same kind of schedule and a
//! step that exists. Anything else starts the new plan and says why (see [`Rollout::resume`]).

use super::baseline::{Baseline, BaselineTests};
use super::errors::{ErrorRateTest, ErrorsOnlyTest, Side};
use super::latency::{LatencyTest, LogHistogram};
use super::plan::{FULL_WEIGHT, Plan, Schedule};
pub use super::state::{
    Action, ActionRefused, BaselineEvidence, Decision, Evidence, Phase, Reason, ResumeRefused, State, Verdict,
    phase_name,
};

/// A running rollout.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub(super) plan: Plan,
    pub(super) state: State,
    pub(super) errors: ErrorRateTest,
    /// Runs only when `min_increase` is 0 (it tests the ratio alone).
    pub(super) errors_only: Option<ErrorsOnlyTest>,
    pub(super) latency: LatencyTest,
    pub(super) step_requests: [u64; 2],
    /// Control's successful latencies, kept only when the plan has a 100 % step (for its baseline).
    pub(super) control_latencies: Option<LogHistogram>,
    /// The canary against control's frozen figures, once it takes all traffic.
    pub(super) baseline: Option<BaselineTests>,
}

impl Rollout {
    pub fn new(plan: Plan, now_ms: u64) -> Self {
        let (phase, weight_bp) = match &plan.schedule {
            Schedule::Steps(steps) => (Phase::Step(0), steps[0].weight_bp),
            Schedule::Fixed(w) => (Phase::Fixed, *w),
        };
        let state = State {
            phase,
            paused: false,
            weight_bp,
            started_ms: now_ms,
            step_started_ms: now_ms,
            updated_ms: now_ms,
            verdict: Verdict::InsufficientEvidence,
            reason: None,
            baseline: None,
        };
        Self::build(plan, state)
    }

    /// A rollout whose saved state could not be read: it starts paused with every request on control,
    /// so nothing is decided (and nothing promoted) until an operator resumes it at the first step.
    pub fn held(plan: Plan, now_ms: u64) -> Self {
        let mut r = Self::new(plan, now_ms);
        r.state.paused = true;
        r.state.weight_bp = 0;
        r
    }

    /// The canary's weight the plan gives the current phase.
    fn planned_weight(&self) -> u32 {
        match (self.state.phase, &self.plan.schedule) {
            (Phase::Step(n), Schedule::Steps(steps)) => steps.get(n).map_or(self.state.weight_bp, |s| s.weight_bp),
            (Phase::Fixed, Schedule::Fixed(w)) => *w,
            _ => self.state.weight_bp,
        }
    }

    pub(super) fn build(plan: Plan, state: State) -> Self {
        let a = plan.analysis;
        let baseline = state.baseline.map(|b| BaselineTests::new(b, a.latency_quantile, a.latency_max_ratio));
        Self {
            errors: ErrorRateTest::new(a.error_max_ratio, a.error_min_increase),
            errors_only: (a.error_min_increase == 0.0).then(|| ErrorsOnlyTest::new(a.error_max_ratio)),
            latency: LatencyTest::new(a.latency_quantile, a.latency_max_ratio),
            control_latencies: plan.has_full_step().then(LogHistogram::default),
            baseline,
            plan,
            state,
            step_requests: [0; 2],
        }
    }

    /// Resumes a saved state under `plan` when the plan can hold it: a progressive rollout at a step the
    /// plan still has (at that step's weight as the plan now says), a fixed split under a fixed split (at
    /// the plan's weight), a finished rollout as it finished. A running step's hold restarts from its
    /// saved start; the evidence starts afresh (a restarted test is as valid as a new one).
    pub fn resume(plan: Plan, mut state: State) -> Result<Self, ResumeRefused> {
        match (state.phase, &plan.schedule) {
            (Phase::Step(n), Schedule::Steps(steps)) => {
                let step = steps.get(n).ok_or(ResumeRefused::StepGone { saved: n, steps: steps.len() })?;
                if !state.paused {
                    state.weight_bp = step.weight_bp;
                }
                if step.weight_bp < FULL_WEIGHT {
                    state.baseline = None;
                }
            }
            (Phase::Step(_), Schedule::Fixed(_)) => return Err(ResumeRefused::NowFixed),
            (Phase::Fixed, Schedule::Fixed(w)) => state.weight_bp = if state.paused { state.weight_bp } else { *w },
            (Phase::Fixed, Schedule::Steps(_)) => return Err(ResumeRefused::NowSteps),
            (Phase::Promoted | Phase::RolledBack, _) => {}
        }
        Ok(Self::build(plan, state))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The canary's share of traffic now, in basis points.
    pub fn weight_bp(&self) -> u32 {
        self.state.weight_bp
    }

    /// Whether the canary's results still matter (it is being judged).
    pub fn is_judging(&self) -> bool {
        matches!(self.state.phase, Phase::Step(_) | Phase::Fixed)
    }

    /// Records one finished request; latency counts for successful requests only.
    pub fn record(&mut self, side: Side, failed: bool, latency_seconds: f64) {
        if !self.is_judging() {
            return;
        }
        self.errors.observe(side, failed);
        self.step_requests[side as usize] += 1;
        let share = f64::from(self.state.weight_bp) / f64::from(FULL_WEIGHT);
        if failed && let Some(t) = &mut self.errors_only {
            t.observe_error(side, share);
        }
        if !failed {
            self.observe_latency(side, latency_seconds, share);
        }
        if side == Side::Canary
            && let Some(b) = &mut self.baseline
        {
            b.observe(Some(failed), latency_seconds);
        }
    }

    /// Records a request that ran past a deadline its client chose: not an error of the arm, but its
    /// latency is known to be at least `latency_seconds`. A tail event is judged on that lower bound;
    /// the client's deadline does not depend on the arm, so the latency tests stay valid.
    pub fn record_censored(&mut self, side: Side, latency_seconds: f64) {
        if !self.is_judging() {
            return;
        }
        let share = f64::from(self.state.weight_bp) / f64::from(FULL_WEIGHT);
        self.observe_latency(side, latency_seconds, share);
        if side == Side::Canary
            && let Some(b) = &mut self.baseline
        {
            b.observe(None, latency_seconds);
        }
    }

    fn observe_latency(&mut self, side: Side, seconds: f64, share: f64) {
        match side {
            Side::Control => {
                self.latency.observe_control(seconds, share);
                if let Some(h) = &mut self.control_latencies {
                    h.record(seconds);
                }
            }
            Side::Canary => self.latency.observe_canary(seconds, share),
        }
    }

    /// The false-rollback budget of the live tests: all of `alpha`, or half when the baseline tests of a
    /// 100 % step take the other half.
    fn live_alpha(&self) -> f64 {
        let a = self.plan.analysis.alpha;
        if self.plan.has_full_step() { a / 2.0 } else { a }
    }

    /// The error-rate test's threshold: half the live budget, split in two again when the errors-only
    /// test runs beside it.
    pub fn error_threshold(&self) -> f64 {
        let share = if self.errors_only.is_some() { 4.0 } else { 2.0 };
        (share / self.live_alpha()).ln()
    }

    /// The latency test's threshold: the other half of the live budget.
    pub fn latency_threshold(&self) -> f64 {
        (2.0 / self.live_alpha()).ln()
    }

    /// The baseline tests' budget (half of `alpha`) in four: error bound, error e-process, latency
    /// bound, latency e-process.
    fn baseline_part(&self) -> f64 {
        self.plan.analysis.alpha / 8.0
    }

    /// Decides what the evidence and the clock allow, applies it, and says what changed.
    pub fn evaluate(&mut self, now_ms: u64) -> Option<Decision> {
        if !self.is_judging() {
            return None;
        }
        if let Some(reason) = self.regression() {
            return Some(self.roll_back(reason, now_ms));
        }
        let Phase::Step(step) = self.state.phase else { return None };
        let Schedule::Steps(steps) = &self.plan.schedule else { return None };
        let current = steps.get(step)?;
        let held = now_ms.saturating_sub(self.state.step_started_ms) >= current.hold_ms;
        let min = self.plan.analysis.min_requests;
        // At full weight control gets no traffic, at zero (a baseline) the canary none: only the arm
        // that takes traffic needs its count.
        let control_needed = if self.state.weight_bp >= FULL_WEIGHT { 0 } else { min };
        let canary_needed = if self.state.weight_bp == 0 { 0 } else { min };
        let enough = self.step_requests[1] >= canary_needed && self.step_requests[0] >= control_needed;
        if !(held && enough) {
            self.state.verdict = Verdict::InsufficientEvidence;
            return None;
        }
        self.state.verdict = Verdict::Healthy;
        if self.state.paused {
            return None;
        }
        let decision = if step + 1 < steps.len() {
            let weight_bp = steps[step + 1].weight_bp;
            self.state.phase = Phase::Step(step + 1);
            self.state.weight_bp = weight_bp;
            self.state.step_started_ms = now_ms;
            self.step_requests = [0; 2];
            self.state.verdict = Verdict::InsufficientEvidence;
            if weight_bp >= FULL_WEIGHT {
                self.freeze_baseline();
            }
            Decision::Advanced { step: step + 1, weight_bp }
        } else {
            self.finish(Phase::Promoted, FULL_WEIGHT, Reason::StepsPassed);
            Decision::Promoted { reason: Reason::StepsPassed }
        };
        self.state.updated_ms = now_ms;
        Some(decision)
    }

    /// The canary is about to take all traffic: freeze control's figures to judge it against.
    fn freeze_baseline(&mut self) {
        let a = self.plan.analysis;
        let (ratio, min_increase) = (a.error_max_ratio, a.error_min_increase);
        let empty = LogHistogram::default();
        let latencies = self.control_latencies.as_ref().unwrap_or(&empty);
        let bound = |p: f64| (ratio * p).max(p + min_increase);
        let baseline = Baseline::freeze(&self.errors, latencies, a.latency_quantile, bound, self.baseline_part());
        self.state.baseline = Some(baseline);
        self.baseline = Some(BaselineTests::new(baseline, a.latency_quantile, a.latency_max_ratio));
    }

    /// The baseline tests' verdict, once the canary takes all traffic.
    fn baseline_regression(&self) -> Option<Reason> {
        let b = self.baseline.as_ref()?;
        let threshold = (1.0 / self.baseline_part()).ln();
        if b.errors.log_e_value() >= threshold {
            let (hits, trials) = b.errors.counts();
            return Some(Reason::ErrorRate {
                control_rate: b.baseline.control_errors as f64 / b.baseline.control_requests.max(1) as f64,
                canary_rate: hits as f64 / trials.max(1) as f64,
                control_requests: b.baseline.control_requests,
                canary_requests: trials,
                e_value: b.errors.log_e_value().exp(),
                threshold: threshold.exp(),
            });
        }
        let (limit, test) = b.latency.as_ref()?;
        if test.log_e_value() < threshold {
            return None;
        }
        let (canary_events, events) = test.counts();
        Some(Reason::Latency {
            quantile: self.plan.analysis.latency_quantile,
            control_seconds: limit / self.plan.analysis.latency_max_ratio,
            canary_seconds: self.latency.observed_quantiles().1,
            canary_events,
            events,
            e_value: test.log_e_value().exp(),
            threshold: threshold.exp(),
        })
    }

    pub(super) fn regression(&mut self) -> Option<Reason> {
        if let Some(reason) = self.baseline_regression() {
            return Some(reason);
        }
        let errors_only = self.errors_only.as_ref().map_or(f64::NEG_INFINITY, ErrorsOnlyTest::log_e_value);
        if errors_only >= self.error_threshold() || self.errors.crosses(self.error_threshold()) {
            let e = self.errors.log_e_value().max(errors_only);
            return Some(Reason::ErrorRate {
                control_rate: self.errors.rate(Side::Control),
                canary_rate: self.errors.rate(Side::Canary),
                control_requests: self.errors.requests(Side::Control),
                canary_requests: self.errors.requests(Side::Canary),
                e_value: e.exp(),
                threshold: self.error_threshold().exp(),
            });
        }
        let l = self.latency.log_e_value();
        if l >= self.latency_threshold() {
            let (control_seconds, canary_seconds) = self.latency.observed_quantiles();
            let (canary_events, events) = self.latency.events();
            return Some(Reason::Latency {
                quantile: self.plan.analysis.latency_quantile,
                control_seconds,
                canary_seconds,
                canary_events,
                events,
                e_value: l.exp(),
                threshold: self.latency_threshold().exp(),
            });
        }
        None
    }

    pub(super) fn roll_back(&mut self, reason: Reason, now_ms: u64) -> Decision {
        self.finish(Phase::RolledBack, 0, reason.clone());
        self.state.verdict = Verdict::Regressed;
        self.state.updated_ms = now_ms;
        Decision::RolledBack { reason }
    }

    fn finish(&mut self, phase: Phase, weight_bp: u32, reason: Reason) {
        self.state.phase = phase;
        self.state.weight_bp = weight_bp;
        self.state.paused = false;
        self.state.reason = Some(reason);
    }

    /// The canary cannot serve: roll back (a no-op once finished).
    pub fn canary_unavailable(&mut self, why: String, now_ms: u64) -> Option<Decision> {
        self.is_judging().then(|| self.roll_back(Reason::CanaryUnavailable { message: why }, now_ms))
    }

    /// Ends the rollout on another judge's verdict (an experiment's): promotes the canary or rolls it
    /// back with `reason`; a no-op once finished.
    pub fn conclude(&mut self, promote: bool, reason: Reason, now_ms: u64) -> Option<Decision> {
        if !self.is_judging() {
            return None;
        }
        if !promote {
            return Some(self.roll_back(reason, now_ms));
        }
        self.finish(Phase::Promoted, FULL_WEIGHT, reason.clone());
        self.state.updated_ms = now_ms;
        Some(Decision::Promoted { reason })
    }

    /// Applies an operator's action; refused when it makes no sense in the current phase.
    pub fn act(&mut self, action: Action, now_ms: u64) -> Result<Decision, ActionRefused> {
        if !self.is_judging() {
            return Err(ActionRefused::Finished(phase_name(self.state.phase)));
        }
        let decision = match action {
            Action::Rollback => return Ok(self.roll_back(Reason::Admin, now_ms)),
            Action::Promote => {
                self.finish(Phase::Promoted, FULL_WEIGHT, Reason::Admin);
                Decision::Promoted { reason: Reason::Admin }
            }
            Action::Pause if self.state.paused => return Err(ActionRefused::AlreadyPaused),
            Action::Pause => {
                self.state.paused = true;
                Decision::Paused
            }
            Action::Resume if !self.state.paused => return Err(ActionRefused::NotPaused),
            Action::Resume => {
                self.state.paused = false;
                // A held rollout (control only) takes its step's weight again.
                self.state.weight_bp = self.planned_weight();
                Decision::Resumed
            }
        };
        self.state.updated_ms = now_ms;
        Ok(decision)
    }

    /// Requests recorded so far, both arms.
    pub fn requests_judged(&self) -> u64 {
        self.errors.requests(Side::Control) + self.errors.requests(Side::Canary)
    }

    /// Figures for the admin API and metrics.
    pub fn evidence(&self) -> Evidence {
        let (control_latency, canary_latency) = self.latency.observed_quantiles();
        Evidence {
            control_requests: self.errors.requests(Side::Control),
            canary_requests: self.errors.requests(Side::Canary),
            control_errors: self.errors.errors(Side::Control),
            canary_errors: self.errors.errors(Side::Canary),
            error_e_value: self
                .errors
                .log_e_value()
                .max(self.errors_only.as_ref().map_or(f64::NEG_INFINITY, ErrorsOnlyTest::log_e_value))
                .exp(),
            error_threshold: self.error_threshold().exp(),
            latency_e_value: self.latency.log_e_value().exp(),
            latency_threshold: self.latency_threshold().exp(),
            control_latency_seconds: control_latency,
            canary_latency_seconds: canary_latency,
            control_latency_reference_seconds: self.latency.control_reference(),
            step_requests: self.step_requests,
            baseline: self.baseline.as_ref().map(|b| BaselineEvidence {
                baseline: b.baseline,
                error_e_value: b.errors.log_e_value().exp(),
                latency_e_value: b.latency.as_ref().map(|(_, t)| t.log_e_value().exp()),
                canary_latency_limit_seconds: b.latency.as_ref().map(|(limit, _)| *limit),
                threshold: (1.0 / self.baseline_part()),
            }),
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
