//! The serving core every front end calls: a request for a model or a rollout endpoint goes in, typed
//! outputs or a typed [`ServeError`] come out. Which version answers, which arm of a rollout serves, when
//! control answers for a failed canary, what counts for the analysis and which shadows get a copy are
//! decided here, once, whatever the transport. Front ends only decode (through [`Decode`]), call
//! [`Endpoints::infer`] and encode.
//!
//! Unversioned calls of a model whose version is a canary under another endpoint name never reach the
//! canary outside the rollout's judgement: they are answered by the rollout's control version (or, when
//! control is another model, by the model's newest version that is no rollout's canary). An endpoint
//! named like its model ("roll version 2 of `mlp` out") routes unversioned calls through the rollout.

mod arms;
mod error;
mod fallback;
mod mirror;
mod ratelimit;
mod run;

pub use error::{Blame, ServeError};
pub use ratelimit::{RateLimitSpec, RateLimits};

use crate::rollout::{Arm, RolloutDriver, Target};
use crate::{LookupError, Priority, Registry, Served};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_protocol::{InferRequest, ProtocolError, Tensor, TensorSpec};

/// A request as its front end received it, decodable against a model's signature.
pub trait Decode: Send + Sync + 'static {
    fn decode(&self, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<InferRequest, ProtocolError>;
    /// The front end it came through (the request metrics' `protocol`).
    fn protocol(&self) -> crate::Protocol;
}

/// The request's metadata (HTTP headers, gRPC metadata), for the rollout's assignment key.
pub trait Metadata: Sync {
    fn get(&self, name: &str) -> Option<&[u8]>;
}

/// One inference call.
pub struct Call<'a> {
    pub model: &'a str,
    pub version: Option<&'a str>,
    pub request: Arc<dyn Decode>,
    pub metadata: &'a dyn Metadata,
    /// An arm the caller forces (front ends check the caller may).
    pub forced: Option<Arm>,
}

/// A served request, ready to encode.
#[derive(Debug)]
pub struct Reply {
    /// The decoded request (its inputs consumed): id and requested outputs.
    pub request: InferRequest,
    pub outputs: Vec<Tensor>,
    /// The name to answer with: the model or endpoint the client called.
    pub name: String,
    pub version: u64,
    /// The arm that served it, through a rollout.
    pub arm: Option<Arm>,
    /// `model/version` that served it, through a rollout.
    pub served_by: Option<String>,
    /// `model/version` of the fallback that answered because the model could not.
    pub fallback: Option<String>,
}

/// What a model route resolves to: the version that answers, and for an endpoint its arms.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub served: Served,
    /// The model that serves (for an endpoint, control's model).
    pub model: String,
    /// The versions to list in metadata.
    pub versions: Vec<u64>,
    /// Each arm of an endpoint with the version that serves it now (None while not ready).
    pub arms: Vec<(&'static str, Target, Option<Served>)>,
}

/// How unversioned calls of a model a rollout uses are answered.
#[derive(Debug, Clone)]
enum Pin {
    Version(u64),
    Excluding(BTreeSet<u64>),
}

/// Every model and rollout endpoint, served the same way for every front end.
pub struct Endpoints {
    registry: Arc<Registry>,
    rollouts: BTreeMap<String, Arc<RolloutDriver>>,
    pins: BTreeMap<String, Pin>,
    default_timeout: Duration,
    rate_limits: Arc<RateLimits>,
    /// Where served requests of experiments are remembered for their outcomes.
    feedback: Option<Arc<crate::feedback::Feedback>>,
}

impl Endpoints {
    pub fn new(
        registry: Arc<Registry>,
        rollouts: BTreeMap<String, Arc<RolloutDriver>>,
        default_timeout: Duration,
    ) -> Self {
        let pins = pins(&rollouts);
        Self { registry, rollouts, pins, default_timeout, rate_limits: Arc::default(), feedback: None }
    }

    /// With this feedback store (the server's one, shared across reloads).
    pub fn with_feedback(mut self, feedback: Option<Arc<crate::feedback::Feedback>>) -> Self {
        self.feedback = feedback;
        self
    }

    pub fn feedback(&self) -> Option<&Arc<crate::feedback::Feedback>> {
        self.feedback.as_ref()
    }

    /// With these rate limits (shared with the endpoints this replaces when unchanged, so a reload
    /// does not refill every bucket).
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.rate_limits = limits;
        self
    }

    pub fn rate_limits(&self) -> &Arc<RateLimits> {
        &self.rate_limits
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn rollouts(&self) -> &BTreeMap<String, Arc<RolloutDriver>> {
        &self.rollouts
    }

    pub fn rollout(&self, endpoint: &str) -> Option<&Arc<RolloutDriver>> {
        self.rollouts.get(endpoint)
    }

    /// Serves one inference call; when the model (for an endpoint, control) cannot, its fallback may.
    pub async fn infer(&self, call: Call<'_>) -> Result<Reply, ServeError> {
        self.rate_limits.check(call.model, call.metadata)?;
        let source = call.request.clone();
        if call.version.is_none()
            && let Some(driver) = self.rollouts.get(call.model)
        {
            let name = call.model;
            return match arms::serve(self, driver, call).await {
                Err(e) => self.fall_back(&driver.spec.control.model, name, source, e).await,
                ok => ok,
            };
        }
        let result = async {
            let served = self.lookup(call.model, call.version)?;
            let protocol = call.request.protocol();
            let req = run::Decoded::new(call.request).for_version(&served, false);
            let (result, _) = run::run(&served, req, self.default_timeout, Priority::Control, protocol).await;
            let (request, outputs) = result?;
            Ok(Reply {
                request,
                outputs,
                name: call.model.to_owned(),
                version: served.version,
                arm: None,
                served_by: None,
                fallback: None,
            })
        }
        .await;
        match result {
            Err(e) => self.fall_back(call.model, call.model, source, e).await,
            ok => ok,
        }
    }

    /// The version a plain model call answers with: pinned when the path names one, else the newest
    /// ready one that is not a canary outside its rollout (see the module header).
    pub fn lookup(&self, model: &str, version: Option<&str>) -> Result<Served, LookupError> {
        match (version, self.pins.get(model)) {
            (None, Some(Pin::Version(v))) => self.registry.lookup(model, Some(&v.to_string())),
            (None, Some(Pin::Excluding(out))) => self.registry.lookup_excluding(model, out),
            _ => self.registry.lookup(model, version),
        }
    }

    pub(crate) fn lookup_target(&self, t: &Target) -> Result<Served, LookupError> {
        let version = t.version.map(|v| v.to_string());
        match version {
            Some(v) => self.registry.lookup(&t.model, Some(&v)),
            None => self.lookup(&t.model, None),
        }
    }

    /// What a model route (metadata, ready, config, statistics) describes: a model version, or for a
    /// rollout endpoint its control (with every arm listed).
    pub fn resolve(&self, model: &str, version: Option<&str>) -> Result<Resolved, LookupError> {
        if version.is_none()
            && let Some(driver) = self.rollouts.get(model)
        {
            let control = &driver.spec.control;
            let served = self.lookup_target(control)?;
            let versions = if control.model == model { self.registry.versions(model) } else { vec![served.version] };
            let mut arms = vec![
                ("control", control.clone(), Some(served.clone())),
                ("canary", driver.spec.canary.clone(), self.lookup_target(&driver.spec.canary).ok()),
            ];
            for (t, _) in &driver.spec.shadows {
                arms.push(("shadow", t.clone(), self.lookup_target(t).ok()));
            }
            return Ok(Resolved { served, model: control.model.clone(), versions, arms });
        }
        let served = self.lookup(model, version)?;
        let versions = match version {
            Some(_) => vec![served.version],
            None => self.registry.versions(model),
        };
        Ok(Resolved { served, model: model.to_owned(), versions, arms: Vec::new() })
    }
}

/// For every model whose version is a canary under another endpoint name, how its unversioned calls
/// resolve: to a rollout's control version of that model, else to the newest version that is no canary.
/// A canary named without a version is a model of its own and is not pinned.
fn pins(rollouts: &BTreeMap<String, Arc<RolloutDriver>>) -> BTreeMap<String, Pin> {
    let mut pins: BTreeMap<String, Pin> = BTreeMap::new();
    let controls: BTreeSet<(&str, Option<u64>)> =
        rollouts.values().map(|d| (d.spec.control.model.as_str(), d.spec.control.version)).collect();
    for (endpoint, d) in rollouts {
        let t = &d.spec.canary;
        if let Some(v) = t.version
            && t.model != *endpoint
            && !controls.contains(&(t.model.as_str(), t.version))
            && let Pin::Excluding(out) = pins.entry(t.model.clone()).or_insert_with(|| Pin::Excluding(BTreeSet::new()))
        {
            out.insert(v);
        }
    }
    for (endpoint, d) in rollouts {
        let c = &d.spec.control;
        if c.model != *endpoint
            && pins.contains_key(&c.model)
            && let Some(v) = c.version
        {
            pins.insert(c.model.clone(), Pin::Version(v));
        }
    }
    pins
}

/// A cheap, well-spread random number per call (mixed further where it is used).
pub(crate) fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| crate::rollout::now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15));
    seed ^ NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
}
