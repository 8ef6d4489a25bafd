//! A rollout's recent traffic per arm, second by second, for the console's charts: requests, failures
//! and a latency histogram per second over the last five minutes, and the regression tests' e-values as
//! each second began (and at a decision), kept in a ring (bounded memory, O(1) per request, recorded
//! under the lock `record` already holds).

use super::{RolloutDriver, now_ms};
use serde_json::{Value, json};
use std::sync::PoisonError;
use switchyard_core::rollout::Rollout;

/// Seconds kept.
pub(super) const SECONDS: usize = 300;
/// Latency buckets: bucket `i` holds requests that took less than `50 us * 2^i` (the last, the rest).
const BUCKETS: usize = 20;

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    at: u64,
    requests: [u32; 2],
    failures: [u32; 2],
    latency: [[u32; BUCKETS]; 2],
    /// The error-rate and latency tests' e-values.
    evidence: Option<[f64; 2]>,
}

/// One arm's columns: requests, failures, p50 and p99 per second.
type Columns = (Vec<u32>, Vec<u32>, Vec<Option<f64>>, Vec<Option<f64>>);

/// The ring of seconds.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    seconds: Vec<Second>,
}

impl Default for Ring {
    fn default() -> Self {
        Self { seconds: vec![Second::default(); SECONDS] }
    }
}

fn bucket(seconds: f64) -> usize {
    if seconds < 50e-6 {
        return 0;
    }
    ((seconds / 50e-6).log2().floor() as usize + 1).min(BUCKETS - 1)
}

impl Ring {
    /// Counts a request of `arm` (0 control, 1 canary) at unix second `now`: failed, or served in
    /// `took` seconds. True when it is the second's first.
    pub(super) fn record(&mut self, now: u64, arm: usize, failed: bool, took: Option<f64>) -> bool {
        let s = &mut self.seconds[now as usize % SECONDS];
        let first = s.at != now;
        if first {
            *s = Second { at: now, ..Second::default() };
        }
        s.requests[arm] += 1;
        s.failures[arm] += u32::from(failed);
        if let Some(t) = took {
            s.latency[arm][bucket(t)] += 1;
        }
        first
    }

    /// The e-values at second `now` (after `record` for that second).
    fn evidence(&mut self, now: u64, error: f64, latency: f64) {
        let s = &mut self.seconds[now as usize % SECONDS];
        if s.at == now {
            s.evidence = Some([error, latency]);
        }
    }

    /// The last `SECONDS` seconds up to `now` (oldest first): per arm, requests, failures, p50 and p99
    /// (milliseconds, the upper edge of the bucket holding them; null without a served request).
    pub(super) fn snapshot(&self, now: u64) -> Value {
        let from = now.saturating_sub(SECONDS as u64 - 1);
        let mut arms: [Columns; 2] = Default::default();
        let mut evidence: [Vec<Option<f64>>; 2] = Default::default();
        for t in from..=now {
            let s = &self.seconds[t as usize % SECONDS];
            let s = if s.at == t { *s } else { Second::default() };
            for (test, column) in evidence.iter_mut().enumerate() {
                column.push(s.evidence.map(|e| e[test]));
            }
            for (arm, (req, fail, p50, p99)) in arms.iter_mut().enumerate() {
                req.push(s.requests[arm]);
                fail.push(s.failures[arm]);
                p50.push(quantile(&s.latency[arm], 0.5));
                p99.push(quantile(&s.latency[arm], 0.99));
            }
        }
        let arm = |a: &Columns| json!({ "requests": a.0, "failures": a.1, "p50_ms": a.2, "p99_ms": a.3 });
        json!({
            "from": from, "to": now, "control": arm(&arms[0]), "canary": arm(&arms[1]),
            "e_values": { "error_rate": evidence[0], "latency": evidence[1] },
        })
    }
}

impl RolloutDriver {
    /// Counts a request in its second, with the e-values when the second begins or `decided` (`m` is
    /// the machine, locked, after the request was judged).
    pub(super) fn record_second(&self, m: &Rollout, arm: usize, failed: bool, took: Option<f64>, decided: bool) {
        let now = now_ms() / 1000;
        let mut ring = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.record(now, arm, failed, took) || decided {
            let e = m.evidence();
            ring.evidence(now, e.error_e_value, e.latency_e_value);
        }
    }

    /// The last five minutes of traffic per arm, second by second (for the console's charts).
    pub fn series(&self) -> Value {
        // Copied out (about 100 KB) so that requests recording meanwhile wait for a copy, not for the JSON.
        let ring = self.series.lock().unwrap_or_else(PoisonError::into_inner).clone();
        ring.snapshot(now_ms() / 1000)
    }
}

/// The upper edge (ms) of the bucket holding quantile `q`.
fn quantile(h: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u32 = h.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * f64::from(total)).ceil().max(1.0) as u32;
    let mut seen = 0;
    for (i, &n) in h.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(0.05 * f64::from(1u32 << i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_kept_per_arm_and_forgotten_after_five_minutes() {
        let mut r = Ring::default();
        for _ in 0..99 {
            r.record(1_000, 0, false, Some(0.000_3));
        }
        r.record(1_000, 0, false, Some(0.2));
        r.record(1_000, 1, true, None);
        r.evidence(1_000, 3.0, 0.5);
        let s = r.snapshot(1_001);
        let e = &s["e_values"];
        assert_eq!((e["error_rate"][SECONDS - 2].clone(), e["latency"][SECONDS - 2].clone()), (json!(3.0), json!(0.5)));
        assert!(e["error_rate"][SECONDS - 1].is_null());
        let last = |k: &str, arm: &str| s[arm][k].as_array().unwrap()[SECONDS - 2].clone();
        assert_eq!((last("requests", "control"), last("failures", "canary")), (json!(100), json!(1)));
        // 0.3 ms falls under the 0.4 ms edge; the one 200 ms request of 100 lies above the p99 (rank 99).
        assert_eq!(last("p50_ms", "control"), json!(0.4));
        assert_eq!(last("p99_ms", "control"), json!(0.4));
        assert!(last("p50_ms", "canary").is_null());
        // Five minutes on, the slot is another second's.
        let later = r.snapshot(1_000 + SECONDS as u64);
        assert_eq!(later["control"]["requests"].as_array().unwrap().iter().filter(|v| **v != json!(0)).count(), 0);
    }
}
