//! The router: every V2 endpoint, the Kubernetes probes and `/metrics`, the admin API and the console,
//! with JSON errors for unknown paths and wrong methods.

mod admin;
mod body;
mod console;
mod feedback;
mod guard;
mod health;
mod infer;
mod models;

pub use admin::AdminAuth;
pub(crate) use admin::{load as load_model, unload as unload_model};
pub(crate) use guard::{admission, check_api_token};
pub(crate) use health::is_ready;
pub use infer::FORCE_ARM_HEADER;
pub(crate) use infer::{FALLBACK_HEADER, forced_arm};

use crate::ApiError;
use crate::limits::RequestLimits;
use crate::observe;
use crate::repository::ModelConfigs;
use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use std::sync::Arc;
use switchyard_runtime::Endpoints;

/// Rollouts by endpoint.
pub type Rollouts = std::collections::BTreeMap<String, Arc<switchyard_runtime::rollout::RolloutDriver>>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

#[doc(hidden)]
pub struct Shared {
    /// Swapped whole when a reloaded config is applied; a request keeps the one it started with.
    pub(crate) endpoints: Arc<arc_swap::ArcSwap<Endpoints>>,
    pub(crate) admin: AdminAuth,
    pub(crate) configs: Arc<arc_swap::ArcSwap<ModelConfigs>>,
    /// The repository kept in step with the disk (absent in router tests without models).
    pub(crate) repository: Option<Arc<crate::live_repository::Repository>>,
    /// Bearer token the data plane (`/v2/...`) needs, when set; probes and `/metrics` never do.
    pub(crate) api_token: Option<String>,
    pub(crate) limits: RequestLimits,
    /// Requests in progress, within `limits.max_concurrent_requests`.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    pub(crate) strict_readiness: bool,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Set at the first stop signal: readiness answers 503 while requests are still served.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// The fleet this replica belongs to (`coordination.etcd`), when there is one.
    pub(crate) fleet: Option<switchyard_fleet::Fleet>,
    /// The latest config reloads (empty without `--config`).
    pub(crate) reloads: Arc<crate::reload::ReloadLog>,
}

/// How the HTTP front end behaves: who may call it and within which limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub admin: AdminAuth,
    /// `SWITCHYARD_API_TOKEN`: the data plane needs `Authorization: Bearer <token>` when set.
    pub api_token: Option<String>,
    pub limits: RequestLimits,
    /// Ready only when every model loaded (Triton's behaviour), else once loading finished.
    pub strict_readiness: bool,
    /// The fleet: rollouts decided for every replica together (readiness waits to join it).
    pub fleet: Option<switchyard_fleet::Fleet>,
    /// What config reloads did, for the console's timeline.
    pub reloads: Arc<crate::reload::ReloadLog>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            admin: AdminAuth::default(),
            api_token: None,
            limits: RequestLimits::default(),
            strict_readiness: true,
            fleet: None,
            reloads: Arc::default(),
        }
    }
}

impl AppState {
    pub fn new(
        endpoints: Arc<arc_swap::ArcSwap<Endpoints>>,
        configs: Arc<arc_swap::ArcSwap<ModelConfigs>>,
        repository: Option<Arc<crate::live_repository::Repository>>,
        settings: Settings,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let Settings { admin, api_token, limits, strict_readiness, fleet, reloads } = settings;
        Self(Arc::new(Shared {
            endpoints,
            admin,
            configs,
            repository,
            api_token,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            limits,
            strict_readiness,
            metrics,
            draining: Arc::default(),
            fleet,
            reloads,
        }))
    }

    /// What serves requests now.
    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.0.endpoints.load_full()
    }

    /// The flag a stop signal sets to take the server out of readiness.
    pub fn draining(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.0.draining.clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// `/v2/models/{model}[/versions/{version}]/...`
#[derive(Deserialize)]
pub(crate) struct ModelPath {
    model: String,
    version: Option<String>,
}

pub fn app(state: AppState) -> Router {
    // Probes and the scrape are never refused for load and never need a token.
    let probes = Router::new()
        .route("/health", get(health::live))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        // The console's page and scripts are public; what it shows without the admin token is `/metrics`.
        .route("/ui", get(console::page))
        .route("/ui/", get(console::page))
        .route("/ui/{file}", get(console::file));
    let mut guarded = Router::new()
        .route("/v2", get(models::server_metadata))
        .route("/v2/repository/index", post(models::repository_index))
        .route("/v2/models/stats", get(models::all_stats))
        .route("/v2/models/{model}/stats", get(models::model_stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(models::model_stats))
        .route("/v2/models/{model}", get(models::metadata))
        .route("/v2/models/{model}/versions/{version}", get(models::metadata))
        .route("/v2/models/{model}/ready", get(models::ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(models::ready))
        .route("/v2/models/{model}/config", get(models::config))
        .route("/v2/models/{model}/versions/{version}/config", get(models::config))
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route("/v2/models/{model}/feedback", post(feedback::feedback))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer::infer));
    if state.api_token.is_some() {
        guarded = guarded.route_layer(axum::middleware::from_fn_with_state(state.clone(), guard::require_api_token));
    }
    if state.admin.enabled() {
        let admin = Router::new()
            .route("/admin/breakers", get(admin::breakers))
            .route("/admin/fleet", get(admin::fleet))
            .route("/admin/drift", get(admin::drift))
            .route("/admin/console", get(console::data))
            .route("/admin/rollouts", get(admin::list))
            .route("/admin/rollouts/{endpoint}", get(admin::show))
            .route("/admin/rollouts/{endpoint}/history", get(admin::history))
            .route("/admin/rollouts/{endpoint}/series", get(admin::series))
            .route("/admin/rollouts/{endpoint}/{action}", post(admin::act))
            .route("/v2/repository/models/{model}/load", post(admin::load_model))
            .route("/v2/repository/models/{model}/unload", post(admin::unload_model))
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), admin::require_token));
        guarded = guarded.merge(admin);
    }
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(state.clone(), guard::admit));
    harden(
        probes
            .merge(guarded)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(tower_http::compression::CompressionLayer::new()),
    )
    .with_state(state)
}

/// The outer layers every route gets: a panic in a handler becomes a 500 on a connection that stays
/// open (and is logged and counted), and every request is measured.
fn harden<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(guard::panicked))
        .layer(axum::middleware::from_fn(observe::http_metrics))
}

async fn not_found(uri: Uri, body: axum::body::Body) -> ApiError {
    body::refuse(body, ApiError::NotFound(format!("no route for {}", uri.path()))).await
}

async fn method_not_allowed(method: Method, uri: Uri, body: axum::body::Body) -> ApiError {
    body::refuse(body, ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))).await
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
