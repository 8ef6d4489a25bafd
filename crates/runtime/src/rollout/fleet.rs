//! A rollout driver as one replica of a fleet (`switchyard-fleet` does the etcd side). Following the
//! fleet, the replica records its requests as always but decides nothing: it shares its test totals
//! ([`RolloutDriver::share`]) and applies the fleet's decisions in order ([`RolloutDriver::adopt`]).
//! Cut off from the fleet, it may roll the canary back on its own evidence (the safe direction, for its
//! own traffic only) but never advances a step or promotes. Alone (no fleet configured), nothing here
//! applies.

use super::{RolloutDriver, now_ms};
use serde_json::json;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use switchyard_core::rollout::{Action, ActionRefused, Decision, Prior, Share, State};

/// Who decides for this replica's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FleetMode {
    /// No fleet: this replica decides everything (a single server).
    Alone = 0,
    /// The fleet's leader decides; this replica shares its evidence and applies the decisions.
    Following = 1,
    /// The fleet cannot be reached: only a rollback on this replica's own evidence.
    CutOff = 2,
}

impl FleetMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::Following => "following",
            Self::CutOff => "cut_off",
        }
    }
}

/// The last fleet decision a replica applied: its sequence number and etcd revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub seq: Option<u64>,
    pub revision: i64,
}

impl RolloutDriver {
    pub fn fleet_mode(&self) -> FleetMode {
        match self.fleet_mode.load(Ordering::Acquire) {
            1 => FleetMode::Following,
            2 => FleetMode::CutOff,
            _ => FleetMode::Alone,
        }
    }

    /// Switches who decides; returns the mode it replaced.
    pub fn set_fleet_mode(&self, mode: FleetMode) -> FleetMode {
        let _m = self.lock();
        let was = self.fleet_mode();
        self.fleet_mode.store(mode as u8, Ordering::Release);
        was
    }

    /// This replica's test totals for the fleet.
    pub fn share(&self) -> Share {
        self.lock().share()
    }

    /// What the other replicas had seen, as last read: a head start for this replica's tests.
    pub fn set_prior(&self, prior: &Prior) {
        self.lock().set_prior(prior);
    }

    /// The rollout's state as this replica has it.
    pub fn state(&self) -> State {
        self.lock().state().clone()
    }

    /// The last fleet decision applied here.
    pub fn applied(&self) -> Applied {
        *self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies fleet decision `seq` (stored at etcd `revision`) unless a later one was applied already:
    /// decisions are applied once each, in order. Publishes the weight, counts and logs the decision and
    /// writes it to the state file and audit log. Returns whether it was applied.
    pub fn adopt(&self, seq: u64, revision: i64, state: State, decision: Option<&Decision>, by: &str) -> bool {
        let mut m = self.lock();
        if self.retired.load(Ordering::Relaxed) {
            return false;
        }
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        if applied.seq.is_some_and(|s| s >= seq) {
            return false;
        }
        *applied = Applied { seq: Some(seq), revision };
        drop(applied);
        let changed = *m.state() != state;
        m.adopt(state);
        let audit = json!({ "by": by, "fleet_seq": seq, "fleet_revision": revision });
        match decision {
            Some(d) => self.apply(&m, d, audit, None),
            None if changed => {
                let mut audit = audit;
                audit["event"] = json!("adopted");
                self.publish(m.state());
                self.journal.send(self.entry(audit, m.state(), None));
            }
            None => {}
        }
        true
    }

    /// What `action` would do to the rollout as it stands here (the fleet writes it, then every replica
    /// adopts it): the decision and the state after it. Changes nothing.
    pub fn propose(&self, action: Action) -> Result<(Decision, State), ActionRefused> {
        let mut m = self.lock().clone();
        let d = m.act(action, now_ms())?;
        Ok((d, m.state().clone()))
    }

    /// A fleet-mode status: this replica's mode and the last decision it applied.
    pub fn fleet_status(&self) -> serde_json::Value {
        let a = self.applied();
        json!({ "mode": self.fleet_mode().name(), "applied_seq": a.seq, "applied_revision": a.revision })
    }
}
