//! The model repository on disk, laid out as Triton's: `<repo>/<model>/<version>/model.onnx` (or a
//! Hugging Face directory with `model.safetensors`), with an
//! optional `<repo>/<model>/config.yaml`. Scanning declares every model in the registry at once (so
//! readiness knows what to wait for); each version then loads on its own thread, and a model that fails
//! is recorded with its reason while the rest serve.

use crate::config::ModelConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_backend::{Backend, LoadOptions};
use switchyard_backend_candle::BertEmbedder;
use switchyard_backend_ort::{OrtBackend, OrtEnvironment, OrtTextModel};
use switchyard_runtime::{Loader, ModelState, Pool, PoolOptions, Registry, VersionMetrics};

/// Each model's settings, fixed once the repository is scanned.
pub type ModelConfigs = BTreeMap<String, Arc<ModelConfig>>;

/// What the rollouts ask of the repository: versions to load whatever the version policy says, and
/// versions that serve only as shadows (their workers run at the lowest CPU priority).
#[derive(Debug, Default, Clone)]
pub struct Wanted {
    pub versions: BTreeMap<String, BTreeSet<u64>>,
    pub background: BTreeSet<(String, u64)>,
}

/// The model repository itself cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("model repository {}: {error}", .root.display())]
pub struct Unreadable {
    root: PathBuf,
    error: std::io::Error,
}

/// Why a model directory cannot be served (recorded in the registry as the model's reason).
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error(transparent)]
    Config(#[from] switchyard_config::ConfigError),
    #[error("{0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Outside(#[from] Outside),
    #[error("version {version}: {outside}")]
    VersionOutside { version: u64, outside: Outside },
    #[error("no numeric version directories (expected <model>/<version>/model.onnx)")]
    NoVersions,
    #[error(transparent)]
    Versions(#[from] switchyard_core::SelectError),
}

/// A directory a symlink leads out of the model repository.
#[derive(Debug, thiserror::Error)]
#[error("{} leads outside the model repository (to {})", .dir.display(), .to.display())]
pub struct Outside {
    dir: PathBuf,
    to: PathBuf,
}

/// Scans `root`, declares every model, and starts loading each served version in the background.
/// Only an unreadable repository is an error; problems with single models are recorded per model.
pub fn scan_and_load(
    root: &Path,
    registry: &Arc<Registry>,
    env: &OrtEnvironment,
    wanted: &Wanted,
) -> Result<ModelConfigs, Unreadable> {
    let mut configs = ModelConfigs::new();
    for (name, planned) in scan(root, wanted)? {
        let dir = root.join(&name);
        match planned {
            Err(reason) => {
                tracing::error!(model = %name, %reason, "model cannot be served");
                registry.declare(&name, &[], Some(reason.to_string()));
            }
            Ok((cfg, versions)) => {
                let handles = registry.declare(&name, &versions, None);
                registry.set_fallback(&name, fallback_of(&cfg));
                let cfg = Arc::new(cfg);
                for (v, metrics) in versions.into_iter().zip(handles) {
                    let (registry, env, cfg, name, path) =
                        (registry.clone(), env.clone(), cfg.clone(), name.clone(), dir.join(v.to_string()));
                    let background = wanted.background.contains(&(name.clone(), v));
                    std::thread::spawn(move || load_into(&registry, &name, v, &path, &cfg, &env, metrics, background));
                }
                configs.insert(name, cfg);
            }
        }
    }
    Ok(configs)
}

/// Every model directory under `root` with its config and the versions it would serve (those the
/// policy selects and those `wanted` names), or why it cannot be served; nothing is loaded.
#[allow(clippy::type_complexity)]
pub fn scan(
    root: &Path,
    wanted: &Wanted,
) -> Result<Vec<(String, Result<(ModelConfig, Vec<u64>), ModelDirError>)>, Unreadable> {
    let entries = std::fs::read_dir(root).map_err(|error| Unreadable { root: root.to_owned(), error })?;
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .map(|(name, dir)| {
            let extra = wanted.versions.get(&name).cloned().unwrap_or_default();
            let planned = within(root, &dir).map_err(ModelDirError::from).and_then(|()| plan(&dir, &extra));
            (name, planned)
        })
        .collect())
}

/// Why a model version could not be loaded (the reason is also recorded in the registry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Loads one version and records the outcome in the registry (blocking: run it on its own thread).
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_into(
    registry: &Registry,
    name: &str,
    v: u64,
    path: &Path,
    cfg: &ModelConfig,
    env: &OrtEnvironment,
    metrics: VersionMetrics,
    background: bool,
) -> Result<(), LoadError> {
    let (state, result) = match load_version(name, v, path, cfg, env, metrics, background) {
        Ok(pool) => {
            tracing::info!(model = %name, version = v, instances = cfg.instances, "model ready");
            (ModelState::Ready(Arc::new(pool)), Ok(()))
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(model = %name, version = v, %reason, "model failed to load");
            (ModelState::Failed(reason.clone()), Err(LoadError(reason)))
        }
    };
    registry.set_state(name, v, state);
    result
}

/// Loads a version that is on disk but not yet served (a reloaded config names it), and waits for it:
/// declared, loaded and warmed up, or failed with the reason (recorded in the registry either way).
pub fn load_now(
    root: &Path,
    registry: &Registry,
    env: &OrtEnvironment,
    configs: &ModelConfigs,
    model: &str,
    version: u64,
    background: bool,
) -> Result<(), LoadError> {
    let cfg = configs.get(model).ok_or_else(|| LoadError(format!("model '{model}' is not in the model repository")))?;
    let path = root.join(model).join(version.to_string());
    if !path.is_dir() {
        return Err(LoadError(format!("version {version} of '{model}' is not in the model repository")));
    }
    let metrics = registry.declare(model, &[version], None).remove(0);
    load_into(registry, model, version, &path, cfg, env, metrics, background)
}

/// Reads a model's config and picks the versions to serve: the policy's, and those a rollout names.
pub(crate) fn plan(dir: &Path, extra: &BTreeSet<u64>) -> Result<(ModelConfig, Vec<u64>), ModelDirError> {
    let cfg = ModelConfig::load(dir)?;
    let mut on_disk: Vec<u64> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(ModelDirError::Read)?.flatten() {
        let Some(v) = e.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        if e.path().is_dir() {
            within(dir, &e.path()).map_err(|outside| ModelDirError::VersionOutside { version: v, outside })?;
            on_disk.push(v);
        }
    }
    if on_disk.is_empty() {
        return Err(ModelDirError::NoVersions);
    }
    let mut versions = cfg.versions.select(&on_disk)?;
    versions.extend(extra.iter().filter(|v| on_disk.contains(v)));
    versions.sort_unstable();
    versions.dedup();
    Ok((cfg, versions))
}

/// Why one version's pool could not start (recorded in the registry as its message).
#[derive(Debug, thiserror::Error)]
enum VersionError {
    #[error("no model.onnx or model.safetensors in {}", .0.display())]
    NoModelFile(PathBuf),
    #[error(transparent)]
    PriorityLevels(#[from] switchyard_runtime::LevelsError),
    #[error(transparent)]
    Breaker(#[from] switchyard_config::InvalidField),
    #[error(transparent)]
    Backend(#[from] switchyard_backend::BackendError),
    /// A `config.pbtxt`'s inputs or outputs that the model does not have.
    #[error(transparent)]
    Declared(#[from] switchyard_config::pbtxt::Mismatch),
    /// The drift reference file cannot be read.
    #[error("drift.reference_file {path}: {error}")]
    DriftFile { path: PathBuf, error: std::io::Error },
    #[error("drift.reference_file {path}: not a JSON object of series name to numbers ({error})")]
    DriftJson { path: PathBuf, error: serde_json::Error },
    #[error("drift.reference_file: {0}")]
    DriftReference(#[from] switchyard_runtime::drift::DriftReferenceError),
}

fn load_version(
    name: &str,
    version: u64,
    dir: &Path,
    cfg: &ModelConfig,
    env: &OrtEnvironment,
    metrics: VersionMetrics,
    background: bool,
) -> Result<Pool, VersionError> {
    let opts = LoadOptions {
        device: cfg.device,
        intra_op_threads: cfg.intra_op_threads,
        inter_op_threads: cfg.inter_op_threads,
    };
    let loader: Loader = if dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file() {
        let (env, dir, text) = (env.clone(), dir.to_path_buf(), cfg.text.clone());
        Box::new(move || OrtTextModel::load(&env, &dir, &opts, &text).map(|b| Box::new(b) as Box<dyn Backend>))
    } else if dir.join("model.onnx").is_file() {
        let (env, file) = (env.clone(), dir.join("model.onnx"));
        Box::new(move || OrtBackend::load(&env, &file, &opts).map(|b| Box::new(b) as Box<dyn Backend>))
    } else if dir.join("model.safetensors").is_file() {
        let (dir, text) = (dir.to_path_buf(), cfg.text.clone());
        Box::new(move || BertEmbedder::load(&dir, &opts, &text).map(|b| Box::new(b) as Box<dyn Backend>))
    } else {
        return Err(VersionError::NoModelFile(dir.to_path_buf()));
    };
    let drift = match &cfg.drift {
        Some(d) => Some(drift_monitor(name, version, dir, d)?),
        None => None,
    };
    let pool_opts = PoolOptions {
        drift,
        label: format!("{name}/{version}"),
        instances: cfg.instances,
        queue_capacity: cfg.queue_capacity,
        warmup: cfg.warmup,
        max_batch_size: cfg.max_batch_size,
        batching: cfg.dynamic_batching.as_ref().map(batch_policy),
        priority_levels: priority_levels(cfg)?,
        background,
        reject_non_finite: cfg.reject_non_finite,
        hang_timeout: cfg.hang_timeout.map_or(DEFAULT_HANG_TIMEOUT, |s| s.0.max(std::time::Duration::from_millis(100))),
        breaker: match &cfg.circuit_breaker {
            Some(b) => Some(std::sync::Arc::new(switchyard_runtime::VersionBreaker::new(name, version, b.policy()?))),
            None => None,
        },
    };
    let pool = Pool::start(pool_opts, loader, metrics)?;
    crate::pbtxt::check_declared(&cfg.declared, pool.signature(), pool.max_batch_size() > 0)?;
    Ok(pool)
}

/// A version's drift monitor; a reference file is read from the model's directory.
fn drift_monitor(
    name: &str,
    version: u64,
    dir: &Path,
    cfg: &switchyard_config::DriftConfig,
) -> Result<std::sync::Arc<switchyard_runtime::drift::DriftMonitor>, VersionError> {
    use switchyard_runtime::drift::{DriftMonitor, DriftSpec, ReferenceSource};
    let reference = match &cfg.reference_file {
        None => ReferenceSource::FirstRequests(cfg.reference_size),
        Some(file) => {
            // The model directory holds version folders; the file sits beside them.
            let path = dir.parent().unwrap_or(dir).join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => return Err(VersionError::DriftFile { path, error }),
            };
            match serde_json::from_str(&text) {
                Ok(sample) => ReferenceSource::Sample(sample),
                Err(error) => return Err(VersionError::DriftJson { path, error }),
            }
        }
    };
    let thresholds = switchyard_core::drift::Thresholds { warning: cfg.warning, critical: cfg.critical };
    let spec = DriftSpec { reference, window: cfg.window, bins: cfg.bins, features: cfg.features, thresholds };
    Ok(DriftMonitor::new(name, version, spec)?)
}

/// A model's `dynamic_batching:` as the runtime's policy.
fn batch_policy(cfg: &switchyard_config::BatchingConfig) -> switchyard_runtime::BatchPolicy {
    switchyard_runtime::BatchPolicy {
        max_queue_delay: cfg.max_queue_delay.map_or(std::time::Duration::ZERO, |s| s.0),
        preferred: cfg.preferred_batch_size.clone(),
    }
}

/// A model's client priority levels (`dynamic_batching.priority_levels`), one when it declares none.
pub(crate) fn priority_levels(
    cfg: &ModelConfig,
) -> Result<switchyard_runtime::PriorityLevels, switchyard_runtime::LevelsError> {
    match &cfg.dynamic_batching {
        Some(b) => switchyard_runtime::PriorityLevels::new(b.priority_levels, b.default_priority_level),
        None => Ok(switchyard_runtime::PriorityLevels::default()),
    }
}

/// How long one model call may run before its worker is replaced, unless the model's config says.
pub const DEFAULT_HANG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Refuses a directory that a symlink leads out of `root` (the model repository, or a model's own
/// directory for its versions): the repository is the only place models are read from.
pub(crate) fn within(root: &Path, dir: &Path) -> Result<(), Outside> {
    let (Ok(real), Ok(root_real)) = (dir.canonicalize(), root.canonicalize()) else { return Ok(()) };
    if real.starts_with(&root_real) { Ok(()) } else { Err(Outside { dir: dir.to_owned(), to: real }) }
}

/// A model config's `fallback` as the runtime's target.
pub(crate) fn fallback_of(cfg: &ModelConfig) -> Option<switchyard_runtime::rollout::Target> {
    cfg.fallback
        .as_ref()
        .map(|f| switchyard_runtime::rollout::Target { model: f.model().to_owned(), version: f.version() })
}
