//! `POST /v2/models/{m}[/versions/{v}]/infer` over HTTP: check the model or endpoint exists (before the
//! body is read, so an oversized body for a missing model is refused cheaply), bound and read the body,
//! hand it to the serving core as a decodable request, and encode the reply. What the request means
//! (which version or arm serves it, what counts for a rollout) is decided in the serving core.

use super::body::{read_body, refuse};
use super::models::model_path;
use super::{AppState, ModelPath};
use crate::ApiError;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;
use switchyard_protocol::{DecodeLimits, decode_request_within, encode_response};
use switchyard_protocol::{HEADER_CONTENT_LENGTH, InferRequest, ProtocolError, TensorSpec};
use switchyard_runtime::rollout::Arm;
use switchyard_runtime::{Call, Decode, Metadata, Reply};

/// Header on an answer that the model's fallback gave (`model/version`), because the model could not.
pub const FALLBACK_HEADER: &str = "x-switchyard-fallback";

/// Header that forces an arm (`control` or `canary`), honoured only with the admin bearer token.
pub const FORCE_ARM_HEADER: &str = "x-switchyard-force-arm";

pub(super) async fn infer(
    State(app): State<AppState>,
    path: Result<Path<ModelPath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // One snapshot for the whole request: a config reload mid-request does not change its endpoint.
    let endpoints = app.endpoints();
    let early = || -> Result<_, ApiError> {
        let p = model_path(path)?;
        if p.version.is_some() || endpoints.rollout(&p.model).is_none() {
            endpoints.lookup(&p.model, p.version.as_deref())?;
        }
        Ok((p, forced_arm(&app, &headers)?, inference_header_length(&headers)?))
    };
    let (p, forced, header_len) = match early() {
        Ok(checked) => checked,
        Err(e) => return Err(refuse(body, e).await),
    };
    let bytes = read_body(&headers, body, &app.limits).await?;
    let call = Call {
        model: &p.model,
        version: p.version.as_deref(),
        request: Arc::new(HttpRequest { bytes, header_len, limits: app.limits.decode }),
        metadata: &Headers(&headers),
        forced,
    };
    let reply = endpoints.infer(call).await?;
    Ok(respond(reply))
}

/// A V2 body (JSON, or JSON followed by binary tensor data) as the serving core decodes it.
struct HttpRequest {
    bytes: Bytes,
    header_len: Option<usize>,
    limits: DecodeLimits,
}

impl Decode for HttpRequest {
    fn decode(&self, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<InferRequest, ProtocolError> {
        decode_request_within(&self.bytes, self.header_len, inputs, outputs, &self.limits)
    }

    fn protocol(&self) -> switchyard_runtime::Protocol {
        switchyard_runtime::Protocol::Http
    }
}

/// HTTP headers as request metadata (names are matched case-insensitively).
struct Headers<'a>(&'a HeaderMap);

impl Metadata for Headers<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
}

fn inference_header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(v) = headers.get(HEADER_CONTENT_LENGTH) else { return Ok(None) };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("{HEADER_CONTENT_LENGTH} must be a byte count, got {v:?}")))
}

/// Encodes the reply: JSON, or JSON followed by binary outputs; tagged with the arm through a rollout.
fn respond(reply: Reply) -> Response {
    let Reply { request, outputs, name, version, arm, served_by, fallback } = reply;
    let enc = encode_response(&name, &version.to_string(), request.id.as_deref(), &outputs, &request.outputs);
    let mut resp = Response::new(Body::from(enc.body));
    let h = resp.headers_mut();
    match enc.json_len {
        None => h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        Some(n) => {
            h.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        }
    };
    if let Some(arm) = arm {
        h.insert("x-switchyard-arm", HeaderValue::from_static(arm.name()));
    }
    if let Some(v) = served_by.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert("x-switchyard-model", v);
    }
    if let Some(v) = fallback.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert(FALLBACK_HEADER, v);
    }
    resp
}

/// The arm a request forces, if it says so and carries the admin token.
pub(crate) fn forced_arm(app: &AppState, headers: &HeaderMap) -> Result<Option<Arm>, ApiError> {
    let Some(v) = headers.get(FORCE_ARM_HEADER) else { return Ok(None) };
    if !app.admin.authorized(headers) {
        return Err(ApiError::Unauthorized(format!("{FORCE_ARM_HEADER} needs the admin bearer token")));
    }
    match v.as_bytes() {
        b"control" => Ok(Some(Arm::Control)),
        b"canary" => Ok(Some(Arm::Canary)),
        _ => Err(ApiError::BadRequest(format!("{FORCE_ARM_HEADER} must be 'control' or 'canary'"))),
    }
}
