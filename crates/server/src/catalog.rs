//! What the models and rollout endpoints look like to a client, whatever the transport: metadata,
//! readiness, a Triton-style config (which perf_analyzer reads for `max_batch_size`), the repository
//! index and statistics in Triton's terms. HTTP renders these as JSON, gRPC as protobuf; neither
//! decides anything about them. A rollout endpoint is a model like any other here: its name, control's
//! signature and config, ready when control is, and statistics per arm.

use crate::ApiError;
use crate::repository::ModelConfigs;
use switchyard_protocol::{DataType, ModelMetadata, ServerMetadata, TensorMetadata, TensorSpec};
use switchyard_runtime::{Endpoints, ModelIndex, ModelState, Resolved, StatsSnapshot};

pub(crate) fn server_metadata() -> ServerMetadata {
    ServerMetadata {
        name: "switchyard",
        version: env!("CARGO_PKG_VERSION"),
        extensions: &["binary_tensor_data", "model_configuration", "model_repository", "statistics"],
    }
}

fn resolve(endpoints: &Endpoints, model: &str, version: Option<&str>) -> Result<Resolved, ApiError> {
    Ok(endpoints.resolve(model, version)?)
}

pub(crate) fn metadata(endpoints: &Endpoints, model: &str, version: Option<&str>) -> Result<ModelMetadata, ApiError> {
    let r = resolve(endpoints, model, version)?;
    let sig = r.served.pool.signature();
    Ok(ModelMetadata {
        name: model.to_owned(),
        versions: r.versions.iter().map(u64::to_string).collect(),
        platform: sig.platform,
        inputs: sig.inputs.iter().map(TensorMetadata::from).collect(),
        outputs: sig.outputs.iter().map(TensorMetadata::from).collect(),
    })
}

/// The version that answers now (an error when none is ready).
pub(crate) fn ready(endpoints: &Endpoints, model: &str, version: Option<&str>) -> Result<u64, ApiError> {
    Ok(resolve(endpoints, model, version)?.served.version)
}

/// One input or output in a Triton-style config: dims without the batch dimension when batching.
#[derive(Debug)]
pub(crate) struct ConfigTensor {
    pub name: String,
    pub data_type: String,
    pub dims: Vec<i64>,
}

/// A model's config, as Triton's `model_config.proto` names it.
#[derive(Debug)]
pub(crate) struct ConfigView {
    pub name: String,
    pub platform: String,
    pub max_batch_size: usize,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
    pub instances: usize,
    pub gpu: bool,
}

pub(crate) fn config(
    endpoints: &Endpoints,
    configs: &ModelConfigs,
    model: &str,
    version: Option<&str>,
) -> Result<ConfigView, ApiError> {
    let r = resolve(endpoints, model, version)?;
    let cfg = configs.get(&r.model).cloned().unwrap_or_default();
    let sig = r.served.pool.signature();
    let max_batch_size = r.served.pool.max_batch_size();
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| ConfigTensor {
                name: s.name.clone(),
                data_type: triton_type(s.datatype),
                dims: if max_batch_size > 0 { s.shape[1..].to_vec() } else { s.shape.clone() },
            })
            .collect()
    };
    Ok(ConfigView {
        name: model.to_owned(),
        platform: sig.platform.to_owned(),
        max_batch_size,
        input: tensors(&sig.inputs),
        output: tensors(&sig.outputs),
        instances: cfg.instances,
        gpu: cfg.device != switchyard_backend::Device::Cpu,
    })
}

/// One row of the repository index: a model version (or a model that failed before any version).
#[derive(Debug)]
pub(crate) struct IndexRow {
    pub name: String,
    pub version: Option<String>,
    pub state: &'static str,
    pub reason: String,
}

/// Every model version and its state (Triton's repository extension).
pub(crate) fn index(endpoints: &Endpoints) -> Vec<IndexRow> {
    let mut rows = Vec::new();
    for ModelIndex { name, versions, error } in endpoints.registry().index() {
        if let Some(reason) = error {
            rows.push(IndexRow { name: name.clone(), version: None, state: "UNAVAILABLE", reason });
        }
        for (version, state, note) in versions {
            let (state, reason) = match state {
                ModelState::Loading => ("LOADING", String::new()),
                ModelState::Ready(_) => {
                    ("READY", note.map(|n| format!("a newer file failed to load: {n}")).unwrap_or_default())
                }
                ModelState::Failed(why) => ("UNAVAILABLE", why),
            };
            rows.push(IndexRow { name: name.clone(), version: Some(version.to_string()), state, reason });
        }
    }
    rows
}

/// One model version's statistics, with the arm and model behind a rollout endpoint.
#[derive(Debug)]
pub(crate) struct StatsRow {
    pub name: String,
    pub version: u64,
    pub stats: StatsSnapshot,
    pub arm: Option<(&'static str, String)>,
}

/// Statistics of every model (`model` None), of one model's versions, or of a rollout endpoint's arms.
pub(crate) fn stats(
    endpoints: &Endpoints,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<StatsRow>, ApiError> {
    match model {
        // A rollout endpoint: one entry per arm, under the endpoint's name, marked with the arm.
        Some(m) if version.is_none() && endpoints.rollout(m).is_some() => {
            let r = resolve(endpoints, m, None)?;
            Ok(r.arms
                .into_iter()
                .filter_map(|(arm, target, served)| {
                    let s = served?;
                    Some(StatsRow {
                        name: m.to_owned(),
                        version: s.version,
                        stats: s.metrics.stats(),
                        arm: Some((arm, target.model)),
                    })
                })
                .collect())
        }
        _ => Ok(endpoints
            .registry()
            .stats(model, version)?
            .into_iter()
            .map(|(name, version, stats)| StatsRow { name, version, stats, arm: None })
            .collect()),
    }
}

pub(crate) fn triton_type(dt: DataType) -> String {
    match dt {
        DataType::Bytes => "TYPE_STRING".into(),
        other => format!("TYPE_{}", other.as_str()),
    }
}
