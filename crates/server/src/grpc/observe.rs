//! gRPC's request metrics, beside HTTP's: `switchyard_grpc_requests_total{method, code}` and
//! `switchyard_grpc_request_duration_seconds{method}` (each stream message counts as one
//! `ModelStreamInfer` request). Methods and codes are bounded sets; handles are registered on first
//! use so a request touches atomics, not label hashing.

use metrics::{Counter, Histogram, counter, histogram};
use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::Instant;
use tonic::{Code, Status};

type Handles = HashMap<(&'static str, Code), (Counter, Histogram)>;

static HANDLES: LazyLock<RwLock<Handles>> = LazyLock::new(RwLock::default);

fn handles(method: &'static str, code: Code) -> (Counter, Histogram) {
    if let Some(h) = HANDLES.read().unwrap_or_else(PoisonError::into_inner).get(&(method, code)) {
        return h.clone();
    }
    let made = (
        counter!("switchyard_grpc_requests_total", "method" => method, "code" => code_name(code)),
        histogram!("switchyard_grpc_request_duration_seconds", "method" => method),
    );
    HANDLES.write().unwrap_or_else(PoisonError::into_inner).entry((method, code)).or_insert(made).clone()
}

/// Counts and times one request of `method` that started at `start`.
pub(super) fn record<T>(method: &'static str, start: Instant, result: &Result<T, Status>) {
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    let (count, duration) = handles(method, code);
    count.increment(1);
    duration.record(start.elapsed().as_secs_f64());
}

/// The name gRPC gives a code (`OK`, `INVALID_ARGUMENT`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
