//! What stands between a request and its handler: the cap on requests in progress (503 with
//! `Retry-After` past it, so memory stays bounded by the cap times the body limit), the optional data
//! plane token, and the answer for a handler that panicked.

use super::AppState;
use crate::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::any::Any;

/// Admits a request while fewer than `max_concurrent_requests` are in progress.
pub(super) async fn admit(State(app): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let _permit = match admission(&app) {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!("switchyard_http_requests_shed_total").increment(1);
            return Err(super::body::refuse(req.into_body(), e).await);
        }
    };
    Ok(next.run(req).await)
}

/// A place among the requests in progress (`--max-concurrent-requests`, shared by every front end).
pub(crate) fn admission(app: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    app.in_flight.clone().try_acquire_owned().map_err(|_| {
        ApiError::Busy(format!(
            "the server is at its limit of {} requests in progress; retry later",
            app.limits.max_concurrent_requests
        ))
    })
}

/// With `SWITCHYARD_API_TOKEN` set, the data plane needs it (or the admin token) as a bearer token.
pub(super) async fn require_api_token(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(e) = check_api_token(&app, req.headers()) {
        return Err(super::body::refuse(req.into_body(), e).await);
    }
    Ok(next.run(req).await)
}

/// The data-plane token check, for any front end: the token (or the admin token) when one is set.
pub(crate) fn check_api_token(app: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let given = super::admin::bearer(headers);
    let ok = app.api_token.as_deref().is_none_or(|t| given.is_some_and(|g| super::admin::same_secret(g, t)))
        || app.admin.token.is_some() && app.admin.authorized(headers);
    if ok { Ok(()) } else { Err(ApiError::Unauthorized("missing or wrong bearer token (SWITCHYARD_API_TOKEN)".into())) }
}

/// A panic in a handler: a 500 naming nothing internal, logged with its message, counted.
pub(super) fn panicked(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    tracing::error!(panic = %message, "a request handler panicked");
    metrics::counter!("switchyard_http_panics_total").increment(1);
    ApiError::Internal("internal error while handling the request (logged)".into()).into_response()
}
