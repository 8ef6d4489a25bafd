//! What one model version records about its requests: Prometheus handles registered once at load (so the
//! hot path only touches atomics) and the running totals behind the V2 statistics extension. Metric names
//! carry the `switchyard_` prefix and their unit; labels are the model and version, a bounded set fixed by
//! the repository.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a request ended, as counted in `switchyard_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ClientError,
    ServerError,
    /// Refused because the queue was full.
    Rejected,
}

/// The front end a request came through: the `protocol` label of the request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http = 0,
    Grpc = 1,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// One protocol's request handles for a model version.
#[derive(Clone, Debug)]
struct ByProtocol {
    request: Histogram,
    ok: Counter,
    client_error: Counter,
    server_error: Counter,
    rejected: Counter,
    cancelled: Counter,
}

#[derive(Clone, Debug)]
pub struct VersionMetrics {
    queue: Histogram,
    compute: Histogram,
    pub in_flight: Gauge,
    /// Indexed by [`Protocol`].
    requests: [ByProtocol; 2],
    stats: Arc<Totals>,
}

/// Running totals for the statistics extension (counts and nanoseconds).
#[derive(Debug, Default)]
struct Totals {
    success: (AtomicU64, AtomicU64),
    fail: (AtomicU64, AtomicU64),
    queue: (AtomicU64, AtomicU64),
    compute: (AtomicU64, AtomicU64),
    inferences: AtomicU64,
    last_inference_ms: AtomicU64,
}

/// A copy of the totals at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub success: (u64, u64),
    pub fail: (u64, u64),
    pub queue: (u64, u64),
    pub compute: (u64, u64),
    /// Inferences (batch rows) computed.
    pub inference_count: u64,
    /// Model executions.
    pub execution_count: u64,
    /// Milliseconds since the Unix epoch of the last execution; 0 if none.
    pub last_inference_ms: u64,
}

fn add(pair: &(AtomicU64, AtomicU64), d: Duration) {
    pair.0.fetch_add(1, Relaxed);
    pair.1.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
}

fn read(pair: &(AtomicU64, AtomicU64)) -> (u64, u64) {
    (pair.0.load(Relaxed), pair.1.load(Relaxed))
}

impl VersionMetrics {
    pub fn new(model: &str, version: u64) -> Self {
        let (m, v) = (model.to_owned(), version.to_string());
        let by = |p: Protocol| {
            let outcome = |o: &'static str| counter!("switchyard_requests_total", "model" => m.clone(), "version" => v.clone(), "outcome" => o, "protocol" => p.label());
            ByProtocol {
                request: histogram!("switchyard_request_duration_seconds", "model" => m.clone(), "version" => v.clone(), "protocol" => p.label()),
                ok: outcome("success"),
                client_error: outcome("client_error"),
                server_error: outcome("server_error"),
                rejected: outcome("rejected"),
                cancelled: outcome("cancelled"),
            }
        };
        Self {
            queue: histogram!("switchyard_queue_duration_seconds", "model" => m.clone(), "version" => v.clone()),
            compute: histogram!("switchyard_compute_duration_seconds", "model" => m.clone(), "version" => v.clone()),
            in_flight: gauge!("switchyard_requests_in_flight", "model" => m.clone(), "version" => v.clone()),
            requests: [by(Protocol::Http), by(Protocol::Grpc)],
            stats: Arc::default(),
        }
    }

    /// A request finished, end to end in the server.
    pub fn record_request(&self, outcome: Outcome, took: Duration, protocol: Protocol) {
        let h = &self.requests[protocol as usize];
        h.request.record(took.as_secs_f64());
        match outcome {
            Outcome::Success => {
                h.ok.increment(1);
                add(&self.stats.success, took);
            }
            Outcome::ClientError | Outcome::ServerError | Outcome::Rejected => {
                let counter = match outcome {
                    Outcome::ClientError => &h.client_error,
                    Outcome::ServerError => &h.server_error,
                    _ => &h.rejected,
                };
                counter.increment(1);
                add(&self.stats.fail, took);
            }
        }
    }

    /// A request waited this long for an instance.
    pub(crate) fn record_queue(&self, queued: Duration) {
        self.queue.record(queued.as_secs_f64());
        add(&self.stats.queue, queued);
    }

    /// The model ran once on `rows` inferences (one request, or several batched).
    pub(crate) fn record_compute(&self, computed: Duration, rows: u64) {
        self.compute.record(computed.as_secs_f64());
        add(&self.stats.compute, computed);
        self.stats.inferences.fetch_add(rows, Relaxed);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.stats.last_inference_ms.store(now_ms, Relaxed);
    }

    /// A job was dropped because its caller had gone away.
    pub(crate) fn record_cancelled(&self, protocol: Protocol) {
        self.requests[protocol as usize].cancelled.increment(1);
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            success: read(&s.success),
            fail: read(&s.fail),
            queue: read(&s.queue),
            compute: read(&s.compute),
            inference_count: s.inferences.load(Relaxed),
            execution_count: s.compute.0.load(Relaxed),
            last_inference_ms: s.last_inference_ms.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up() {
        let m = VersionMetrics::new("m", 1);
        m.record_request(Outcome::Success, Duration::from_nanos(10), Protocol::Http);
        m.record_request(Outcome::ClientError, Duration::from_nanos(5), Protocol::Grpc);
        m.record_request(Outcome::Rejected, Duration::from_nanos(1), Protocol::Http);
        m.record_queue(Duration::from_nanos(3));
        m.record_compute(Duration::from_nanos(7), 4);
        let s = m.stats();
        assert_eq!((s.success, s.fail, s.queue, s.compute), ((1, 10), (2, 6), (1, 3), (1, 7)));
        assert_eq!((s.inference_count, s.execution_count), (4, 1));
        assert!(s.last_inference_ms > 0);
    }
}
