//! A model's fallback: another model (a small rules model, the previous version) that answers when the
//! model cannot — not ready, breaker open, overloaded, past the server's deadline, failed. Only
//! failures of the model fall back (never a client's mistake or a deadline the client chose); a
//! rollout's canary failures are judged and answered by control first, so its fallback is control's.
//! A fallback that fails too is reported as the original error. One hop: a fallback's own fallback is
//! not followed.

use super::run::{self, Decoded};
use super::{Blame, Decode, Endpoints, Reply, ServeError};
use crate::Priority;
use std::sync::Arc;

/// Why a call fell back, as a bounded metric label.
fn reason(e: &ServeError) -> &'static str {
    match e {
        ServeError::Lookup(_) | ServeError::Stopped(_) => "unavailable",
        ServeError::CircuitOpen { .. } => "circuit_open",
        ServeError::QueueFull(_) => "overloaded",
        ServeError::TimedOut { .. } => "timed_out",
        _ => "failed",
    }
}

impl Endpoints {
    /// Answers with `model`'s fallback after `original`, or returns `original`.
    pub(super) async fn fall_back(
        &self,
        model: &str,
        name: &str,
        source: Arc<dyn Decode>,
        original: ServeError,
    ) -> Result<Reply, ServeError> {
        if original.blame() != Blame::Arm {
            return Err(original);
        }
        let Some(target) = self.registry.fallback(model).filter(|t| t.model != model) else { return Err(original) };
        let Ok(served) = self.lookup_target(&target) else {
            metrics::counter!("switchyard_fallback_failures_total", "model" => model.to_owned()).increment(1);
            return Err(original);
        };
        let protocol = source.protocol();
        let req = Decoded::new(source).for_version(&served, false);
        let (result, _) = run::run(&served, req, self.default_timeout, Priority::Control, protocol).await;
        match result {
            Ok((request, outputs)) => {
                let why = reason(&original);
                metrics::counter!("switchyard_fallback_total", "model" => model.to_owned(), "reason" => why)
                    .increment(1);
                tracing::debug!(%model, fallback = %target, reason = why, error = %original, "answered by the fallback");
                let by = format!("{}/{}", target.model, served.version);
                Ok(Reply {
                    request,
                    outputs,
                    name: name.to_owned(),
                    version: served.version,
                    arm: None,
                    served_by: None,
                    fallback: Some(by),
                })
            }
            Err(e) => {
                metrics::counter!("switchyard_fallback_failures_total", "model" => model.to_owned()).increment(1);
                tracing::debug!(%model, fallback = %target, error = %e, "the fallback failed too");
                Err(original)
            }
        }
    }
}
