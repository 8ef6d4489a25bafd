//! Liveness, readiness and the Prometheus scrape. Readiness means every declared model version loaded
//! and warmed up (`--strict-readiness`, the default), or at least that loading has finished.

use super::AppState;
use crate::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

pub(super) async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

pub(super) async fn ready(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    is_ready(&app).map(|()| Json(json!({ "ready": true })))
}

/// Whether the server is ready, and why not (for every front end's readiness).
pub(crate) fn is_ready(app: &AppState) -> Result<(), ApiError> {
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::Unavailable("not ready: shutting down (draining)".into()));
    }
    // Canaries and shadows never make the server unready: only what serves control traffic counts.
    let endpoints = app.endpoints();
    let readiness = endpoints.registry().readiness_ignoring(crate::rollouts::optional_targets(endpoints.rollouts()));
    if let Some(fleet) = &app.fleet
        && !fleet.is_joined()
    {
        return Err(ApiError::Unavailable("not ready: reading the fleet's rollout decisions from etcd".into()));
    }
    if readiness.is_ready(app.strict_readiness) {
        Ok(())
    } else {
        Err(ApiError::Unavailable(format!("not ready: {}", readiness.describe())))
    }
}

pub(super) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
