//! `POST /v2/models/{endpoint}/feedback`: outcomes reported for served predictions of an endpoint that
//! runs an experiment, one report or a batch. A report names the request by its V2 `id` or its
//! assignment `key` and carries named `values` (a number, true/false, or a label):
//!
//! - one: `{"id": "r-1", "values": {"conversion": 1}}` answers 200 with the arm and version that served
//!   it, or the report's 4xx: 400 for a malformed report or a value the experiment does not read, 404
//!   for an unknown (or evicted) request, 409 for a value already reported, 410 past the retention;
//! - a batch: `{"feedback": [report, ...]}` (at most 10,000) answers 200 with each report's status and
//!   message in order; a batch that is not well-formed is refused whole (400 naming the item).

use super::AppState;
use super::body::read_body;
use crate::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use switchyard_core::experiment::Value as Reported;
use switchyard_runtime::feedback::Report;

/// Reports one batch may carry.
pub(crate) const MAX_BATCH: usize = 10_000;

pub(super) async fn feedback(
    State(app): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let endpoints = app.endpoints();
    let Some(driver) = endpoints.rollout(&endpoint).cloned() else {
        let e = ApiError::NotFound(format!(
            "no rollout endpoint '{endpoint}' (feedback goes to an endpoint with an experiment)"
        ));
        return Err(super::body::refuse(body, e).await);
    };
    let store = endpoints.feedback().cloned().ok_or_else(|| ApiError::Unavailable("no feedback store".into()))?;
    let bytes = read_body(&headers, body, &app.limits).await?;
    let (reports, batch) = parse_body(&bytes).inspect_err(|_| store.count_invalid())?;
    if !batch {
        let joined = store.report(&driver, &reports[0])?;
        return Ok(Json(json!({ "status": 200, "joined": joined })));
    }
    let mut joined = 0;
    let results: Vec<Value> = reports
        .iter()
        .map(|r| match store.report(&driver, r) {
            Ok(j) => {
                joined += 1;
                json!({ "status": 200, "joined": j })
            }
            Err(e) => {
                let e = ApiError::from(e);
                json!({ "status": e.status().as_u16(), "error": e.to_string() })
            }
        })
        .collect();
    Ok(Json(json!({ "joined": joined, "refused": reports.len() - joined, "results": results })))
}

/// The reports a body holds, and whether it was a batch; a 400 naming the field when malformed.
fn parse_body(bytes: &[u8]) -> Result<(Vec<Report>, bool), ApiError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("body: not JSON ({e})")))?;
    let Some(items) = doc.get("feedback") else { return Ok((vec![parse(&doc, "")?], false)) };
    let Value::Array(items) = items else {
        return Err(ApiError::BadRequest("feedback: must be an array of reports".into()));
    };
    if doc.as_object().is_some_and(|o| o.len() > 1) {
        return Err(ApiError::BadRequest("body: a batch has only 'feedback'".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!("feedback: {} reports, at most {MAX_BATCH} per batch", items.len())));
    }
    let reports = items.iter().enumerate().map(|(i, item)| parse(item, &format!("feedback[{i}].")));
    Ok((reports.collect::<Result<Vec<_>, _>>()?, true))
}

/// One report, or a 400 naming the field (`at` prefixes it inside a batch).
fn parse(v: &Value, at: &str) -> Result<Report, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("{at}{m}"));
    let Some(o) = v.as_object() else { return Err(bad("a report must be a JSON object".into())) };
    if let Some(k) = o.keys().find(|k| !["id", "key", "values"].contains(&k.as_str())) {
        return Err(bad(format!("{k}: unknown field (a report has id or key, and values)")));
    }
    let text = |name: &str| match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{name}: must be a non-empty string"))),
    };
    let (id, key) = (text("id")?, text("key")?);
    if id.is_some() && key.is_some() {
        return Err(bad("give either id or key, not both".into()));
    }
    let values = match o.get("values") {
        Some(Value::Object(m)) => values(m, at)?,
        Some(_) => return Err(bad("values: must be an object of named values".into())),
        None => return Err(bad("values: missing".into())),
    };
    Ok(Report { id, key, values })
}

fn values(m: &Map<String, Value>, at: &str) -> Result<Vec<(String, Reported)>, ApiError> {
    m.iter()
        .map(|(name, v)| {
            let value = match v {
                Value::Bool(b) => Reported::Number(f64::from(u8::from(*b))),
                Value::Number(n) => Reported::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => Reported::Text(s.clone()),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "{at}values.{name}: must be a number, true/false or a label string"
                    )));
                }
            };
            Ok((name.clone(), value))
        })
        .collect()
}
