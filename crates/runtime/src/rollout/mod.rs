//! Runs one endpoint's rollout: picks the arm for each request (sticky by key, else random), feeds each
//! outcome to the decision code with the time, and when a decision changes the weights, writes the state
//! file atomically, appends to the audit log, logs the reason and counts it. The lock around the state
//! machine is held for one record-and-evaluate: microseconds, never across an inference.

use crate::shadow::ShadowStats;
use metrics::{Counter, Histogram, counter, gauge, histogram};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
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
}

/// Everything about one rollout that comes from the config.
#[derive(Debug, Clone)]
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
}

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
    fn side(self) -> Side {
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
    /// The canary's weight, mirrored out of the state machine so picking an arm takes no lock.
    weight_bp: AtomicU32,
    /// Per arm `[control, canary]`: request time, successes, failures (registered once).
    arm_metrics: [(Histogram, Counter, Counter); 2],
    /// One per `spec.shadows`, same order.
    pub shadow_stats: Vec<std::sync::Arc<ShadowStats>>,
    /// Bounds the shadow copies in flight; when none is free the copy is shed (and counted).
    pub shadow_slots: std::sync::Arc<tokio::sync::Semaphore>,
    machine: Mutex<Rollout>,
    state_file: Option<PathBuf>,
    audit: Option<Mutex<std::fs::File>>,
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
    /// Starts a rollout, or resumes the saved one when the state file belongs to the same control and
    /// canary (a rolled-back canary stays rolled back until the config names a new one).
    pub fn start(spec: RolloutSpec, state_dir: Option<&Path>) -> Result<Self, String> {
        let now = now_ms();
        let state_file = state_dir.map(|d| d.join("rollouts").join(format!("{}.json", spec.endpoint)));
        let saved = match &state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let saved: Saved = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                (saved.control == spec.control && saved.canary == spec.canary).then_some(saved.state)
            }
            _ => None,
        };
        let resumed = saved.is_some();
        let machine = match saved {
            Some(state) => Rollout::restore(spec.plan.clone(), state),
            None => Rollout::new(spec.plan.clone(), now),
        };
        let audit = match state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir.join("rollouts")).map_err(|e| format!("{}: {e}", dir.display()))?;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("audit.jsonl"))
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                Some(Mutex::new(file))
            }
            None => None,
        };
        let shadow_stats = spec
            .shadows
            .iter()
            .map(|(t, _)| std::sync::Arc::new(ShadowStats::new(&spec.endpoint, &t.to_string())))
            .collect();
        let shadow_slots = std::sync::Arc::new(tokio::sync::Semaphore::new(SHADOW_SLOTS));
        let arm_metrics = [Arm::Control, Arm::Canary].map(|arm| {
            let (e, a) = (spec.endpoint.clone(), arm.name());
            (
                histogram!("switchyard_rollout_request_duration_seconds", "endpoint" => e.clone(), "arm" => a),
                counter!("switchyard_rollout_requests_total", "endpoint" => e.clone(), "arm" => a, "outcome" => "success"),
                counter!("switchyard_rollout_requests_total", "endpoint" => e, "arm" => a, "outcome" => "error"),
            )
        });
        let weight_bp = AtomicU32::new(machine.weight_bp());
        let driver = Self {
            spec,
            weight_bp,
            arm_metrics,
            shadow_stats,
            shadow_slots,
            machine: Mutex::new(machine),
            state_file,
            audit,
        };
        let event = if resumed { "resumed" } else { "started" };
        let state = driver.lock().state().clone();
        tracing::info!(endpoint = %driver.spec.endpoint, phase = phase_name(state.phase), weight = state.weight_bp, "rollout {event}");
        driver.audit(json!({ "event": event, "phase": state.phase, "weight_bp": state.weight_bp }));
        driver.persist(&state)?;
        driver.publish(&state);
        Ok(driver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rollout> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The arm for a request: by its key's bucket when it has one, else by a random number.
    pub fn choose(&self, key: Option<&[u8]>, random: u64) -> Arm {
        let bucket = match key {
            Some(k) => assign::bucket(&self.spec.salt, k),
            None => assign::random_bucket(random),
        };
        if assign::is_canary(bucket, self.weight_bp()) { Arm::Canary } else { Arm::Control }
    }

    pub fn target(&self, arm: Arm) -> &Target {
        match arm {
            Arm::Control => &self.spec.control,
            Arm::Canary => &self.spec.canary,
        }
    }

    /// Whether the canary still takes traffic or a verdict: false once rolled back or promoted.
    pub fn weight_bp(&self) -> u32 {
        self.weight_bp.load(Ordering::Relaxed)
    }

    /// Records a finished request and applies whatever the evidence now decides.
    pub fn record(&self, arm: Arm, failed: bool, latency: Duration) {
        let (duration, ok, err) = &self.arm_metrics[arm.side() as usize];
        duration.record(latency.as_secs_f64());
        if failed { err } else { ok }.increment(1);
        let (decision, state) = {
            let mut m = self.lock();
            m.record(arm.side(), failed, latency.as_secs_f64());
            let decision = m.evaluate(now_ms());
            if m.requests_judged().is_multiple_of(64) {
                self.publish_evidence(&m.evidence());
            }
            match decision {
                Some(d) => (d, m.state().clone()),
                None => return,
            }
        };
        self.apply(&decision, &state, "analysis");
    }

    /// The test statistics and sample sizes as gauges.
    fn publish_evidence(&self, e: &switchyard_core::rollout::Evidence) {
        let ep = || self.spec.endpoint.clone();
        gauge!("switchyard_rollout_error_rate_e_value", "endpoint" => ep()).set(e.error_e_value);
        gauge!("switchyard_rollout_latency_e_value", "endpoint" => ep()).set(e.latency_e_value);
        gauge!("switchyard_rollout_e_value_threshold", "endpoint" => ep()).set(e.error_threshold);
        gauge!("switchyard_rollout_sample_requests", "endpoint" => ep(), "arm" => "control")
            .set(e.control_requests as f64);
        gauge!("switchyard_rollout_sample_requests", "endpoint" => ep(), "arm" => "canary")
            .set(e.canary_requests as f64);
    }

    /// An operator's action.
    pub fn act(&self, action: Action) -> Result<Decision, String> {
        let (decision, state) = {
            let mut m = self.lock();
            let d = m.act(action, now_ms())?;
            (d, m.state().clone())
        };
        self.apply(&decision, &state, "admin");
        Ok(decision)
    }

    /// The canary cannot serve (it failed to load): roll it back.
    pub fn canary_unavailable(&self, why: &str) {
        let (decision, state) = {
            let mut m = self.lock();
            match m.canary_unavailable(why.to_owned(), now_ms()) {
                Some(d) => (d, m.state().clone()),
                None => return,
            }
        };
        self.apply(&decision, &state, "loader");
    }

    fn apply(&self, decision: &Decision, state: &State, by: &str) {
        let endpoint = self.spec.endpoint.clone();
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
        self.audit(json!({ "event": "decision", "by": by, "decision": decision, "phase": state.phase, "weight_bp": state.weight_bp }));
        if let Err(e) = self.persist(state) {
            tracing::error!(endpoint = %self.spec.endpoint, error = %e, "cannot write the rollout state file");
        }
        self.publish(state);
    }

    fn publish(&self, state: &State) {
        self.weight_bp.store(state.weight_bp, Ordering::Relaxed);
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

    /// Appends one JSON line to the audit log.
    pub fn audit(&self, mut entry: serde_json::Value) {
        let Some(file) = &self.audit else { return };
        entry["time_ms"] = json!(now_ms());
        entry["endpoint"] = json!(self.spec.endpoint);
        let mut line = entry.to_string();
        line.push('\n');
        let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }

    /// Writes the state file atomically: a temporary file, synced, then renamed over the old one.
    fn persist(&self, state: &State) -> Result<(), String> {
        let Some(path) = &self.state_file else { return Ok(()) };
        let saved = Saved {
            endpoint: self.spec.endpoint.clone(),
            control: self.spec.control.clone(),
            canary: self.spec.canary.clone(),
            state: state.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rollout as the admin API shows it.
    pub fn status(&self) -> serde_json::Value {
        let m = self.lock();
        let s = m.state();
        json!({
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
