//! What a rollout shows: its status for the admin API, and its test statistics as gauges.

use super::RolloutDriver;
use metrics::gauge;
use serde_json::json;
use switchyard_core::rollout::{Evidence, Phase, phase_name};

impl RolloutDriver {
    /// The test statistics and sample sizes as gauges.
    pub(super) fn publish_evidence(&self, e: &Evidence) {
        let ep = || self.spec.endpoint.clone();
        gauge!("switchyard_rollout_error_rate_e_value", "endpoint" => ep()).set(e.error_e_value);
        gauge!("switchyard_rollout_latency_e_value", "endpoint" => ep()).set(e.latency_e_value);
        gauge!("switchyard_rollout_e_value_threshold", "endpoint" => ep()).set(e.error_threshold);
        gauge!("switchyard_rollout_sample_requests", "endpoint" => ep(), "arm" => "control")
            .set(e.control_requests as f64);
        gauge!("switchyard_rollout_sample_requests", "endpoint" => ep(), "arm" => "canary")
            .set(e.canary_requests as f64);
    }

    /// The rollout as the admin API shows it.
    pub fn status(&self) -> serde_json::Value {
        let experiment = self.experiment_report().map(|r| json!({ "spec": self.spec.experiment, "report": r }));
        let m = self.lock();
        let s = m.state();
        json!({
            "experiment": experiment,
            "endpoint": self.spec.endpoint,
            "control": self.spec.control,
            "canary": self.spec.canary,
            "phase": phase_name(s.phase),
            "step": match s.phase { Phase::Step(n) => Some(n), _ => None },
            "paused": s.paused,
            "canary_weight_percent": f64::from(s.weight_bp) / 100.0,
            "verdict": s.verdict,
            "reason": s.reason,
            "started_ms": s.started_ms,
            "step_started_ms": s.step_started_ms,
            "updated_ms": s.updated_ms,
            "evidence": m.evidence(),
            "shadows": self.spec.shadows.iter().zip(&self.shadow_stats).map(|((t, bp), stats)| {
                json!({ "target": t, "sample_percent": f64::from(*bp) / 100.0, "agreement": stats.snapshot() })
            }).collect::<Vec<_>>(),
        })
    }
}
