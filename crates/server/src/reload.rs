//! Changing the config while serving. The config file is read again on SIGHUP and whenever its bytes
//! change (looked at every `--config-poll-secs`; reading the path follows Kubernetes' `..data` symlink
//! swap as well as an in-place write). A new config is judged whole before any of it applies: it must
//! parse, every version its rollouts name must exist and load (versions not yet served are loaded and
//! warmed up first), and every rollout must resolve. Then the endpoints are swapped at once: a rollout
//! whose spec did not change keeps its driver; one whose control and canary did not change continues
//! from its state in memory; a new canary starts a new rollout; a removed rollout stops routing.
//! Requests already in flight finish on the endpoints they started with. A rejected config is logged
//! with its reason and counted, and the old one keeps serving. The latest outcomes are also kept in a
//! `ReloadLog` for the console's timeline.

use crate::Rollouts;
use crate::config::ServerConfig;
use crate::live_repository::Repository;
use crate::rollouts;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_runtime::rollout::RolloutDriver;
use switchyard_runtime::{Endpoints, Registry};

/// Why a config was rejected (the previous one keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file does not parse, or names what is not there or cannot load.
    #[error("{0}")]
    Invalid(String),
    /// A rollout does not resolve.
    #[error(transparent)]
    Rollouts(#[from] rollouts::RolloutConfigError),
    /// A rollout could not start (its state directory).
    #[error("{0}")]
    Start(#[from] switchyard_runtime::rollout::RolloutError),
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The file's bytes are those last applied (or last rejected).
    Unchanged,
    Applied {
        kept: usize,
        continued: usize,
        started: usize,
        removed: usize,
    },
}

/// The latest config reloads (applied or rejected), oldest first, for the console's timeline: in memory,
/// bounded; each is also logged.
#[derive(Debug, Default)]
pub struct ReloadLog(std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>);

impl ReloadLog {
    /// Reloads kept.
    const KEPT: usize = 100;

    fn push(&self, mut entry: serde_json::Value) {
        entry["time_ms"] = serde_json::json!(switchyard_runtime::rollout::now_ms());
        entry["event"] = serde_json::json!("config_reload");
        let mut log = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        switchyard_runtime::rollout::keep_last(&mut log, entry, Self::KEPT);
    }

    /// Every reload kept, oldest first.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

/// Everything a reload needs, fixed at start-up.
pub struct Reloader {
    pub config: PathBuf,
    pub repository: Arc<Repository>,
    pub registry: Arc<Registry>,
    pub state_dir: Option<PathBuf>,
    pub request_timeout: Duration,
    pub endpoints: Arc<ArcSwap<Endpoints>>,
    /// What each reload did, for the console.
    pub log: Arc<ReloadLog>,
    /// The bytes last judged (applied or rejected), so an unchanged file is not judged again.
    last: tokio::sync::Mutex<Vec<u8>>,
}

impl Reloader {
    pub fn new(
        config: PathBuf,
        repository: Arc<Repository>,
        state_dir: Option<PathBuf>,
        request_timeout: Duration,
        endpoints: Arc<ArcSwap<Endpoints>>,
    ) -> Self {
        let last = std::fs::read(&config).unwrap_or_default();
        let last = tokio::sync::Mutex::new(last);
        let registry = repository.registry.clone();
        let log = Arc::default();
        Self { config, repository, registry, state_dir, request_timeout, endpoints, log, last }
    }

    /// Watches for SIGHUP and for changed bytes every `poll` (none when zero), reloading on each.
    pub fn watch(self: Arc<Self>, poll: Duration) {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(if poll.is_zero() { Duration::from_secs(3600) } else { poll });
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let forced = tokio::select! {
                    _ = tick.tick(), if !poll.is_zero() => false,
                    got = async { match &mut hup { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                        if got.is_none() {
                            hup = None; // the signal stream ended (shutdown): stop listening to it
                            continue;
                        }
                        true
                    }
                };
                #[cfg(not(unix))]
                let forced = {
                    tick.tick().await;
                    false
                };
                self.reload_and_report(forced).await;
            }
        });
    }

    /// Reloads (when the bytes changed, or always when `forced`) and logs and counts the outcome.
    pub async fn reload_and_report(&self, forced: bool) {
        match self.reload(forced).await {
            Ok(Reloaded::Unchanged) => {}
            Ok(Reloaded::Applied { kept, continued, started, removed }) => {
                tracing::info!(config = %self.config.display(), kept, continued, started, removed, "config reloaded");
                metrics::counter!("switchyard_config_reloads_total", "result" => "success").increment(1);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                metrics::gauge!("switchyard_config_last_reload_success_timestamp_seconds").set(now.as_secs_f64());
                let counts =
                    serde_json::json!({ "kept": kept, "continued": continued, "started": started, "removed": removed });
                self.log.push(serde_json::json!({ "result": "applied", "rollouts": counts }));
            }
            Err(reason) => {
                tracing::error!(config = %self.config.display(), %reason, "config rejected; the previous one keeps serving");
                metrics::counter!("switchyard_config_reloads_total", "result" => "failure").increment(1);
                self.log.push(serde_json::json!({ "result": "rejected", "reason": reason.to_string() }));
            }
        }
    }

    /// Judges the config file whole, then applies it; on any error nothing changes.
    pub async fn reload(&self, forced: bool) -> Result<Reloaded, ReloadError> {
        let mut last = self.last.lock().await;
        let (bytes, cfg) = loop {
            let bytes = tokio::fs::read(&self.config)
                .await
                .map_err(|source| ReloadError::Read { path: self.config.display().to_string(), source })?;
            if bytes == *last && !forced {
                return Ok(Reloaded::Unchanged);
            }
            let parsed = match std::str::from_utf8(&bytes) {
                // An empty file is a write caught half-way far more often than a wish to drop everything.
                Ok(t) if t.trim().is_empty() => Err("the file is empty".to_owned()),
                Ok(t) => ServerConfig::parse(t).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match parsed {
                Ok(cfg) => break (bytes, cfg),
                Err(e) => {
                    // A file caught half-written by an in-place edit: look again once it settles.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if tokio::fs::read(&self.config).await.is_ok_and(|again| again != bytes) {
                        continue;
                    }
                    *last = bytes;
                    return Err(ReloadError::Invalid(format!("{}: {e}", self.config.display())));
                }
            }
        };
        *last = bytes;
        drop(last);
        self.load_named_versions(&cfg).await?;
        let specs = rollouts::specs(&cfg.rollouts, &self.repository.configs.load(), &self.registry)?;
        let limits = crate::rate_limits::specs(&cfg.rate_limits).map_err(|p| ReloadError::Invalid(p.join("; ")))?;
        let applied = self.apply(specs, limits).await?;
        self.repository.set_wanted(rollouts::wanted(&cfg.rollouts));
        Ok(applied)
    }

    /// Loads (and waits for) every version the config's rollouts name that is not served yet.
    async fn load_named_versions(&self, cfg: &ServerConfig) -> Result<(), ReloadError> {
        let wanted = rollouts::wanted(&cfg.rollouts);
        for (model, versions) in &wanted.versions {
            let served = self.registry.versions(model);
            for &v in versions.iter().filter(|v| !served.contains(v)) {
                if !self.repository.configs.load().contains_key(model) {
                    continue; // `specs` names the unknown model
                }
                let repository = self.repository.clone();
                let (model, background) = (model.clone(), wanted.background.contains(&(model.clone(), v)));
                tokio::task::spawn_blocking(move || {
                    repository
                        .load_now(&model, v, background)
                        .map_err(|e| ReloadError::Invalid(format!("version {v} of '{model}' cannot be served: {e}")))
                })
                .await
                .map_err(|e| ReloadError::Invalid(e.to_string()))??;
            }
        }
        Ok(())
    }

    /// Swaps in the endpoints for `specs`, keeping or continuing the rollouts that allow it.
    async fn apply(
        &self,
        specs: Vec<switchyard_runtime::rollout::RolloutSpec>,
        limits: Vec<switchyard_runtime::RateLimitSpec>,
    ) -> Result<Reloaded, ReloadError> {
        let current = self.endpoints.load_full();
        let state_dir = self.state_dir.as_deref();
        let (mut next, mut fresh) = (Rollouts::new(), Vec::new());
        let (mut kept, mut continued) = (0, 0);
        // A rollout replaced by a new canary, or removed, decides and writes nothing more (its last
        // decisions are written first, so the new driver's state file follows them).
        for (endpoint, old) in current.rollouts() {
            let spec = specs.iter().find(|s| s.endpoint == *endpoint);
            if !spec.is_some_and(|s| continues(Some(&old.spec), s)) {
                old.retire();
                let _ = old.flush().await;
            }
        }
        for spec in specs.iter().filter(|s| !continues(current.rollout(&s.endpoint).map(|d| &d.spec), s)) {
            let driver = RolloutDriver::start(spec.clone(), state_dir)?;
            fresh.push(Arc::new(driver));
        }
        let started = fresh.len();
        for driver in &fresh {
            next.insert(driver.spec.endpoint.clone(), driver.clone());
        }
        for spec in specs {
            let Some(old) = current.rollout(&spec.endpoint) else { continue };
            if old.spec == spec {
                next.insert(spec.endpoint.clone(), old.clone());
                kept += 1;
            } else if continues(Some(&old.spec), &spec) {
                let endpoint = spec.endpoint.clone();
                let driver = RolloutDriver::take_over(old, spec, state_dir).await?;
                fresh.push(Arc::new(driver));
                next.insert(endpoint, fresh[fresh.len() - 1].clone());
                continued += 1;
            }
        }
        let removed = current.rollouts().keys().filter(|e| !next.contains_key(*e)).count();
        let limits = crate::rate_limits::build(limits, Some(current.rate_limits()));
        let endpoints = Endpoints::new(self.registry.clone(), next, self.request_timeout)
            .with_rate_limits(limits)
            .with_feedback(current.feedback().cloned());
        self.endpoints.store(Arc::new(endpoints));
        // After the swap: outcomes joined meanwhile are in the store, which the restore reads whole.
        if let Some(feedback) = current.feedback() {
            fresh.iter().for_each(|d| feedback.restore(d));
        }
        rollouts::watch_canaries_of(fresh.iter(), self.registry.clone());
        Ok(Reloaded::Applied { kept, continued, started, removed })
    }
}

/// Whether a rollout continues under a changed spec (same control and canary) rather than restarting.
fn continues(
    old: Option<&switchyard_runtime::rollout::RolloutSpec>,
    new: &switchyard_runtime::rollout::RolloutSpec,
) -> bool {
    old.is_some_and(|o| o.control == new.control && o.canary == new.canary)
}
