//! A rollout's experiment: outcomes joined from feedback go into the decision code's `Experiment`, the
//! verdict is read after each one (the confidence sequences are anytime-valid), published as metrics
//! and in the admin API, logged and audited when it changes, and acted on as the config says (promote
//! on ship, roll back on kill) while this replica decides alone.

use super::{FleetMode, RolloutDriver};
use metrics::{counter, gauge};
use serde_json::json;
use std::sync::{Mutex, PoisonError};
use switchyard_core::experiment::{Experiment, KillReason, OnKill, OnShip, Report, Spec, Verdict};
use switchyard_core::rollout::Reason;

/// An experiment's evidence and the last verdict it gave.
#[derive(Debug)]
pub(crate) struct Running {
    state: Mutex<(Experiment, Verdict)>,
}

/// [`RolloutDriver::arms_fingerprint`]: stable across builds and restarts (FNV-1a of the names), as it
/// is kept in the feedback file.
pub(super) fn fingerprint(spec: &super::RolloutSpec) -> u64 {
    let text = format!("{}\0{}\0{}", spec.endpoint, spec.control, spec.canary);
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl Running {
    pub(crate) fn new(spec: &Spec) -> Option<Self> {
        let experiment = Experiment::new(spec.plan.clone()).ok()?;
        Some(Self { state: Mutex::new((experiment, Verdict::KeepRunning)) })
    }
}

impl RolloutDriver {
    /// The experiment this rollout runs, if any.
    pub fn experiment_spec(&self) -> Option<&Spec> {
        self.spec.experiment.as_ref()
    }

    /// A fingerprint of the arms (control and canary) outcomes are recorded for: an outcome for a
    /// request another pair served (before a config named a new canary) joins but is not counted.
    pub fn arms_fingerprint(&self) -> u64 {
        self.arms_fingerprint
    }

    /// Sets a metric's evidence to what was saved (the feedback store keeps it across restarts and
    /// reloads) and publishes the verdict it gives; a verdict reached before is not acted on again.
    pub fn restore_outcomes(&self, metric: &str, sums: switchyard_core::experiment::Sums) {
        let Some(running) = &self.experiment else { return };
        let report = {
            let mut state = running.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0.restore(metric, sums);
            let report = state.0.evaluate();
            state.1 = report.verdict.clone();
            report
        };
        self.publish_experiment(&report);
    }

    /// The experiment's verdict now, with its figures.
    pub fn experiment_report(&self) -> Option<Report> {
        let running = self.experiment.as_ref()?;
        let state = running.state.lock().unwrap_or_else(PoisonError::into_inner);
        Some(state.0.evaluate())
    }

    /// Records one outcome of `metric` for a request assigned to the canary (`canary`) or control while
    /// the canary's share was `share`, then applies the verdict. False when it was not counted.
    pub fn record_outcome(&self, metric: &str, canary: bool, share: f64, value: f64) -> bool {
        let (Some(running), Some(spec)) = (&self.experiment, &self.spec.experiment) else { return false };
        let (report, changed) = {
            let mut state = running.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.0.record(metric, canary, share, value) {
                return false;
            }
            let report = state.0.evaluate();
            let changed = report.verdict != state.1;
            state.1 = report.verdict.clone();
            (report, changed)
        };
        let arm = if canary { "canary" } else { "control" };
        counter!("switchyard_experiment_outcomes_total", "endpoint" => self.spec.endpoint.clone(), "arm" => arm, "metric" => metric.to_owned())
            .increment(1);
        self.publish_experiment(&report);
        if changed {
            self.on_verdict(spec, &report);
        }
        true
    }

    /// The verdict and each metric's figures as gauges.
    fn publish_experiment(&self, report: &Report) {
        let ep = || self.spec.endpoint.clone();
        let verdict = match report.verdict {
            Verdict::KeepRunning => 0.0,
            Verdict::Ship => 1.0,
            Verdict::Kill { .. } => -1.0,
        };
        gauge!("switchyard_experiment_verdict", "endpoint" => ep()).set(verdict);
        for m in std::iter::once(&report.primary).chain(&report.guardrails) {
            let metric = || m.metric.clone();
            if let Some(lift) = m.relative_lift {
                gauge!("switchyard_experiment_relative_lift_ratio", "endpoint" => ep(), "metric" => metric()).set(lift);
            }
            if let Some(d) = m.difference {
                gauge!("switchyard_experiment_difference_low", "endpoint" => ep(), "metric" => metric()).set(d.low);
                gauge!("switchyard_experiment_difference_high", "endpoint" => ep(), "metric" => metric()).set(d.high);
            }
        }
    }

    /// A new verdict: logged and audited, and acted on as configured (only while deciding alone: a
    /// fleet's replicas follow the fleet's decisions).
    fn on_verdict(&self, spec: &Spec, report: &Report) {
        let endpoint = &self.spec.endpoint;
        let (promote, metric) = match &report.verdict {
            Verdict::KeepRunning => return,
            Verdict::Ship => (true, report.primary.metric.clone()),
            Verdict::Kill { reason: KillReason::PrimaryDropped } => (false, report.primary.metric.clone()),
            Verdict::Kill { reason: KillReason::Guardrail { metric } } => (false, metric.clone()),
        };
        let figures = std::iter::once(&report.primary).chain(&report.guardrails).find(|m| m.metric == metric);
        let lift = figures.and_then(|m| m.relative_lift);
        let verdict = if promote { "ship" } else { "kill" };
        tracing::warn!(%endpoint, verdict, metric, relative_lift = ?lift, "experiment verdict");
        let acts = if promote { spec.on_ship == OnShip::Promote } else { spec.on_kill == OnKill::Rollback };
        let m = self.lock();
        if self.retired.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let state = m.state().clone();
        self.journal.send(self.entry(
            json!({ "event": "experiment_verdict", "by": "experiment", "verdict": verdict, "report": report }),
            &state,
            None,
        ));
        drop(m);
        if !acts || self.fleet_mode() != FleetMode::Alone {
            return;
        }
        let mut m = self.lock();
        let reason = Reason::Experiment { verdict: verdict.to_owned(), metric, relative_lift: lift };
        if let Some(d) = m.conclude(promote, reason, super::now_ms()) {
            self.apply(&m, &d, json!({ "by": "experiment" }), None);
        }
    }
}
