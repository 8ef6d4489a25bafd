//! Metric handles for one model version, registered once at load so the hot path only touches atomics.
//! Names carry the `switchyard_` prefix and their unit; labels are the model and version, a bounded set
//! fixed by the repository.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

#[derive(Clone, Debug)]
pub struct VersionMetrics {
    pub queue: Histogram,
    pub compute: Histogram,
    pub request: Histogram,
    pub in_flight: Gauge,
    pub ok: Counter,
    pub client_error: Counter,
    pub server_error: Counter,
    pub rejected: Counter,
    pub cancelled: Counter,
}

impl VersionMetrics {
    pub fn new(model: &str, version: u64) -> Self {
        let (m, v) = (model.to_owned(), version.to_string());
        let outcome = |o: &'static str| counter!("switchyard_requests_total", "model" => m.clone(), "version" => v.clone(), "outcome" => o);
        Self {
            queue: histogram!("switchyard_queue_duration_seconds", "model" => m.clone(), "version" => v.clone()),
            compute: histogram!("switchyard_compute_duration_seconds", "model" => m.clone(), "version" => v.clone()),
            request: histogram!("switchyard_request_duration_seconds", "model" => m.clone(), "version" => v.clone()),
            in_flight: gauge!("switchyard_requests_in_flight", "model" => m.clone(), "version" => v.clone()),
            ok: outcome("success"),
            client_error: outcome("client_error"),
            server_error: outcome("server_error"),
            rejected: outcome("rejected"),
            cancelled: outcome("cancelled"),
        }
    }
}
