//! What the fleet writes to etcd, as JSON: a rollout's decision and one replica's evidence. Both carry
//! the rollout's identity, so a replica running another config (a rollout changed mid-deploy) neither
//! follows nor pools what is not its own rollout.

use serde::{Deserialize, Serialize};
use switchyard_core::rollout::{Decision, Share, State};
use switchyard_runtime::rollout::RolloutSpec;

/// A rollout's current decision: `seq` goes up by one with each, so every replica applies each once,
/// in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub seq: u64,
    pub rollout_id: String,
    pub control: String,
    pub canary: String,
    pub state: State,
    /// What changed (absent for the first record, written when the rollout joined the fleet).
    pub decision: Option<Decision>,
    /// Who decided: `leader <name>`, `admin on <name>`, `<name> (first)`.
    pub by: String,
    pub at_ms: u64,
}

/// One replica incarnation's running test totals for a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub rollout_id: String,
    pub replica: String,
    pub at_ms: u64,
    /// `following` or `cut_off` (the state it routed by may lag the decision then).
    pub mode: String,
    pub applied_seq: Option<u64>,
    /// The etcd revision of that decision.
    #[serde(default)]
    pub applied_revision: i64,
    pub share: Share,
}

/// A rollout's identity: its endpoint, arms and plan. Replicas with the same config agree on it.
pub fn rollout_id(spec: &RolloutSpec) -> String {
    let text = format!("{}|{}|{}|{:?}", spec.endpoint, spec.control, spec.canary, spec.plan);
    // FNV-1a, 64 bits: stable across processes and builds (std's hasher is not).
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}
