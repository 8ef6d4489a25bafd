//! The admin API for rollouts: status, and promote / rollback / pause / resume; and the V2 repository
//! extension's load and unload of models. Every call needs the
//! bearer token from `SWITCHYARD_ADMIN_TOKEN`; without a token the routes are not mounted at all unless
//! `--admin-insecure` says to serve them openly.

use super::AppState;
use crate::ApiError;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use switchyard_core::rollout::Action;

/// Who may call the admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    pub token: Option<String>,
    pub insecure: bool,
}

impl AdminAuth {
    /// Whether the admin routes are served at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.insecure
    }

    /// Whether these headers carry the token (always true in insecure mode without a token).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else { return self.insecure };
        let given =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        // Compare without an early exit, so timing does not tell how much of a guess was right.
        given.is_some_and(|g| {
            g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }
}

pub(super) async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if !app.admin.authorized(req.headers()) {
        return Err(ApiError::Unauthorized("missing or wrong admin bearer token".into()));
    }
    Ok(next.run(req).await)
}

pub(super) async fn list(State(app): State<AppState>) -> Json<Value> {
    Json(Value::Array(app.endpoints().rollouts().values().map(|d| d.status()).collect()))
}

pub(super) async fn show(State(app): State<AppState>, Path(endpoint): Path<String>) -> Result<Json<Value>, ApiError> {
    let driver = app
        .endpoints()
        .rollout(&endpoint)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no rollout for endpoint '{endpoint}'")))?;
    Ok(Json(driver.status()))
}

pub(super) async fn act(
    State(app): State<AppState>,
    Path((endpoint, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let driver = app
        .endpoints()
        .rollout(&endpoint)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no rollout for endpoint '{endpoint}'")))?;
    let action = match action.as_str() {
        "promote" => Action::Promote,
        "rollback" => Action::Rollback,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        other => {
            return Err(ApiError::NotFound(format!("unknown action '{other}' (promote, rollback, pause, resume)")));
        }
    };
    // Answers once the decision is durable: in the state file and the audit log.
    let decision = driver.act(action).await.map_err(|e| ApiError::Conflict(e.to_string()))?;
    Ok(Json(json!({ "decision": decision, "rollout": driver.status() })))
}

/// `POST /v2/repository/models/{model}/load`: (re)loads the model's versions from disk and waits;
/// a version that fails leaves the one before it serving (400 with the reason).
pub(super) async fn load_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let repo = app.repository.clone().ok_or_else(|| ApiError::NotFound("no model repository".into()))?;
    let name = model.clone();
    let result = tokio::task::spawn_blocking(move || repo.sync_model(&name, true))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match result {
        Ok(changes) => Ok(Json(json!({ "model": model, "changes": changes }))),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v2/repository/models/{model}/unload`: stops serving the model; 409 while a rollout uses it.
pub(super) async fn unload_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let repo = app.repository.clone().ok_or_else(|| ApiError::NotFound("no model repository".into()))?;
    let endpoints = app.endpoints();
    let used = endpoints.rollouts().values().any(|d| {
        let s = &d.spec;
        s.control.model == model || s.canary.model == model || s.shadows.iter().any(|(t, _)| t.model == model)
    });
    repo.unload(&model, used)?;
    Ok(Json(json!({ "model": model, "unloaded": true })))
}
