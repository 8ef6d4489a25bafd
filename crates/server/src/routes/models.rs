//! Server and model metadata, model readiness, the Triton-style model config, the repository index and
//! statistics over HTTP: `crate::catalog` says what they are, this renders them as JSON.

use super::{AppState, ModelPath};
use crate::ApiError;
use crate::catalog::{self, ConfigTensor, StatsRow};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchyard_protocol::{ModelMetadata, ServerMetadata};

pub(super) async fn server_metadata() -> Json<ServerMetadata> {
    Json(catalog::server_metadata())
}

pub(super) fn model_path(path: Result<Path<ModelPath>, PathRejection>) -> Result<ModelPath, ApiError> {
    path.map(|Path(p)| p).map_err(|e| ApiError::BadRequest(e.body_text()))
}

pub(super) async fn metadata(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let p = model_path(path)?;
    Ok(Json(catalog::metadata(&app.endpoints(), &p.model, p.version.as_deref())?))
}

pub(super) async fn ready(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = model_path(path)?;
    let version = catalog::ready(&app.endpoints(), &p.model, p.version.as_deref())?;
    Ok(Json(json!({ "name": p.model, "version": version.to_string(), "ready": true })))
}

pub(super) async fn config(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = model_path(path)?;
    let c = catalog::config(&app.endpoints(), &app.configs.load(), &p.model, p.version.as_deref())?;
    let tensors = |ts: &[ConfigTensor]| -> Vec<Value> {
        ts.iter().map(|t| json!({ "name": t.name, "data_type": t.data_type, "dims": t.dims })).collect()
    };
    Ok(Json(json!({
        "name": c.name,
        "platform": c.platform,
        "backend": "onnxruntime",
        "max_batch_size": c.max_batch_size,
        "input": tensors(&c.input),
        "output": tensors(&c.output),
        "instance_group": [{ "count": c.instances, "kind": if c.gpu { "KIND_GPU" } else { "KIND_CPU" } }],
    })))
}

/// `POST /v2/repository/index` (Triton's repository extension): every model version and its state.
pub(super) async fn repository_index(State(app): State<AppState>) -> Json<Value> {
    let rows = catalog::index(&app.endpoints())
        .into_iter()
        .map(|r| {
            let mut v = json!({ "name": r.name, "state": r.state, "reason": r.reason });
            if let Some(version) = r.version {
                v["version"] = json!(version);
            }
            v
        })
        .collect();
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
    let (model, version) = p.as_ref().map_or((None, None), |p| (Some(p.model.as_str()), p.version.as_deref()));
    let rows: Vec<Value> = catalog::stats(&app.endpoints(), model, version)?.iter().map(stats_entry).collect();
    Ok(Json(json!({ "model_stats": rows })))
}

/// One model version's statistics in Triton's format (with the arm and model behind an endpoint).
fn stats_entry(row: &StatsRow) -> Value {
    let s = &row.stats;
    let pair = |(count, ns): (u64, u64)| json!({ "count": count, "ns": ns });
    let mut v = json!({
        "name": row.name,
        "version": row.version.to_string(),
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
    if let Some((arm, model)) = &row.arm {
        v["arm"] = json!(arm);
        v["model"] = json!(model);
    }
    v
}
