//! The fleet as the admin API shows it: who this replica is, who leads, whether etcd answers, and per
//! rollout every replica's evidence (last seen, applied decision, its own e-values) beside the pooled
//! verdict the leader judges on.

use crate::agent::Agent;
use crate::record::{DecisionRecord, rollout_id};
use serde_json::{Value, json};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use switchyard_core::rollout::Rollout;
use switchyard_runtime::rollout::{RolloutDriver, now_ms};

impl Agent {
    pub(crate) fn summary(&self) -> Value {
        let leader = self.leader_name.lock().unwrap_or_else(PoisonError::into_inner).clone();
        json!({
            "replica": self.config.replica,
            "copy": self.copy,
            "etcd_up": self.up.load(Ordering::Acquire),
            "joined": self.is_joined(),
            "started_without_etcd": self.started_without_etcd.load(Ordering::Acquire),
            "leader": leader,
            "leading": self.is_leading(),
            "etcd_endpoints": self.config.endpoints,
            "prefix": self.config.prefix,
            "lease_ttl_seconds": self.config.lease_ttl.as_secs_f64(),
            "publish_interval_seconds": self.config.publish_interval.as_secs_f64(),
        })
    }

    /// Reads the rollout's decision and every replica's evidence from etcd (this replica's own view
    /// alone when etcd cannot be reached).
    pub(crate) async fn rollout_view(&self, d: &RolloutDriver) -> Value {
        let mut view = self.summary();
        view["this_replica"] = d.fleet_status();
        let id = rollout_id(&d.spec);
        view["rollout_id"] = json!(id);
        if !self.up.load(Ordering::Acquire) {
            let why = if self.started_without_etcd.load(Ordering::Acquire) {
                "etcd could not be reached at start: serving the config's initial stage, rollbacks only, until it can"
            } else {
                "etcd cannot be reached: keeping the last fleet decision, rollbacks only; this replica's own view"
            };
            view["error"] = json!(why);
            return view;
        }
        let decision = match self.store.get(&self.keys.decision(&d.spec.endpoint)).await {
            Ok(kv) => {
                kv.and_then(|kv| serde_json::from_slice::<DecisionRecord>(&kv.value).ok().map(|r| (r, kv.mod_revision)))
            }
            Err(e) => {
                view["error"] = json!(e.to_string());
                return view;
            }
        };
        let shares = match self.shares(&d.spec.endpoint, &id).await {
            Ok(s) => s,
            Err(e) => {
                view["error"] = json!(e.to_string());
                return view;
            }
        };
        let now = now_ms();
        view["replicas"] = shares
            .iter()
            .map(|(_, e)| {
                let alone = Rollout::pooled(d.spec.plan.clone(), d.state(), [&e.share]).evidence();
                json!({
                    "replica": e.replica,
                    "last_seen_ms_ago": now.saturating_sub(e.at_ms),
                    "mode": e.mode,
                    "applied_seq": e.applied_seq,
                    "applied_revision": e.applied_revision,
                    "requests": { "control": e.share.requests[0], "canary": e.share.requests[1] },
                    "errors": { "control": e.share.errors[0], "canary": e.share.errors[1] },
                    "error_e_value": alone.error_e_value,
                    "latency_e_value": alone.latency_e_value,
                })
            })
            .collect();
        if let Some((rec, revision)) = decision {
            let pooled = Rollout::pooled(d.spec.plan.clone(), rec.state.clone(), shares.iter().map(|(_, e)| &e.share));
            view["pooled"] = json!(pooled.evidence());
            view["decision"] = json!({
                "seq": rec.seq,
                "revision": revision,
                "by": rec.by,
                "at_ms": rec.at_ms,
                "decision": rec.decision,
                "same_config": rec.rollout_id == id,
            });
        }
        view
    }
}
