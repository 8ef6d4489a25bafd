//! Drift monitoring on the serving path: for a model version whose config has `drift:`, each served
//! request's inputs (numeric features of tabular inputs, up to `features` columns per input) and outputs
//! (up to `features` columns per output) are compared with a reference distribution, per column (a
//! *series*, named `input:<name>[j]` or `output:<name>[j]`, or without `[j]` for a single column).
//!
//! - **Reference**: from a file (a JSON object of series name → sample values), or the first
//!   `reference_size` values the version serves, captured again once when a rollout promotes it to all
//!   traffic (a canary's early traffic is a sticky subset of users, not the whole population).
//! - **Off the request path**: the request path copies at most `features` values per tensor per row (64
//!   rows at most) and hands them to one drift thread through a bounded channel; when it is full the
//!   sample is dropped and counted, never waited for. The thread bins them (O(1) per value, bounded
//!   memory: `core::drift::Window`), and once a second computes PSI, KL and JS per series, publishes them
//!   as gauges and logs a line whenever a series crosses a threshold either way.

use metrics::{counter, gauge};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};
use switchyard_core::drift::{Divergence, Level, Reference, ReferenceError, Thresholds, Window};
use switchyard_protocol::Tensor;

/// Rows of one request that are sampled.
const MAX_ROWS: usize = 64;
/// Samples waiting for the drift thread before new ones are dropped.
const QUEUE: usize = 16_384;
/// Sub-windows of the sliding window.
const BLOCKS: usize = 10;

/// Where a version's reference comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceSource {
    /// Sample values per series (from a file).
    Sample(BTreeMap<String, Vec<f64>>),
    /// The first this many values of each series the version serves.
    FirstRequests(u64),
}

/// A version's drift settings (from its config).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSpec {
    pub reference: ReferenceSource,
    pub window: u64,
    pub bins: usize,
    /// Columns tracked per tensor.
    pub features: usize,
    pub thresholds: Thresholds,
}

/// A reference sample that cannot be binned (from a file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drift reference '{series}': {source}")]
pub struct DriftReferenceError {
    pub series: String,
    pub source: switchyard_core::drift::ReferenceError,
}

/// One tensor's sampled values: `cols` columns, row after row.
#[derive(Debug)]
pub(crate) struct TensorSample {
    input: bool,
    name: String,
    cols: usize,
    values: Vec<f64>,
}

/// One series' reference, window and last figures.
#[derive(Debug)]
struct Series {
    name: String,
    reference: Option<Reference>,
    capture: Vec<f64>,
    window: Window,
    last: Option<Divergence>,
    level: Level,
}

impl Series {
    /// A series capturing its reference from the values it serves.
    fn capturing(name: String) -> Self {
        Self { name, reference: None, capture: Vec::new(), window: Window::new(1, 1, 1), last: None, level: Level::Ok }
    }
}

/// The series tracked, by kind (`[input, output]`), tensor name and column: found without building a
/// name per value (names are for display).
type Tracked = [HashMap<String, Vec<Option<Series>>>; 2];

/// A series name's parts: input or output, the tensor, the column (`input:x[3]`; `output:score` is
/// column 0).
fn parse_series(name: &str) -> Option<(usize, &str, usize)> {
    let (kind, rest) = name.split_once(':')?;
    let kind = match kind {
        "input" => 0,
        "output" => 1,
        _ => return None,
    };
    match rest.strip_suffix(']').and_then(|r| r.rsplit_once('[')) {
        Some((tensor, col)) => Some((kind, tensor, col.parse().ok()?)),
        None => Some((kind, rest, 0)),
    }
}

/// A version's drift monitor.
#[derive(Debug)]
pub struct DriftMonitor {
    model: String,
    version: u64,
    spec: DriftSpec,
    series: Mutex<Tracked>,
    /// Set once the reference was captured again at promotion.
    rebased: AtomicBool,
}

impl DriftMonitor {
    /// A monitor for `model`/`version`, registered with the drift thread. A reference from a file is
    /// built here (an unusable one is an error naming the series).
    pub fn new(model: &str, version: u64, spec: DriftSpec) -> Result<Arc<Self>, DriftReferenceError> {
        let mut series = Tracked::default();
        if let ReferenceSource::Sample(samples) = &spec.reference {
            for (name, values) in samples {
                let bad = |source| DriftReferenceError { series: name.clone(), source };
                let reference = Reference::from_sample(values, spec.bins).map_err(bad)?;
                let (kind, tensor, col) = parse_series(name).ok_or_else(|| bad(ReferenceError::Name))?;
                let window = Window::new(reference.bins(), spec.window, BLOCKS);
                let columns = series[kind].entry(tensor.to_owned()).or_default();
                if columns.len() <= col {
                    columns.resize_with(col + 1, || None);
                }
                columns[col] = Some(Series { reference: Some(reference), window, ..Series::capturing(name.clone()) });
            }
        }
        let monitor = Arc::new(Self {
            model: model.to_owned(),
            version,
            spec,
            series: Mutex::new(series),
            rebased: AtomicBool::new(false),
        });
        let _ = thread().send(Message::Watch(Arc::downgrade(&monitor)));
        Ok(monitor)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The inputs' sampled values (before the inputs go to the workers).
    pub(crate) fn sample_inputs(&self, inputs: &[Tensor], batched: bool) -> Vec<TensorSample> {
        inputs.iter().filter_map(|t| self.sample(t, true, batched)).collect()
    }

    /// Hands a served request's samples (inputs and outputs) to the drift thread, or drops them (counted)
    /// when it is behind.
    pub(crate) fn observe(self: &Arc<Self>, mut samples: Vec<TensorSample>, outputs: &[Tensor], batched: bool) {
        samples.extend(outputs.iter().filter_map(|t| self.sample(t, false, batched)));
        if samples.is_empty() {
            return;
        }
        // Samples taken before a rebase are not counted after it (they would fill the new reference).
        let rebased = self.rebased.load(Ordering::Acquire);
        if let Err(TrySendError::Full(_)) = thread().try_send(Message::Sample(self.clone(), rebased, samples)) {
            counter!("switchyard_drift_samples_dropped_total").increment(1);
        }
    }

    fn sample(&self, t: &Tensor, input: bool, batched: bool) -> Option<TensorSample> {
        let n = t.data.len();
        t.data.number(0)?;
        let rows = if batched { t.shape.first().copied().unwrap_or(1).max(1) } else { 1 };
        let per_row = n / rows;
        // An input is tabular when each row is a flat vector of features.
        if per_row == 0 || (input && t.shape.len() > 2) {
            return None;
        }
        let cols = per_row.min(self.spec.features);
        let mut values = Vec::with_capacity(rows.min(MAX_ROWS) * cols);
        for r in 0..rows.min(MAX_ROWS) {
            values.extend((0..cols).filter_map(|c| t.data.number(r * per_row + c)));
        }
        let name = t.name.clone();
        Some(TensorSample { input, name, cols, values })
    }

    /// A rollout promoted this version to all traffic: capture the reference again, once (a reference
    /// from a file stays).
    pub fn rebase_once(&self) {
        if matches!(self.spec.reference, ReferenceSource::FirstRequests(_))
            && !self.rebased.swap(true, Ordering::AcqRel)
        {
            tracing::info!(model = %self.model, version = self.version, "drift: capturing the reference again after promotion");
            for s in self.lock().iter_mut().flat_map(|t| t.values_mut()).flatten().flatten() {
                *s = Series::capturing(std::mem::take(&mut s.name));
            }
        }
    }

    /// Counts samples into each series (on the drift thread).
    fn count(&self, samples: Vec<TensorSample>, taken_after_rebase: bool) {
        let from_file = matches!(self.spec.reference, ReferenceSource::Sample(_));
        let mut tracked = self.lock();
        if taken_after_rebase != self.rebased.load(Ordering::Acquire) {
            return;
        }
        for s in samples {
            let kind = usize::from(!s.input);
            let columns = match tracked[kind].get_mut(&s.name) {
                Some(c) => c,
                // With a reference file, only its series are tracked.
                None if from_file => continue,
                None => tracked[kind].entry(s.name.clone()).or_default(),
            };
            if columns.len() < s.cols && !from_file {
                let label = if s.input { "input" } else { "output" };
                for c in columns.len()..s.cols {
                    let name =
                        if s.cols == 1 { format!("{label}:{}", s.name) } else { format!("{label}:{}[{c}]", s.name) };
                    columns.push(Some(Series::capturing(name)));
                }
            }
            for (c, series) in columns.iter_mut().enumerate().take(s.cols) {
                let Some(series) = series else { continue };
                for x in s.values.iter().skip(c).step_by(s.cols) {
                    self.add(series, *x);
                }
            }
        }
    }

    fn add(&self, s: &mut Series, x: f64) {
        match &s.reference {
            Some(r) => s.window.add(r.bin(x)),
            None => {
                s.capture.push(x);
                let ReferenceSource::FirstRequests(size) = self.spec.reference else { return };
                if s.capture.len() as u64 >= size {
                    // Too few distinct values for the bins: keep capturing (bounded by the next try).
                    match Reference::from_sample(&s.capture, self.spec.bins) {
                        Ok(r) => {
                            s.window = Window::new(r.bins(), self.spec.window, BLOCKS);
                            s.reference = Some(r);
                            s.capture = Vec::new();
                        }
                        Err(_) => s.capture.clear(),
                    }
                }
            }
        }
    }

    /// Computes each series' divergence, publishes it and logs threshold crossings (on the drift thread).
    fn evaluate(&self) {
        // Judged on a full window only (the ring holds between `window - window/BLOCKS` and `window`
        // values): a part-filled one is noisier than the thresholds assume.
        let min = self.spec.window - self.spec.window / BLOCKS as u64;
        let mut tracked = self.lock();
        for s in tracked.iter_mut().flat_map(|t| t.values_mut()).flatten().flatten() {
            let Some(d) = s.reference.as_ref().and_then(|r| s.window.divergence(r, min)) else { continue };
            let name = &s.name;
            let level = self.spec.thresholds.level(d.psi);
            let labels =
                [("model", self.model.clone()), ("version", self.version.to_string()), ("series", name.clone())];
            gauge!("switchyard_drift_psi", &labels).set(d.psi);
            gauge!("switchyard_drift_kl_nats", &labels).set(d.kl);
            gauge!("switchyard_drift_js_nats", &labels).set(d.js);
            gauge!("switchyard_drift_level", &labels).set(level as u8 as f64);
            if level != s.level {
                let (model, version) = (&self.model, self.version);
                if level > s.level {
                    tracing::warn!(%model, version, series = %name, psi = d.psi, kl = d.kl, js = d.js, level = ?level, "drift threshold crossed");
                } else {
                    tracing::info!(%model, version, series = %name, psi = d.psi, level = ?level, "drift back below a threshold");
                }
                s.level = level;
            }
            s.last = Some(d);
        }
    }

    /// The monitor as the admin API shows it.
    pub fn status(&self) -> Value {
        let reference = match &self.spec.reference {
            ReferenceSource::Sample(_) => json!("file"),
            ReferenceSource::FirstRequests(n) => json!({ "first_requests": n }),
        };
        let series: BTreeMap<String, Value> = self
            .lock()
            .iter()
            .flat_map(|t| t.values())
            .flatten()
            .flatten()
            .map(|s| {
                let state = match (&s.reference, &s.last) {
                    (None, _) => json!({ "capturing": s.capture.len() }),
                    (Some(_), None) => json!({ "window": s.window.count(), "level": null }),
                    (Some(_), Some(d)) => {
                        json!({ "level": s.level, "psi": d.psi, "kl": d.kl, "js": d.js, "window": d.count })
                    }
                };
                (s.name.clone(), state)
            })
            .collect();
        let t = self.spec.thresholds;
        json!({
            "model": self.model, "version": self.version, "reference": reference,
            "thresholds": { "warning": t.warning, "critical": t.critical }, "series": series,
        })
    }
}

enum Message {
    Watch(Weak<DriftMonitor>),
    /// A served request's samples, and whether they were taken after the monitor's rebase.
    Sample(Arc<DriftMonitor>, bool, Vec<TensorSample>),
}

/// The drift thread's channel (started on first use).
fn thread() -> &'static SyncSender<Message> {
    static TX: OnceLock<SyncSender<Message>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new().name("drift".into()).spawn(move || run(rx)).expect("start the drift thread");
        tx
    })
}

/// Drains the channel every 20 ms rather than waking for each sample (a wake-up per request would cost
/// the serving threads a context switch each), and evaluates every monitor once a second.
fn run(rx: Receiver<Message>) {
    let mut watched: Vec<Weak<DriftMonitor>> = Vec::new();
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        loop {
            match rx.try_recv() {
                Ok(Message::Watch(m)) => watched.push(m),
                Ok(Message::Sample(m, rebased, samples)) => m.count(samples, rebased),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
        if Instant::now() >= next {
            watched.retain(|w| w.upgrade().map(|m| m.evaluate()).is_some());
            next = Instant::now() + Duration::from_secs(1);
        }
    }
}
