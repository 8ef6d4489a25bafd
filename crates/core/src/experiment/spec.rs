//! An experiment as a rollout declares it: the plan (metrics, thresholds, alpha), which metrics are
//! accuracies of a reported label against the served one, and what to do on each verdict. Also turns
//! one feedback report's named values into the metric outcomes the experiment records, refusing a value
//! the experiment does not read (a typo is an error, not a silently ignored outcome).

use super::Plan;
use serde::Serialize;

/// A metric worth 1 when the reported value `label` equals the served output's label, else 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accuracy {
    pub metric: String,
    pub label: String,
}

/// What a verdict does besides being reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnShip {
    /// Promote the canary.
    Promote,
    /// Report the verdict only (an operator promotes).
    #[default]
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnKill {
    /// Roll the canary back.
    #[default]
    Rollback,
    /// Report the verdict only.
    None,
}

/// One experiment's declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub plan: Plan,
    pub accuracy: Vec<Accuracy>,
    pub on_ship: OnShip,
    pub on_kill: OnKill,
}

/// A reported value: a number (a bool is 0 or 1) or a label.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
}

impl Value {
    /// As a label: text as it is, a number as Rust prints it (`7`, `0.5`), so `7` and `"7"` agree.
    pub fn label(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

/// Why a reported value cannot be recorded (the message names the value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("values.{name}: the experiment reads {reads}, not '{name}'")]
    Unread { name: String, reads: String },
    #[error("values.{0}: must be a finite number (or true/false)")]
    NotNumber(String),
    #[error("values.{0}: the served output had no label to compare it with")]
    NoServedLabel(String),
}

impl Spec {
    /// The names a report's values may have: each metric read directly, and each accuracy's label.
    pub fn reads(&self) -> Vec<&str> {
        let mut names: Vec<&str> =
            self.plan.metrics().filter(|m| !self.accuracy.iter().any(|a| a.metric == *m)).collect();
        for a in &self.accuracy {
            if !names.contains(&a.label.as_str()) {
                names.push(&a.label);
            }
        }
        names
    }

    /// Whether any metric compares labels (the served label must then be kept).
    pub fn needs_label(&self) -> bool {
        !self.accuracy.is_empty()
    }

    /// The outcomes one reported value makes: `(metric, outcome)` pairs.
    pub fn outcomes(&self, name: &str, value: &Value, served: Option<&str>) -> Result<Vec<(String, f64)>, ValueError> {
        let accuracies: Vec<&Accuracy> = self.accuracy.iter().filter(|a| a.label == name).collect();
        if !accuracies.is_empty() {
            let served = served.ok_or_else(|| ValueError::NoServedLabel(name.to_owned()))?;
            let hit = if value.label() == served { 1.0 } else { 0.0 };
            return Ok(accuracies.iter().map(|a| (a.metric.clone(), hit)).collect());
        }
        if !self.reads().contains(&name) {
            return Err(ValueError::Unread { name: name.to_owned(), reads: self.reads().join(", ") });
        }
        match value {
            Value::Number(n) if n.is_finite() => Ok(vec![(name.to_owned(), *n)]),
            _ => Err(ValueError::NotNumber(name.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Guardrail;

    fn spec() -> Spec {
        let mut plan = Plan::new("accuracy");
        plan.guardrails.push(Guardrail {
            metric: "revenue".into(),
            direction: Default::default(),
            max_degradation: 0.1,
        });
        Spec {
            plan,
            accuracy: vec![Accuracy { metric: "accuracy".into(), label: "label".into() }],
            on_ship: OnShip::None,
            on_kill: OnKill::Rollback,
        }
    }

    #[test]
    fn values_become_outcomes_and_strays_are_named() {
        let s = spec();
        assert_eq!(s.reads(), ["revenue", "label"]);
        let hit = s.outcomes("label", &Value::Number(7.0), Some("7")).unwrap();
        assert_eq!(hit, [("accuracy".to_owned(), 1.0)]);
        assert_eq!(s.outcomes("label", &Value::Text("cat".into()), Some("7")).unwrap()[0].1, 0.0);
        assert_eq!(s.outcomes("revenue", &Value::Number(2.5), None).unwrap(), [("revenue".to_owned(), 2.5)]);
        assert_eq!(
            s.outcomes("revenu", &Value::Number(1.0), None).unwrap_err().to_string(),
            "values.revenu: the experiment reads revenue, label, not 'revenu'"
        );
        assert!(matches!(s.outcomes("revenue", &Value::Text("x".into()), None), Err(ValueError::NotNumber(_))));
        assert!(matches!(s.outcomes("label", &Value::Number(1.0), None), Err(ValueError::NoServedLabel(_))));
        assert!(s.outcomes("accuracy", &Value::Number(1.0), None).is_err(), "an accuracy is derived, not reported");
    }
}
