//! Why a request was not served, in types: what each failure *means* (the client's mistake, a refusal,
//! a deadline, a failure of the model) is decided here once, for every front end and for the rollout's
//! analysis. Front ends map these to their own status codes in one place each.

use crate::{InferError, LookupError};
use switchyard_backend::BackendError;
use switchyard_protocol::ProtocolError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    /// No such model or version, or not ready.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The request does not follow the protocol or does not fit the model's signature.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The request fits the protocol but the model refuses it (too large a batch, a text too long).
    #[error("{0}")]
    InvalidInput(String),
    /// The model's queue is full.
    #[error("the queue of {0} is full; retry later")]
    QueueFull(String),
    /// The model is shutting down.
    #[error("{0} is shutting down")]
    Stopped(String),
    /// The deadline passed before the model answered; `client_deadline` when the client chose it (V2
    /// `timeout`), else it is the server's default.
    #[error("the request timed out after {after:?} before {model} could answer it")]
    TimedOut { after: std::time::Duration, model: String, client_deadline: bool },
    /// The model failed while computing (or panicked).
    #[error("inference failed: {0}")]
    Failed(String),
    /// The version's circuit breaker is open: refused at once.
    #[error("the circuit breaker of {model} is open after repeated failures; retry in {retry_after:?}")]
    CircuitOpen { model: String, retry_after: std::time::Duration },
    /// The endpoint's rate limit (for this client key) is spent.
    #[error("the rate limit of {endpoint} is reached; retry in {retry_after:?}")]
    RateLimited { endpoint: String, retry_after: std::time::Duration },
    /// A failure injected by the rollout's fault config (for rehearsals).
    #[error("injected fault on the {0} arm")]
    Injected(&'static str),
}

/// What a failure means for the arm that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The client's mistake (the request is wrong): counts for no arm.
    Client,
    /// The arm could not serve it (refused, timed out on the server's deadline, failed): its failure.
    Arm,
    /// Ran past a deadline the client chose: no error, but a latency known to be at least this long.
    ClientDeadline,
}

impl ServeError {
    pub fn blame(&self) -> Blame {
        match self {
            Self::Lookup(LookupError::UnknownModel(_) | LookupError::UnknownVersion { .. })
            | Self::Protocol(_)
            | Self::InvalidInput(_)
            | Self::RateLimited { .. } => Blame::Client,
            Self::TimedOut { client_deadline: true, .. } => Blame::ClientDeadline,
            Self::Lookup(LookupError::NotReady { .. })
            | Self::QueueFull(_)
            | Self::Stopped(_)
            | Self::TimedOut { .. }
            | Self::Failed(_)
            | Self::CircuitOpen { .. }
            | Self::Injected(_) => Blame::Arm,
        }
    }

    /// Whether this is a refusal (queue full, deadline, breaker open): counted as `rejected` per model
    /// version.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::QueueFull(_) | Self::TimedOut { .. } | Self::CircuitOpen { .. })
    }

    /// Whether this says the model itself is failing (for its circuit breaker): not a client's
    /// mistake, not a refusal for load, not a deadline the client chose.
    pub fn is_model_failure(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::TimedOut { client_deadline: false, .. } | Self::Stopped(_))
    }

    /// How long a client should wait before retrying, when that is known.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::CircuitOpen { retry_after, .. } | Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::QueueFull(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    pub(crate) fn from_infer(e: InferError, client_deadline: bool) -> Self {
        match e {
            InferError::QueueFull(m) => Self::QueueFull(m),
            InferError::Stopped(m) => Self::Stopped(m),
            InferError::TimedOut(after, model) => Self::TimedOut { after, model, client_deadline },
            InferError::Backend(BackendError::InvalidInput(m)) => Self::InvalidInput(m),
            InferError::Backend(b) => Self::Failed(b.to_string()),
        }
    }
}
