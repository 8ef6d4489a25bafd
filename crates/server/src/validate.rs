//! `switchyard validate --config FILE [--model-repository DIR]`: the checks a reload runs, offline and
//! without loading any model: the config parses with every field known and in range, every model and
//! version its rollouts name is in the repository (whatever the model's version policy), each model's
//! `config.yaml` / `config.pbtxt` reads, and every rollout resolves. Exit 0 when all hold, else 1 with
//! every problem named.

use crate::config::ServerConfig;
use crate::repository::{self, ModelConfigs};
use crate::rollouts;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use switchyard_runtime::Registry;

/// Every problem found, or a summary of what the config declares (with warnings about models no
/// rollout uses that cannot be served: the server serves the rest without them).
pub fn run(config: &Path, repository_root: &Path) -> Result<String, Vec<String>> {
    let cfg = ServerConfig::load(config).map_err(|e| vec![e.to_string()])?;
    let wanted = rollouts::wanted(&cfg.rollouts);
    let registry = Registry::default();
    let mut models = ModelConfigs::new();
    let mut broken = Vec::new();
    for (name, planned) in repository::scan(repository_root, &wanted).map_err(|e| vec![e.to_string()])? {
        match planned {
            Ok((model_cfg, versions)) => {
                registry.declare(&name, &versions, None);
                models.insert(name, Arc::new(model_cfg));
            }
            Err(reason) => broken.push((name, reason)),
        }
    }
    let used: BTreeSet<&str> = cfg
        .rollouts
        .iter()
        .flat_map(|r| {
            let arms = [Some(r.control.model.as_str()), r.canary.as_ref().map(|c| c.model.as_str())];
            arms.into_iter().flatten().chain(r.shadows.iter().map(|s| s.model.as_str()))
        })
        .collect();
    let (needed, unused): (Vec<_>, Vec<_>) = broken.iter().partition(|(name, _)| used.contains(name.as_str()));
    let mut errors: Vec<String> = needed.iter().map(|(n, r)| format!("model '{n}' cannot be served: {r}")).collect();
    if let Err(problems) = crate::rate_limits::specs(&cfg.rate_limits) {
        errors.extend(problems);
    }
    let specs = match rollouts::specs(&cfg.rollouts, &models, &registry) {
        Ok(specs) => specs,
        Err(e) => {
            errors.push(e.to_string());
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = format!(
        "{}: valid against {} ({} models); {} rollout(s)",
        config.display(),
        repository_root.display(),
        models.len(),
        specs.len()
    );
    for s in &specs {
        out.push_str(&format!(
            "\n  {}: control {}, canary {}, {} shadow(s)",
            s.endpoint,
            s.control,
            s.canary,
            s.shadows.len()
        ));
    }
    for (n, r) in unused {
        out.push_str(&format!("\nwarning: model '{n}' (used by no rollout) cannot be served: {r}"));
    }
    Ok(out)
}
