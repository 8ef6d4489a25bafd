//! The `rollouts:` section of the server config: parsed, checked against the model repository, and
//! turned into the plans the decision code runs. Everything that does not make sense is refused at start
//! with a message naming the field.

use serde::Deserialize;
use std::time::Duration;
use switchyard_core::rollout::{Analysis, FULL_WEIGHT, Plan, Schedule, Step};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    pub endpoint: String,
    pub control: ArmConfig,
    pub canary: Option<CanaryConfig>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub shadows: Vec<ShadowConfig>,
    #[serde(default)]
    pub assignment: AssignmentConfig,
    #[serde(default)]
    pub analysis: AnalysisConfig,
    #[serde(default)]
    pub on_canary_error: OnCanaryError,
    #[serde(default)]
    pub faults: FaultsConfig,
    /// An A/B test on business outcomes reported as feedback (see `experiment.rs`).
    pub experiment: Option<crate::experiment::ExperimentConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmConfig {
    pub model: String,
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    pub model: String,
    pub version: Option<u64>,
    pub steps: Option<Vec<StepConfig>>,
    /// A fixed split (percent) instead of steps: an A/B test that never promotes by itself.
    pub weight: Option<Percent>,
    /// Blue-green: how long control is measured alone before the switch (default 30 s).
    pub baseline: Option<Seconds>,
    /// Blue-green: how long the canary holds all traffic before it is promoted (default 60 s).
    pub hold: Option<Seconds>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub weight: Percent,
    pub hold: Seconds,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Canary,
    Bluegreen,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    pub model: String,
    pub version: Option<u64>,
    #[serde(default = "all")]
    pub sample: Percent,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentConfig {
    /// Requests with this header stick to one arm per value; without it, random per request.
    pub header: Option<String>,
    /// Salt for the sticky hash; defaults to the endpoint name.
    pub salt: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    pub min_requests: Option<u64>,
    #[serde(default)]
    pub error_rate: ErrorRateConfig,
    #[serde(default)]
    pub latency: LatencyConfig,
    pub alpha: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateConfig {
    pub max_ratio: Option<f64>,
    pub min_increase: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    pub quantile: Option<f64>,
    pub max_ratio: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCanaryError {
    /// The client gets control's answer; the canary's error still counts.
    #[default]
    ServeControl,
    /// The client gets the canary's error.
    ReturnError,
}

/// Fault injection for rehearsals, per arm.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsConfig {
    pub control: Option<FaultConfig>,
    pub canary: Option<FaultConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Share of requests that fail with a 500 before reaching the model.
    pub error: Option<Percent>,
    /// Time added to every request.
    pub delay: Option<Seconds>,
    /// Share of requests whose model call panics on its worker (contained: a failure of the arm).
    pub panic: Option<Percent>,
    /// Share of requests whose worker panics outside the model call (it starts afresh).
    pub crash: Option<Percent>,
}

/// A YAML scalar that may be written as a number or with a unit (`5%`, `30s`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

/// A percentage: `5`, `5%`, `12.5%`; stored in basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

fn all() -> Percent {
    Percent(FULL_WEIGHT)
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => n,
            NumberOrText::Text(t) => t
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("'{t}' is not a percentage")))?,
        };
        if !(0.0..=100.0).contains(&value) {
            return Err(serde::de::Error::custom(format!("{value}% is not between 0 and 100 %")));
        }
        Ok(Percent((value * 100.0).round() as u32))
    }
}

/// A duration: `30s`, `2m`, `500ms`, `100us`, `1h`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = |t: &str| serde::de::Error::custom(format!("'{t}' is not a duration like 30s, 2m or 500ms"));
        let secs = match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => n,
            NumberOrText::Text(t) => {
                let s = t.trim();
                let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
                let (num, unit) = s.split_at(split);
                let n: f64 = num.parse().map_err(|_| bad(&t))?;
                let scale = match unit.trim() {
                    "" | "s" => 1.0,
                    "ms" => 0.001,
                    "us" | "µs" => 0.000_001,
                    "m" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(bad(&t)),
                };
                n * scale
            }
        };
        if !(0.0..1e9).contains(&secs) {
            return Err(serde::de::Error::custom(format!("{secs} s is not a usable duration")));
        }
        Ok(Seconds(Duration::from_secs_f64(secs)))
    }
}

/// Why a rollout's plan was refused; shown as `rollouts[<endpoint>]: <reason>`.
#[derive(Debug, thiserror::Error)]
#[error("rollouts[{endpoint}]: {reason}")]
pub struct PlanError {
    pub endpoint: String,
    pub reason: PlanRefusal,
}

/// The field that does not make sense, and why.
#[derive(Debug, thiserror::Error)]
pub enum PlanRefusal {
    #[error("canary is required")]
    NoCanary,
    #[error("canary: baseline and hold belong to strategy bluegreen; a canary's steps carry their own holds")]
    BlueGreenTimesOnCanary,
    #[error("canary: give either steps or a fixed weight, not both")]
    StepsAndWeight,
    #[error(
        "canary: strategy bluegreen moves all traffic at once; it takes no steps or weight (baseline and hold set its times)"
    )]
    WeightsOnBlueGreen,
    #[error(transparent)]
    Invalid(#[from] switchyard_core::rollout::InvalidPlan),
}

impl RolloutConfig {
    /// The decision plan; refuses what does not make sense, naming the field.
    pub fn plan(&self) -> Result<Plan, PlanError> {
        self.checked_plan().map_err(|reason| PlanError { endpoint: self.endpoint.clone(), reason })
    }

    fn checked_plan(&self) -> Result<Plan, PlanRefusal> {
        let defaults = Analysis::default();
        let a = &self.analysis;
        let analysis = Analysis {
            min_requests: a.min_requests.unwrap_or(defaults.min_requests),
            error_max_ratio: a.error_rate.max_ratio.unwrap_or(defaults.error_max_ratio),
            error_min_increase: a.error_rate.min_increase.unwrap_or(defaults.error_min_increase),
            latency_quantile: a.latency.quantile.unwrap_or(defaults.latency_quantile),
            latency_max_ratio: a.latency.max_ratio.unwrap_or(defaults.latency_max_ratio),
            alpha: a.alpha.unwrap_or(defaults.alpha),
        };
        let canary = self.canary.as_ref().ok_or(PlanRefusal::NoCanary)?;
        let ms = |d: Option<Seconds>, default: u64| d.map_or(default, |s| s.0.as_millis() as u64);
        if self.strategy == Strategy::Canary && (canary.baseline.is_some() || canary.hold.is_some()) {
            return Err(PlanRefusal::BlueGreenTimesOnCanary);
        }
        let schedule = match (self.strategy, &canary.steps, canary.weight) {
            (_, Some(_), Some(_)) => return Err(PlanRefusal::StepsAndWeight),
            (Strategy::Bluegreen, Some(_), _) | (Strategy::Bluegreen, _, Some(_)) => {
                return Err(PlanRefusal::WeightsOnBlueGreen);
            }
            (Strategy::Bluegreen, None, None) => {
                Schedule::Steps(Plan::blue_green(ms(canary.baseline, 30_000), ms(canary.hold, 60_000)))
            }
            (Strategy::Canary, None, Some(Percent(w))) => Schedule::Fixed(w),
            (Strategy::Canary, Some(steps), None) => Schedule::Steps(
                steps.iter().map(|s| Step { weight_bp: s.weight.0, hold_ms: s.hold.0.as_millis() as u64 }).collect(),
            ),
            (Strategy::Canary, None, None) => Schedule::Steps(Plan::default_steps(60_000)),
        };
        let plan = Plan { schedule, analysis };
        plan.validate()?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RolloutConfig, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    #[test]
    fn the_documented_example_parses() {
        let r = parse(
            "endpoint: scorer\ncontrol: { model: scorer, version: 1 }\ncanary:\n  model: scorer\n  version: 2\n  steps: [ { weight: 5, hold: 30s }, { weight: '25%', hold: 1m }, { weight: 50, hold: 500ms } ]\nshadows:\n  - { model: scorer-xgb, version: 1, sample: 100% }\nassignment: { header: x-user-id }\nanalysis:\n  min_requests: 200\n  error_rate: { max_ratio: 2.0, min_increase: 0.005 }\n  latency: { quantile: 0.99, max_ratio: 2.0 }\n  alpha: 0.01\non_canary_error: serve_control\nfaults: {}\n",
        )
        .unwrap();
        let plan = r.plan().unwrap();
        let Schedule::Steps(steps) = plan.schedule else { panic!() };
        assert_eq!(steps[1], Step { weight_bp: 2_500, hold_ms: 60_000 });
        assert_eq!(steps[2].hold_ms, 500);
        assert_eq!(r.shadows[0].sample, Percent(10_000));
        assert_eq!(plan.analysis.latency_quantile, 0.99);
    }

    #[test]
    fn nonsense_is_refused_with_the_field_named() {
        let base = "endpoint: e\ncontrol: { model: m, version: 1 }\n";
        assert!(
            parse(&format!("{base}canary: {{ model: m, version: 2, weight: 150 }}"))
                .unwrap_err()
                .to_string()
                .contains("150")
        );
        assert!(
            parse(&format!("{base}canary: {{ model: m, version: 2, wieght: 5 }}"))
                .unwrap_err()
                .to_string()
                .contains("wieght")
        );
        assert!(
            parse(&format!("{base}canary: {{ model: m, steps: [{{ weight: 5, hold: soon }}] }}"))
                .unwrap_err()
                .to_string()
                .contains("soon")
        );
        let both =
            parse(&format!("{base}canary: {{ model: m, weight: 5, steps: [{{ weight: 5, hold: 1s }}] }}")).unwrap();
        assert!(both.plan().unwrap_err().to_string().contains("either steps or a fixed weight"));
        let down = parse(&format!(
            "{base}canary: {{ model: m, steps: [{{ weight: 50, hold: 1s }}, {{ weight: 5, hold: 1s }}] }}"
        ))
        .unwrap();
        assert!(down.plan().unwrap_err().to_string().contains("steps[1]"));
        let alpha = parse(&format!("{base}canary: {{ model: m, weight: 5 }}\nanalysis: {{ alpha: 2 }}")).unwrap();
        assert!(alpha.plan().unwrap_err().to_string().contains("alpha"));
    }
}
