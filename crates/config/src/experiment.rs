//! A rollout's `experiment:` section (an A/B test on business outcomes) and the server's `feedback:`
//! section (the store that joins outcomes to served requests): parsed, checked, and turned into the
//! decision code's `Spec`, with the field named when something does not make sense.

use crate::rollout::{Percent, Seconds};
use serde::Deserialize;
use switchyard_core::experiment::{Accuracy, Direction, Guardrail, OnKill, OnShip, Plan, Spec};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The primary metric: a reported value's name, or (with `accuracy_of`) a name for the accuracy.
    pub primary: String,
    #[serde(default)]
    pub direction: Direction,
    /// The primary is the share of requests whose reported value of this name equals the served label.
    pub accuracy_of: Option<String>,
    /// The smallest relative improvement worth shipping [0 %].
    pub min_effect: Option<Percent>,
    /// The relative drop of the primary that kills the canary [5 %].
    pub max_drop: Option<Percent>,
    #[serde(default)]
    pub guardrails: Vec<GuardrailConfig>,
    pub alpha: Option<f64>,
    /// Outcomes each arm needs before a metric is judged [100].
    pub min_outcomes: Option<u64>,
    #[serde(default)]
    pub on_ship: OnShipConfig,
    #[serde(default)]
    pub on_kill: OnKillConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailConfig {
    pub metric: String,
    #[serde(default)]
    pub direction: Direction,
    pub accuracy_of: Option<String>,
    /// How much worse than control the canary may be (relative).
    pub max_degradation: Percent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnShipConfig {
    Promote,
    #[default]
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnKillConfig {
    #[default]
    Rollback,
    None,
}

/// `feedback:`: the store of served requests that outcomes join to (one per server).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Served requests kept; past it the oldest is evicted [100000].
    #[serde(default = "capacity")]
    pub capacity: usize,
    /// How long after serving an outcome may still join [24h].
    #[serde(default = "retention")]
    pub retention: Seconds,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self { capacity: capacity(), retention: retention() }
    }
}

fn capacity() -> usize {
    100_000
}
fn retention() -> Seconds {
    Seconds(std::time::Duration::from_secs(24 * 3600))
}

/// Why an experiment cannot run (the message names the field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExperimentError {
    #[error("experiment: {0}")]
    Plan(#[from] switchyard_core::experiment::PlanError),
    #[error("experiment: accuracy_of '{label}' for {metric} is itself a metric; name the reported label apart")]
    LabelIsMetric { label: String, metric: String },
}

fn fraction(p: Percent) -> f64 {
    f64::from(p.0) / 10_000.0
}

impl ExperimentConfig {
    /// The experiment's spec; the message names the field when it makes no sense.
    pub fn spec(&self) -> Result<Spec, ExperimentError> {
        let mut plan = Plan::new(&self.primary);
        plan.direction = self.direction;
        if let Some(e) = self.min_effect {
            plan.min_effect = fraction(e);
        }
        if let Some(d) = self.max_drop {
            plan.max_drop = fraction(d);
        }
        if let Some(a) = self.alpha {
            plan.alpha = a;
        }
        if let Some(n) = self.min_outcomes {
            plan.min_outcomes = n.max(2);
        }
        let mut accuracy = Vec::new();
        if let Some(label) = &self.accuracy_of {
            accuracy.push(Accuracy { metric: self.primary.clone(), label: label.clone() });
        }
        for g in &self.guardrails {
            plan.guardrails.push(Guardrail {
                metric: g.metric.clone(),
                direction: g.direction,
                max_degradation: fraction(g.max_degradation),
            });
            if let Some(label) = &g.accuracy_of {
                accuracy.push(Accuracy { metric: g.metric.clone(), label: label.clone() });
            }
        }
        plan.validate()?;
        let names: Vec<&str> = plan.metrics().collect();
        if let Some(a) = accuracy.iter().find(|a| names.contains(&a.label.as_str())) {
            return Err(ExperimentError::LabelIsMetric { label: a.label.clone(), metric: a.metric.clone() });
        }
        let on_ship = match self.on_ship {
            OnShipConfig::Promote => OnShip::Promote,
            OnShipConfig::None => OnShip::None,
        };
        let on_kill = match self.on_kill {
            OnKillConfig::Rollback => OnKill::Rollback,
            OnKillConfig::None => OnKill::None,
        };
        Ok(Spec { plan, accuracy, on_ship, on_kill })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_nonsense_is_named() {
        let c: ExperimentConfig = serde_norway::from_str(
            "primary: conversion\nmin_effect: 2%\nguardrails:\n  - { metric: accuracy, accuracy_of: label, max_degradation: 1% }\n  - { metric: latency_ms, direction: lower, max_degradation: 10% }\nalpha: 0.05\non_ship: promote\n",
        )
        .unwrap();
        let s = c.spec().unwrap();
        assert_eq!((s.plan.min_effect, s.plan.max_drop), (0.02, 0.05));
        assert_eq!(s.plan.guardrails[1].direction, Direction::Lower);
        assert_eq!((s.on_ship, s.on_kill), (OnShip::Promote, OnKill::Rollback));
        assert_eq!(s.reads(), ["conversion", "latency_ms", "label"]);
        let bad: ExperimentConfig = serde_norway::from_str("primary: c\nalpha: 0.9\n").unwrap();
        assert!(bad.spec().unwrap_err().to_string().contains("alpha"));
        let typo = serde_norway::from_str::<ExperimentConfig>("primary: c\non_kill: explode\n").unwrap_err();
        assert!(typo.to_string().contains("explode"), "{typo}");
    }
}
