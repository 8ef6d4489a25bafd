//! Turns the config's `rollouts:` into running rollout drivers, checked against the model repository:
//! every model must exist and every pinned version must be served; a canary equal to its control, a
//! repeated endpoint or a malformed plan is refused at start with the field named. Also watches each
//! canary while it loads, and rolls it back if it fails to.

use crate::Rollouts;
use crate::repository::{ModelConfigs, Wanted};
use crate::rollout_config::{ArmConfig, OnCanaryError, RolloutConfig};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_runtime::Registry;
use switchyard_runtime::rollout::{Fault, RolloutDriver, RolloutSpec, Target};

/// Why the configured rollouts cannot run: the message names the rollout and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RolloutConfigError(pub String);

/// Starts every configured rollout (at start-up).
pub fn build(
    configs: &[RolloutConfig],
    models: &ModelConfigs,
    registry: &Registry,
    state_dir: Option<&Path>,
) -> Result<Rollouts, RolloutConfigError> {
    let mut out = Rollouts::new();
    for spec in specs(configs, models, registry)? {
        let endpoint = spec.endpoint.clone();
        let driver = RolloutDriver::start(spec, state_dir)
            .map_err(|e| RolloutConfigError(format!("rollouts ({endpoint}): {e}")))?;
        out.insert(endpoint, Arc::new(driver));
    }
    Ok(out)
}

/// Checks every configured rollout against the repository and turns it into its spec, with no side
/// effect: the whole config is judged before any of it is applied (at start and on a reload).
pub fn specs(
    configs: &[RolloutConfig],
    models: &ModelConfigs,
    registry: &Registry,
) -> Result<Vec<RolloutSpec>, RolloutConfigError> {
    let mut out: Vec<RolloutSpec> = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let at = |m: String| RolloutConfigError(format!("rollouts[{i}] ({}): {m}", c.endpoint));
        if c.endpoint.is_empty() || !c.endpoint.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) {
            return Err(at("endpoint must be letters, digits, '.', '_' or '-'".into()));
        }
        if out.iter().any(|s| s.endpoint == c.endpoint) {
            return Err(at("endpoint is declared twice".into()));
        }
        let target = |field: &str, a: &ArmConfig| -> Result<Target, RolloutConfigError> {
            if !models.contains_key(&a.model) {
                return Err(at(format!("{field}.model '{}' is not in the model repository", a.model)));
            }
            if let Some(v) = a.version
                && !registry.versions(&a.model).contains(&v)
            {
                return Err(at(format!("{field}.version {v} of '{}' is not in the model repository", a.model)));
            }
            Ok(Target { model: a.model.clone(), version: a.version })
        };
        let plan = c.plan().map_err(|e| RolloutConfigError(e.to_string()))?;
        let control = target("control", &c.control)?;
        let canary_cfg = c.canary.as_ref().ok_or_else(|| at("canary is required".into()))?;
        let canary = target("canary", &ArmConfig { model: canary_cfg.model.clone(), version: canary_cfg.version })?;
        if canary == control {
            return Err(at("canary must differ from control (another model or version)".into()));
        }
        let shadows = c
            .shadows
            .iter()
            .enumerate()
            .map(|(j, s)| {
                target(&format!("shadows[{j}]"), &ArmConfig { model: s.model.clone(), version: s.version })
                    .map(|t| (t, s.sample.0))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fault = |f: &Option<crate::rollout_config::FaultConfig>| {
            f.as_ref().map_or(Fault::default(), |f| Fault {
                error_bp: f.error.map_or(0, |p| p.0),
                delay: f.delay.map_or(Duration::ZERO, |d| d.0),
                panic_bp: f.panic.map_or(0, |p| p.0),
                crash_bp: f.crash.map_or(0, |p| p.0),
            })
        };
        let experiment = c.experiment.as_ref().map(|e| e.spec()).transpose().map_err(|e| at(e.to_string()))?;
        if experiment.is_some() && matches!(plan.schedule, switchyard_core::rollout::Schedule::Fixed(0)) {
            return Err(at("experiment: a fixed canary weight of 0 % sends the canary nothing to judge".into()));
        }
        let spec = RolloutSpec {
            experiment,
            endpoint: c.endpoint.clone(),
            control,
            canary,
            plan,
            header: c.assignment.header.as_ref().map(|h| h.to_ascii_lowercase()),
            salt: c.assignment.salt.clone().unwrap_or_else(|| c.endpoint.clone()),
            serve_control_on_canary_error: c.on_canary_error == OnCanaryError::ServeControl,
            shadows,
            faults: [fault(&c.faults.control), fault(&c.faults.canary)],
        };
        out.push(spec);
    }
    Ok(out)
}

/// What the configured rollouts ask the repository to load: every version they name (whatever the
/// model's version policy), and which of those serve only as shadows.
pub fn wanted(configs: &[RolloutConfig]) -> Wanted {
    let mut w = Wanted::default();
    let mut judged = BTreeSet::new();
    for c in configs {
        let arms = [Some((c.control.model.as_str(), c.control.version))]
            .into_iter()
            .chain(std::iter::once(c.canary.as_ref().map(|k| (k.model.as_str(), k.version))));
        for (model, version) in arms.flatten() {
            if let Some(v) = version {
                w.versions.entry(model.to_owned()).or_default().insert(v);
                judged.insert((model.to_owned(), v));
            }
        }
        for s in &c.shadows {
            if let Some(v) = s.version {
                w.versions.entry(s.model.clone()).or_default().insert(v);
                w.background.insert((s.model.clone(), v));
            }
        }
    }
    w.background.retain(|t| !judged.contains(t));
    w
}

/// Model versions that serve only as canaries or shadows: they never make the server unready.
pub fn optional_targets(rollouts: &Rollouts) -> impl Fn(&str, u64) -> bool + Send + Sync + 'static {
    let controls: BTreeSet<(String, Option<u64>)> =
        rollouts.values().map(|d| (d.spec.control.model.clone(), d.spec.control.version)).collect();
    let optional: BTreeSet<(String, Option<u64>)> = rollouts
        .values()
        .flat_map(|d| std::iter::once(&d.spec.canary).chain(d.spec.shadows.iter().map(|(t, _)| t)))
        .map(|t| (t.model.clone(), t.version))
        .filter(|t| !controls.contains(t))
        .collect();
    move |model, version| {
        optional.contains(&(model.to_owned(), Some(version))) || optional.contains(&(model.to_owned(), None))
    }
}

/// Waits for each canary to finish loading: rolls back one that failed, and warns when its inputs and
/// outputs differ from control's (the endpoint's metadata is control's; requests that fit only one arm
/// are refused by the other and count as that arm's failures).
pub fn watch_canaries(rollouts: &Rollouts, registry: Arc<Registry>) {
    watch_canaries_of(rollouts.values(), registry);
}

/// `watch_canaries` for some drivers (those a reload started).
pub fn watch_canaries_of<'a>(drivers: impl Iterator<Item = &'a Arc<RolloutDriver>>, registry: Arc<Registry>) {
    for driver in drivers {
        let (driver, registry) = (driver.clone(), registry.clone());
        tokio::spawn(async move {
            let (canary, control) = (driver.spec.canary.clone(), driver.spec.control.clone());
            while registry.is_loading(&canary.model, canary.version)
                || registry.is_loading(&control.model, control.version)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let lookup = |t: &Target| registry.lookup(&t.model, t.version.map(|v| v.to_string()).as_deref());
            match (lookup(&canary), lookup(&control)) {
                (Err(e), _) => driver.canary_unavailable(&e.to_string()),
                (Ok(k), Ok(c)) if k.pool.signature() != c.pool.signature() => tracing::warn!(
                    endpoint = %driver.spec.endpoint, %canary, %control,
                    "the canary's inputs or outputs differ from control's: the endpoint's metadata is control's"
                ),
                _ => {}
            }
        });
    }
}
