//! The state of every model version the repository declares: loading, ready (with its worker pool) or
//! failed (with the reason). The HTTP side resolves requests against it; the loader writes to it. Reads
//! hold the lock only long enough to clone an `Arc`.

use crate::{Pool, StatsSnapshot, VersionMetrics};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use switchyard_core::{ResolveError, resolve_version};

/// Where one model version stands.
#[derive(Clone, Debug)]
pub enum ModelState {
    Loading,
    Ready(Arc<Pool>),
    Failed(String),
}

/// A ready version, as a request sees it.
#[derive(Clone, Debug)]
pub struct Served {
    pub version: u64,
    pub pool: Arc<Pool>,
    pub metrics: VersionMetrics,
}

/// A served version: its state and its metric handles.
#[derive(Clone, Debug)]
pub struct VersionEntry {
    pub version: u64,
    pub state: ModelState,
    pub metrics: VersionMetrics,
    /// Why a newer file for this version failed to load while the older one keeps serving.
    pub note: Option<String>,
}

#[derive(Default, Clone)]
struct ModelRecord {
    versions: BTreeMap<u64, VersionEntry>,
    /// A problem with the model as a whole (bad config.yaml, no versions on disk).
    error: Option<String>,
    /// The model that answers when this one cannot (its config's `fallback`).
    fallback: Option<crate::rollout::Target>,
}

/// Every model's versions and states.
#[derive(Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, ModelRecord>>,
}

/// One model in the repository index.
#[derive(Debug, Clone)]
pub struct ModelIndex {
    pub name: String,
    /// Each version's state, and why a newer file failed to load while this one serves.
    pub versions: Vec<(u64, ModelState, Option<String>)>,
    pub error: Option<String>,
}

/// Why a request found no version to run on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    #[error("model '{model}' has no version '{version}'")]
    UnknownVersion { model: String, version: String },
    #[error("model '{model}' is not ready: {reason}")]
    NotReady { model: String, reason: String },
}

impl Registry {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares a model whose versions are about to load (or that failed as a whole, with `error`).
    /// Returns each version's metric handles, in the order of `versions`, for its loader.
    pub fn declare(&self, model: &str, versions: &[u64], error: Option<String>) -> Vec<VersionMetrics> {
        let mut models = self.write();
        let record = models.entry(model.to_owned()).or_default();
        record.error = error;
        // Exists from the first look at the model at 0, so `increase()` sees its first failure.
        metrics::counter!("switchyard_model_load_failures_total", "model" => model.to_owned()).increment(0);
        if record.error.is_some() {
            metrics::counter!("switchyard_model_load_failures_total", "model" => model.to_owned()).increment(1);
        }
        versions
            .iter()
            .map(|&v| {
                metrics::gauge!("switchyard_model_ready", "model" => model.to_owned(), "version" => v.to_string())
                    .set(0.0);
                let metrics = VersionMetrics::new(model, v);
                let entry =
                    VersionEntry { version: v, state: ModelState::Loading, metrics: metrics.clone(), note: None };
                record.versions.insert(v, entry);
                metrics
            })
            .collect()
    }

    /// Records the outcome of loading one version. A version that failed to load while an older
    /// load of it serves keeps serving, with the failure kept as its note; a ready one replaces the old
    /// atomically (requests in flight finish on the pool they hold).
    /// Sets the model that answers when `model` cannot (from its config; `None` for none).
    pub fn set_fallback(&self, model: &str, fallback: Option<crate::rollout::Target>) {
        if let Some(r) = self.write().get_mut(model) {
            r.fallback = fallback;
        }
    }

    /// The model that answers when `model` cannot.
    pub fn fallback(&self, model: &str) -> Option<crate::rollout::Target> {
        self.read().get(model).and_then(|r| r.fallback.clone())
    }

    pub fn set_state(&self, model: &str, version: u64, state: ModelState) {
        if let ModelState::Failed(_) = state {
            metrics::counter!("switchyard_model_load_failures_total", "model" => model.to_owned()).increment(1);
        }
        let mut models = self.write();
        let Some(entry) = models.get_mut(model).and_then(|r| r.versions.get_mut(&version)) else { return };
        match (&entry.state, state) {
            (ModelState::Ready(_), ModelState::Failed(why)) => entry.note = Some(why),
            (_, state) => {
                entry.note = None;
                entry.state = state;
            }
        }
        let ready = matches!(entry.state, ModelState::Ready(_));
        metrics::gauge!("switchyard_model_ready", "model" => model.to_owned(), "version" => version.to_string())
            .set(f64::from(u8::from(ready)));
    }

    /// The metric handles of a declared version (to reload it under the same handles).
    pub fn metrics_of(&self, model: &str, version: u64) -> Option<VersionMetrics> {
        self.read().get(model).and_then(|r| r.versions.get(&version)).map(|e| e.metrics.clone())
    }

    /// Stops serving a version (requests in flight finish on the pool they hold).
    pub fn remove_version(&self, model: &str, version: u64) {
        if let Some(r) = self.write().get_mut(model) {
            r.versions.remove(&version);
        }
        metrics::gauge!("switchyard_model_ready", "model" => model.to_owned(), "version" => version.to_string())
            .set(0.0);
    }

    /// Stops serving a model altogether.
    pub fn remove_model(&self, model: &str) {
        let removed = self.write().remove(model);
        for v in removed.iter().flat_map(|r| r.versions.keys()) {
            metrics::gauge!("switchyard_model_ready", "model" => model.to_owned(), "version" => v.to_string()).set(0.0);
        }
    }

    /// The version that answers a request for `model` (pinned to `version` when the path names one).
    pub fn lookup(&self, model: &str, version: Option<&str>) -> Result<Served, LookupError> {
        self.lookup_among(model, version, |_| true)
    }

    /// The newest ready version of `model` outside `excluded` (versions under a rollout's judgement).
    pub fn lookup_excluding(
        &self,
        model: &str,
        excluded: &std::collections::BTreeSet<u64>,
    ) -> Result<Served, LookupError> {
        self.lookup_among(model, None, |v| !excluded.contains(&v)).map_err(|e| match e {
            LookupError::NotReady { model, reason } if reason == "no version to serve" => LookupError::NotReady {
                reason: format!(
                    "every version of '{model}' is a rollout's canary: call the rollout's endpoint or name a version"
                ),
                model,
            },
            other => other,
        })
    }

    fn lookup_among(
        &self,
        model: &str,
        version: Option<&str>,
        eligible: impl Fn(u64) -> bool,
    ) -> Result<Served, LookupError> {
        let models = self.read();
        let record = models.get(model).ok_or_else(|| LookupError::UnknownModel(model.to_owned()))?;
        let served: Vec<(u64, bool)> = record
            .versions
            .values()
            .filter(|e| eligible(e.version))
            .map(|e| (e.version, matches!(e.state, ModelState::Ready(_))))
            .collect();
        let not_ready = |reason: String| LookupError::NotReady { model: model.to_owned(), reason };
        match resolve_version(version, &served) {
            Ok(r) => match &record.versions[&r.version] {
                VersionEntry { version, state: ModelState::Ready(pool), metrics, .. } => {
                    Ok(Served { version: *version, pool: pool.clone(), metrics: metrics.clone() })
                }
                other => Err(not_ready(describe(&other.state, other.version))),
            },
            Err(ResolveError::UnknownVersion(v)) => {
                Err(LookupError::UnknownVersion { model: model.to_owned(), version: v })
            }
            Err(ResolveError::NotReady(v)) => Err(not_ready(describe(&record.versions[&v].state, v))),
            Err(ResolveError::NoneReady) => Err(not_ready(record.error.clone().unwrap_or_else(|| {
                let states: Vec<String> = record
                    .versions
                    .values()
                    .filter(|e| eligible(e.version))
                    .map(|e| describe(&e.state, e.version))
                    .collect();
                if states.is_empty() { "no version to serve".into() } else { states.join("; ") }
            }))),
        }
    }

    /// Whether the version a request for `model` (pinned to `version`) would resolve to is still loading.
    pub fn is_loading(&self, model: &str, version: Option<u64>) -> bool {
        let models = self.read();
        let Some(record) = models.get(model) else { return false };
        record
            .versions
            .values()
            .any(|e| version.is_none_or(|v| v == e.version) && matches!(e.state, ModelState::Loading))
    }

    /// Every model with each version's state, and the model-wide error if any (for the repository index).
    pub fn index(&self) -> Vec<ModelIndex> {
        let models = self.read();
        models
            .iter()
            .map(|(name, r)| ModelIndex {
                name: name.clone(),
                versions: r.versions.values().map(|e| (e.version, e.state.clone(), e.note.clone())).collect(),
                error: r.error.clone(),
            })
            .collect()
    }

    /// Statistics for every served version of every model, of one model, or of one version.
    pub fn stats(
        &self,
        model: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<(String, u64, StatsSnapshot)>, LookupError> {
        let models = self.read();
        let mut out = Vec::new();
        for (name, record) in models.iter().filter(|(name, _)| model.is_none_or(|m| m == name.as_str())) {
            for e in record.versions.values().filter(|e| version.is_none_or(|v| v == e.version.to_string())) {
                out.push((name.clone(), e.version, e.metrics.stats()));
            }
        }
        match (model, version) {
            (Some(m), _) if !models.contains_key(m) => Err(LookupError::UnknownModel(m.to_owned())),
            (Some(m), Some(v)) if out.is_empty() => {
                Err(LookupError::UnknownVersion { model: m.to_owned(), version: v.to_owned() })
            }
            _ => Ok(out),
        }
    }

    /// The versions served for `model` (ready or not), ascending.
    pub fn versions(&self, model: &str) -> Vec<u64> {
        self.read().get(model).map(|r| r.versions.keys().copied().collect()).unwrap_or_default()
    }

    /// What stands between the server and readiness.
    pub fn readiness(&self) -> Readiness {
        self.readiness_ignoring(|_, _| false)
    }

    /// Readiness leaving out the versions `optional` names (canaries and shadows: they never make the
    /// server unready).
    pub fn readiness_ignoring(&self, optional: impl Fn(&str, u64) -> bool) -> Readiness {
        let mut r = Readiness::default();
        for (name, record) in self.read().iter() {
            r.failed.extend(record.error.iter().map(|e| format!("model '{name}': {e}")));
            for e in record.versions.values().filter(|e| !optional(name, e.version)) {
                let line = format!("model '{name}' {}", describe(&e.state, e.version));
                match e.state {
                    ModelState::Loading => r.loading.push(line),
                    ModelState::Failed(_) => r.failed.push(line),
                    ModelState::Ready(_) => {}
                }
            }
        }
        r
    }
}

/// Model versions still loading, and models or versions that failed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub loading: Vec<String>,
    pub failed: Vec<String>,
}

impl Readiness {
    /// Ready once nothing is loading and, when `strict`, nothing failed (Triton's `--strict-readiness`).
    pub fn is_ready(&self, strict: bool) -> bool {
        self.loading.is_empty() && (!strict || self.failed.is_empty())
    }

    /// Every problem, for the not-ready answer.
    pub fn describe(&self) -> String {
        self.loading.iter().chain(&self.failed).cloned().collect::<Vec<_>>().join("; ")
    }
}

fn describe(state: &ModelState, version: u64) -> String {
    match state {
        ModelState::Loading => format!("version {version} is still loading"),
        ModelState::Ready(_) => format!("version {version} is ready"),
        ModelState::Failed(e) => format!("version {version} failed to load: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reports_unknown_and_not_ready_models() {
        let r = Registry::default();
        r.declare("m", &[1, 2], None);
        r.declare("broken", &[], Some("config.yaml: unknown field `instnces`".into()));
        assert!(matches!(r.lookup("x", None), Err(LookupError::UnknownModel(_))));
        assert!(matches!(r.lookup("m", Some("3")), Err(LookupError::UnknownVersion { .. })));
        let e = r.lookup("m", None).unwrap_err().to_string();
        assert!(e.contains("still loading"), "{e}");
        r.set_state("m", 2, ModelState::Failed("bad file".into()));
        let e = r.lookup("m", Some("2")).unwrap_err().to_string();
        assert!(e.contains("bad file"), "{e}");
        let e = r.lookup("broken", None).unwrap_err().to_string();
        assert!(e.contains("instnces"), "{e}");
        let readiness = r.readiness();
        assert!(!readiness.is_ready(false));
        let e = readiness.describe();
        assert!(e.contains("instnces") && e.contains("bad file") && e.contains("version 1 is still loading"), "{e}");
        r.set_state("m", 1, ModelState::Failed("also bad".into()));
        assert!(r.readiness().is_ready(false));
        assert!(!r.readiness().is_ready(true));
    }
}
