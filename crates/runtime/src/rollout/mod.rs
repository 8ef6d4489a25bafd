//! Runs one endpoint's rollout: picks the arm for each request (sticky by key, else random), feeds each
//! outcome to the decision code with the time, and applies each decision in the order it was taken:
//! under the lock around the state machine the weight requests route by is published and the decision
//! is handed to the journal (the one writer of the state file and audit log, on its own thread), so a
//! stale weight can never follow a rollback and the file always holds the last decision. The lock is
//! held for one record-and-evaluate: microseconds, never across an inference or a file write.

mod experiment;
mod fleet;
mod history;
mod journal;
mod series;
mod status;

use crate::shadow::ShadowStats;
pub use fleet::{Applied, FleetMode};
pub use history::keep_last;
pub(crate) use journal::replace_bytes;
use journal::{Entry, Journal, Paths, quarantine, read_saved};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_core::rollout::{Action, Decision, FULL_WEIGHT, Phase, Plan, Rollout, Side, State, assign, phase_name};

/// Shadow copies in flight per rollout before new ones are shed.
pub const SHADOW_SLOTS: usize = 64;

/// A model (and optionally a pinned version) an arm sends requests to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub model: String,
    pub version: Option<u64>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}/{v}", self.model),
            None => write!(f, "{}", self.model),
        }
    }
}

/// Injected faults for one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    pub error_bp: u32,
    pub delay: Duration,
    /// Share of calls (basis points) whose model call panics on the worker.
    pub panic_bp: u32,
    /// Share of calls (basis points) whose worker panics outside the model call.
    pub crash_bp: u32,
}

/// Everything about one rollout that comes from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    pub endpoint: String,
    pub control: Target,
    pub canary: Target,
    pub plan: Plan,
    pub header: Option<String>,
    pub salt: String,
    pub serve_control_on_canary_error: bool,
    pub shadows: Vec<(Target, u32)>,
    /// `[control, canary]`.
    pub faults: [Fault; 2],
    /// An A/B test on business outcomes reported as feedback.
    pub experiment: Option<switchyard_core::experiment::Spec>,
}

/// How a request judged for an arm ended, as the analysis sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Answered, in this long.
    Served(Duration),
    /// The arm could not serve it (refused, timed out on the server's deadline, failed, panicked).
    Failed,
    /// Ran past a deadline the client chose: no error of the arm, but it took at least this long.
    Censored(Duration),
}

/// Why a rollout could not start.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a rollout state file ({source})")]
    Corrupt { path: String, source: serde_json::Error },
}

pub use switchyard_core::rollout::ActionRefused;

/// Which arm served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Control,
    Canary,
}

impl Arm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Canary => "canary",
        }
    }
    pub(crate) fn side(self) -> Side {
        match self {
            Self::Control => Side::Control,
            Self::Canary => Side::Canary,
        }
    }
}

/// What the state file holds: which rollout it belongs to, and where it stood.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    endpoint: String,
    control: Target,
    canary: Target,
    state: State,
}

pub struct RolloutDriver {
    pub spec: RolloutSpec,
    /// The canary's weight, mirrored out of the state machine so picking an arm takes no lock. Written
    /// only under the machine's lock, so it always follows the last decision.
    weight_bp: AtomicU32,
    /// Per arm `[control, canary]` and protocol `[http, grpc]`: request time, successes, failures
    /// (registered once).
    arm_metrics: [[(Histogram, Counter, Counter); 2]; 2],
    /// One per `spec.shadows`, same order.
    pub shadow_stats: Vec<std::sync::Arc<ShadowStats>>,
    /// Bounds the shadow copies in flight; when none is free the copy is shed (and counted).
    pub shadow_slots: std::sync::Arc<tokio::sync::Semaphore>,
    machine: Mutex<Rollout>,
    journal: Journal,
    /// Set when a reloaded config handed this rollout to a new driver: it decides and writes nothing more.
    retired: AtomicBool,
    /// Alone, following a fleet, or cut off from it (see `fleet.rs`): who may decide what.
    fleet_mode: std::sync::atomic::AtomicU8,
    /// The last fleet decision applied (taken after `machine` when both are held).
    applied: Mutex<Applied>,
    /// The experiment's evidence, when `spec.experiment` is set.
    experiment: Option<experiment::Running>,
    arms_fingerprint: u64,
    /// Recent audit lines (`history.rs`).
    history: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// Recent traffic per arm and second (`series.rs`), taken after `machine`.
    series: Mutex<series::Ring>,
}

impl std::fmt::Debug for RolloutDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutDriver").field("endpoint", &self.spec.endpoint).finish()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl RolloutDriver {
    /// Starts a rollout, or resumes the saved one when it belongs to the same control and canary and the
    /// current plan can hold it (a rolled-back canary stays rolled back until the config names a new
    /// one). Otherwise the new plan starts, and the log and the audit say why.
    pub fn start(spec: RolloutSpec, state_dir: Option<&Path>) -> Result<Self, RolloutError> {
        Self::start_from(spec, state_dir, None)
    }

    /// Takes over from `previous` (a reloaded config with the same control and canary): its state as it
    /// stands in memory, so nothing decided since the last write is lost. `previous` is retired first.
    pub async fn take_over(
        previous: &RolloutDriver,
        spec: RolloutSpec,
        state_dir: Option<&Path>,
    ) -> Result<Self, RolloutError> {
        let state = previous.retire();
        let _ = previous.flush().await;
        let saved = Saved {
            endpoint: spec.endpoint.clone(),
            control: spec.control.clone(),
            canary: spec.canary.clone(),
            state,
        };
        let driver = Self::start_from(spec, state_dir, Some(saved))?;
        driver.carry_history(previous);
        // A fleet's replica stays in the fleet across a reload (the fleet's agent sees the new driver
        // on its next round).
        driver.fleet_mode.store(previous.fleet_mode() as u8, Ordering::Release);
        Ok(driver)
    }

    fn start_from(spec: RolloutSpec, state_dir: Option<&Path>, handed: Option<Saved>) -> Result<Self, RolloutError> {
        let now = now_ms();
        let paths = state_dir.map(|d| Paths {
            state_file: d.join("rollouts").join(format!("{}.json", spec.endpoint)),
            audit_log: d.join("audit.jsonl"),
        });
        // Seeded from the audit log at start; a driver taking over carries its predecessor's instead.
        let history = match (&paths, &handed) {
            (Some(p), None) => history::seed(&p.audit_log, &spec.endpoint),
            _ => Default::default(),
        };
        let resumed = if handed.is_some() { "reloaded" } else { "resumed" };
        let mut quarantined = None;
        let saved = match (&paths, handed) {
            (_, Some(h)) => Some(h),
            (Some(p), None) => match read_saved(&p.state_file) {
                Err(RolloutError::Corrupt { path, source }) => {
                    quarantined = Some(quarantine(&p.state_file, &path, &source, now));
                    None
                }
                other => other?,
            },
            (None, None) => None,
        };
        let (machine, event, why) = match saved {
            None if quarantined.is_some() => (Rollout::held(spec.plan.clone(), now), "held", quarantined),
            None => (Rollout::new(spec.plan.clone(), now), "started", None),
            Some(s) if s.control != spec.control || s.canary != spec.canary => {
                let why = format!("the saved state was for control {} and canary {}", s.control, s.canary);
                (Rollout::new(spec.plan.clone(), now), "restarted", Some(why))
            }
            Some(s) => match Rollout::resume(spec.plan.clone(), s.state) {
                Ok(m) => (m, resumed, None),
                Err(refused) => {
                    let why = format!("the saved state cannot be resumed: {refused}");
                    (Rollout::new(spec.plan.clone(), now), "restarted", Some(why))
                }
            },
        };
        let journal = match paths {
            Some(p) => {
                let shown = p.audit_log.display().to_string();
                Journal::start(&spec.endpoint, p).map_err(|source| RolloutError::Io { path: shown, source })?
            }
            None => Journal::disabled(),
        };
        let shadow_stats = spec
            .shadows
            .iter()
            .map(|(t, _)| std::sync::Arc::new(ShadowStats::new(&spec.endpoint, &t.to_string())))
            .collect();
        let shadow_slots = std::sync::Arc::new(tokio::sync::Semaphore::new(SHADOW_SLOTS));
        let arm_metrics = [Arm::Control, Arm::Canary].map(|arm| {
            [crate::Protocol::Http, crate::Protocol::Grpc].map(|protocol| {
                let (e, a, p) = (spec.endpoint.clone(), arm.name(), protocol.label());
                (
                    histogram!("switchyard_rollout_request_duration_seconds", "endpoint" => e.clone(), "arm" => a, "protocol" => p),
                    counter!("switchyard_rollout_requests_total", "endpoint" => e.clone(), "arm" => a, "outcome" => "success", "protocol" => p),
                    counter!("switchyard_rollout_requests_total", "endpoint" => e, "arm" => a, "outcome" => "error", "protocol" => p),
                )
            })
        });
        // Every counter a decision can move exists from the start at 0, so `increase()` sees its first event.
        for reason in ["error_rate", "latency", "admin", "canary_unavailable", "experiment"] {
            counter!("switchyard_rollout_rollbacks_total", "endpoint" => spec.endpoint.clone(), "reason" => reason)
                .increment(0);
        }
        for reason in ["steps_passed", "admin", "experiment"] {
            counter!("switchyard_rollout_promotions_total", "endpoint" => spec.endpoint.clone(), "reason" => reason)
                .increment(0);
        }
        let weight_bp = AtomicU32::new(machine.weight_bp());
        let experiment = spec.experiment.as_ref().and_then(experiment::Running::new);
        let driver = Self {
            series: Mutex::default(),
            history: Mutex::new(history),
            experiment,
            arms_fingerprint: experiment::fingerprint(&spec),
            spec,
            weight_bp,
            arm_metrics,
            shadow_stats,
            shadow_slots,
            machine: Mutex::new(machine),
            journal,
            retired: AtomicBool::new(false),
            fleet_mode: std::sync::atomic::AtomicU8::new(FleetMode::Alone as u8),
            applied: Mutex::new(Applied::default()),
        };
        let m = driver.lock();
        let state = m.state().clone();
        match &why {
            // A quarantined state file was logged as an error where it was found.
            Some(_) if event == "held" => {}
            Some(why) => {
                tracing::warn!(endpoint = %driver.spec.endpoint, %why, "rollout restarted with the configured plan")
            }
            None => {
                tracing::info!(endpoint = %driver.spec.endpoint, phase = phase_name(state.phase), weight = state.weight_bp, "rollout {event}")
            }
        }
        let mut entry = json!({ "event": event, "phase": state.phase, "weight_bp": state.weight_bp });
        if let Some(why) = why {
            entry["why"] = json!(why);
        }
        driver.publish(&state);
        driver.journal.send(driver.entry(entry, &state, None));
        drop(m);
        Ok(driver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rollout> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The arm for a request: by its key's bucket when it has one, else by a random number.
    pub fn choose(&self, key: Option<&[u8]>, random: u64) -> Arm {
        self.choose_at(key, random, self.weight_bp())
    }

    /// [`choose`](Self::choose) at the canary weight `weight_bp` (read once by a caller that also
    /// needs the share the request was assigned at).
    pub fn choose_at(&self, key: Option<&[u8]>, random: u64, weight_bp: u32) -> Arm {
        let bucket = match key {
            Some(k) => assign::bucket(&self.spec.salt, k),
            None => assign::random_bucket(random),
        };
        if assign::is_canary(bucket, weight_bp) { Arm::Canary } else { Arm::Control }
    }

    pub fn target(&self, arm: Arm) -> &Target {
        match arm {
            Arm::Control => &self.spec.control,
            Arm::Canary => &self.spec.canary,
        }
    }

    /// The canary's share of traffic now, in basis points.
    pub fn weight_bp(&self) -> u32 {
        self.weight_bp.load(Ordering::Acquire)
    }

    /// Records a finished request that came through `protocol` and applies whatever the evidence now
    /// decides (the evidence is the same whichever front end a request came through).
    pub fn record(&self, arm: Arm, protocol: crate::Protocol, observation: Observation) {
        let (duration, ok, err) = &self.arm_metrics[arm.side() as usize][protocol as usize];
        match observation {
            Observation::Served(took) => {
                duration.record(took.as_secs_f64());
                ok.increment(1);
            }
            Observation::Failed => err.increment(1),
            Observation::Censored(_) => {}
        }
        let mut m = self.lock();
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        // `took` for the console's chart: a censored request's time is a lower bound, counted as it stands.
        let (failed, took) = match observation {
            Observation::Served(t) => (false, Some(t.as_secs_f64())),
            Observation::Failed => (true, None),
            Observation::Censored(t) => (false, Some(t.as_secs_f64())),
        };
        match (observation, took) {
            (Observation::Censored(_), Some(t)) => m.record_censored(arm.side(), t),
            (_, t) => m.record(arm.side(), failed, t.unwrap_or(0.0)),
        }
        let decision = match self.fleet_mode() {
            FleetMode::Alone => m.evaluate(now_ms()),
            FleetMode::Following => None,
            FleetMode::CutOff => m.evaluate_regression(now_ms()),
        };
        self.record_second(&m, arm.side() as usize, failed, took, decision.is_some());
        if m.requests_judged().is_multiple_of(64) || decision.is_some() {
            self.publish_evidence(&m.evidence());
        }
        if let Some(d) = decision {
            let by =
                if self.fleet_mode() == FleetMode::CutOff { "analysis (cut off from the fleet)" } else { "analysis" };
            self.apply(&m, &d, json!({ "by": by }), None);
        }
    }

    /// An operator's action. Returns once the decision is durable (in the state file and audit log).
    pub async fn act(&self, action: Action) -> Result<Decision, ActionRefused> {
        let (decision, durable) = self.act_now(action)?;
        let _ = durable.await;
        Ok(decision)
    }

    /// An operator's action, applied now; the receiver fires once it is durable.
    pub fn act_now(&self, action: Action) -> Result<(Decision, tokio::sync::oneshot::Receiver<()>), ActionRefused> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut m = self.lock();
        if self.retired.load(Ordering::Relaxed) {
            return Err(ActionRefused::Finished("replaced by a reloaded config; retry"));
        }
        let d = m.act(action, now_ms())?;
        self.apply(&m, &d, json!({ "by": "admin", "action": action }), Some(tx));
        Ok((d, rx))
    }

    /// The canary cannot serve (it failed to load): roll it back.
    pub fn canary_unavailable(&self, why: &str) {
        let mut m = self.lock();
        if self.retired.load(Ordering::Relaxed) {
            return;
        }
        if let Some(d) = m.canary_unavailable(why.to_owned(), now_ms()) {
            self.apply(&m, &d, json!({ "by": "loader" }), None);
        }
    }

    /// Applies a decision just taken, still under the machine's lock (`m`): publishes the weight, counts
    /// and logs it, and hands it to the journal, so decisions reach every reader in the order taken.
    fn apply(
        &self,
        m: &Rollout,
        decision: &Decision,
        mut audit: serde_json::Value,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let state = m.state();
        let endpoint = self.spec.endpoint.clone();
        let by = audit["by"].as_str().unwrap_or("analysis").to_owned();
        match decision {
            Decision::RolledBack { reason } => {
                tracing::warn!(%endpoint, by, reason = ?reason, "canary rolled back");
                counter!("switchyard_rollout_rollbacks_total", "endpoint" => endpoint, "reason" => reason.label())
                    .increment(1);
            }
            Decision::Promoted { reason } => {
                tracing::info!(%endpoint, by, reason = ?reason, "canary promoted");
                counter!("switchyard_rollout_promotions_total", "endpoint" => endpoint, "reason" => reason.label())
                    .increment(1);
            }
            other => tracing::info!(%endpoint, by, decision = ?other, "rollout changed"),
        }
        self.publish(state);
        audit["event"] = json!("decision");
        audit["decision"] = json!(decision);
        audit["phase"] = json!(state.phase);
        audit["weight_bp"] = json!(state.weight_bp);
        self.journal.send(self.entry(audit, state, done));
    }

    /// A journal entry: the audit line stamped with the time and endpoint, and the state to save.
    fn entry(
        &self,
        mut audit: serde_json::Value,
        state: &State,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Entry {
        audit["time_ms"] = json!(now_ms());
        audit["endpoint"] = json!(self.spec.endpoint);
        self.remember_entry(&audit);
        let saved = Saved {
            endpoint: self.spec.endpoint.clone(),
            control: self.spec.control.clone(),
            canary: self.spec.canary.clone(),
            state: state.clone(),
        };
        Entry { audit, state: serde_json::to_value(&saved).ok(), done }
    }

    fn publish(&self, state: &State) {
        self.weight_bp.store(state.weight_bp, Ordering::Release);
        let e = self.spec.endpoint.clone();
        gauge!("switchyard_rollout_canary_weight_ratio", "endpoint" => e.clone())
            .set(f64::from(state.weight_bp) / f64::from(FULL_WEIGHT));
        let step = match state.phase {
            Phase::Step(n) => n as f64,
            Phase::Fixed => 0.0,
            Phase::Promoted => -1.0,
            Phase::RolledBack => -2.0,
        };
        gauge!("switchyard_rollout_step", "endpoint" => e).set(step);
    }

    /// Stops deciding and writing (a new driver takes over, or the rollout left the config); returns
    /// the state as it stands.
    pub fn retire(&self) -> State {
        let m = self.lock();
        self.retired.store(true, Ordering::Relaxed);
        m.state().clone()
    }

    /// Waits until every decision taken so far is written (for tests and shutdown).
    pub fn flush(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _m = self.lock();
        self.journal.send(Entry { audit: serde_json::Value::Null, state: None, done: Some(tx) });
        rx
    }
}

#[cfg(test)]
mod tests;
