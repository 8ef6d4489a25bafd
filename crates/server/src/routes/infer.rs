//! `POST /v2/models/{m}[/versions/{v}]/infer`: resolve the version, bound and read the body, decode it
//! against the model's signature, queue it to the model's workers, encode the reply. The version is
//! resolved before the body is read, and an oversized body is refused from its `Content-Length`. An
//! unversioned call to a rollout's endpoint goes through the rollout (see `rollout.rs`).

use super::body::read_body;
use super::models::model_path;
use super::{AppState, ModelPath};
use crate::ApiError;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use std::time::Instant;
use switchyard_protocol::{HEADER_CONTENT_LENGTH, InferRequest, Tensor, decode_request, encode_response};
use switchyard_runtime::{Outcome, Priority, Served, VersionMetrics};

pub(super) async fn infer(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = model_path(path)?;
    if p.version.is_none()
        && let Some(driver) = app.rollouts.get(&p.model)
    {
        return super::rollout::infer(&app, driver.clone(), &p.model, headers, body).await;
    }
    let served = app.registry.lookup(&p.model, p.version.as_deref())?;
    let bytes = read_body(&headers, body, app.max_request_bytes).await?;
    let (result, _) = serve(&served, &headers, &bytes, app.request_timeout, Priority::Control).await;
    let (req, outputs) = result?;
    Ok(respond(&p.model, served.version, &req, &outputs))
}

/// Decodes, runs and accounts one request on one model version. Returns the time it took.
pub(super) async fn serve(
    served: &Served,
    headers: &HeaderMap,
    bytes: &Bytes,
    default_timeout: std::time::Duration,
    priority: Priority,
) -> (Result<(InferRequest, Vec<Tensor>), ApiError>, std::time::Duration) {
    let start = Instant::now();
    let metrics = &served.metrics;
    let _in_flight = InFlight::new(metrics);
    let result = async {
        let mut req = decode(served, headers, bytes)?;
        let names = req.outputs.iter().map(|o| o.name.clone()).collect();
        let inputs = std::mem::take(&mut req.inputs);
        // The V2 `timeout` parameter (microseconds, as Triton reads it) wins over the server default.
        let timeout = req.timeout_us.map_or(default_timeout, std::time::Duration::from_micros);
        let outputs = served.pool.infer(inputs, names, timeout, priority).await?;
        Ok((req, outputs))
    }
    .await;
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(ApiError::TooManyRequests(_) | ApiError::Timeout(_)) => Outcome::Rejected,
        Err(e) if e.status().is_client_error() => Outcome::ClientError,
        Err(_) => Outcome::ServerError,
    };
    let took = start.elapsed();
    metrics.record_request(outcome, took);
    (result, took)
}

/// Decodes a body against a model version's signature and batch limit.
pub(super) fn decode(served: &Served, headers: &HeaderMap, bytes: &Bytes) -> Result<InferRequest, ApiError> {
    let header_len =
        match headers.get(HEADER_CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).ok_or_else(|| {
                ApiError::BadRequest(format!("{HEADER_CONTENT_LENGTH} must be a byte count, got {v:?}"))
            })?),
        };
    let sig = served.pool.signature();
    let req = decode_request(bytes, header_len, &sig.inputs, &sig.outputs)?;
    let max_batch = served.pool.max_batch_size();
    if max_batch > 0
        && let Some(t) = req.inputs.iter().find(|t| t.shape.first().is_some_and(|&b| b > max_batch))
    {
        return Err(ApiError::BadRequest(format!(
            "input '{}': batch size {} is over the model's max_batch_size {max_batch}",
            t.name, t.shape[0]
        )));
    }
    Ok(req)
}

/// Encodes the reply: JSON, or JSON followed by binary outputs.
pub(super) fn respond(model: &str, version: u64, req: &InferRequest, outputs: &[Tensor]) -> Response {
    let enc = encode_response(model, &version.to_string(), req.id.as_deref(), outputs, &req.outputs);
    let mut resp = Response::new(Body::from(enc.body));
    let h = resp.headers_mut();
    match enc.json_len {
        None => h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        Some(n) => {
            h.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        }
    };
    resp
}

/// Counts a request in flight for as long as it lives, including when the client goes away.
struct InFlight<'a>(&'a VersionMetrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a VersionMetrics) -> Self {
        m.in_flight.increment(1.0);
        Self(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}
