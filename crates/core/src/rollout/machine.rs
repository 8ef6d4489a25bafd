//! One rollout's state machine. Observations (arm, failed, latency) feed the sequential tests; `evaluate`
//! (called after every request or on a short tick, with the time passed in) decides: roll back now when
//! either test has the evidence, advance a step once its hold has passed and both arms saw
//! `min_requests`, promote after the last step, otherwise wait. Admin actions go through here too, so
//! every change of weight has one place and one record.

use super::errors::{ErrorRateTest, ErrorsOnlyTest, Side};
use super::latency::LatencyTest;
use super::plan::{FULL_WEIGHT, Plan, Schedule};

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// At step `n` (0-based) of a progressive schedule.
    Step(usize),
    /// A fixed split (A/B) that never promotes by itself.
    Fixed,
    Promoted,
    RolledBack,
}

/// The verdict on the canary so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough time or requests yet to pass the current step.
    InsufficientEvidence,
    /// The step's hold passed with `min_requests` per arm and no alarm (on time and volume, not a proof).
    Healthy,
    /// A test crossed its threshold.
    Regressed,
}

/// Why a rollout was rolled back or promoted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    ErrorRate {
        control_rate: f64,
        canary_rate: f64,
        control_requests: u64,
        canary_requests: u64,
        e_value: f64,
        threshold: f64,
    },
    /// `canary_events` of the `events` (requests slower than the tail threshold) came from the canary.
    Latency {
        quantile: f64,
        control_seconds: f64,
        canary_seconds: f64,
        canary_events: u64,
        events: u64,
        e_value: f64,
        threshold: f64,
    },
    /// Every step passed.
    StepsPassed,
    /// An operator said so.
    Admin,
    /// The canary model could not serve (failed to load).
    CanaryUnavailable { message: String },
}

impl Reason {
    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ErrorRate { .. } => "error_rate",
            Self::Latency { .. } => "latency",
            Self::StepsPassed => "steps_passed",
            Self::Admin => "admin",
            Self::CanaryUnavailable { .. } => "canary_unavailable",
        }
    }
}

/// What `evaluate` or an admin action changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Advanced { step: usize, weight_bp: u32 },
    Promoted { reason: Reason },
    RolledBack { reason: Reason },
    Paused,
    Resumed,
}

/// The durable part of a rollout: what survives a restart (the evidence does not, and need not: a
/// restarted test is as valid as a fresh one).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub phase: Phase,
    pub paused: bool,
    pub weight_bp: u32,
    pub started_ms: u64,
    pub step_started_ms: u64,
    pub updated_ms: u64,
    pub verdict: Verdict,
    pub reason: Option<Reason>,
}

/// An admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Promote,
    Rollback,
    Pause,
    Resume,
}

/// A running rollout.
#[derive(Debug, Clone)]
pub struct Rollout {
    plan: Plan,
    state: State,
    errors: ErrorRateTest,
    /// Runs only when `min_increase` is 0 (it tests the ratio alone).
    errors_only: Option<ErrorsOnlyTest>,
    latency: LatencyTest,
    step_requests: [u64; 2],
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
        };
        Self::restore(plan, state)
    }

    /// Resumes from a saved state; a running step's hold restarts from its saved start.
    pub fn restore(plan: Plan, state: State) -> Self {
        let a = plan.analysis;
        Self {
            errors: ErrorRateTest::new(a.error_max_ratio, a.error_min_increase),
            errors_only: (a.error_min_increase == 0.0).then(|| ErrorsOnlyTest::new(a.error_max_ratio)),
            latency: LatencyTest::new(a.latency_quantile, a.latency_max_ratio),
            plan,
            state,
            step_requests: [0; 2],
        }
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
            match side {
                Side::Control => self.latency.observe_control(latency_seconds, share),
                Side::Canary => self.latency.observe_canary(latency_seconds, share),
            }
        }
    }

    /// The error-rate test's threshold: half the false-rollback budget, split in two again when the
    /// errors-only test runs beside it.
    pub fn error_threshold(&self) -> f64 {
        let share = if self.errors_only.is_some() { 4.0 } else { 2.0 };
        (share / self.plan.analysis.alpha).ln()
    }

    /// The latency test's threshold: the other half of the budget.
    pub fn latency_threshold(&self) -> f64 {
        (2.0 / self.plan.analysis.alpha).ln()
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
        let held = now_ms.saturating_sub(self.state.step_started_ms) >= steps[step].hold_ms;
        let min = self.plan.analysis.min_requests;
        // At full weight (blue-green) control gets no traffic: only the canary's count applies.
        let control_needed = if self.state.weight_bp >= FULL_WEIGHT { 0 } else { min };
        let enough = self.step_requests[1] >= min && self.step_requests[0] >= control_needed;
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
            Decision::Advanced { step: step + 1, weight_bp }
        } else {
            self.finish(Phase::Promoted, FULL_WEIGHT, Reason::StepsPassed);
            Decision::Promoted { reason: Reason::StepsPassed }
        };
        self.state.updated_ms = now_ms;
        Some(decision)
    }

    fn regression(&mut self) -> Option<Reason> {
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

    fn roll_back(&mut self, reason: Reason, now_ms: u64) -> Decision {
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

    /// Applies an operator's action; refused when it makes no sense in the current phase.
    pub fn act(&mut self, action: Action, now_ms: u64) -> Result<Decision, String> {
        if !self.is_judging() {
            return Err(format!("the rollout is already {}", phase_name(self.state.phase)));
        }
        let decision = match action {
            Action::Rollback => return Ok(self.roll_back(Reason::Admin, now_ms)),
            Action::Promote => {
                self.finish(Phase::Promoted, FULL_WEIGHT, Reason::Admin);
                Decision::Promoted { reason: Reason::Admin }
            }
            Action::Pause if self.state.paused => return Err("the rollout is already paused".into()),
            Action::Pause => {
                self.state.paused = true;
                Decision::Paused
            }
            Action::Resume if !self.state.paused => return Err("the rollout is not paused".into()),
            Action::Resume => {
                self.state.paused = false;
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
        }
    }
}

/// The statistics behind the verdict.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Evidence {
    pub control_requests: u64,
    pub canary_requests: u64,
    pub control_errors: u64,
    pub canary_errors: u64,
    pub error_e_value: f64,
    pub error_threshold: f64,
    pub latency_e_value: f64,
    pub latency_threshold: f64,
    pub control_latency_seconds: f64,
    pub canary_latency_seconds: f64,
    /// Control's recent quantile that the tail threshold is built from.
    pub control_latency_reference_seconds: f64,
    /// Requests per arm `[control, canary]` in the current step.
    pub step_requests: [u64; 2],
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Step(_) => "progressing",
        Phase::Fixed => "fixed",
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled_back",
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
