//! A model's `drift:` section: where the reference comes from, the window, the bins, how many columns
//! of each tensor are tracked, and the PSI thresholds. Checked here, with the field named.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// A JSON file (relative to the model's directory) of series name → sample values; without it the
    /// reference is the first `reference_size` values each series serves.
    pub reference_file: Option<PathBuf>,
    #[serde(default = "reference_size")]
    pub reference_size: u64,
    /// Values per series in the sliding window compared with the reference [1000].
    #[serde(default = "window")]
    pub window: u64,
    #[serde(default = "bins")]
    pub bins: usize,
    /// Columns tracked per input and per output [16].
    #[serde(default = "features")]
    pub features: usize,
    /// PSI over this is a warning [0.1].
    #[serde(default = "warning")]
    pub warning: f64,
    /// PSI over this is critical [0.25].
    #[serde(default = "critical")]
    pub critical: f64,
}

fn reference_size() -> u64 {
    1_000
}
fn window() -> u64 {
    1_000
}
fn bins() -> usize {
    10
}
fn features() -> usize {
    16
}
fn warning() -> f64 {
    0.1
}
fn critical() -> f64 {
    0.25
}

impl DriftConfig {
    /// The first thing that does not make sense, naming the field.
    pub fn problem(&self) -> Option<String> {
        if !(2..=100).contains(&self.bins) {
            return Some(format!("drift.bins must be between 2 and 100, not {}", self.bins));
        }
        if !(1..=256).contains(&self.features) {
            return Some(format!("drift.features must be between 1 and 256, not {}", self.features));
        }
        if self.reference_size < 10 * self.bins as u64 {
            return Some(format!("drift.reference_size must be at least 10 values per bin ({})", 10 * self.bins));
        }
        if !(100..=10_000_000).contains(&self.window) {
            return Some(format!("drift.window must be between 100 and 10000000 values, not {}", self.window));
        }
        if !(self.warning > 0.0 && self.warning < self.critical && self.critical.is_finite()) {
            return Some(format!(
                "drift.warning ({}) must be above 0 and below drift.critical ({})",
                self.warning, self.critical
            ));
        }
        None
    }
}
