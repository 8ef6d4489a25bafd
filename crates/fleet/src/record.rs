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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::rollout::{Analysis, Plan, Rollout, Schedule, Step};
    use switchyard_runtime::rollout::{Fault, Target};

    fn spec(hold_ms: u64) -> RolloutSpec {
        let steps = vec![Step { weight_bp: 2_000, hold_ms }];
        RolloutSpec {
            endpoint: "scorer".into(),
            control: Target { model: "mlp".into(), version: Some(1) },
            canary: Target { model: "mlp".into(), version: Some(2) },
            plan: Plan { schedule: Schedule::Steps(steps), analysis: Analysis::default() },
            header: None,
            salt: "scorer".into(),
            serve_control_on_canary_error: true,
            shadows: Vec::new(),
            faults: [Fault::default(); 2],
            experiment: None,
        }
    }

    #[test]
    fn a_rollout_is_identified_by_its_arms_and_plan_only() {
        let a = rollout_id(&spec(1_000));
        assert_eq!(a, rollout_id(&spec(1_000)), "stable");
        assert_eq!(a.len(), 16);
        assert_ne!(a, rollout_id(&spec(2_000)), "a changed plan is another rollout");
        let same_arms_other_salt = RolloutSpec { salt: "other".into(), ..spec(1_000) };
        assert_eq!(a, rollout_id(&same_arms_other_salt));
    }

    #[test]
    fn decisions_and_evidence_travel_as_json() {
        let s = spec(1_000);
        let mut r = Rollout::new(s.plan.clone(), 5);
        let decision = r.act(switchyard_core::rollout::Action::Pause, 6).expect("pause");
        let rec = DecisionRecord {
            seq: 3,
            rollout_id: rollout_id(&s),
            control: s.control.to_string(),
            canary: s.canary.to_string(),
            state: r.state().clone(),
            decision: Some(decision),
            by: "admin on r1".into(),
            at_ms: 7,
        };
        let back: DecisionRecord = serde_json::from_slice(&serde_json::to_vec(&rec).expect("json")).expect("parses");
        assert_eq!(back, rec);
        let e = EvidenceRecord {
            rollout_id: rec.rollout_id.clone(),
            replica: "r1".into(),
            at_ms: 8,
            mode: "following".into(),
            applied_seq: Some(3),
            applied_revision: 42,
            share: r.share(),
        };
        let back: EvidenceRecord = serde_json::from_slice(&serde_json::to_vec(&e).expect("json")).expect("parses");
        assert_eq!(back, e);
    }
}
