//! Feedback for experiments: served requests of endpoints that run an experiment are remembered (by the
//! V2 request id, and by the assignment key when the rollout has one) with the arm that answered, the
//! canary's share when they were assigned and the served label; outcomes reported later join them and go
//! to the rollout's experiment.
//!
//! Remembering costs the serving path a short lock and a map insert; the file is written by a writer
//! thread outside that lock, every 50 ms, which also publishes the store's counts as metrics.

mod file;
mod store;

pub use file::{Chunk, Snapshot, write_chunks};
pub use store::{Counts, FeedbackStore, JoinError, Served};

use crate::rollout::{Arm, RolloutDriver};
use metrics::{counter, gauge};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use switchyard_core::experiment::{Value, ValueError};
use switchyard_protocol::{Tensor, TensorData};

/// One outcome report: which request (its V2 id, or its assignment key) and the values reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: Option<String>,
    pub key: Option<String>,
    pub values: Vec<(String, Value)>,
}

/// A report that joined: the arm and version that served the request, and what was recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Joined {
    pub arm: &'static str,
    pub version: u64,
    /// `(metric, outcome)` pairs the values made.
    pub outcomes: Vec<(String, f64)>,
    /// False when nothing was counted: the request was served before the rollout's current arms, or
    /// while one arm had all traffic (no comparison).
    pub counted: bool,
}

/// Why a report does not join (each a client's 4xx).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("endpoint '{0}' runs no experiment; feedback goes to a rollout endpoint with an `experiment:`")]
    NoExperiment(String),
    #[error("give the request's 'id' or its assignment 'key'")]
    NoRequest,
    #[error("'key' needs the rollout to assign by a header (assignment.header)")]
    NoKeyHeader,
    #[error("values: at least one value is needed")]
    NoValues,
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Join(#[from] JoinError),
}

/// The server's feedback store and its writer.
pub struct Feedback {
    store: Mutex<FeedbackStore>,
    /// Held by whoever writes the file, so chunks are written in the order taken.
    writing: Mutex<()>,
    write_errors: AtomicU64,
    /// Reports joined, and refused as malformed (the store counts the other refusals).
    joined: AtomicU64,
    invalid: AtomicU64,
}

impl Feedback {
    /// Opens the store (replaying `path` when given) and starts its writer thread, which ends when the
    /// last handle is dropped.
    pub fn start(capacity: usize, retention: Duration, path: Option<&Path>) -> std::io::Result<Arc<Self>> {
        let retention_ms = retention.as_millis() as u64;
        let store = match path {
            Some(p) => FeedbackStore::open(p, capacity, retention_ms, crate::rollout::now_ms())?,
            None => FeedbackStore::in_memory(capacity, retention_ms),
        };
        let feedback = Arc::new(Self {
            store: Mutex::new(store),
            writing: Mutex::new(()),
            write_errors: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
        });
        let weak: Weak<Self> = Arc::downgrade(&feedback);
        std::thread::Builder::new().name("feedback-writer".into()).spawn(move || {
            while let Some(f) = weak.upgrade() {
                f.flush();
                f.publish();
                drop(f);
                std::thread::sleep(Duration::from_millis(50));
            }
        })?;
        Ok(feedback)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedbackStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what is pending to the file (the writer does it every 50 ms; shutdown once more).
    pub fn flush(&self) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((path, chunks)) = self.lock().take_pending() else { return };
        if chunks.is_empty() {
            return;
        }
        if let Err(e) = write_chunks(&path, &chunks) {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %path.display(), error = %e, "feedback store: write failed (joins since the last write are lost at a restart)");
        }
        self.lock().recycle(chunks);
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts()
    }

    fn publish(&self) {
        let (c, held) = {
            let s = self.lock();
            (s.counts(), s.len())
        };
        gauge!("switchyard_feedback_stored_requests").set(held as f64);
        counter!("switchyard_feedback_requests_evicted_total").absolute(c.evicted);
        counter!("switchyard_feedback_write_errors_total").absolute(self.write_errors.load(Ordering::Relaxed));
        let invalid = self.invalid.load(Ordering::Relaxed);
        for (result, n) in [
            ("joined", self.joined.load(Ordering::Relaxed)),
            ("unknown", c.unknown),
            ("expired", c.expired),
            ("duplicate", c.duplicate),
            ("invalid", invalid),
        ] {
            counter!("switchyard_feedback_reports_total", "result" => result).absolute(n);
        }
    }

    /// Gives a rollout's experiment the evidence saved for its arms (after a restart or a reload).
    pub fn restore(&self, driver: &RolloutDriver) {
        let Some(spec) = driver.experiment_spec() else { return };
        let store = self.lock();
        let arms = driver.arms_fingerprint();
        for metric in spec.plan.metrics() {
            if let Some(sums) = store.evidence(&driver.spec.endpoint, arms, metric) {
                driver.restore_outcomes(metric, sums);
            }
        }
    }

    /// Remembers a request `driver`'s endpoint served, assigned to `arm` at canary weight `weight_bp`,
    /// by its id and by its assignment key (when it has them).
    pub fn remember(
        &self,
        driver: &RolloutDriver,
        arm: Arm,
        weight_bp: u32,
        id: Option<&str>,
        key: Option<&[u8]>,
        served: (u64, &[Tensor]),
    ) {
        let Some(spec) = driver.experiment_spec() else { return };
        let (version, outputs) = served;
        // An empty id is no id (some clients send one by default).
        let id = id.filter(|i| !i.is_empty());
        let names = [id.map(|i| format!("id '{i}'")), key.map(|k| format!("key '{}'", String::from_utf8_lossy(k)))];
        if names.iter().all(Option::is_none) {
            return;
        }
        let label = if spec.needs_label() { served_label(outputs) } else { None };
        let record = |name: String| Served {
            endpoint: driver.spec.endpoint.clone(),
            id: name,
            canary: arm == Arm::Canary,
            version,
            share: f64::from(weight_bp) / f64::from(switchyard_core::rollout::FULL_WEIGHT),
            label: label.clone(),
            at_ms: crate::rollout::now_ms(),
            arms: driver.arms_fingerprint(),
        };
        let mut store = self.lock();
        for name in names.into_iter().flatten() {
            store.remember(record(name));
        }
    }

    /// Joins one report to the request it is about and records its outcomes in the experiment. A report
    /// joins whole or not at all.
    pub fn report(&self, driver: &RolloutDriver, report: &Report) -> Result<Joined, ReportError> {
        let result = self.join(driver, report);
        match &result {
            Ok(_) => {
                self.joined.fetch_add(1, Ordering::Relaxed);
            }
            // Counted by the store.
            Err(ReportError::Join(_)) => {}
            Err(_) => self.count_invalid(),
        }
        result
    }

    /// Counts a report refused as malformed before it reached the store (by the front end).
    pub fn count_invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    fn join(&self, driver: &RolloutDriver, report: &Report) -> Result<Joined, ReportError> {
        let endpoint = &driver.spec.endpoint;
        let spec = driver.experiment_spec().ok_or_else(|| ReportError::NoExperiment(endpoint.clone()))?;
        let name = match (&report.id, &report.key) {
            (Some(id), _) => format!("id '{id}'"),
            (None, Some(_)) if driver.spec.header.is_none() => return Err(ReportError::NoKeyHeader),
            (None, Some(key)) => format!("key '{key}'"),
            (None, None) => return Err(ReportError::NoRequest),
        };
        if report.values.is_empty() {
            return Err(ReportError::NoValues);
        }
        // Checked against what the experiment reads before the store is asked (nothing joins on a typo).
        for (value_name, value) in &report.values {
            spec.outcomes(value_name, value, Some("")).map(|_| ())?;
        }
        let names: Vec<&str> = report.values.iter().map(|(n, _)| n.as_str()).collect();
        let now = crate::rollout::now_ms();
        let arms = driver.arms_fingerprint();
        let mut store = self.lock();
        let served = store.check(endpoint, &name, &names, now)?;
        let mut outcomes = Vec::new();
        for (value_name, value) in &report.values {
            outcomes.extend(spec.outcomes(value_name, value, served.label.as_deref())?);
        }
        for n in &names {
            store.join(endpoint, &name, n, now)?;
        }
        // Counted in the experiment under the store's lock, so a restore (`restore`) never sees an
        // outcome twice or misses one.
        let mut counted = false;
        if served.arms == arms {
            for (metric, value) in &outcomes {
                if driver.record_outcome(metric, served.canary, served.share, *value) {
                    store.record_outcome(
                        (endpoint.clone(), arms, metric.clone()),
                        served.canary,
                        served.share,
                        *value,
                        now,
                    );
                    counted = true;
                }
            }
        }
        drop(store);
        Ok(Joined { arm: if served.canary { "canary" } else { "control" }, version: served.version, outcomes, counted })
    }
}

/// The served output's label: the first output's first row, as its text (BYTES), its value (one
/// number per row) or the index of its largest value (scores per class).
pub fn served_label(outputs: &[Tensor]) -> Option<String> {
    let t = outputs.first()?;
    let rows = t.shape.first().copied().filter(|&b| b > 0 && t.shape.len() > 1).unwrap_or(1);
    let per_row = t.data.len() / rows.max(1);
    if let TensorData::Bytes(v) = &t.data {
        return v.first().cloned();
    }
    match per_row {
        0 => None,
        1 => t.data.number(0).map(|n| n.to_string()),
        n => {
            let best = (0..n).filter_map(|i| t.data.number(i).map(|v| (i, v))).max_by(|a, b| a.1.total_cmp(&b.1))?;
            Some(best.0.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::served_label;
    use switchyard_protocol::{Tensor, TensorData};

    fn tensor(shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor { name: "out".into(), shape, data }
    }

    #[test]
    fn the_served_label_is_the_first_rows_class_value_or_text() {
        let scores = tensor(vec![2, 3], TensorData::Fp32(vec![0.1, 0.7, 0.2, 0.9, 0.0, 0.1]));
        assert_eq!(served_label(&[scores]).as_deref(), Some("1"));
        let classes = tensor(vec![2, 1], TensorData::Int64(vec![7, 3]));
        assert_eq!(served_label(&[classes]).as_deref(), Some("7"));
        let text = tensor(vec![1], TensorData::Bytes(vec!["cat".into()]));
        assert_eq!(served_label(&[text]).as_deref(), Some("cat"));
        assert_eq!(served_label(&[]), None);
    }
}
