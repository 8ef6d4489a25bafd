//! One request on one model version: decode it against the version's signature (once per signature:
//! arms that share one reuse the decoded request), queue it to the workers, and account for it in the
//! version's metrics and statistics.

use super::{Decode, ServeError};
use crate::pool::JobFault;
use crate::{Outcome, Priority, Protocol, Served, VersionMetrics};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_backend::Signature;
use switchyard_protocol::{InferRequest, Tensor};

/// A request decoded for the signatures it has met so far (usually one). A decoded request is handed
/// out by value; a copy is kept only when the caller says another arm may need it.
pub(crate) struct Decoded {
    source: Arc<dyn Decode>,
    by_signature: Vec<ForSignature>,
}

/// A signature with its batch limit, and the request decoded for it (taken while an arm runs it).
type ForSignature = (Signature, usize, Option<Result<InferRequest, ServeError>>);

impl Decoded {
    pub(crate) fn new(source: Arc<dyn Decode>) -> Self {
        Self { source, by_signature: Vec::with_capacity(1) }
    }

    /// The front end the request came through.
    pub(crate) fn protocol(&self) -> crate::Protocol {
        self.source.protocol()
    }

    /// The request as `served` reads it: decoded now, or reused when an earlier arm had the same
    /// signature and batch limit. With `keep`, a copy stays for the next arm.
    pub(crate) fn for_version(&mut self, served: &Served, keep: bool) -> Result<InferRequest, ServeError> {
        let (sig, max_batch) = (served.pool.signature(), served.pool.max_batch_size());
        let i = match self.by_signature.iter().position(|(s, m, _)| s == sig && *m == max_batch) {
            Some(i) => i,
            None => {
                self.by_signature.push((sig.clone(), max_batch, None));
                self.by_signature.len() - 1
            }
        };
        let slot = &mut self.by_signature[i].2;
        let result = match slot.take() {
            Some(r) => r,
            None => decode(self.source.as_ref(), sig, max_batch),
        };
        if keep || result.is_err() {
            *slot = Some(result.clone());
        }
        result
    }
}

/// Decodes against a signature and checks the batch limit.
pub(crate) fn decode(source: &dyn Decode, sig: &Signature, max_batch: usize) -> Result<InferRequest, ServeError> {
    let req = source.decode(&sig.inputs, &sig.outputs)?;
    if max_batch > 0
        && let Some(t) = req.inputs.iter().find(|t| t.shape.first().is_some_and(|&b| b > max_batch))
    {
        return Err(ServeError::InvalidInput(format!(
            "input '{}': batch size {} is over the model's max_batch_size {max_batch}",
            t.name, t.shape[0]
        )));
    }
    Ok(req)
}

/// Runs a decoded request on `served` and accounts for it. Returns the request (its inputs taken) with
/// the outputs, and the time it took.
pub(crate) async fn run(
    served: &Served,
    req: Result<InferRequest, ServeError>,
    default_timeout: Duration,
    priority: Priority,
    protocol: Protocol,
) -> (Result<(InferRequest, Vec<Tensor>), ServeError>, Duration) {
    run_with(served, req, default_timeout, priority, JobFault::None, protocol).await
}

/// [`run`], with a fault injected into the job (rollout rehearsals).
pub(crate) async fn run_with(
    served: &Served,
    req: Result<InferRequest, ServeError>,
    default_timeout: Duration,
    priority: Priority,
    fault: JobFault,
    protocol: Protocol,
) -> (Result<(InferRequest, Vec<Tensor>), ServeError>, Duration) {
    let start = Instant::now();
    let pass = match served.pool.breaker().map(crate::VersionBreaker::admit) {
        Some(Err(retry_after)) => {
            let model = served.pool.label().to_owned();
            let e = ServeError::CircuitOpen { model, retry_after };
            served.metrics.record_request(Outcome::Rejected, start.elapsed(), protocol);
            return (Err(e), start.elapsed());
        }
        Some(Ok(pass)) => Some(pass),
        None => None,
    };
    let _in_flight = InFlight::new(&served.metrics);
    let _foreground = (priority != Priority::Shadow).then(crate::priority::Foreground::enter);
    let result: Result<(InferRequest, Vec<Tensor>), ServeError> = async {
        let mut req = req?;
        let names = req.outputs.iter().map(|o| o.name.clone()).collect();
        let inputs = std::mem::take(&mut req.inputs);
        let batched = served.pool.max_batch_size() > 0;
        let drift = served.pool.drift().map(|d| (d, d.sample_inputs(&inputs, batched)));
        // The V2 `timeout` parameter (microseconds, as Triton reads it) shortens the server's deadline,
        // never lengthens it: a client cannot hold a slot longer than the server allows.
        let asked = req.timeout_us.map(Duration::from_micros).filter(|&t| t < default_timeout);
        let client_deadline = asked.is_some();
        let timeout = asked.unwrap_or(default_timeout);
        let spec = crate::pool::JobSpec { timeout, priority, level: req.priority, fault, protocol };
        let outputs = served
            .pool
            .infer_job(inputs, names, &spec)
            .await
            .map_err(|e| ServeError::from_infer(e, client_deadline))?;
        if let Some((monitor, samples)) = drift {
            monitor.observe(samples, &outputs, batched);
        }
        Ok((req, outputs))
    }
    .await;
    if let (Some(breaker), Some(pass)) = (served.pool.breaker(), pass) {
        match &result {
            Ok(_) => breaker.record(pass, false),
            Err(e) if e.is_model_failure() => breaker.record(pass, true),
            // Says nothing of the model; a probe that ends here is replaced after `open_for`.
            Err(_) => {}
        }
    }
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_refusal() => Outcome::Rejected,
        Err(e) if e.blame() == super::Blame::Client => Outcome::ClientError,
        Err(_) => Outcome::ServerError,
    };
    let took = start.elapsed();
    served.metrics.record_request(outcome, took, protocol);
    (result, took)
}

/// Counts a request in flight for as long as it lives, including when the client goes away.
struct InFlight<'a>(&'a VersionMetrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a VersionMetrics) -> Self {
        m.in_flight.increment(1.0);
        Self(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}
