//! An unversioned call to a rollout's endpoint: pick the arm (sticky by the configured header, else
//! random; a forcing header is honoured only with the admin token), serve it, tell the rollout how it
//! went, fall back to control when the canary fails (if configured), and mirror a sample to the shadows
//! after the answer is ready. Client mistakes count for neither arm.

use super::AppState;
use super::infer::{decode, respond, serve};
use crate::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_core::rollout::assign;
use switchyard_protocol::{InferRequest, Tensor};
use switchyard_runtime::rollout::{Arm, Fault, RolloutDriver, Target};
use switchyard_runtime::{Priority, Served};

/// Header that forces an arm (`control` or `canary`), honoured only with the admin bearer token.
pub const FORCE_ARM_HEADER: &str = "x-switchyard-force-arm";

type Outcome = (Result<(InferRequest, Vec<Tensor>), ApiError>, Duration);

pub(super) async fn infer(
    app: &AppState,
    driver: Arc<RolloutDriver>,
    endpoint: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let forced = forced_arm(app, &headers)?;
    let key = driver.spec.header.as_deref().and_then(|h| headers.get(h)).map(HeaderValue::as_bytes);
    let arm = forced.unwrap_or_else(|| driver.choose(key, random()));
    let bytes = read(app, &headers, body).await?;
    let counted = forced.is_none();
    if arm == Arm::Canary
        && let Ok(canary) = lookup(app, driver.target(Arm::Canary))
    {
        let (result, took) = with_fault(app, &canary, &headers, &bytes, driver.spec.faults[1], Priority::Canary).await;
        let failed = match &result {
            Ok(_) => false,
            Err(e) => canary_fault(app, &driver, e, &headers, &bytes),
        };
        if counted {
            driver.record(Arm::Canary, failed, took);
        }
        match result {
            Ok((req, outputs)) => {
                return Ok(finish(app, &driver, endpoint, Arm::Canary, &canary, &req, outputs, &bytes, &headers));
            }
            Err(e) if !failed || !driver.spec.serve_control_on_canary_error => return Err(e),
            Err(_) => {} // control answers instead; the canary's failure is already counted
        }
    }
    let control = lookup(app, driver.target(Arm::Control))?;
    let (result, took) = with_fault(app, &control, &headers, &bytes, driver.spec.faults[0], Priority::Control).await;
    if counted && arm == Arm::Control {
        let failed = result.as_ref().is_err_and(|e| e.status().is_server_error());
        driver.record(Arm::Control, failed, took);
    }
    let (req, outputs) = result?;
    Ok(finish(app, &driver, endpoint, Arm::Control, &control, &req, outputs, &bytes, &headers))
}

async fn read(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    super::body::read_body(headers, body, app.max_request_bytes).await
}

fn lookup(app: &AppState, t: &Target) -> Result<Served, ApiError> {
    let version = t.version.map(|v| v.to_string());
    Ok(app.registry.lookup(&t.model, version.as_deref())?)
}

/// Whether a canary error is the canary's fault: any server error, or a refusal of a request that
/// control accepts. A request neither arm accepts is the client's mistake and counts for nobody.
fn canary_fault(app: &AppState, driver: &RolloutDriver, e: &ApiError, headers: &HeaderMap, bytes: &Bytes) -> bool {
    if e.status().is_server_error() {
        return true;
    }
    if matches!(e, ApiError::TooManyRequests(_)) {
        return false;
    }
    lookup(app, driver.target(Arm::Control)).is_ok_and(|control| decode(&control, headers, bytes).is_ok())
}

/// Serves with the arm's injected faults (for rehearsals): added delay, then a share of failures.
async fn with_fault(
    app: &AppState,
    served: &Served,
    headers: &HeaderMap,
    bytes: &Bytes,
    fault: Fault,
    priority: Priority,
) -> Outcome {
    let start = Instant::now();
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    if fault.error_bp > 0 && assign::random_bucket(random()) < fault.error_bp {
        return (Err(ApiError::Internal("injected fault".into())), start.elapsed());
    }
    let (result, _) = serve(served, headers, bytes, app.request_timeout, priority).await;
    (result, start.elapsed())
}

/// Encodes the answer, tags it with the arm and model version, and mirrors a sample to the shadows.
#[allow(clippy::too_many_arguments)]
fn finish(
    app: &AppState,
    driver: &Arc<RolloutDriver>,
    endpoint: &str,
    arm: Arm,
    served: &Served,
    req: &InferRequest,
    outputs: Vec<Tensor>,
    bytes: &Bytes,
    headers: &HeaderMap,
) -> Response {
    let mut resp = respond(endpoint, served.version, req, &outputs);
    let h = resp.headers_mut();
    h.insert("x-switchyard-arm", HeaderValue::from_static(arm.name()));
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", driver.target(arm).model, served.version)) {
        h.insert("x-switchyard-model", v);
    }
    if !driver.spec.shadows.is_empty() {
        mirror(app, driver, Arc::new(outputs), bytes, headers);
    }
    resp
}

fn mirror(app: &AppState, driver: &RolloutDriver, primary: Arc<Vec<Tensor>>, bytes: &Bytes, headers: &HeaderMap) {
    for (i, (target, sample_bp)) in driver.spec.shadows.iter().enumerate() {
        if assign::random_bucket(random()) >= *sample_bp {
            continue;
        }
        let stats = driver.shadow_stats[i].clone();
        let Ok(permit) = driver.shadow_slots.clone().try_acquire_owned() else {
            stats.shed();
            continue;
        };
        let (registry, target, bytes, headers, primary, timeout) = (
            app.registry.clone(),
            target.clone(),
            bytes.clone(),
            headers.clone(),
            primary.clone(),
            app.request_timeout,
        );
        // The client's answer does not wait for this: the copy runs on its own task and the shadow's
        // own workers, and is shed when too many are in flight.
        tokio::spawn(async move {
            let _permit = permit;
            let version = target.version.map(|v| v.to_string());
            let Ok(served) = registry.lookup(&target.model, version.as_deref()) else {
                stats.failed();
                return;
            };
            match serve(&served, &headers, &bytes, timeout, Priority::Shadow).await {
                (Ok((_, outputs)), took) => stats.compare(&primary, &outputs, took),
                (Err(e), _) => {
                    tracing::debug!(shadow = %target, error = %e, "shadow request failed");
                    stats.failed();
                }
            }
        });
    }
}

/// A cheap, well-spread random number per call (mixed further where it is used).
fn random() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| switchyard_runtime::rollout::now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15));
    seed ^ NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
}

/// The arm a request forces, if it says so and carries the admin token.
fn forced_arm(app: &AppState, headers: &HeaderMap) -> Result<Option<Arm>, ApiError> {
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
