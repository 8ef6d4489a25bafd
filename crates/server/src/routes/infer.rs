//! `POST /v2/models/{m}[/versions/{v}]/infer`: resolve the version, bound and read the body, decode it
//! against the model's signature, queue it to the model's workers, encode the reply. The version is
//! resolved before the body is read, and an oversized body is refused from its `Content-Length`.

use super::body::read_body;
use super::models::model_path;
use super::{AppState, ModelPath};
use crate::ApiError;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use switchyard_protocol::{HEADER_CONTENT_LENGTH, decode_request, encode_response};
use switchyard_runtime::{Outcome, VersionMetrics};

pub(super) async fn infer(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = model_path(path)?;
    let served = app.registry.lookup(&p.model, p.version.as_deref())?;
    let start = Instant::now();
    let metrics = &served.metrics;
    let _in_flight = InFlight::new(metrics);
    let result = run(&app, &p.model, &served, headers, body).await;
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(ApiError::TooManyRequests(_)) => Outcome::Rejected,
        Err(e) if e.status().is_client_error() => Outcome::ClientError,
        Err(_) => Outcome::ServerError,
    };
    metrics.record_request(outcome, start.elapsed());
    result
}

async fn run(
    app: &AppState,
    model: &str,
    served: &switchyard_runtime::Served,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, app.max_request_bytes).await?;
    let header_len =
        match headers.get(HEADER_CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).ok_or_else(|| {
                ApiError::BadRequest(format!("{HEADER_CONTENT_LENGTH} must be a byte count, got {v:?}"))
            })?),
        };
    let sig = served.pool.signature();
    let req = decode_request(&bytes, header_len, &sig.inputs, &sig.outputs)?;
    drop(bytes);
    let max_batch = served.pool.max_batch_size();
    if max_batch > 0
        && let Some(t) = req.inputs.iter().find(|t| t.shape.first().is_some_and(|&b| b > max_batch))
    {
        return Err(ApiError::BadRequest(format!(
            "input '{}': batch size {} is over the model's max_batch_size {max_batch}",
            t.name, t.shape[0]
        )));
    }
    let names = req.outputs.iter().map(|o| o.name.clone()).collect();
    let outputs = served.pool.infer(req.inputs, names).await?;
    let version = served.version.to_string();
    let enc = encode_response(model, &version, req.id.as_deref(), &outputs, &req.outputs);
    let mut resp = Response::new(Body::from(enc.body));
    let h = resp.headers_mut();
    match enc.json_len {
        None => h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        Some(n) => {
            h.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        }
    };
    Ok(resp.into_response())
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
