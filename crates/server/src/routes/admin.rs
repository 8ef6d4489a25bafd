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
use std::sync::Arc;
use switchyard_core::rollout::Action;
use switchyard_runtime::rollout::RolloutDriver;

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
        bearer(headers).is_some_and(|g| same_secret(g, token))
    }
}

/// The credential of an `Authorization: Bearer` header. The scheme is case-insensitive (RFC 9110:
/// `Bearer`, `bearer` and `BEARER` are the same).
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim())
}

/// Compares a guess with the secret in time that depends only on the secret's length: no early exit
/// on the first wrong byte, nor on a wrong length.
pub(super) fn same_secret(guess: &str, secret: &str) -> bool {
    let (guess, secret) = (guess.as_bytes(), secret.as_bytes());
    let mut diff = u64::from(guess.len() != secret.len());
    for (i, &b) in secret.iter().enumerate() {
        diff |= u64::from(guess.get(i).copied().unwrap_or(0) ^ b);
    }
    diff == 0
}

pub(super) async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if !app.admin.authorized(req.headers()) {
        let e = ApiError::Unauthorized("missing or wrong admin bearer token".into());
        return Err(super::body::refuse(req.into_body(), e).await);
    }
    Ok(next.run(req).await)
}

/// Every ready model version's pool, with its model's name and the version.
fn ready_pools(app: &AppState) -> Vec<(String, u64, std::sync::Arc<switchyard_runtime::Pool>)> {
    let mut out = Vec::new();
    for m in app.endpoints().registry().index() {
        for (version, state, _) in m.versions {
            if let switchyard_runtime::ModelState::Ready(pool) = state {
                out.push((m.name.clone(), version, pool));
            }
        }
    }
    out
}

/// `GET /admin/breakers`: every model version with a circuit breaker, its state and why it last opened.
pub(super) async fn breakers(State(app): State<AppState>) -> Json<Value> {
    let with_breaker = ready_pools(&app).into_iter().filter_map(|(model, version, pool)| {
        let mut entry = pool.breaker()?.status();
        entry["model"] = json!(model);
        entry["version"] = json!(version.to_string());
        Some(entry)
    });
    Json(Value::Array(with_breaker.collect()))
}

/// `GET /admin/drift`: every model version with a drift monitor, each series' divergence and level.
pub(super) async fn drift(State(app): State<AppState>) -> Json<Value> {
    let monitored = ready_pools(&app).into_iter().filter_map(|(_, _, pool)| Some(pool.drift()?.status()));
    Json(Value::Array(monitored.collect()))
}

/// `GET /admin/fleet`: this replica in its fleet (404 without one).
pub(super) async fn fleet(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let fleet =
        app.fleet.as_ref().ok_or_else(|| ApiError::NotFound("no fleet: coordination.etcd is not set".into()))?;
    Ok(Json(fleet.summary()))
}

/// A rollout's status, with the fleet's view of it (every replica's evidence and the pooled verdict)
/// when this replica belongs to a fleet.
pub(super) async fn status(app: &AppState, driver: &RolloutDriver) -> Value {
    let mut status = driver.status();
    // Each arm's drift, where its version monitors it.
    if let Ok(resolved) = app.endpoints().resolve(&driver.spec.endpoint, None) {
        let drift: serde_json::Map<String, Value> = resolved
            .arms
            .iter()
            .filter(|(arm, _, _)| *arm != "shadow")
            .filter_map(|(arm, _, served)| Some(((*arm).to_owned(), served.as_ref()?.pool.drift()?.status())))
            .collect();
        if !drift.is_empty() {
            status["drift"] = Value::Object(drift);
        }
    }
    if let Some(fleet) = &app.fleet {
        status["fleet"] = fleet.rollout_view(driver).await;
    }
    status
}

pub(super) async fn list(State(app): State<AppState>) -> Json<Value> {
    let mut out = Vec::new();
    for d in app.endpoints().rollouts().values() {
        out.push(status(&app, d).await);
    }
    Json(Value::Array(out))
}

/// The rollout of `endpoint`, or a 404 naming it.
fn rollout(app: &AppState, endpoint: &str) -> Result<Arc<RolloutDriver>, ApiError> {
    app.endpoints()
        .rollout(endpoint)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no rollout for endpoint '{endpoint}'")))
}

pub(super) async fn show(State(app): State<AppState>, Path(endpoint): Path<String>) -> Result<Json<Value>, ApiError> {
    let driver = rollout(&app, &endpoint)?;
    Ok(Json(status(&app, &driver).await))
}

/// `GET /admin/rollouts/{endpoint}/history[?limit=N]`: the rollout's decisions and events, oldest first.
pub(super) async fn history(
    State(app): State<AppState>,
    Path(endpoint): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = rollout(&app, &endpoint)?.history(q.limit.unwrap_or(100));
    Ok(Json(json!({ "endpoint": endpoint, "entries": entries })))
}

/// `GET /admin/rollouts/{endpoint}/series`: its last five minutes of traffic per arm, second by second.
pub(super) async fn series(State(app): State<AppState>, Path(endpoint): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(rollout(&app, &endpoint)?.series()))
}

#[derive(serde::Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
}

pub(super) async fn act(
    State(app): State<AppState>,
    Path((endpoint, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let driver = rollout(&app, &endpoint)?;
    let action = match action.as_str() {
        "promote" => Action::Promote,
        "rollback" => Action::Rollback,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        other => {
            return Err(ApiError::NotFound(format!("unknown action '{other}' (promote, rollback, pause, resume)")));
        }
    };
    // Answers once the decision is durable: in the state file and the audit log, or (in a fleet)
    // committed in etcd, from where every replica applies it.
    let decision = match &app.fleet {
        Some(fleet) => fleet.act(&driver, action).await.map_err(|e| match e {
            switchyard_fleet::ActError::Refused(r) => ApiError::Conflict(r.to_string()),
            switchyard_fleet::ActError::Unavailable(why) => ApiError::Unavailable(why),
        })?,
        None => driver.act(action).await.map_err(|e| ApiError::Conflict(e.to_string()))?,
    };
    Ok(Json(json!({ "decision": decision, "rollout": status(&app, &driver).await })))
}

fn repository(app: &AppState) -> Result<std::sync::Arc<crate::live_repository::Repository>, ApiError> {
    app.repository.clone().ok_or_else(|| ApiError::NotFound("no model repository".into()))
}

/// `POST /v2/repository/models/{model}/load`: (re)loads the model's versions from disk and waits;
/// a version that fails leaves the one before it serving (400 with the reason).
pub(super) async fn load_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let changes = load(&app, model.clone()).await?;
    Ok(Json(json!({ "model": model, "changes": changes })))
}

/// Loads a model's versions from disk (for every front end); the changes made.
pub(crate) async fn load(app: &AppState, model: String) -> Result<Value, ApiError> {
    let repo = repository(app)?;
    let result = tokio::task::spawn_blocking(move || repo.sync_model(&model, true))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json!(result?))
}

/// `POST /v2/repository/models/{model}/unload`: stops serving the model; 409 while a rollout uses it.
pub(super) async fn unload_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    unload(&app, &model)?;
    Ok(Json(json!({ "model": model, "unloaded": true })))
}

/// Stops serving a model (for every front end); refused while a rollout uses it.
pub(crate) fn unload(app: &AppState, model: &str) -> Result<(), ApiError> {
    let repo = repository(app)?;
    let endpoints = app.endpoints();
    let used = endpoints.rollouts().values().any(|d| {
        let s = &d.spec;
        s.control.model == model || s.canary.model == model || s.shadows.iter().any(|(t, _)| t.model == model)
    });
    Ok(repo.unload(model, used)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_is_checked_whole_with_any_case_of_the_scheme() {
        let auth = AdminAuth { token: Some("s3cret".into()), insecure: false };
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            auth.authorized(&h)
        };
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "  Bearer   s3cret "] {
            assert!(with(ok), "{ok}");
        }
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET", "Basic s3cret", "s3cret", "Bearer", ""] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!auth.authorized(&HeaderMap::new()));
        assert!(same_secret("abc", "abc") && !same_secret("abcd", "abc") && !same_secret("", "abc"));
    }
}
