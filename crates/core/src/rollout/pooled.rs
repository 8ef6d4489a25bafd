//! One rollout judged on the evidence of many replicas (a fleet behind one Service). Each replica runs
//! the sequential tests on its own requests and shares their running totals ([`Share`]); one of them
//! (the leader) pools the shares into one [`Rollout`] and decides for all; every replica adopts the
//! decision ([`Rollout::adopt`]). A replica cut off from the others judges its own evidence, and may only
//! roll back ([`Rollout::evaluate_regression`]).
//!
//! Why pooling keeps the false-rollback bound. Every test is a product, over requests, of factors whose
//! expected value is at most 1 under the null given everything before (the alternative predicts each
//! request from earlier ones only). A replica's factors use its own earlier requests, which are earlier
//! in any order that keeps each replica's requests in order. Requests on different replicas are
//! independent given their arms (the same model a single server's tests assume), so the product of all
//! replicas' running products, read at any moment, is a test supermartingale in the order the leader
//! sees the requests, and Ville's inequality bounds the chance that it ever reaches `1/alpha` by `alpha`,
//! however many replicas, however uneven their traffic and however late their shares arrive.
//! - The error-rate test pools exactly: the replicas' alternative likelihoods multiply, and the null's
//!   maximum is taken over the pooled counts (universal inference, as on one server).
//! - The errors-only and tail-event tests use each event's share of traffic on the replica that routed
//!   it, so a replica that applies a new weight late changes nothing.
//! - A replica that stops sharing (killed, restarted) leaves its last totals in place: they are frozen,
//!   never dropped, since dropping a factor below 1 would raise the product.
//! - Latency histograms merge bucket by bucket (the buckets are fixed): the baseline of a 100 % step is
//!   frozen from every replica's control requests.

use super::baseline::{Baseline, BaselineTests};
use super::latency::LogHistogram;
use super::machine::Rollout;
use super::plan::Plan;
use super::state::{Decision, Phase, State};

/// A count of trials, how many were hits, and a test's running `log E` (finite: shares travel as JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub hits: u64,
    pub trials: u64,
    pub log_e: f64,
}

impl Tally {
    fn new(hits: u64, trials: u64, log_e: f64) -> Self {
        Self { hits, trials, log_e: finite(log_e) }
    }

    fn add(&mut self, other: &Tally) {
        self.hits += other.hits;
        self.trials += other.trials;
        self.log_e += other.log_e;
    }
}

fn finite(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(-1e300, 1e300) }
}

/// The canary's tests against a frozen baseline, as one replica ran them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaselineShare {
    pub baseline: Baseline,
    pub errors: Tally,
    pub latency: Option<Tally>,
}

/// What one replica shares about one rollout: running totals of its tests since it started.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// The step the replica counts `step_requests` for (the state it last adopted).
    pub phase: Phase,
    pub step_started_ms: u64,
    /// `[control, canary]` requests in that step.
    pub step_requests: [u64; 2],
    /// `[control, canary]` requests and errors, and the error-rate test's alternative log-likelihood.
    pub requests: [u64; 2],
    pub errors: [u64; 2],
    pub error_log_alt: f64,
    /// Canary errors of all errors (runs when `min_increase` is 0).
    pub errors_only: Tally,
    /// Canary tail events of all tail events.
    pub latency_events: Tally,
    /// The replica's control reference for tail events (for display).
    pub latency_reference_seconds: Option<f64>,
    /// Successful (and censored) latencies per arm, as sparse `(bucket, count)` pairs.
    pub control_latency: Vec<(u32, u64)>,
    pub canary_latency: Vec<(u32, u64)>,
    pub baseline: Option<BaselineShare>,
}

/// What the other replicas of a fleet had seen when this replica last read their shares. It gives this
/// replica's plug-in estimates a head start (each replica would otherwise learn the canary's rates from
/// its own slice of traffic alone, paying the learning cost once per replica). It is data from the
/// past, so every factor stays predictable and the tests valid; the replica's own totals, which the
/// leader pools, never include it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prior {
    /// `[control, canary]` requests and errors.
    pub requests: [u64; 2],
    pub errors: [u64; 2],
    /// `[canary errors, errors]` and `[canary tail events, tail events]`.
    pub errors_only: [u64; 2],
    pub latency_events: [u64; 2],
    /// Their control latencies: a tail reference before this replica has one of its own.
    pub control_latency: LogHistogram,
}

impl Prior {
    /// The other replicas' shares added up.
    pub fn from_shares<'a>(others: impl IntoIterator<Item = &'a Share>) -> Self {
        let mut p = Self::default();
        for s in others {
            for i in 0..2 {
                p.requests[i] += s.requests[i];
                p.errors[i] += s.errors[i];
            }
            p.errors_only[0] += s.errors_only.hits;
            p.errors_only[1] += s.errors_only.trials;
            p.latency_events[0] += s.latency_events.hits;
            p.latency_events[1] += s.latency_events.trials;
            p.control_latency.add_sparse(&s.control_latency);
        }
        p
    }
}

impl Rollout {
    /// Sets what the other replicas had seen (see [`Prior`]).
    pub fn set_prior(&mut self, p: &Prior) {
        (self.errors.prior_n, self.errors.prior_e) = (p.requests, p.errors);
        if let Some(t) = &mut self.errors_only {
            t.prior = p.errors_only;
        }
        self.latency.prior = p.latency_events;
        self.latency.borrow_reference(&p.control_latency);
    }

    /// This replica's totals, to share with the fleet.
    pub fn share(&self) -> Share {
        let (l, b) = (&self.latency, self.baseline.as_ref());
        Share {
            phase: self.state.phase,
            step_started_ms: self.state.step_started_ms,
            step_requests: self.step_requests,
            requests: self.errors.n,
            errors: self.errors.e,
            error_log_alt: finite(self.errors.log_alt),
            errors_only: self
                .errors_only
                .as_ref()
                .map_or_else(Tally::default, |t| Tally::new(t.canary_errors, t.errors, t.log_e)),
            latency_events: Tally::new(l.canary_events, l.events, l.log_e),
            latency_reference_seconds: l.reference.is_finite().then_some(l.reference),
            control_latency: l.control.to_sparse(),
            canary_latency: l.canary.to_sparse(),
            baseline: b.map(|b| BaselineShare {
                baseline: b.baseline,
                errors: Tally::new(b.errors.hits, b.errors.trials, b.errors.log_e),
                latency: b.latency.as_ref().map(|(_, t)| Tally::new(t.hits, t.trials, t.log_e)),
            }),
        }
    }

    /// The fleet's rollout: `state` (the last decision) judged on every replica's shares together.
    /// `evaluate` on it decides for the fleet; its `evidence` is the pooled view.
    pub fn pooled<'a>(plan: Plan, state: State, shares: impl IntoIterator<Item = &'a Share>) -> Self {
        let mut r = Self::build(plan, state);
        let mut errors_only = Tally::default();
        let mut events = Tally::default();
        let (mut baseline_errors, mut baseline_latency) = (Tally::default(), Tally::default());
        let mut reference = None::<f64>;
        for s in shares {
            for i in 0..2 {
                r.errors.n[i] += s.requests[i];
                r.errors.e[i] += s.errors[i];
            }
            r.errors.log_alt += s.error_log_alt;
            errors_only.add(&s.errors_only);
            events.add(&s.latency_events);
            reference = match (reference, s.latency_reference_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            r.latency.control.add_sparse(&s.control_latency);
            r.latency.canary.add_sparse(&s.canary_latency);
            if let Some(h) = &mut r.control_latencies {
                h.add_sparse(&s.control_latency);
            }
            if (s.phase, s.step_started_ms) == (r.state.phase, r.state.step_started_ms) {
                r.step_requests[0] += s.step_requests[0];
                r.step_requests[1] += s.step_requests[1];
            }
            // Only tests against the baseline now in force count (a new baseline starts new tests).
            if let Some(b) = &s.baseline
                && Some(b.baseline) == r.state.baseline
            {
                baseline_errors.add(&b.errors);
                baseline_latency.add(&b.latency.unwrap_or_default());
            }
        }
        if let Some(t) = &mut r.errors_only {
            (t.canary_errors, t.errors, t.log_e) = (errors_only.hits, errors_only.trials, errors_only.log_e);
        }
        let l = &mut r.latency;
        (l.canary_events, l.events, l.log_e) = (events.hits, events.trials, events.log_e);
        l.reference = reference.unwrap_or(f64::INFINITY);
        if let Some(b) = &mut r.baseline {
            (b.errors.hits, b.errors.trials, b.errors.log_e) =
                (baseline_errors.hits, baseline_errors.trials, baseline_errors.log_e);
            if let Some((_, t)) = &mut b.latency {
                (t.hits, t.trials, t.log_e) = (baseline_latency.hits, baseline_latency.trials, baseline_latency.log_e);
            }
        }
        r
    }

    /// Takes the fleet's decision: its state (phase, weight, pause, baseline) replaces this replica's,
    /// and the tests carry on with what they have seen. A new step (or a new baseline) starts its own
    /// counts, as it does on one server.
    pub fn adopt(&mut self, state: State) {
        if (state.phase, state.step_started_ms) != (self.state.phase, self.state.step_started_ms) {
            self.step_requests = [0; 2];
        }
        if state.baseline != self.state.baseline || (state.baseline.is_some() && self.baseline.is_none()) {
            let a = self.plan.analysis;
            self.baseline = state.baseline.map(|b| BaselineTests::new(b, a.latency_quantile, a.latency_max_ratio));
        }
        self.state = state;
    }

    /// What a replica decides alone (cut off from the fleet): a rollback when its own evidence is
    /// enough, never a step forward or a promotion.
    pub fn evaluate_regression(&mut self, now_ms: u64) -> Option<Decision> {
        if !self.is_judging() {
            return None;
        }
        let reason = self.regression()?;
        Some(self.roll_back(reason, now_ms))
    }
}

#[cfg(test)]
#[path = "pooled_tests.rs"]
mod tests;
