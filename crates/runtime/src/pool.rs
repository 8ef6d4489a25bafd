//! A model version's pool: its bounded queue and the handle requests use to reach its worker threads
//! (`worker`). A job carries a oneshot reply; a job whose caller has gone away is dropped before it
//! reaches the model.

use crate::VersionMetrics;
use crate::batch::BatchPolicy;
use crate::queue::{Priority, PriorityLevels, Queues, queues};
use crossbeam_channel::TrySendError;
use std::time::Instant;
use switchyard_backend::{BackendError, Signature};
use switchyard_protocol::Tensor;
use tokio::sync::oneshot;

pub use crate::worker::Loader;
use crate::worker::{self, Crew};

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
    /// The client priority levels the queue keeps apart (the `priority` request parameter).
    pub priority_levels: PriorityLevels,
    /// Serve at the lowest CPU priority (a shadow's workers): the kernel runs them only on capacity no
    /// other thread wants, so they never cost control its latency or throughput.
    pub background: bool,
    /// Refuse outputs holding NaN or Inf (a failure of the model).
    pub reject_non_finite: bool,
    /// The version's circuit breaker, when its config has one.
    pub breaker: Option<std::sync::Arc<crate::VersionBreaker>>,
    /// A worker busy on one call for longer than this is replaced (it cannot be stopped: it is retired
    /// and stops when its call returns).
    pub hang_timeout: std::time::Duration,
    /// The version's drift monitor, when its config has `drift:`.
    pub drift: Option<std::sync::Arc<crate::drift::DriftMonitor>>,
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

/// A fault a rollout rehearsal injects into a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum JobFault {
    #[default]
    None,
    /// The model call panics (contained per call: a failed request).
    Panic,
    /// The worker panics outside the model call (its supervisor starts it afresh).
    Crash,
}

/// How a job is queued and waited for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobSpec {
    /// How long the caller waits for the answer; a job still queued then is dropped unanswered.
    pub(crate) timeout: std::time::Duration,
    pub(crate) priority: Priority,
    /// The request's `priority` parameter, if it has one (1 is the first level).
    pub(crate) level: Option<u64>,
    pub(crate) fault: JobFault,
    pub(crate) protocol: crate::Protocol,
}

#[derive(Debug)]
pub(crate) struct Job {
    /// Inferences in this job: the batch size for batched models, else 1.
    pub(crate) rows: u64,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) outputs: Vec<String>,
    pub(crate) enqueued: Instant,
    pub(crate) priority: Priority,
    /// A fault a rollout rehearsal injects.
    pub(crate) fault: JobFault,
    /// The front end the request came through (a dropped job is counted under it).
    pub(crate) protocol: crate::Protocol,
    pub(crate) reply: oneshot::Sender<Result<Vec<Tensor>, InferError>>,
}

/// The handle the HTTP side holds: a queue into the worker threads.
#[derive(Debug)]
pub struct Pool {
    label: String,
    tx: Queues<Job>,
    signature: Signature,
    max_batch_size: usize,
    breaker: Option<std::sync::Arc<crate::VersionBreaker>>,
    drift: Option<std::sync::Arc<crate::drift::DriftMonitor>>,
    /// Its workers, watched for hangs while the pool lives.
    _crew: std::sync::Arc<Crew>,
}

impl Pool {
    /// Starts `instances` workers and waits (blocking) until each has loaded and warmed up its backend.
    /// Any failure stops the others and is returned.
    pub fn start(opts: PoolOptions, loader: Loader, metrics: VersionMetrics) -> Result<Self, BackendError> {
        let (tx, rx) = queues::<Job>(opts.queue_capacity, opts.priority_levels);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let crew = Crew::new(opts.hang_timeout);
        let ctx = worker::Context {
            label: opts.label.clone(),
            rx,
            loader: std::sync::Arc::new(loader),
            metrics,
            warmup: opts.warmup,
            batching: opts.batching.clone(),
            configured_max: opts.max_batch_size,
            background: opts.background,
            reject_non_finite: opts.reject_non_finite,
            crew: std::sync::Arc::downgrade(&crew),
        };
        for i in 0..opts.instances.max(1) {
            worker::spawn(&ctx, crew.join(), i, Some(ready_tx.clone()))?;
        }
        drop(ready_tx);
        let mut signature = None;
        for report in ready_rx {
            signature = Some(report?);
        }
        let signature = signature.ok_or_else(|| BackendError::Load("no worker started".into()))?;
        let max_batch_size =
            resolve_max_batch_size(opts.max_batch_size, &signature).map_err(|e| BackendError::Load(e.to_string()))?;
        if opts.batching.is_some() && max_batch_size == 0 {
            return Err(BackendError::Load(
                "dynamic batching needs a model with a batch dimension (max_batch_size > 0)".into(),
            ));
        }
        worker::watch(ctx);
        Ok(Self {
            label: opts.label,
            tx,
            signature,
            max_batch_size,
            breaker: opts.breaker,
            drift: opts.drift,
            _crew: crew,
        })
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

    /// The version's drift monitor, when configured.
    pub fn drift(&self) -> Option<&std::sync::Arc<crate::drift::DriftMonitor>> {
        self.drift.as_ref()
    }

    /// Largest first dimension a request may have; 0 when the model has no batch dimension.
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// Queues a job without blocking; the reply arrives on the returned receiver.
    fn submit(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        spec: &JobSpec,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>, InferError>>, InferError> {
        let (reply, rx) = oneshot::channel();
        let rows = match self.max_batch_size {
            0 => 1,
            _ => inputs.first().and_then(|t| t.shape.first()).map_or(1, |&b| b as u64),
        };
        let (priority, fault, protocol) = (spec.priority, spec.fault, spec.protocol);
        let job = Job { rows, inputs, outputs, enqueued: Instant::now(), priority, fault, protocol, reply };
        match self.tx.try_send(job, priority, self.tx.levels().level(spec.level)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(InferError::QueueFull(self.label.clone())),
            Err(TrySendError::Disconnected(_)) => Err(InferError::Stopped(self.label.clone())),
        }
    }

    /// Runs a job and waits for it, at most `timeout`: a job still queued then is dropped by the worker
    /// without computing it.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        timeout: std::time::Duration,
        priority: Priority,
        protocol: crate::Protocol,
    ) -> Result<Vec<Tensor>, InferError> {
        let spec = JobSpec { timeout, priority, level: None, fault: JobFault::None, protocol };
        self.infer_job(inputs, outputs, &spec).await
    }

    /// [`Pool::infer`], with a client priority level and an injected fault.
    pub(crate) async fn infer_job(
        &self,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        spec: &JobSpec,
    ) -> Result<Vec<Tensor>, InferError> {
        let rx = self.submit(inputs, outputs, spec)?;
        match tokio::time::timeout(spec.timeout, rx).await {
            // The worker dropped the job unanswered: it crashed, or the version is being unloaded.
            Ok(reply) => reply.unwrap_or_else(|_| {
                let e = format!("the worker of {} stopped before answering", self.label);
                Err(InferError::Backend(BackendError::Inference(e)))
            }),
            Err(_) => Err(InferError::TimedOut(spec.timeout, self.label.clone())),
        }
    }
}

/// A `max_batch_size` the model's signature cannot batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("max_batch_size {0} needs every input and output to have a dynamic first dimension")]
pub(crate) struct Unbatchable(usize);

pub(crate) fn resolve_max_batch_size(configured: Option<usize>, sig: &Signature) -> Result<usize, Unbatchable> {
    let batchable = sig.inputs.iter().chain(&sig.outputs).all(|s| s.shape.first() == Some(&-1));
    match configured {
        Some(n) if n > 0 && !batchable => Err(Unbatchable(n)),
        Some(n) => Ok(n),
        None if batchable => Ok(DEFAULT_MAX_BATCH_SIZE),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::{DataType, TensorSpec};

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
        assert!(resolve_max_batch_size(Some(8), &sig(2)).unwrap_err().to_string().contains("dynamic first dimension"));
    }
}
