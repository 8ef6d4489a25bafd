//! Server and model metadata, model readiness, and a Triton-style model config (which perf_analyzer
//! reads for `max_batch_size`). A rollout endpoint is a model like any other here: its name, control's
//! signature and config, ready when control is, and statistics per arm.

use super::{AppState, ModelPath};
use crate::ApiError;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchyard_protocol::{DataType, ModelMetadata, ServerMetadata, TensorMetadata, TensorSpec};
use switchyard_runtime::{ModelIndex, ModelState, Resolved, StatsSnapshot};

pub(super) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "switchyard",
        version: env!("CARGO_PKG_VERSION"),
        extensions: &["binary_tensor_data", "model_configuration", "model_repository", "statistics"],
    })
}

pub(super) fn model_path(path: Result<Path<ModelPath>, PathRejection>) -> Result<ModelPath, ApiError> {
    path.map(|Path(p)| p).map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn resolve(app: &AppState, p: &ModelPath) -> Result<Resolved, ApiError> {
    Ok(app.endpoints().resolve(&p.model, p.version.as_deref())?)
}

pub(super) async fn metadata(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let p = model_path(path)?;
    let r = resolve(&app, &p)?;
    let sig = r.served.pool.signature();
    Ok(Json(ModelMetadata {
        name: p.model,
        versions: r.versions.iter().map(u64::to_string).collect(),
        platform: sig.platform,
        inputs: sig.inputs.iter().map(TensorMetadata::from).collect(),
        outputs: sig.outputs.iter().map(TensorMetadata::from).collect(),
    }))
}

pub(super) async fn ready(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = model_path(path)?;
    let r = resolve(&app, &p)?;
    Ok(Json(json!({ "name": p.model, "version": r.served.version.to_string(), "ready": true })))
}

pub(super) async fn config(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = model_path(path)?;
    let r = resolve(&app, &p)?;
    let cfg = app.configs.load().get(&r.model).cloned().unwrap_or_default();
    let sig = r.served.pool.signature();
    let max_batch = r.served.pool.max_batch_size();
    let dims = |s: &TensorSpec| {
        if max_batch > 0 { s.shape[1..].to_vec() } else { s.shape.clone() }
    };
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs.iter().map(|s| json!({ "name": s.name, "data_type": triton_type(s.datatype), "dims": dims(s) })).collect()
    };
    let kind = if cfg.device == switchyard_backend::Device::Cpu { "KIND_CPU" } else { "KIND_GPU" };
    Ok(Json(json!({
        "name": p.model,
        "platform": sig.platform,
        "backend": "onnxruntime",
        "max_batch_size": max_batch,
        "input": tensors(&sig.inputs),
        "output": tensors(&sig.outputs),
        "instance_group": [{ "count": cfg.instances, "kind": kind }],
    })))
}

/// `POST /v2/repository/index` (Triton's repository extension): every model version and its state.
pub(super) async fn repository_index(State(app): State<AppState>) -> Json<Value> {
    let mut rows = Vec::new();
    for ModelIndex { name, versions, error } in app.endpoints().registry().index() {
        if let Some(reason) = error {
            rows.push(json!({ "name": name, "state": "UNAVAILABLE", "reason": reason }));
        }
        for (version, state, note) in versions {
            let (state, reason) = match state {
                ModelState::Loading => ("LOADING", String::new()),
                ModelState::Ready(_) => {
                    ("READY", note.map(|n| format!("a newer file failed to load: {n}")).unwrap_or_default())
                }
                ModelState::Failed(why) => ("UNAVAILABLE", why),
            };
            rows.push(json!({ "name": name, "version": version.to_string(), "state": state, "reason": reason }));
        }
    }
    Json(Value::Array(rows))
}

/// `GET /v2/models[/{m}[/versions/{v}]]/stats` (the statistics extension, in Triton's format).
pub(super) async fn all_stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    stats(&app, None)
}

pub(super) async fn model_stats(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    stats(&app, Some(model_path(path)?))
}

fn stats(app: &AppState, p: Option<ModelPath>) -> Result<Json<Value>, ApiError> {
    let endpoints = app.endpoints();
    let registry = endpoints.registry();
    let rows = match &p {
        // A rollout endpoint: one entry per arm, under the endpoint's name, marked with the arm.
        Some(p) if p.version.is_none() && endpoints.rollout(&p.model).is_some() => {
            let r = resolve(app, p)?;
            let mut rows = Vec::new();
            for (arm, target, served) in r.arms {
                if let Some(s) = served {
                    let snapshot = s.metrics.stats();
                    rows.push(stats_entry(&p.model, s.version, &snapshot, Some((arm, &target.model))));
                }
            }
            rows
        }
        _ => registry
            .stats(p.as_ref().map(|p| p.model.as_str()), p.as_ref().and_then(|p| p.version.as_deref()))?
            .into_iter()
            .map(|(name, version, s)| stats_entry(&name, version, &s, None))
            .collect(),
    };
    Ok(Json(json!({ "model_stats": rows })))
}

/// One model version's statistics in Triton's format (with the arm and model behind an endpoint).
fn stats_entry(name: &str, version: u64, s: &StatsSnapshot, arm: Option<(&str, &str)>) -> Value {
    let pair = |(count, ns): (u64, u64)| json!({ "count": count, "ns": ns });
    let mut v = json!({
        "name": name,
        "version": version.to_string(),
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": pair(s.success),
            "fail": pair(s.fail),
            "queue": pair(s.queue),
            "compute_input": pair((s.compute.0, 0)),
            "compute_infer": pair(s.compute),
            "compute_output": pair((s.compute.0, 0)),
            "cache_hit": pair((0, 0)),
            "cache_miss": pair((0, 0)),
        },
        "batch_stats": [],
    });
    if let Some((arm, model)) = arm {
        v["arm"] = json!(arm);
        v["model"] = json!(model);
    }
    v
}

fn triton_type(dt: DataType) -> String {
    match dt {
        DataType::Bytes => "TYPE_STRING".into(),
        other => format!("TYPE_{}", other.as_str()),
    }
}
