//! A circuit breaker for one model version, as pure data: callers pass `now` in. Closed, it admits
//! everything and watches outcomes; it opens after `consecutive_failures` failures in a row or when the
//! failure ratio over the last `window` reaches `failure_ratio` (with at least `min_requests`); open, it
//! refuses at once for `open_for`; then it half-opens and admits one probe: a success closes it, a
//! failure opens it again. A probe whose outcome never comes (its client left) is replaced after
//! `open_for`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When the breaker opens and for how long (`circuit_breaker:` in a model's config.yaml).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it (0: never on this rule).
    pub consecutive_failures: u32,
    /// Failure ratio over the window that opens it (1.0 or more: never on this rule).
    pub failure_ratio: f64,
    /// The window the ratio is taken over.
    pub window: Duration,
    /// Outcomes the window needs before its ratio counts.
    pub min_requests: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
            open_for: Duration::from_secs(5),
        }
    }
}

/// Why it opened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    ConsecutiveFailures(u32),
    FailureRatio {
        failed: u32,
        total: u32,
    },
    /// The half-open probe failed.
    ProbeFailed,
}

impl Trip {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ConsecutiveFailures(_) => "consecutive_failures",
            Self::FailureRatio { .. } => "failure_ratio",
            Self::ProbeFailed => "probe_failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Whether a request may go to the model now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admitted as the half-open probe: its outcome decides.
    Probe,
    /// Refused; worth retrying after this long.
    Refuse {
        retry_after: Duration,
    },
}

/// A change of state, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Opened(Trip),
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive: u32,
    /// Outcomes in the window: (when, failed).
    recent: VecDeque<(Instant, bool)>,
    opened_at: Option<Instant>,
    probe_since: Option<Instant>,
    last_trip: Option<Trip>,
}

/// Most outcomes the window keeps (older ones fall out early under very high rates).
const MAX_RECENT: usize = 4096;

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            opened_at: None,
            probe_since: None,
            last_trip: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn last_trip(&self) -> Option<Trip> {
        self.last_trip
    }

    /// Whether a request may go to the model at `now`; may half-open an open breaker.
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        match self.state {
            BreakerState::Closed => (Admission::Admit, None),
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                let reopens = opened + self.policy.open_for;
                if now < reopens {
                    return (Admission::Refuse { retry_after: reopens - now }, None);
                }
                self.state = BreakerState::HalfOpen;
                self.probe_since = Some(now);
                (Admission::Probe, Some(Transition::HalfOpened))
            }
            BreakerState::HalfOpen => match self.probe_since {
                Some(since) if now < since + self.policy.open_for => {
                    (Admission::Refuse { retry_after: since + self.policy.open_for - now }, None)
                }
                _ => {
                    self.probe_since = Some(now);
                    (Admission::Probe, None)
                }
            },
        }
    }

    /// Records an outcome that counts (a success, or a failure of the model: not a client's mistake,
    /// not a refusal for load).
    pub fn record(&mut self, now: Instant, failed: bool, probe: bool) -> Option<Transition> {
        if self.state == BreakerState::HalfOpen {
            if !probe {
                return None;
            }
            self.probe_since = None;
            return Some(if failed { self.open(now, Trip::ProbeFailed) } else { self.close() });
        }
        if self.state == BreakerState::Open {
            return None;
        }
        self.consecutive = if failed { self.consecutive + 1 } else { 0 };
        self.recent.push_back((now, failed));
        while self.recent.len() > MAX_RECENT
            || self.recent.front().is_some_and(|&(t, _)| now.saturating_duration_since(t) > self.policy.window)
        {
            self.recent.pop_front();
        }
        let p = &self.policy;
        if p.consecutive_failures > 0 && self.consecutive >= p.consecutive_failures {
            return Some(self.open(now, Trip::ConsecutiveFailures(self.consecutive)));
        }
        let total = self.recent.len() as u32;
        let failed_n = self.recent.iter().filter(|(_, f)| *f).count() as u32;
        if p.failure_ratio < 1.0
            && total >= p.min_requests.max(1)
            && f64::from(failed_n) >= p.failure_ratio * f64::from(total)
        {
            return Some(self.open(now, Trip::FailureRatio { failed: failed_n, total }));
        }
        None
    }

    fn open(&mut self, now: Instant, why: Trip) -> Transition {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.last_trip = Some(why);
        Transition::Opened(why)
    }

    fn close(&mut self) -> Transition {
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.recent.clear();
        self.opened_at = None;
        Transition::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(5),
        }
    }

    #[test]
    fn consecutive_failures_open_it_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        assert_eq!(b.record(t0, true, false), None);
        assert_eq!(b.record(t0, false, false), None, "a success resets the run");
        assert_eq!(b.record(t0, true, false), None);
        assert_eq!(b.record(t0, true, false), None);
        assert_eq!(b.record(t0, true, false), Some(Transition::Opened(Trip::ConsecutiveFailures(3))));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.admit(later).0, Admission::Refuse { retry_after: Duration::from_secs(3) });
        let after = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(after), (Admission::Probe, Some(Transition::HalfOpened)));
        assert!(matches!(b.admit(after).0, Admission::Refuse { .. }), "one probe at a time");
        assert_eq!(b.record(after, false, false), None, "only the probe decides");
        assert_eq!(b.record(after, false, true), Some(Transition::Closed));
        assert_eq!(b.admit(after).0, Admission::Admit);
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_a_lost_probe_is_replaced() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy());
        for _ in 0..3 {
            b.record(t0, true, false);
        }
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(t1).0, Admission::Probe);
        assert_eq!(b.record(t1, true, true), Some(Transition::Opened(Trip::ProbeFailed)));
        assert!(matches!(b.admit(t1 + Duration::from_secs(1)).0, Admission::Refuse { .. }));
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.admit(t2).0, Admission::Probe);
        // The probe's client left: after open_for another probe goes.
        assert_eq!(b.admit(t2 + Duration::from_secs(5)).0, Admission::Probe);
    }

    #[test]
    fn the_failure_ratio_over_the_window_opens_it_once_there_are_enough_requests() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerPolicy { consecutive_failures: 0, ..policy() });
        for i in 0..9 {
            assert_eq!(b.record(t0, i % 2 == 0, false), None, "fewer than min_requests");
        }
        assert_eq!(b.record(t0, true, false), Some(Transition::Opened(Trip::FailureRatio { failed: 6, total: 10 })));
        // Old outcomes leave the window.
        let mut b = Breaker::new(BreakerPolicy { consecutive_failures: 0, ..policy() });
        for _ in 0..9 {
            b.record(t0, true, false);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.record(later, false, false), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
