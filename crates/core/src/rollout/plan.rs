//! What a rollout is asked to do: its weight schedule and how the canary is judged. Built and validated
//! from the config by the server; pure data here.

/// Canary weights are in basis points (10,000 = all traffic).
pub const FULL_WEIGHT: u32 = 10_000;

/// One step of a progressive rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub weight_bp: u32,
    pub hold_ms: u64,
}

/// How traffic moves to the canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Through these steps, then promoted after the last one passes.
    Steps(Vec<Step>),
    /// A fixed split that never promotes by itself (A/B).
    Fixed(u32),
}

/// How the canary is compared with control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// Requests per arm, within a step, before the step can pass.
    pub min_requests: u64,
    pub error_max_ratio: f64,
    pub error_min_increase: f64,
    pub latency_quantile: f64,
    pub latency_max_ratio: f64,
    /// False-rollback rate for a canary that is as good as control, over the whole rollout.
    pub alpha: f64,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            min_requests: 200,
            error_max_ratio: 2.0,
            error_min_increase: 0.005,
            latency_quantile: 0.95,
            latency_max_ratio: 2.0,
            alpha: 0.01,
        }
    }
}

/// A rollout's schedule and analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub schedule: Schedule,
    pub analysis: Analysis,
}

impl Plan {
    /// Whether some step gives the canary all traffic (judged against a frozen baseline then).
    pub fn has_full_step(&self) -> bool {
        matches!(&self.schedule, Schedule::Steps(steps) if steps.iter().any(|s| s.weight_bp >= FULL_WEIGHT))
    }

    /// Blue-green: control alone for `baseline_ms` (its figures are the baseline), then the canary takes
    /// all traffic for `hold_ms` and is judged against them.
    pub fn blue_green(baseline_ms: u64, hold_ms: u64) -> Vec<Step> {
        vec![Step { weight_bp: 0, hold_ms: baseline_ms }, Step { weight_bp: FULL_WEIGHT, hold_ms }]
    }

    /// The usual progression: 5 % → 25 % → 50 % → promoted, holding each step for `hold_ms`.
    pub fn default_steps(hold_ms: u64) -> Vec<Step> {
        [500, 2_500, 5_000].into_iter().map(|weight_bp| Step { weight_bp, hold_ms }).collect()
    }

    /// Checks what the config cannot express by type; the message names the field.
    pub fn validate(&self) -> Result<(), InvalidPlan> {
        let a = &self.analysis;
        if !(a.alpha > 0.0 && a.alpha < 1.0) {
            return Err(InvalidPlan::Alpha(a.alpha));
        }
        if !(a.latency_quantile > 0.5 && a.latency_quantile < 1.0) {
            return Err(InvalidPlan::Quantile(a.latency_quantile));
        }
        if a.error_max_ratio < 1.0 || a.latency_max_ratio < 1.0 {
            return Err(InvalidPlan::MaxRatio);
        }
        if !(0.0..1.0).contains(&a.error_min_increase) {
            return Err(InvalidPlan::MinIncrease(a.error_min_increase));
        }
        match &self.schedule {
            Schedule::Fixed(w) if *w > FULL_WEIGHT => Err(InvalidPlan::FixedWeight(*w)),
            Schedule::Fixed(FULL_WEIGHT) => Err(InvalidPlan::FixedFull),
            Schedule::Fixed(_) => Ok(()),
            Schedule::Steps(steps) if steps.is_empty() => Err(InvalidPlan::NoSteps),
            Schedule::Steps(steps) => {
                for (index, s) in steps.iter().enumerate() {
                    // Only a first step may be 0 %: control alone, measured as a baseline.
                    if (s.weight_bp == 0 && index > 0) || s.weight_bp > FULL_WEIGHT {
                        return Err(InvalidPlan::StepWeight { index, weight_bp: s.weight_bp });
                    }
                    if s.weight_bp == FULL_WEIGHT && index == 0 {
                        return Err(InvalidPlan::FirstStepFull);
                    }
                    if index > 0 && s.weight_bp < steps[index - 1].weight_bp {
                        let previous_bp = steps[index - 1].weight_bp;
                        return Err(InvalidPlan::StepDown { index, weight_bp: s.weight_bp, previous_bp });
                    }
                }
                Ok(())
            }
        }
    }
}

/// What a plan cannot be; the message names the config field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidPlan {
    #[error("analysis.alpha must be between 0 and 1, got {0}")]
    Alpha(f64),
    #[error("analysis.latency.quantile must be more than 0.5 and less than 1, got {0}")]
    Quantile(f64),
    #[error("analysis max_ratio must be at least 1")]
    MaxRatio,
    #[error("analysis.error_rate.min_increase must be in [0, 1), got {0}")]
    MinIncrease(f64),
    #[error("canary.weight must be 0 to 100 %, got {}", bp(*.0))]
    FixedWeight(u32),
    #[error(
        "canary.weight 100% leaves no control to compare with; use strategy: bluegreen, which measures control first"
    )]
    FixedFull,
    #[error("canary.steps must not be empty")]
    NoSteps,
    #[error("canary.steps[{index}].weight must be above 0 and at most 100 %, got {}", bp(*.weight_bp))]
    StepWeight { index: usize, weight_bp: u32 },
    #[error(
        "canary.steps[0].weight is 100%: no control is measured before the switch; start with a lower step, or use strategy: bluegreen"
    )]
    FirstStepFull,
    #[error("canary.steps[{index}].weight goes down ({} after {})", bp(*.weight_bp), bp(*.previous_bp))]
    StepDown { index: usize, weight_bp: u32, previous_bp: u32 },
}

/// Basis points as a percentage, for messages.
pub fn bp(w: u32) -> String {
    format!("{}%", f64::from(w) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let plan = |schedule| Plan { schedule, analysis: Analysis::default() };
        assert!(plan(Schedule::Steps(Plan::default_steps(1000))).validate().is_ok());
        assert!(plan(Schedule::Fixed(10_001)).validate().unwrap_err().to_string().contains("canary.weight"));
        assert!(plan(Schedule::Steps(vec![])).validate().unwrap_err().to_string().contains("canary.steps"));
        let down = vec![Step { weight_bp: 5_000, hold_ms: 1 }, Step { weight_bp: 100, hold_ms: 1 }];
        assert!(plan(Schedule::Steps(down)).validate().unwrap_err().to_string().contains("steps[1]"));
        let mut p = plan(Schedule::Fixed(1_000));
        p.analysis.alpha = 0.0;
        assert!(p.validate().unwrap_err().to_string().contains("alpha"));
    }
}
