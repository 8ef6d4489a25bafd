//! What the fleet writes as decisions: the leader's judgement of the pooled evidence (or its move of
//! the fleet to its own config of a rollout), fenced on its leadership, and an operator's action from
//! any replica, compare-and-swapped on the decision it read. Both bump the sequence number by one, so
//! every replica applies each decision once, in order.

use crate::ActError;
use crate::agent::{Agent, to_json};
use crate::record::{DecisionRecord, EvidenceRecord, rollout_id};
use crate::store::StoreError;
use switchyard_core::rollout::{Action, Decision, Rollout};
use switchyard_runtime::rollout::{RolloutDriver, now_ms};

impl Agent {
    /// As leader: decides one rollout on the pooled evidence, or moves the fleet to this leader's config
    /// of it, and writes the decision fenced on leadership.
    pub(crate) async fn judge(
        &self,
        d: &RolloutDriver,
        (rec, rev): &(DecisionRecord, i64),
        shares: &[(String, EvidenceRecord)],
        fence: i64,
    ) -> Result<(), StoreError> {
        let (id, plan, now) = (rollout_id(&d.spec), d.spec.plan.clone(), now_ms());
        let (state, decision, by) = if rec.rollout_id != id {
            let same_arms = rec.control == d.spec.control.to_string() && rec.canary == d.spec.canary.to_string();
            let resumed = same_arms.then(|| Rollout::resume(plan.clone(), rec.state.clone()).ok()).flatten();
            let state = resumed.unwrap_or_else(|| Rollout::new(plan, now)).state().clone();
            (state, None, format!("leader {} (config changed)", self.config.replica))
        } else {
            let mut pooled = Rollout::pooled(plan, rec.state.clone(), shares.iter().map(|(_, e)| &e.share));
            let Some(decision) = pooled.evaluate(now) else { return Ok(()) };
            (pooled.state().clone(), Some(decision), format!("leader {}", self.config.replica))
        };
        let next = DecisionRecord {
            seq: rec.seq + 1,
            rollout_id: id,
            control: d.spec.control.to_string(),
            canary: d.spec.canary.to_string(),
            state,
            decision,
            by,
            at_ms: now,
        };
        let key = self.keys.decision(&d.spec.endpoint);
        let leader = self.keys.leader();
        match self.store.swap(&key, *rev, to_json(&next), Some((&leader, fence))).await? {
            Some(revision) => {
                tracing::info!(endpoint = %d.spec.endpoint, seq = next.seq, revision, decision = ?next.decision, "fleet decision");
                self.apply(d, &next, revision);
            }
            None => {
                // Someone else wrote first (an admin action: judged again next round), or this replica no
                // longer leads.
                let held = self.store.get_created(&leader).await?;
                if held != Some(fence) {
                    self.step_down("another replica leads");
                }
            }
        }
        Ok(())
    }

    /// An admin action for the fleet: compare-and-swap on the decision this replica last read.
    pub(crate) async fn act(&self, d: &RolloutDriver, action: Action) -> Result<Decision, ActError> {
        let key = self.keys.decision(&d.spec.endpoint);
        let unavailable =
            |e: StoreError| ActError::Unavailable(format!("the fleet's store (etcd) cannot be reached: {e}"));
        for _ in 0..5 {
            let Some(kv) = self.store.get(&key).await.map_err(unavailable)? else {
                return Err(ActError::Unavailable("the fleet has no decision for this rollout yet; retry".into()));
            };
            let rec: DecisionRecord = serde_json::from_slice(&kv.value)
                .map_err(|e| ActError::Unavailable(format!("the fleet's decision is unreadable: {e}")))?;
            if rec.rollout_id != rollout_id(&d.spec) {
                return Err(ActError::Unavailable(
                    "the fleet runs another config of this rollout (a config rollout in progress?); retry".into(),
                ));
            }
            self.apply(d, &rec, kv.mod_revision);
            let (decision, state) = d.propose(action)?;
            let next = DecisionRecord {
                seq: rec.seq + 1,
                state,
                decision: Some(decision.clone()),
                by: format!("admin on {}", self.config.replica),
                at_ms: now_ms(),
                ..rec
            };
            if let Some(revision) =
                self.store.swap(&key, kv.mod_revision, to_json(&next), None).await.map_err(unavailable)?
            {
                self.apply(d, &next, revision);
                return Ok(decision);
            }
        }
        Err(ActError::Unavailable("the fleet's decision kept changing; retry".into()))
    }
}
