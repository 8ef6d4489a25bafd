//! The rollout engine's decisions: sticky assignment, the sequential tests that compare a canary with
//! live control, and the state machine that moves weights. No I/O and no clock: time is passed in.

pub mod assign;
pub mod baseline;
pub mod errors;
pub mod latency;
pub mod machine;
pub mod plan;
pub mod pooled;
mod state;

pub use baseline::Baseline;
pub use errors::Side;
pub use machine::{
    Action, ActionRefused, BaselineEvidence, Decision, Evidence, Phase, Reason, ResumeRefused, Rollout, State, Verdict,
    phase_name,
};
pub use plan::{Analysis, FULL_WEIGHT, InvalidPlan, Plan, Schedule, Step};
pub use pooled::{BaselineShare, Prior, Share, Tally};
