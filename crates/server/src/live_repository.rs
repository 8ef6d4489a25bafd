//! Changing models while serving, as Triton's poll mode and repository extension do. The repository is
//! looked at again every `--repository-poll-secs` (or for one model on `POST /v2/repository/models/{m}/load`):
//! a version directory that appeared is loaded and warmed up, one whose files changed is loaded again
//! beside the old one and swapped in atomically once ready (requests in flight finish on the old one),
//! and one that disappeared, or that the version policy no longer selects, stops serving. A version
//! that fails to load leaves the one before it serving, and says why in the log, the metrics
//! (`switchyard_model_load_failures_total`) and the repository index. Versions a rollout names are
//! never unloaded; a model a rollout uses cannot be unloaded.

use crate::repository::{self, ModelConfigs, Wanted};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use switchyard_backend_ort::OrtEnvironment;
use switchyard_runtime::Registry;

/// Why a change of the repository was not applied (what served before still serves).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    #[error("model '{0}' is not in the model repository")]
    UnknownModel(String),
    #[error("model '{0}' is used by a rollout; change the config first")]
    InUse(String),
    /// The model's directory or config cannot be read or makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// A version failed to load (a corrupt file, a wrong signature).
    #[error("{0}")]
    LoadFailed(String),
}

/// What the files of a model's config, or of one version, looked like (sizes and modification times).
type Fingerprint = u64;

#[derive(Default)]
struct Seen {
    config: Fingerprint,
    versions: BTreeMap<u64, Fingerprint>,
}

/// The model repository as it is served, kept in step with the disk.
pub struct Repository {
    pub root: PathBuf,
    pub env: OrtEnvironment,
    pub registry: Arc<Registry>,
    /// Each model's settings; shared with the routes (`/config`) and swapped whole on a change.
    pub configs: Arc<ArcSwap<ModelConfigs>>,
    /// What the current config's rollouts need (versions to keep, shadow-only versions).
    wanted: Mutex<Wanted>,
    seen: Mutex<BTreeMap<String, Seen>>,
    /// The last problem logged per model, so a poll does not log the same one again and again.
    reported: Mutex<BTreeMap<String, String>>,
    /// One sync at a time (the poll and the API).
    syncing: Mutex<()>,
}

impl Repository {
    pub fn new(
        root: PathBuf,
        env: OrtEnvironment,
        registry: Arc<Registry>,
        configs: ModelConfigs,
        wanted: Wanted,
    ) -> Self {
        let seen = configs
            .keys()
            .map(|name| {
                let dir = root.join(name);
                let versions =
                    registry.versions(name).into_iter().map(|v| (v, fingerprint(&dir.join(v.to_string())))).collect();
                (name.clone(), Seen { config: config_fingerprint(&dir), versions })
            })
            .collect();
        Self {
            root,
            env,
            registry,
            configs: Arc::new(ArcSwap::from_pointee(configs)),
            wanted: Mutex::new(wanted),
            seen: Mutex::new(seen),
            reported: Mutex::default(),
            syncing: Mutex::new(()),
        }
    }

    pub fn set_wanted(&self, wanted: Wanted) {
        *self.wanted.lock().unwrap_or_else(PoisonError::into_inner) = wanted;
    }

    /// Loads a version a reloaded config names and waits for it (blocking).
    pub fn load_now(&self, model: &str, version: u64, background: bool) -> Result<(), RepositoryError> {
        let configs = self.configs.load_full();
        repository::load_now(&self.root, &self.registry, &self.env, &configs, model, version, background)
            .map_err(|e| RepositoryError::LoadFailed(e.0))?;
        let fp = fingerprint(&self.root.join(model).join(version.to_string()));
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(model.to_owned())
            .or_default()
            .versions
            .insert(version, fp);
        Ok(())
    }

    /// Looks at every model directory (and every served model) once; blocking. Returns what changed.
    pub fn sync_all(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.configs.load().keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            names.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| !n.starts_with('.')),
            );
        }
        let mut changes = Vec::new();
        for name in names {
            let result = self.sync_model(&name, false);
            let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(c) => {
                    reported.remove(&name);
                    changes.extend(c);
                }
                Err(e) => {
                    let e = e.to_string();
                    if reported.get(&name) != Some(&e) {
                        tracing::error!(model = %name, reason = %e, "model change not applied; what was serving still serves");
                    }
                    changes.push(format!("{name}: {e}"));
                    reported.insert(name, e);
                }
            }
        }
        changes
    }

    /// Brings one model in step with its directory (every version loaded again when `force`); blocking.
    pub fn sync_model(&self, name: &str, force: bool) -> Result<Vec<String>, RepositoryError> {
        let _one = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = self.model_dir(name)?;
        let wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let pinned = wanted.versions.get(name).cloned().unwrap_or_default();
        let known = self.registry.versions(name);
        if !dir.is_dir() {
            if known.is_empty() {
                return Err(RepositoryError::UnknownModel(name.to_owned()));
            }
            if !pinned.is_empty() {
                return Err(RepositoryError::InUse(name.to_owned()));
            }
            self.forget(name);
            tracing::info!(model = %name, "model removed from the repository: no longer served");
            return Ok(vec![format!("{name}: removed")]);
        }
        let (cfg, versions) = repository::plan(&dir, &pinned).map_err(|e| RepositoryError::Invalid(e.to_string()))?;
        let cfg = Arc::new(cfg);
        let config_fp = config_fingerprint(&dir);
        let mut seen = std::mem::take(
            self.seen.lock().unwrap_or_else(PoisonError::into_inner).entry(name.to_owned()).or_default(),
        );
        let config_changed = !known.is_empty() && seen.config != config_fp;
        let mut changes = Vec::new();
        let mut failure = None;
        for &v in &versions {
            let path = dir.join(v.to_string());
            let fp = fingerprint(&path);
            let fresh = !known.contains(&v);
            if !(fresh || force || config_changed || seen.versions.get(&v) != Some(&fp)) {
                continue;
            }
            let metrics = match self.registry.metrics_of(name, v) {
                Some(m) if !fresh => m,
                _ => self.registry.declare(name, &[v], None).remove(0),
            };
            let background = wanted.background.contains(&(name.to_owned(), v));
            match repository::load_into(&self.registry, name, v, &path, &cfg, &self.env, metrics, background) {
                Ok(()) => changes.push(format!("{name}/{v}: {}", if fresh { "loaded" } else { "reloaded" })),
                Err(e) => failure = Some(format!("version {v}: {e}")),
            }
            seen.versions.insert(v, fp);
        }
        for v in known.iter().filter(|v| !versions.contains(v) && !pinned.contains(v)) {
            self.registry.remove_version(name, *v);
            seen.versions.remove(v);
            changes.push(format!("{name}/{v}: unloaded"));
        }
        let config_seen = seen.config == config_fp && !known.is_empty();
        seen.config = config_fp;
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), seen);
        if !(config_seen && changes.is_empty()) {
            self.registry.set_fallback(name, crate::repository::fallback_of(&cfg));
            self.configs.rcu(|c| {
                let mut c = (**c).clone();
                c.insert(name.to_owned(), cfg.clone());
                c
            });
        }
        for c in &changes {
            tracing::info!(change = %c, "model repository changed");
        }
        match failure {
            Some(e) => Err(RepositoryError::LoadFailed(e)),
            None => Ok(changes),
        }
    }

    /// Stops serving a model (the V2 repository extension's unload); refused while a rollout uses it.
    pub fn unload(&self, name: &str, used_by_rollout: bool) -> Result<(), RepositoryError> {
        let _one = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        if used_by_rollout {
            return Err(RepositoryError::InUse(name.to_owned()));
        }
        if self.registry.versions(name).is_empty() && !self.configs.load().contains_key(name) {
            return Err(RepositoryError::UnknownModel(name.to_owned()));
        }
        self.forget(name);
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// The directory of model `name`, which must be one plain name inside the repository: no path
    /// separators, `.` or `..`, and no symlink leading out of it.
    fn model_dir(&self, name: &str) -> Result<PathBuf, RepositoryError> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\', '\0'])
            && Path::new(name).components().count() == 1;
        if !plain {
            return Err(RepositoryError::Invalid(format!("'{name}' is not a model name")));
        }
        let dir = self.root.join(name);
        if let (Ok(real), Ok(root)) = (dir.canonicalize(), self.root.canonicalize())
            && !real.starts_with(&root)
        {
            return Err(RepositoryError::Invalid(format!("model '{name}' leads outside the model repository")));
        }
        Ok(dir)
    }

    fn forget(&self, name: &str) {
        self.registry.remove_model(name);
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        self.configs.rcu(|c| {
            let mut c = (**c).clone();
            c.remove(name);
            c
        });
    }

    /// Looks at the repository every `poll` (none when zero).
    pub fn watch(self: Arc<Self>, poll: Duration) {
        if poll.is_zero() {
            return;
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(poll).await;
                let repo = self.clone();
                let _ = tokio::task::spawn_blocking(move || repo.sync_all()).await;
            }
        });
    }
}

/// Sizes and modification times of the files under `dir` (two levels deep), hashed.
fn fingerprint(dir: &Path) -> Fingerprint {
    let mut h = DefaultHasher::new();
    hash_dir(dir, 2, &mut h);
    h.finish()
}

fn hash_dir(dir: &Path, depth: u32, h: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let Ok(meta) = e.metadata() else { continue };
        e.file_name().hash(h);
        if meta.is_dir() {
            if depth > 0 {
                hash_dir(&e.path(), depth - 1, h);
            }
        } else {
            meta.len().hash(h);
            meta.modified().ok().hash(h);
        }
    }
}

/// The model's own config files (`config.yaml`, `config.pbtxt`), hashed as `fingerprint` does.
fn config_fingerprint(dir: &Path) -> Fingerprint {
    let mut h = DefaultHasher::new();
    for f in ["config.yaml", "config.pbtxt"] {
        let meta = std::fs::metadata(dir.join(f)).ok();
        meta.as_ref().map(std::fs::Metadata::len).hash(&mut h);
        meta.and_then(|m| m.modified().ok()).hash(&mut h);
    }
    h.finish()
}
