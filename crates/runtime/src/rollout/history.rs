//! A rollout's recent decisions in memory (its audit lines, newest last), for the admin API's history
//! and the console: seeded at start from the audit log when there is one, so a restart keeps them, and
//! bounded.

use super::RolloutDriver;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;
use std::sync::PoisonError;

/// Entries kept per rollout.
pub(super) const KEPT: usize = 1_000;

/// The last `KEPT` audit lines of `endpoint` in the audit log at `path` (none when it cannot be read).
pub(super) fn seed(path: &Path, endpoint: &str) -> VecDeque<Value> {
    let mut kept = VecDeque::new();
    let Ok(file) = std::fs::File::open(path) else { return kept };
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        // A cheap filter before parsing: most lines of a shared log belong to other endpoints.
        if !line.contains(endpoint) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["endpoint"] == endpoint
        {
            keep_last(&mut kept, v, KEPT);
        }
    }
    kept
}

/// Appends `item` to `q`, dropping the oldest so that at most `kept` remain (a bounded log).
pub fn keep_last<T>(q: &mut VecDeque<T>, item: T, kept: usize) {
    if q.len() >= kept {
        q.pop_front();
    }
    q.push_back(item);
}

impl RolloutDriver {
    /// Keeps one audit line.
    pub(super) fn remember_entry(&self, audit: &Value) {
        keep_last(&mut self.history.lock().unwrap_or_else(PoisonError::into_inner), audit.clone(), KEPT);
    }

    /// The latest `limit` decisions and events, oldest first.
    pub fn history(&self, limit: usize) -> Vec<Value> {
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        h.iter().skip(h.len().saturating_sub(limit)).cloned().collect()
    }

    /// Takes the history of the driver this one replaces, before what this one has added.
    pub(super) fn carry_history(&self, previous: &RolloutDriver) {
        let old = previous.history.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        for v in old.into_iter().rev() {
            if h.len() == KEPT {
                break;
            }
            h.push_front(v);
        }
    }
}
