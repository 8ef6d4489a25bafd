//! An A/B experiment's verdict on business outcomes: did the canary move the primary metric (a
//! conversion, a reward, an accuracy), and did it keep every guardrail metric within its allowed
//! degradation? Outcomes arrive as feedback joined to the arm that served each request; the verdict is
//! read after any outcome, as the rollback tests are, so it needs an anytime-valid procedure
//! (`sequence`): a fixed-sample test read continuously would "find" effects that are not there.
//!
//! - **ship**: the primary metric is better than control by more than `min_effect` (relative) with
//!   confidence, and every guardrail is shown, with confidence, to be within its allowed degradation
//!   (so a rare guardrail event is not outrun by a fast-moving primary);
//! - **kill**: the primary metric is worse than control by more than `max_drop` (relative; default 5 %,
//!   the usual "primary metric drops > 5 %" rule) with confidence, or a guardrail is worse than control
//!   by more than its `max_degradation` with confidence;
//! - **keep running** otherwise, with each metric's estimate and confidence sequence.
//!
//! Error budget: a false ship at most `alpha / 2`; a false kill at most `alpha / 2`, shared equally by
//! the primary's drop test and each guardrail's test. Relative thresholds (`mu_c > (1 + e) mu_0`) assume
//! metrics that are positive on average (rates, revenue, counts). Decisions without I/O; the time and the
//! outcomes are passed in.

mod sequence;
mod spec;

pub use sequence::{Interval, Sums, half_width};
use serde::{Deserialize, Serialize};
pub use spec::{Accuracy, OnKill, OnShip, Spec, Value, ValueError};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Higher,
    Lower,
}

/// A guardrail: a metric the canary must not make worse than control by more than `max_degradation`
/// (relative: 0.1 allows 10 % worse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    pub metric: String,
    #[serde(default)]
    pub direction: Direction,
    pub max_degradation: f64,
}

/// What an experiment compares and how sure it must be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The primary metric's name (a feedback value, or an accuracy the server derives).
    pub primary: String,
    #[serde(default)]
    pub direction: Direction,
    /// The smallest relative improvement worth shipping (0: any improvement).
    #[serde(default)]
    pub min_effect: f64,
    /// The relative drop of the primary metric that kills the canary.
    #[serde(default = "default_max_drop")]
    pub max_drop: f64,
    #[serde(default)]
    pub guardrails: Vec<Guardrail>,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Outcomes each arm needs before a metric is judged (the confidence sequence is asymptotic).
    #[serde(default = "default_min_outcomes")]
    pub min_outcomes: u64,
    /// Outcomes at which the confidence sequences are tightest.
    #[serde(default = "default_tuned_for")]
    pub tuned_for: u64,
}

fn default_max_drop() -> f64 {
    0.05
}
fn default_alpha() -> f64 {
    0.05
}
fn default_min_outcomes() -> u64 {
    100
}
fn default_tuned_for() -> u64 {
    100_000
}

/// Why a plan cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("alpha must be between 0 and 0.5, not {0}")]
    Alpha(f64),
    #[error("{field} must be between 0 and 1, not {value}")]
    Fraction { field: String, value: f64 },
    #[error("metric {0} is named twice (the primary and guardrails are distinct metrics)")]
    Duplicate(String),
}

impl Plan {
    /// A plan with every default for `primary`.
    pub fn new(primary: &str) -> Self {
        Self {
            primary: primary.to_owned(),
            direction: Direction::Higher,
            min_effect: 0.0,
            max_drop: default_max_drop(),
            guardrails: Vec::new(),
            alpha: default_alpha(),
            min_outcomes: default_min_outcomes(),
            tuned_for: default_tuned_for(),
        }
    }

    pub fn validate(&self) -> Result<(), PlanError> {
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(PlanError::Alpha(self.alpha));
        }
        let fraction = |field: String, value: f64| {
            if (0.0..1.0).contains(&value) { Ok(()) } else { Err(PlanError::Fraction { field, value }) }
        };
        fraction("min_effect".into(), self.min_effect)?;
        fraction("max_drop".into(), self.max_drop)?;
        let mut names = vec![self.primary.as_str()];
        for g in &self.guardrails {
            fraction(format!("guardrail {} max_degradation", g.metric), g.max_degradation)?;
            if names.contains(&g.metric.as_str()) {
                return Err(PlanError::Duplicate(g.metric.clone()));
            }
            names.push(&g.metric);
        }
        Ok(())
    }

    /// The metrics the experiment reads: the primary first, then the guardrails in order.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_str()).chain(self.guardrails.iter().map(|g| g.metric.as_str()))
    }
}

/// What the evidence says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    KeepRunning,
    Ship,
    Kill { reason: KillReason },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KillReason {
    /// The primary metric dropped by more than `max_drop`.
    PrimaryDropped,
    /// A guardrail got worse by more than its `max_degradation`.
    Guardrail { metric: String },
}

/// One metric's figures at the moment of a verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricReport {
    pub metric: String,
    /// `[control, canary]` outcomes.
    pub outcomes: [u64; 2],
    pub control_mean: Option<f64>,
    pub canary_mean: Option<f64>,
    /// `canary / control - 1`, from the plain means.
    pub relative_lift: Option<f64>,
    /// `mu_canary - mu_control` with its confidence sequence at level `alpha`.
    pub difference: Option<Interval>,
    /// Whether each arm has `min_outcomes` (before that the metric is not judged).
    pub judged: bool,
}

/// A verdict and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub primary: MetricReport,
    pub guardrails: Vec<MetricReport>,
}

/// An experiment's evidence: each metric's running sums (O(1) per outcome, mergeable across replicas).
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    plan: Plan,
    /// One per `plan.metrics()`, same order.
    sums: Vec<Sums>,
}

impl Experiment {
    pub fn new(plan: Plan) -> Result<Self, PlanError> {
        plan.validate()?;
        let sums = vec![Sums::default(); 1 + plan.guardrails.len()];
        Ok(Self { plan, sums })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Records the outcome `value` of `metric` for a request served by the canary (`canary`) or
    /// control, assigned while the canary's share was `p`. Returns false for a metric the plan does not
    /// read, a share of 0 or 1, or a non-finite value (nothing recorded).
    pub fn record(&mut self, metric: &str, canary: bool, p: f64, value: f64) -> bool {
        match self.plan.metrics().position(|m| m == metric) {
            Some(i) => self.sums[i].record(canary, p, value),
            None => false,
        }
    }

    /// A metric's sums (`plan.metrics()` order).
    pub fn sums(&self) -> &[Sums] {
        &self.sums
    }

    /// Replaces `metric`'s sums with saved ones (evidence kept across a restart); false for a metric
    /// the plan does not read.
    pub fn restore(&mut self, metric: &str, sums: Sums) -> bool {
        match self.plan.metrics().position(|m| m == metric) {
            Some(i) => {
                self.sums[i] = sums;
                true
            }
            None => false,
        }
    }

    /// The verdict now.
    pub fn evaluate(&self) -> Report {
        let p = &self.plan;
        let kill_alpha = p.alpha / (1 + p.guardrails.len()) as f64;
        let judged = |s: &Sums| s.n.iter().all(|&n| n >= p.min_outcomes);
        // `mu_c - k mu_0` confidently above 0 (`above`) or below 0, at `alpha` two-sided (one side each).
        let beyond = |s: &Sums, k: f64, alpha: f64, above: bool| {
            s.contrast(k, alpha, p.tuned_for).is_some_and(|c| if above { c.low > 0.0 } else { c.high < 0.0 })
        };
        let primary = &self.sums[0];
        let higher = p.direction == Direction::Higher;
        let mut verdict = Verdict::KeepRunning;
        for (g, s) in p.guardrails.iter().zip(&self.sums[1..]) {
            let breached = judged(s)
                && match g.direction {
                    Direction::Higher => beyond(s, 1.0 - g.max_degradation, kill_alpha, false),
                    Direction::Lower => beyond(s, 1.0 + g.max_degradation, kill_alpha, true),
                };
            if breached {
                verdict = Verdict::Kill { reason: KillReason::Guardrail { metric: g.metric.clone() } };
                break;
            }
        }
        if verdict == Verdict::KeepRunning && judged(primary) {
            let (drop_k, ship_k) =
                if higher { (1.0 - p.max_drop, 1.0 + p.min_effect) } else { (1.0 + p.max_drop, 1.0 - p.min_effect) };
            // Shipping also needs every guardrail shown to be within its allowed degradation (not merely
            // not yet shown to be beyond it): a rare guardrail event must not be outrun by the primary.
            let guardrails_hold = p.guardrails.iter().zip(&self.sums[1..]).all(|(g, s)| {
                judged(s)
                    && match g.direction {
                        Direction::Higher => beyond(s, 1.0 - g.max_degradation, kill_alpha, true),
                        Direction::Lower => beyond(s, 1.0 + g.max_degradation, kill_alpha, false),
                    }
            });
            if beyond(primary, drop_k, kill_alpha, !higher) {
                verdict = Verdict::Kill { reason: KillReason::PrimaryDropped };
            } else if guardrails_hold && beyond(primary, ship_k, p.alpha, higher) {
                verdict = Verdict::Ship;
            }
        }
        let report = |name: &str, s: &Sums| {
            let (c0, c1) = (s.mean(false), s.mean(true));
            MetricReport {
                metric: name.to_owned(),
                outcomes: s.n,
                control_mean: c0,
                canary_mean: c1,
                relative_lift: c0.zip(c1).filter(|(c0, _)| *c0 != 0.0).map(|(c0, c1)| c1 / c0 - 1.0),
                difference: s.contrast(1.0, p.alpha, p.tuned_for),
                judged: judged(s),
            }
        };
        Report {
            verdict,
            primary: report(&p.primary, primary),
            guardrails: p.guardrails.iter().zip(&self.sums[1..]).map(|(g, s)| report(&g.metric, s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
