//! A model version's worker threads. Each thread loads its own backend instance, warms it up with a real
//! inference, then serves jobs from a shared bounded queue. A job carries a oneshot reply; a job whose
//! caller has gone away is dropped before it reaches the model.

use crate::VersionMetrics;
use crate::batch::{self, BatchPolicy};
use crate::queue::{Priority, Queues, Receivers, queues};
use crossbeam_channel::TrySendError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use switchyard_backend::{Backend, BackendError, Signature};
use switchyard_protocol::{Tensor, TensorData, TensorSpec};
use tokio::sync::oneshot;

/// Creates one backend instance; called once on each worker thread.
pub type Loader = Box<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>;

/// How a pool is run.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub label: String,
    pub instances: usize,
    pub queue_capacity: usize,
    pub warmup: bool,
    /// Largest first dimension a request may have; `None` picks [`DEFAULT_MAX_BATCH_SIZE`] for models whose
    /// inputs and outputs all have a dynamic first dimension, else 0 (no batch dimension).
    pub max_batch_size: Option<usize>,
    /// Merge queued requests into one model call (for models with a batch dimension).
    pub batching: Option<BatchPolicy>,
    /// Serve at the lowest CPU priority (a shadow's workers): the kernel runs them only on capacity no
    /// other thread wants, so they never cost control its latency or throughput.
    pub background: bool,
    /// Refuse outputs holding NaN or Inf (a failure of the model).
    pub reject_non_finite: bool,
    /// The version's circuit breaker, when its config has one.
    pub breaker: Option<std::sync::Arc<crate::VersionBreaker>>,
}

/// The largest batch of a batchable model whose configuration sets none.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 1024;

/// Why a job did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("the queue of {0} is full; retry later")]
    QueueFull(String),
    #[error("{0} is shutting down")]
    Stopped(String),
    #[error("the request timed out after {0:?} before {1} could answer it")]
    TimedOut(std::time::Duration, String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

#[derive(Debug)]
struct Job {
    /// Inferences in this job: the batch size for batched models, else 1.
    rows: u64,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    enqueued: Instant,
    priority: Priority,
    reply: oneshot::Sender<Result<Vec<Tensor>, InferError>>,
}

/// The handle the HTTP side holds: a queue into the worker threads.
#[derive(Debug)]
pub struct Pool {
    label: String,
    tx: Queues<Job>,
    signature: Signature,
    max_batch_size: usize,
    breaker: Option<std::sync::Arc<crate::VersionBreaker>>,
}

impl Pool {
    /// Starts `instances` workers and waits (blocking) until each has loaded and warmed up its backend.
    /// Any failure stops the others and is returned.
    pub fn start(opts: PoolOptions, loader: Loader, metrics: VersionMetrics) -> Result<Self, BackendError> {
        let (tx, rx) = queues::<Job>(opts.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let loader = std::sync::Arc::new(loader);
        for i in 0..opts.instances.max(1) {
            let (rx, ready_tx, loader, metrics, warmup) =
                (rx.clone(), ready_tx.clone(), loader.clone(), metrics.clone(), opts.warmup);
            let (batching, configured_max, background) = (opts.batching.clone(), opts.max_batch_size, opts.background);
            let finite = opts.reject_non_finite;
            std::thread::Builder::new()
                .name(format!("{}#{i}", opts.label))
                .spawn(move || {
                    let backend =
                        loader().and_then(|mut b| if warmup { warm_up(b.as_mut()).map(|()| b) } else { Ok(b) }).map(
                            |b| if finite { Box::new(crate::contain::FiniteOutputs(b)) as Box<dyn Backend> } else { b },
                        );
                    match backend {
                        Ok(b) => {
                            let _ = ready_tx.send(Ok(b.signature().clone()));
                            drop(ready_tx);
                            let max = resolve_max_batch_size(configured_max, b.signature()).unwrap_or(0);
                            if background {
                                crate::priority::lowest_for_this_thread();
                            }
                            // A background call caught by a burst of foreground work runs in its gaps
                            // until it ends: one request at a time keeps each call short.
                            let batching = batching.filter(|_| max > 0 && !background).map(|p| (p, max));
                            serve(b, rx, metrics, batching, background);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| BackendError::Load(format!("cannot start a worker thread: {e}")))?;
        }
        drop(ready_tx);
        let mut signature = None;
        for report in ready_rx {
            signature = Some(report?);
        }
        let signature = signature.ok_or_else(|| BackendError::Load("no worker started".into()))?;
        let max_batch_size = resolve_max_batch_size(opts.max_batch_size, &signature).map_err(BackendError::Load)?;
        if opts.batching.is_some() && max_batch_size == 0 {
            return Err(BackendError::Load(
                "dynamic batching needs a model with a batch dimension (max_batch_size > 0)".into(),
            ));
        }
        Ok(Self { label: opts.label, tx, signature, max_batch_size, breaker: opts.breaker })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// `model/version`, as logs and errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The version's circuit breaker, when configured.
    pub fn breaker(&self) -> Option<&crate::VersionBreaker> {
        self.breaker.as_deref()
    }

    /// Largest first dimension a request may have; 0 when the model has no batch dimension.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Queues a job without blocking; the reply arrives on the returned receiver.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        priority: Priority,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>, InferError>>, InferError> {
        let (reply, rx) = oneshot::channel();
        let rows = match self.max_batch_size {
            0 => 1,
            _ => inputs.first().and_then(|t| t.shape.first()).map_or(1, |&b| b as u64),
        };
        let job = Job { rows, inputs, outputs, enqueued: Instant::now(), priority, reply };
        match self.tx.try_send(job, priority) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(InferError::QueueFull(self.label.clone())),
            Err(TrySendError::Disconnected(_)) => Err(InferError::Stopped(self.label.clone())),
        }
    }

    /// Runs a job and waits for it.
    /// Runs a job and waits for it, at most `timeout`: a job still queued then is dropped by the worker
    /// without computing it.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        timeout: std::time::Duration,
        priority: Priority,
    ) -> Result<Vec<Tensor>, InferError> {
        let rx = self.submit(inputs, outputs, priority)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(reply) => reply.unwrap_or_else(|_| Err(InferError::Stopped(self.label.clone()))),
            Err(_) => Err(InferError::TimedOut(timeout, self.label.clone())),
        }
    }
}

fn serve(
    mut backend: Box<dyn Backend>,
    rx: Receivers<Job>,
    metrics: VersionMetrics,
    batching: Option<(BatchPolicy, usize)>,
    background: bool,
) {
    let mut held: Option<Job> = None;
    let mut spare = background.then(crate::priority::SpareCapacity::new);
    loop {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.take(None) {
                Some(job) => job,
                None => return,
            },
        };
        if first.reply.is_closed() {
            metrics.record_cancelled();
            continue;
        }
        let mut group = vec![first];
        if let Some((policy, max)) = &batching {
            held = gather(&rx, &mut group, policy, *max, &metrics);
        }
        match &mut spare {
            // A shadow copy on a background worker: only on capacity the foreground leaves.
            Some(spare) if group[0].priority == Priority::Shadow => {
                spare.wait();
                run(backend.as_mut(), group, &metrics);
            }
            // A client calling a shadow-only version directly: served now, at normal priority where
            // the system allows raising it again (else still at the background priority).
            Some(_) => {
                let raised = crate::priority::normal_for_this_thread();
                run(backend.as_mut(), group, &metrics);
                if raised {
                    crate::priority::lowest_for_this_thread();
                }
            }
            None => run(backend.as_mut(), group, &metrics),
        }
    }
}

/// Adds to `group` the queued jobs that can join it, up to `max` rows; returns a job that could not.
fn gather(
    rx: &Receivers<Job>,
    group: &mut Vec<Job>,
    policy: &BatchPolicy,
    max: usize,
    metrics: &VersionMetrics,
) -> Option<Job> {
    let mut rows = batch::rows(&group[0].inputs)?;
    if rows < max {
        yield_while_growing(rx);
    }
    let deadline = Instant::now() + policy.max_queue_delay;
    while rows < max && !policy.preferred.contains(&rows) {
        let next =
            if policy.max_queue_delay.is_zero() { rx.try_take().ok().flatten() } else { rx.take(Some(deadline)) };
        let job = next?;
        if job.reply.is_closed() {
            metrics.record_cancelled();
            continue;
        }
        let head = &group[0];
        match batch::rows(&job.inputs) {
            Some(r) if rows + r <= max && batch::compatible(&head.inputs, &head.outputs, &job.inputs, &job.outputs) => {
                rows += r;
                group.push(job);
            }
            _ => return Some(job),
        }
    }
    None
}

/// Lets the threads that decode requests (on a busy core, the same one) finish what they have started:
/// yields while the queue still grows, so that a batch holds every request already on its way. With a
/// core to itself, the first yield returns at once and the queue has not grown.
fn yield_while_growing(rx: &Receivers<Job>) {
    let mut queued = rx.len();
    for _ in 0..16 {
        std::thread::yield_now();
        let now = rx.len();
        if now <= queued {
            return;
        }
        queued = now;
    }
}

/// Runs one model call for `group` (one job, or several merged) and answers each job.
fn run(backend: &mut dyn Backend, group: Vec<Job>, metrics: &VersionMetrics) {
    let start = Instant::now();
    for job in &group {
        metrics.record_queue(start.duration_since(job.enqueued));
    }
    let output_names = group[0].outputs.clone();
    let names: Vec<&str> = output_names.iter().map(String::as_str).collect();
    let total_rows: u64 = group.iter().map(|j| j.rows).sum();
    let mut call = |inputs: Vec<Tensor>| {
        catch_unwind(AssertUnwindSafe(|| backend.infer(inputs, &names)))
            .unwrap_or_else(|_| Err(BackendError::Inference("the model panicked".into())))
    };
    if group.len() == 1 {
        let mut group = group;
        let job = group.remove(0);
        let result = call(job.inputs);
        metrics.record_compute(start.elapsed(), total_rows);
        let _ = job.reply.send(result.map_err(InferError::from));
        return;
    }
    let rows: Vec<usize> = group.iter().map(|j| batch::rows(&j.inputs).unwrap_or(0)).collect();
    let (inputs, replies): (Vec<Vec<Tensor>>, Vec<_>) = group.into_iter().map(|j| (j.inputs, j.reply)).unzip();
    let result = batch::merge(inputs).and_then(&mut call).and_then(|outputs| batch::split(outputs, &rows));
    metrics.record_compute(start.elapsed(), total_rows);
    match result {
        Ok(per_job) => {
            for (reply, outputs) in replies.into_iter().zip(per_job) {
                let _ = reply.send(Ok(outputs));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(InferError::from(e.clone())));
            }
        }
    }
}

fn resolve_max_batch_size(configured: Option<usize>, sig: &Signature) -> Result<usize, String> {
    let batchable = sig.inputs.iter().chain(&sig.outputs).all(|s| s.shape.first() == Some(&-1));
    match configured {
        Some(n) if n > 0 && !batchable => {
            Err(format!("max_batch_size {n} needs every input and output to have a dynamic first dimension"))
        }
        Some(n) => Ok(n),
        None if batchable => Ok(DEFAULT_MAX_BATCH_SIZE),
        None => Ok(0),
    }
}

/// One real inference on zeros (dynamic dimensions as 1), so the first client does not pay for it.
fn warm_up(backend: &mut dyn Backend) -> Result<(), BackendError> {
    let sig = backend.signature().clone();
    // Every required input; when all are optional (a text model), the first one.
    let required: Vec<&TensorSpec> = sig.inputs.iter().filter(|s| !s.optional).collect();
    let chosen = if required.is_empty() { sig.inputs.iter().take(1).collect() } else { required };
    let inputs = chosen
        .into_iter()
        .map(|s| {
            let shape: Vec<usize> = s.shape.iter().map(|&d| if d < 0 { 1 } else { d as usize }).collect();
            let n = shape.iter().product();
            Tensor { name: s.name.clone(), shape, data: TensorData::zeros(s.datatype, n) }
        })
        .collect();
    let outputs: Vec<&str> = sig.outputs.iter().map(|s| s.name.as_str()).collect();
    backend
        .infer(inputs, &outputs)
        .map(|_| ())
        .map_err(|e| BackendError::Load(format!("warm-up inference failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::DataType;

    fn sig(first: i64) -> Signature {
        let spec = |name: &str| TensorSpec::new(name, DataType::Fp32, vec![first, 4]);
        Signature { platform: "test", inputs: vec![spec("x")], outputs: vec![spec("y")] }
    }

    #[test]
    fn max_batch_size_follows_the_model_and_the_config() {
        assert_eq!(resolve_max_batch_size(None, &sig(-1)), Ok(DEFAULT_MAX_BATCH_SIZE));
        assert_eq!(resolve_max_batch_size(None, &sig(2)), Ok(0));
        assert_eq!(resolve_max_batch_size(Some(8), &sig(-1)), Ok(8));
        assert_eq!(resolve_max_batch_size(Some(0), &sig(-1)), Ok(0));
        assert!(resolve_max_batch_size(Some(8), &sig(2)).unwrap_err().contains("dynamic first dimension"));
    }
}
