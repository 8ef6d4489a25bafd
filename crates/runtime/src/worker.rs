//! A model version's worker threads, and what keeps them serving. Each thread loads its own backend
//! instance, warms it up with a real inference, then serves jobs from the version's bounded queue,
//! merging them into batches where the model allows.
//!
//! Supervision: a panic anywhere in a worker's loop (the model's own panics are caught per call) makes
//! the thread load a fresh backend and carry on; a worker busy on one call for longer than the model's
//! `hang_timeout` is retired (it stops once its call returns) and a replacement starts beside it, so the
//! version keeps its capacity. Both are logged and counted in `switchyard_worker_replacements_total`.

use crate::VersionMetrics;
use crate::batch::{self, BatchPolicy};
use crate::pool::{InferError, Job, JobFault, resolve_max_batch_size};
use crate::queue::{Priority, Receivers};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use switchyard_backend::{Backend, BackendError, Signature};
use switchyard_protocol::{Tensor, TensorData, TensorSpec};

/// Creates one backend instance; called once on each worker thread (again when a worker is replaced).
pub type Loader = Box<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>;

/// Everything a worker thread needs; cloned for each one.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) label: String,
    pub(crate) rx: Receivers<Job>,
    pub(crate) loader: Arc<Loader>,
    pub(crate) metrics: VersionMetrics,
    pub(crate) warmup: bool,
    pub(crate) batching: Option<BatchPolicy>,
    pub(crate) configured_max: Option<usize>,
    pub(crate) background: bool,
    pub(crate) reject_non_finite: bool,
    /// The pool's crew: gone once the pool is dropped (the version unloaded).
    pub(crate) crew: Weak<Crew>,
}

impl Context {
    fn pool_gone(&self) -> bool {
        self.crew.strong_count() == 0
    }
}

/// One worker's state as its supervisor sees it.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// When the call in progress started (ms since the crew's epoch, plus one); 0 when idle.
    busy_since: AtomicU64,
    retired: AtomicBool,
    epoch: Option<Instant>,
}

impl Slot {
    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the slot busy until the guard drops.
    fn busy(&self) -> Busy<'_> {
        let since = self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64);
        self.busy_since.store(since + 1, Ordering::Relaxed);
        Busy(self)
    }
}

struct Busy<'a>(&'a Slot);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy_since.store(0, Ordering::Relaxed);
    }
}

/// A version's workers, watched for hangs while the pool lives.
#[derive(Debug)]
pub(crate) struct Crew {
    epoch: Instant,
    hang_after: Duration,
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Crew {
    pub(crate) fn new(hang_after: Duration) -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), hang_after, slots: Mutex::default() })
    }

    pub(crate) fn join(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot { epoch: Some(self.epoch), ..Slot::default() });
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).push(slot.clone());
        slot
    }

    /// Retires the workers busy on one call for longer than `hang_after`; returns how many.
    fn retire_hung(&self) -> usize {
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = self.hang_after.as_millis() as u64;
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hung = 0;
        for s in slots.iter() {
            let since = s.busy_since.load(Ordering::Relaxed);
            if since > 0 && now + 1 > since + limit && !s.retired.swap(true, Ordering::Relaxed) {
                hung += 1;
            }
        }
        slots.retain(|s| !s.is_retired());
        hung
    }
}

/// Starts a worker thread; `ready` hears whether its backend loaded (at start), else failures are logged.
pub(crate) fn spawn(
    ctx: &Context,
    slot: Arc<Slot>,
    index: usize,
    ready: Option<std::sync::mpsc::Sender<Result<Signature, BackendError>>>,
) -> Result<(), BackendError> {
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name(format!("{}#{index}", ctx.label))
        .spawn(move || work(&ctx, &slot, ready))
        .map(|_| ())
        .map_err(|e| BackendError::Load(format!("cannot start a worker thread: {e}")))
}

fn load(ctx: &Context) -> Result<Box<dyn Backend>, BackendError> {
    let mut b = (ctx.loader)()?;
    if ctx.warmup {
        warm_up(b.as_mut())?;
    }
    Ok(if ctx.reject_non_finite { Box::new(crate::contain::FiniteOutputs(b)) } else { b })
}

fn work(ctx: &Context, slot: &Slot, ready: Option<std::sync::mpsc::Sender<Result<Signature, BackendError>>>) {
    // Before the backend loads, so the threads its runtime starts (ONNX Runtime's intra-op pool) inherit it.
    if !ctx.background {
        crate::priority::foreground_for_this_thread();
    }
    let mut backend = match load(ctx) {
        Ok(b) => {
            if let Some(r) = ready {
                let _ = r.send(Ok(b.signature().clone()));
            }
            b
        }
        Err(e) => {
            match ready {
                Some(r) => drop(r.send(Err(e))),
                None => {
                    tracing::error!(worker = %ctx.label, error = %e, "a replacement worker could not load the model")
                }
            }
            return;
        }
    };
    if ctx.background {
        crate::priority::lowest_for_this_thread();
    }
    let max = resolve_max_batch_size(ctx.configured_max, backend.signature()).unwrap_or(0);
    // A background call caught by a burst of foreground work runs in its gaps until it ends: one request
    // at a time keeps each call short.
    let batching = ctx.batching.clone().filter(|_| max > 0 && !ctx.background).map(|p| (p, max));
    loop {
        let served = catch_unwind(AssertUnwindSafe(|| {
            serve(backend, &ctx.rx, &ctx.metrics, batching.clone(), ctx.background, slot)
        }));
        if served.is_ok() || ctx.pool_gone() {
            return;
        }
        tracing::error!(worker = %ctx.label, "a worker panicked outside a model call; it starts afresh");
        replaced(&ctx.label, "panic");
        backend = loop {
            match load(ctx) {
                Ok(b) => break b,
                Err(e) if !ctx.pool_gone() => {
                    tracing::error!(worker = %ctx.label, error = %e, "reloading the model failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(_) => return,
            }
        };
    }
}

fn replaced(label: &str, reason: &'static str) {
    let (model, version) = label.rsplit_once('/').unwrap_or((label, ""));
    metrics::counter!("switchyard_worker_replacements_total", "model" => model.to_owned(), "version" => version.to_owned(), "reason" => reason).increment(1);
}

/// Watches the crew until its pool is gone: a hung worker is retired and replaced.
pub(crate) fn watch(ctx: Context) {
    let crew = ctx.crew.clone();
    let Some(c) = crew.upgrade() else { return };
    let tick = (c.hang_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    drop(c);
    let label = ctx.label.clone();
    let spawned = std::thread::Builder::new().name(format!("{label}:watchdog")).spawn(move || {
        let mut next = 1000;
        loop {
            std::thread::sleep(tick);
            let Some(crew) = crew.upgrade() else { return };
            for _ in 0..crew.retire_hung() {
                tracing::error!(worker = %ctx.label, after = ?crew.hang_after, "a worker is stuck in a model call; a replacement starts beside it");
                replaced(&ctx.label, "hung");
                next += 1;
                if let Err(e) = spawn(&ctx, crew.join(), next, None) {
                    tracing::error!(worker = %ctx.label, error = %e, "no replacement worker");
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(worker = %label, error = %e, "no watchdog for hung workers");
    }
}

fn serve(
    mut backend: Box<dyn Backend>,
    rx: &Receivers<Job>,
    metrics: &VersionMetrics,
    batching: Option<(BatchPolicy, usize)>,
    background: bool,
    slot: &Slot,
) {
    let mut held: Option<Job> = None;
    let mut spare = background.then(crate::priority::SpareCapacity::new);
    // A worker replaced while it hung stops once its call returns.
    while !slot.is_retired() {
        let first = match held.take() {
            Some(job) => job,
            None => match rx.take(None) {
                Some(job) => job,
                None => return,
            },
        };
        if first.reply.is_closed() {
            metrics.record_cancelled(first.protocol);
            continue;
        }
        let mut group = vec![first];
        if let Some((policy, max)) = &batching {
            held = gather(rx, &mut group, policy, *max, metrics);
        }
        match &mut spare {
            // A shadow copy on a background worker: only on capacity the foreground leaves.
            Some(spare) if group[0].priority == Priority::Shadow => {
                spare.wait();
                run(backend.as_mut(), group, metrics, slot);
            }
            // A client calling a shadow-only version directly: served now, at normal priority where
            // the system allows raising it again (else still at the background priority).
            Some(_) => {
                let raised = crate::priority::foreground_for_this_thread();
                run(backend.as_mut(), group, metrics, slot);
                if raised {
                    crate::priority::lowest_for_this_thread();
                }
            }
            None => run(backend.as_mut(), group, metrics, slot),
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
            metrics.record_cancelled(job.protocol);
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
fn run(backend: &mut dyn Backend, group: Vec<Job>, metrics: &VersionMetrics, slot: &Slot) {
    let start = Instant::now();
    let _busy = slot.busy();
    for job in &group {
        metrics.record_queue(start.duration_since(job.enqueued));
    }
    let output_names = group[0].outputs.clone();
    let names: Vec<&str> = output_names.iter().map(String::as_str).collect();
    let total_rows: u64 = group.iter().map(|j| j.rows).sum();
    // Injected faults (rehearsals): a crash takes the worker down outside the model call; a panic fails
    // the whole call, as a real one would for a merged batch.
    assert!(!group.iter().any(|j| j.fault == JobFault::Crash), "injected fault: the worker crashed");
    let injected = group.iter().any(|j| j.fault == JobFault::Panic);
    let mut call = |inputs: Vec<Tensor>| {
        catch_unwind(AssertUnwindSafe(|| {
            assert!(!injected, "injected fault: the model panicked");
            backend.infer(inputs, &names)
        }))
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
