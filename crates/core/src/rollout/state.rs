//! What a rollout is and says, as data: where it stands (phase, weight, verdict, the durable `State`),
//! what changed (`Decision`) and why (`Reason`), what an operator may ask (`Action`), and the statistics
//! behind a verdict (`Evidence`). The state machine in `machine.rs` produces them; the runtime saves,
//! logs and shows them.

use super::baseline::Baseline;

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
    /// An experiment's verdict on business outcomes (`verdict` is `ship` or `kill`; `metric` the one
    /// that decided, with its relative lift of canary over control).
    Experiment { verdict: String, metric: String, relative_lift: Option<f64> },
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
            Self::Experiment { .. } => "experiment",
        }
    }
}

/// What `evaluate` or an admin action changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// Control's figures frozen when the canary took all traffic (absent before, and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// Why a saved state cannot be resumed under the current plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeRefused {
    #[error("it was saved at step {saved} of a plan that now has {steps} step(s)")]
    StepGone { saved: usize, steps: usize },
    #[error("it was saved as a fixed split and the plan now has steps")]
    NowSteps,
    #[error("it was saved as a progressive plan and the plan is now a fixed split")]
    NowFixed,
}

/// Why an operator's action was refused (it makes no sense in the rollout's current phase).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionRefused {
    #[error("the rollout is already {0}")]
    Finished(&'static str),
    #[error("the rollout is already paused")]
    AlreadyPaused,
    #[error("the rollout is not paused")]
    NotPaused,
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
    /// The canary against control's frozen figures, once it takes all traffic.
    pub baseline: Option<BaselineEvidence>,
}

/// The baseline tests' statistics (a 100 % step).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BaselineEvidence {
    pub baseline: Baseline,
    pub error_e_value: f64,
    pub latency_e_value: Option<f64>,
    /// A canary request slower than this is a tail event (`max_ratio` times control's bound).
    pub canary_latency_limit_seconds: Option<f64>,
    pub threshold: f64,
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Step(_) => "progressing",
        Phase::Fixed => "fixed",
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled_back",
    }
}
