use super::*;
use crate::rollout::plan::{Analysis, Step};

fn plan() -> Plan {
    let steps = vec![Step { weight_bp: 500, hold_ms: 10_000 }, Step { weight_bp: 5_000, hold_ms: 10_000 }];
    Plan { schedule: Schedule::Steps(steps), analysis: Analysis { min_requests: 100, ..Analysis::default() } }
}

/// Feeds `n` requests at 1 ms apart: every `canary_every`-th goes to the canary; failures and latencies
/// from the closures. Returns the decisions with their times.
fn drive(
    r: &mut Rollout,
    start_ms: u64,
    n: u64,
    canary_every: u64,
    fails: impl Fn(Side, u64) -> bool,
    latency: impl Fn(Side, u64) -> f64,
) -> Vec<(u64, Decision)> {
    let mut out = Vec::new();
    for i in 0..n {
        let side = if i % canary_every == 0 { Side::Canary } else { Side::Control };
        r.record(side, fails(side, i), latency(side, i));
        let now = start_ms + i;
        if let Some(d) = r.evaluate(now) {
            out.push((now, d));
        }
    }
    out
}

fn steady(_: Side, i: u64) -> f64 {
    0.002 + (i % 50) as f64 * 0.0001
}

#[test]
fn a_healthy_canary_walks_its_steps_and_is_promoted() {
    let mut r = Rollout::new(plan(), 0);
    assert_eq!((r.state().phase, r.weight_bp()), (Phase::Step(0), 500));
    let d = drive(&mut r, 0, 25_000, 4, |_, i| i % 200 == 3, steady);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0], (10_000, Decision::Advanced { step: 1, weight_bp: 5_000 }));
    assert_eq!(d[1], (20_000, Decision::Promoted { reason: Reason::StepsPassed }));
    assert_eq!((r.state().phase, r.weight_bp()), (Phase::Promoted, FULL_WEIGHT));
    assert!(r.evaluate(30_000).is_none());
}

#[test]
fn a_failing_canary_is_rolled_back_on_error_rate() {
    let mut r = Rollout::new(plan(), 0);
    let d = drive(&mut r, 0, 20_000, 4, |side, i| side == Side::Canary && i % 20 == 0, steady);
    let (at, Decision::RolledBack { reason: Reason::ErrorRate { canary_rate, control_rate, e_value, threshold, .. } }) =
        &d[0]
    else {
        panic!("{d:?}")
    };
    assert!(*at < 2_000, "took {at} ms");
    assert!(*canary_rate > 0.1 && *control_rate == 0.0 && e_value >= threshold);
    assert_eq!((r.state().phase, r.weight_bp(), r.state().verdict), (Phase::RolledBack, 0, Verdict::Regressed));
    // Nothing more is recorded or decided after a rollback.
    assert!(drive(&mut r, 20_000, 1_000, 4, |_, _| true, steady).is_empty());
}

#[test]
fn a_slower_canary_is_rolled_back_on_latency() {
    let mut r = Rollout::new(plan(), 0);
    let slow = |side: Side, i: u64| if side == Side::Canary { 3.0 * steady(side, i) } else { steady(side, i) };
    let d = drive(&mut r, 0, 60_000, 4, |_, _| false, slow);
    let Some((_, Decision::RolledBack { reason: Reason::Latency { canary_seconds, control_seconds, .. } })) = d.first()
    else {
        panic!("{d:?}")
    };
    assert!(canary_seconds > &(2.5 * control_seconds));
}

#[test]
fn pause_holds_the_step_and_admin_actions_are_checked() {
    let mut r = Rollout::new(plan(), 0);
    assert_eq!(r.act(Action::Pause, 1), Ok(Decision::Paused));
    assert!(r.act(Action::Pause, 2).is_err());
    assert!(drive(&mut r, 0, 15_000, 4, |_, _| false, steady).is_empty());
    assert_eq!(r.state().verdict, Verdict::Healthy);
    assert_eq!(r.act(Action::Resume, 15_000), Ok(Decision::Resumed));
    assert_eq!(r.evaluate(15_001), Some(Decision::Advanced { step: 1, weight_bp: 5_000 }));
    assert_eq!(r.act(Action::Rollback, 15_002), Ok(Decision::RolledBack { reason: Reason::Admin }));
    assert_eq!(r.act(Action::Promote, 15_003), Err(ActionRefused::Finished("rolled_back")));
}

#[test]
fn a_fixed_split_never_promotes_but_still_rolls_back() {
    let fixed =
        Plan { schedule: Schedule::Fixed(1_000), analysis: Analysis { min_requests: 10, ..Analysis::default() } };
    let mut r = Rollout::new(fixed.clone(), 0);
    assert!(drive(&mut r, 0, 30_000, 10, |_, _| false, steady).is_empty());
    assert_eq!((r.state().phase, r.weight_bp()), (Phase::Fixed, 1_000));
    let mut r = Rollout::new(fixed, 0);
    assert!(matches!(drive(&mut r, 0, 30_000, 10, |s, _| s == Side::Canary, steady)[0].1, Decision::RolledBack { .. }));
}

#[test]
fn restore_keeps_the_phase_and_the_step_clock() {
    let mut r = Rollout::new(plan(), 0);
    drive(&mut r, 0, 12_000, 4, |_, _| false, steady);
    let saved = r.state().clone();
    assert_eq!(saved.phase, Phase::Step(1));
    let mut back = Rollout::resume(plan(), saved.clone()).unwrap();
    assert_eq!(back.state(), &saved);
    assert_eq!(back.weight_bp(), 5_000);
    assert!(back.evaluate(saved.step_started_ms + 100).is_none());
    let unavailable = back.canary_unavailable("no model.onnx".into(), 13_000);
    assert!(matches!(unavailable, Some(Decision::RolledBack { reason: Reason::CanaryUnavailable { .. } })));
}

#[test]
fn resuming_takes_only_what_the_new_plan_can_hold() {
    let mut r = Rollout::new(plan(), 0);
    drive(&mut r, 0, 12_000, 4, |_, _| false, steady);
    let saved = r.state().clone();
    assert_eq!(saved.phase, Phase::Step(1));
    // The plan lost its second step: refused (the driver then starts the new plan), never a panic.
    let shorter = Plan { schedule: Schedule::Steps(vec![Step { weight_bp: 500, hold_ms: 10 }]), ..plan() };
    assert_eq!(Rollout::resume(shorter, saved.clone()).unwrap_err(), ResumeRefused::StepGone { saved: 1, steps: 1 });
    // A fixed split saved, steps now: refused; steps saved, a fixed split now: refused.
    let fixed = Plan { schedule: Schedule::Fixed(1_000), ..plan() };
    assert_eq!(Rollout::resume(fixed.clone(), saved.clone()).unwrap_err(), ResumeRefused::NowFixed);
    let fixed_state = Rollout::new(fixed, 0).state().clone();
    assert_eq!(Rollout::resume(plan(), fixed_state).unwrap_err(), ResumeRefused::NowSteps);
    // The step still exists with another weight: the plan's weight wins.
    let reweighted = Plan {
        schedule: Schedule::Steps(vec![Step { weight_bp: 500, hold_ms: 10 }, Step { weight_bp: 3_000, hold_ms: 10 }]),
        ..plan()
    };
    let mut back = Rollout::resume(reweighted, saved).unwrap();
    assert_eq!(back.weight_bp(), 3_000);
    // Even a state that slipped past every check cannot make evaluate panic.
    back.state.phase = Phase::Step(7);
    assert_eq!(back.evaluate(1_000_000), None);
}

fn blue_green() -> Plan {
    let analysis = Analysis { min_requests: 200, error_min_increase: 0.0, ..Analysis::default() };
    Plan { schedule: Schedule::Steps(Plan::blue_green(1_000, 5_000)), analysis }
}

#[test]
fn blue_green_measures_control_then_judges_the_canary_against_it() {
    // Control alone for the baseline step, then all traffic on a canary as good as control: promoted.
    let mut r = Rollout::new(blue_green(), 0);
    assert_eq!(r.weight_bp(), 0);
    let d = drive(&mut r, 0, 1_500, 1_000_000, |_, i| i % 100 == 7, steady);
    assert_eq!(d, vec![(1_000, Decision::Advanced { step: 1, weight_bp: FULL_WEIGHT })]);
    let b = r.state().baseline.expect("baseline frozen at the switch");
    assert_eq!((b.control_requests, b.control_errors), (1_000, 10));
    assert!(b.latency_bound_seconds.is_some_and(|u| u >= 0.0067), "{b:?}");
    let d = drive(&mut r, 1_500, 6_000, 1, |_, i| i % 100 == 7, steady);
    assert_eq!(d, vec![(6_000, Decision::Promoted { reason: Reason::StepsPassed })]);
}

#[test]
fn blue_green_rolls_back_a_canary_worse_than_the_baseline() {
    for (fails, factor, kind) in [(10, 1.0, "error_rate"), (1_000_000, 4.0, "latency")] {
        let mut r = Rollout::new(blue_green(), 0);
        drive(&mut r, 0, 1_500, 1_000_000, |_, i| i % 100 == 7, steady);
        let d = drive(&mut r, 1_500, 6_000, 1, |_, i| i % fails == 3, |s, i| factor * steady(s, i));
        let Some((at, Decision::RolledBack { reason })) = d.first() else { panic!("{kind}: {d:?}") };
        assert_eq!(reason.label(), kind, "{reason:?}");
        assert!(*at < 1_500 + 500, "{kind}: took {} requests", at - 1_500);
        // The baseline is durable: a restart during the 100 % step judges against the same figures.
        let back = Rollout::resume(blue_green(), r.state().clone()).unwrap();
        assert_eq!(back.state().baseline, r.state().baseline);
    }
}

#[test]
fn a_first_step_at_full_weight_is_refused() {
    let p = Plan { schedule: Schedule::Steps(vec![Step { weight_bp: FULL_WEIGHT, hold_ms: 1 }]), ..plan() };
    assert!(p.validate().unwrap_err().to_string().contains("bluegreen"));
    assert!(Plan { schedule: Schedule::Fixed(FULL_WEIGHT), ..plan() }.validate().is_err());
    assert!(blue_green().validate().is_ok());
}

#[test]
fn a_canary_failing_every_request_at_half_the_traffic_is_rolled_back() {
    // Found through the binary: with as many canary requests as control ones, a canary that fails them
    // all was indistinguishable from a null of "both fail half the time" once the analysis began.
    for canary_every in [2, 3] {
        let mut r = Rollout::new(plan(), 0);
        let d = drive(&mut r, 0, 5_000, canary_every, |side, _| side == Side::Canary, steady);
        let rolled_back = d.iter().find(|(_, d)| matches!(d, Decision::RolledBack { .. }));
        let (at, _) =
            rolled_back.unwrap_or_else(|| panic!("never rolled back (1 in {canary_every}): {:?}", r.evidence()));
        assert!(*at < 500, "took {at} ms");
    }
}
