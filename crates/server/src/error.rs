//! The one place where failures become HTTP status codes and gRPC codes. Every HTTP error answers
//! `{"error": "..."}` and every gRPC error carries the same message; a client's mistake is a 4xx (an
//! INVALID_ARGUMENT, NOT_FOUND, ...), never a 5xx (INTERNAL).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchyard_backend::BackendError;
use switchyard_protocol::ProtocolError;
use switchyard_runtime::{InferError, LookupError, ServeError};

/// A failed request, by what the client should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// No longer available (feedback past its retention).
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    /// Shed for load (the cap on requests in progress): worth retrying shortly.
    #[error("{0}")]
    Busy(String),
    /// Refused at once by an open circuit breaker; worth retrying after this many seconds.
    #[error("{0}")]
    CircuitOpen(String, u64),
    /// Over a rate limit; worth retrying after this many seconds.
    #[error("{0}")]
    RateLimited(String, u64),
    /// The client was too slow sending the request.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests(_) | Self::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Busy(_) | Self::CircuitOpen(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A result whose error is an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The gRPC code KServe's and Triton's clients expect for it.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::BadRequest(_) | Self::UnsupportedMediaType(_) => Code::InvalidArgument,
            Self::Unauthorized(_) => Code::Unauthenticated,
            Self::NotFound(_) => Code::NotFound,
            Self::Conflict(_) | Self::Gone(_) => Code::FailedPrecondition,
            Self::MethodNotAllowed(_) => Code::Unimplemented,
            Self::PayloadTooLarge(_) | Self::TooManyRequests(_) | Self::RateLimited(..) => Code::ResourceExhausted,
            Self::Unavailable(_) | Self::Busy(_) | Self::CircuitOpen(..) => Code::Unavailable,
            Self::RequestTimeout(_) | Self::Timeout(_) => Code::DeadlineExceeded,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

impl From<switchyard_runtime::feedback::ReportError> for ApiError {
    fn from(e: switchyard_runtime::feedback::ReportError) -> Self {
        use switchyard_runtime::feedback::{JoinError, ReportError};
        match &e {
            ReportError::NoExperiment(_) | ReportError::Join(JoinError::Unknown(_)) => Self::NotFound(e.to_string()),
            ReportError::Join(JoinError::Expired { .. }) => Self::Gone(e.to_string()),
            ReportError::Join(JoinError::Duplicate { .. }) => Self::Conflict(e.to_string()),
            _ => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::UnknownModel(_) | LookupError::UnknownVersion { .. } => Self::NotFound(e.to_string()),
            LookupError::NotReady { .. } => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::QueueFull(_) => Self::TooManyRequests(e.to_string()),
            InferError::Stopped(_) => Self::Unavailable(e.to_string()),
            InferError::TimedOut(..) => Self::Timeout(e.to_string()),
            InferError::Backend(BackendError::InvalidInput(m)) => Self::BadRequest(m),
            InferError::Backend(b) => Self::Internal(format!("inference failed: {b}")),
        }
    }
}

impl From<ServeError> for ApiError {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Lookup(l) => l.into(),
            ServeError::Protocol(_) | ServeError::InvalidInput(_) => Self::BadRequest(e.to_string()),
            ServeError::QueueFull(_) => Self::TooManyRequests(e.to_string()),
            ServeError::Stopped(_) => Self::Unavailable(e.to_string()),
            ServeError::TimedOut { .. } => Self::Timeout(e.to_string()),
            ServeError::CircuitOpen { retry_after, .. } => {
                Self::CircuitOpen(e.to_string(), retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            ServeError::RateLimited { retry_after, .. } => {
                Self::RateLimited(e.to_string(), retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            ServeError::Failed(_) | ServeError::Injected(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<crate::live_repository::RepositoryError> for ApiError {
    fn from(e: crate::live_repository::RepositoryError) -> Self {
        use crate::live_repository::RepositoryError as R;
        match e {
            R::UnknownModel(_) => Self::NotFound(e.to_string()),
            R::InUse(_) => Self::Conflict(e.to_string()),
            R::Invalid(_) => Self::BadRequest(e.to_string()),
            R::LoadFailed(m) => Self::BadRequest(format!("failed to load: {m}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut resp =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        match &self {
            Self::CircuitOpen(_, secs) | Self::RateLimited(_, secs) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Self::TooManyRequests(_) | Self::Busy(_) => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: this connection cannot carry another request.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_4xx_and_model_failures_5xx() {
        let bad = ApiError::from(InferError::Backend(BackendError::InvalidInput("x".into())));
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let broken = ApiError::from(InferError::Backend(BackendError::Inference("x".into())));
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ApiError::from(LookupError::UnknownModel("m".into())).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::from(InferError::QueueFull("m".into())).into_response().headers()[header::RETRY_AFTER],
            "1"
        );
    }
}
