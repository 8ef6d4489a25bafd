//! Containing a faulty model version: outputs holding NaN or Inf refused when its config says so
//! (`reject_non_finite`), and a circuit breaker that stops sending requests to a version that keeps
//! failing, half-opening later to probe it. Both turn a model's misbehaviour into a typed failure that
//! counts for the version (and for a canary, towards its rollback).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use switchyard_backend::{Backend, BackendError, Signature};
use switchyard_core::breaker::{Admission, Breaker, BreakerPolicy, BreakerState, Transition};
use switchyard_protocol::{Tensor, TensorData};

/// A backend whose floating-point outputs must be finite.
pub(crate) struct FiniteOutputs(pub(crate) Box<dyn Backend>);

impl Backend for FiniteOutputs {
    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[&str]) -> Result<Vec<Tensor>, BackendError> {
        let out = self.0.infer(inputs, outputs)?;
        if let Some(t) = out.iter().find(|t| !all_finite(&t.data)) {
            return Err(BackendError::Inference(format!(
                "output '{}' holds NaN or Inf, which the model's config refuses (reject_non_finite)",
                t.name
            )));
        }
        Ok(out)
    }
}

fn all_finite(data: &TensorData) -> bool {
    match data {
        TensorData::Fp16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::Bf16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::Fp32(v) => v.iter().all(|x| x.is_finite()),
        TensorData::Fp64(v) => v.iter().all(|x| x.is_finite()),
        _ => true,
    }
}

/// A version's circuit breaker: the core's decisions, with the clock read here and the state in
/// `switchyard_circuit_state` (0 closed, 1 half-open, 2 open).
#[derive(Debug)]
pub struct VersionBreaker {
    model: String,
    version: String,
    inner: Mutex<Breaker>,
}

/// A request let through: whether it is the half-open probe, whose outcome decides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    probe: bool,
}

impl VersionBreaker {
    pub fn new(model: &str, version: u64, policy: BreakerPolicy) -> Self {
        let b = Self { model: model.to_owned(), version: version.to_string(), inner: Mutex::new(Breaker::new(policy)) };
        b.publish(BreakerState::Closed);
        b
    }

    /// Lets a request through, or says how long until it is worth retrying.
    pub(crate) fn admit(&self) -> Result<Pass, Duration> {
        let (admission, transition) = self.lock().admit(Instant::now());
        self.note(transition);
        match admission {
            Admission::Admit => Ok(Pass { probe: false }),
            Admission::Probe => Ok(Pass { probe: true }),
            Admission::Refuse { retry_after } => Err(retry_after),
        }
    }

    /// Records the outcome of a request it let through (only outcomes that say something of the model).
    pub(crate) fn record(&self, pass: Pass, failed: bool) {
        let transition = self.lock().record(Instant::now(), failed, pass.probe);
        self.note(transition);
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// For the admin API: the state and why it last opened.
    pub fn status(&self) -> serde_json::Value {
        let b = self.lock();
        serde_json::json!({
            "state": b.state().label(),
            "last_trip": b.last_trip().map(|t| t.label()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        let (model, version) = (&self.model, &self.version);
        match t {
            Transition::Opened(why) => {
                tracing::warn!(%model, %version, reason = why.label(), "circuit breaker opened");
                metrics::counter!("switchyard_circuit_opened_total", "model" => model.clone(), "version" => version.clone(), "reason" => why.label()).increment(1);
                self.publish(BreakerState::Open);
            }
            Transition::HalfOpened => {
                tracing::info!(%model, %version, "circuit breaker half-open: probing");
                self.publish(BreakerState::HalfOpen);
            }
            Transition::Closed => {
                tracing::info!(%model, %version, "circuit breaker closed");
                self.publish(BreakerState::Closed);
            }
        }
    }

    fn publish(&self, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("switchyard_circuit_state", "model" => self.model.clone(), "version" => self.version.clone())
            .set(value);
    }
}
