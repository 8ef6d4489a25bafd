//! Logs and metrics: the tracing subscriber (text or JSON lines on stderr), the Prometheus recorder with
//! bucket boundaries for every `_seconds` histogram, and HTTP metrics per matched route (a bounded set).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Instant;

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber; `filter` uses `RUST_LOG` syntax.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Installs the global metrics recorder and returns the handle `/metrics` renders.
pub fn install_metrics() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    metrics::describe_counter!(
        "switchyard_requests_total",
        "Inference requests by model, version, outcome and protocol (http, grpc)"
    );
    metrics::describe_histogram!(
        "switchyard_request_duration_seconds",
        metrics::Unit::Seconds,
        "Inference request time, end to end in the server"
    );
    metrics::describe_histogram!(
        "switchyard_queue_duration_seconds",
        metrics::Unit::Seconds,
        "Time a request waited for a model instance"
    );
    metrics::describe_histogram!(
        "switchyard_compute_duration_seconds",
        metrics::Unit::Seconds,
        "Time the model computed"
    );
    metrics::describe_gauge!("switchyard_requests_in_flight", "Inference requests being served");
    metrics::describe_gauge!("switchyard_model_ready", "1 when a model version is loaded and warmed up, else 0");
    metrics::describe_counter!("switchyard_model_load_failures_total", "Model or model version load failures");
    metrics::describe_counter!("switchyard_http_requests_total", "HTTP requests by route, method and status");
    metrics::describe_histogram!(
        "switchyard_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request time by route"
    );
    metrics::describe_counter!(
        "switchyard_rollout_requests_total",
        "Requests a rollout endpoint served, by arm (control or canary) and outcome (success or error)"
    );
    metrics::describe_histogram!(
        "switchyard_rollout_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time an arm of a rollout endpoint took for a successful request"
    );
    metrics::describe_gauge!(
        "switchyard_rollout_canary_weight_ratio",
        "Share of a rollout endpoint's traffic the canary gets, 0 to 1"
    );
    metrics::describe_gauge!(
        "switchyard_rollout_step",
        "Rollout phase: the current step (0 first; 0 also for a fixed split), -1 promoted, -2 rolled back"
    );
    metrics::describe_counter!("switchyard_rollout_rollbacks_total", "Canary rollbacks by endpoint and reason");
    metrics::describe_counter!("switchyard_rollout_promotions_total", "Canary promotions by endpoint and reason");
    metrics::describe_gauge!(
        "switchyard_rollout_error_rate_e_value",
        "E-value of the canary's error-rate regression test; rolled back at the threshold"
    );
    metrics::describe_gauge!(
        "switchyard_rollout_latency_e_value",
        "E-value of the canary's latency regression test; rolled back at the threshold"
    );
    metrics::describe_gauge!(
        "switchyard_rollout_e_value_threshold",
        "E-value at which a regression test rolls the canary back"
    );
    metrics::describe_gauge!(
        "switchyard_rollout_sample_requests",
        "Requests per arm the rollout's regression tests have judged"
    );
    metrics::describe_counter!(
        "switchyard_shadow_requests_total",
        "Shadow copies a shadow model computed, by outcome (success or error)"
    );
    metrics::describe_counter!(
        "switchyard_shadow_shed_total",
        "Shadow copies dropped because the rollout's shadow slots were full"
    );
    metrics::describe_histogram!(
        "switchyard_shadow_duration_seconds",
        metrics::Unit::Seconds,
        "Time a shadow model took for a copy"
    );
    metrics::describe_gauge!(
        "switchyard_shadow_exact_agreement_ratio",
        "Share of shadow answers identical to the answer the client got"
    );
    metrics::describe_gauge!(
        "switchyard_shadow_argmax_agreement_ratio",
        "Share of output rows whose argmax the shadow and the client's answer agree on"
    );
    metrics::describe_gauge!(
        "switchyard_shadow_cosine_similarity",
        "Mean cosine similarity of the shadow's outputs and the client's answer"
    );
    metrics::describe_gauge!(
        "switchyard_shadow_mean_abs_diff",
        "Mean absolute difference between the shadow's outputs and the client's answer"
    );
    metrics::describe_gauge!(
        "switchyard_shadow_max_abs_diff",
        "Largest absolute difference seen between the shadow's outputs and the client's answer"
    );
    metrics::describe_counter!(
        "switchyard_config_reloads_total",
        "Config file reloads by result (success or failure); a failed reload keeps the running config"
    );
    metrics::describe_gauge!(
        "switchyard_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load"
    );
    describe_protection();
    describe_experiments();
    Ok(handle)
}

/// HELP text for the metrics of experiments, feedback and drift.
fn describe_experiments() {
    use metrics::{describe_counter as counter, describe_gauge as gauge};
    gauge!("switchyard_experiment_verdict", "An experiment's verdict: 0 keep running, 1 ship, -1 kill");
    counter!("switchyard_experiment_outcomes_total", "Outcomes an experiment recorded, by arm and metric");
    gauge!("switchyard_experiment_relative_lift_ratio", "A metric's mean on the canary over control's, minus 1");
    gauge!(
        "switchyard_experiment_difference_low",
        "Lower bound of the anytime-valid confidence sequence of canary minus control, by metric"
    );
    gauge!(
        "switchyard_experiment_difference_high",
        "Upper bound of the anytime-valid confidence sequence of canary minus control, by metric"
    );
    gauge!("switchyard_feedback_stored_requests", "Served requests the feedback store holds for outcomes to join");
    counter!("switchyard_feedback_requests_evicted_total", "Served requests evicted from the full feedback store");
    counter!(
        "switchyard_feedback_reports_total",
        "Feedback reports by result: joined, unknown, expired, duplicate, invalid"
    );
    counter!("switchyard_feedback_write_errors_total", "Failed writes of the feedback store's file");
    gauge!("switchyard_drift_psi", "Population stability index of a series' window against its reference");
    gauge!("switchyard_drift_kl_nats", "KL divergence of a series' window from its reference, in nats");
    gauge!("switchyard_drift_js_nats", "Jensen-Shannon divergence of a series' window and its reference, in nats");
    gauge!("switchyard_drift_level", "A series' drift level by its PSI: 0 ok, 1 warning, 2 critical");
    counter!("switchyard_drift_samples_dropped_total", "Request samples the drift thread was too busy to take");
}

/// HELP text for the metrics of limits, faulty-model containment and rate limits.
fn describe_protection() {
    use metrics::{describe_counter as counter, describe_gauge as gauge};
    gauge!("switchyard_http_connections_open", "Open client connections");
    counter!("switchyard_http_connections_refused_total", "Connections refused over --max-connections (503)");
    counter!("switchyard_http_head_timeouts_total", "Request heads not received in time (408)");
    counter!("switchyard_http_body_timeouts_total", "Request bodies not received in time (408)");
    counter!("switchyard_http_requests_shed_total", "Requests refused over --max-concurrent-requests (503)");
    counter!("switchyard_http_panics_total", "Request handlers that panicked (answered 500)");
    counter!("switchyard_rate_limited_total", "Requests refused by a rate limit (429), by the limit's endpoint");
    gauge!("switchyard_circuit_state", "Circuit breaker of a model version: 0 closed, 1 half-open, 2 open");
    counter!("switchyard_circuit_opened_total", "Circuit breaker openings by model version and reason");
    counter!("switchyard_fallback_total", "Requests answered by the model's fallback, by reason");
    counter!("switchyard_fallback_failures_total", "Fallbacks that could not answer (the original error was returned)");
    counter!("switchyard_worker_replacements_total", "Model workers replaced, by reason (panic, hung)");
    counter!("switchyard_grpc_requests_total", "gRPC requests by method and status code (a stream message is one)");
    metrics::describe_histogram!(
        "switchyard_grpc_request_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC request time in the server, by method"
    );
    counter!("switchyard_grpc_requests_shed_total", "gRPC inferences refused over --max-concurrent-requests");
    gauge!("switchyard_fleet_leader", "1 while this replica leads its fleet (judges the pooled evidence), else 0");
    gauge!("switchyard_fleet_etcd_up", "1 while this replica reaches the fleet's etcd cluster, else 0 (cut off)");
    gauge!(
        "switchyard_fleet_decision_revision",
        "etcd revision of the last fleet decision this replica applied, by rollout endpoint"
    );
}

/// Middleware: counts and times every request by its route template (never the raw path).
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let handles = route_handles(req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()));
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let start = Instant::now();
    // While a client waits for this request, background work (shadow copies) does not start.
    let _foreground = switchyard_runtime::Foreground::enter();
    let resp = next.run(req).await;
    handles.duration.record(start.elapsed().as_secs_f64());
    handles.requests(method, resp.status().as_u16()).increment(1);
    resp
}

/// One route's Prometheus handles, registered on first use, so that a request takes a read lock and
/// touches atomics instead of building and hashing label sets (routes, methods and statuses are all
/// bounded sets).
struct RouteHandles {
    route: String,
    duration: Histogram,
    requests: RwLock<HashMap<(&'static str, u16), Counter>>,
}

static ROUTES: LazyLock<RwLock<HashMap<String, Arc<RouteHandles>>>> = LazyLock::new(RwLock::default);

fn route_handles(route: &str) -> Arc<RouteHandles> {
    if let Some(h) = ROUTES.read().unwrap_or_else(PoisonError::into_inner).get(route) {
        return Arc::clone(h);
    }
    let mut routes = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
    let h = routes.entry(route.to_owned()).or_insert_with(|| {
        Arc::new(RouteHandles {
            route: route.to_owned(),
            duration: metrics::histogram!("switchyard_http_request_duration_seconds", "route" => route.to_owned()),
            requests: RwLock::default(),
        })
    });
    Arc::clone(h)
}

impl RouteHandles {
    fn requests(&self, method: &'static str, status: u16) -> Counter {
        let key = (method, status);
        if let Some(c) = self.requests.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return c.clone();
        }
        let mut map = self.requests.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| {
                metrics::counter!("switchyard_http_requests_total", "route" => self.route.clone(), "method" => method,
                    "status" => status.to_string())
            })
            .clone()
    }
}
