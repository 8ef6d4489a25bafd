use super::*;
use crate::rollout::errors::Side;
use crate::rollout::plan::{Analysis, FULL_WEIGHT, Schedule, Step};

fn plan(steps: &[u32]) -> Plan {
    let steps = steps.iter().map(|&weight_bp| Step { weight_bp, hold_ms: 5_000 }).collect();
    Plan { schedule: Schedule::Steps(steps), analysis: Analysis { min_requests: 100, ..Analysis::default() } }
}

/// A deterministic request stream: `(side, failed, latency)` for request `i` at a 20 % share.
fn request(i: u64, canary_fail_every: u64) -> (Side, bool, f64) {
    let side = if i.is_multiple_of(5) { Side::Canary } else { Side::Control };
    let fail_every = if side == Side::Canary { canary_fail_every } else { 500 };
    (side, (i / 5) % fail_every == 1, 0.002 + ((i * 7919) % 100) as f64 * 0.00005)
}

#[test]
fn one_replica_pooled_alone_decides_as_it_would() {
    let p = plan(&[2_000, 5_000]);
    for canary_fail_every in [500, 6] {
        let mut alone = Rollout::new(p.clone(), 0);
        let mut replica = Rollout::new(p.clone(), 0);
        for i in 0..30_000u64 {
            let (side, failed, latency) = request(i, canary_fail_every);
            alone.record(side, failed, latency);
            replica.record(side, failed, latency);
            let decided = alone.evaluate(i);
            let mut pooled = Rollout::pooled(p.clone(), replica.state().clone(), [&replica.share()]);
            assert_eq!(pooled.evaluate(i), decided, "request {i}");
            let (a, b) = (alone.evidence(), pooled.evidence());
            assert!((a.error_e_value - b.error_e_value).abs() <= 1e-9 * a.error_e_value.max(1.0), "{a:?} {b:?}");
            assert_eq!((a.step_requests, a.latency_e_value), (b.step_requests, b.latency_e_value));
            replica.adopt(pooled.state().clone());
            if decided.is_some() {
                assert_eq!(alone.state(), replica.state());
            }
            if !alone.is_judging() {
                break;
            }
        }
        let expected = if canary_fail_every == 6 { Phase::RolledBack } else { Phase::Promoted };
        assert_eq!(alone.state().phase, expected);
    }
}

#[test]
fn pooled_evidence_crosses_before_any_replica_alone() {
    let p = plan(&[2_000]);
    let mut replicas: Vec<Rollout> = (0..3).map(|_| Rollout::new(p.clone(), 0)).collect();
    let state = replicas[0].state().clone();
    // Uneven traffic: 60 / 30 / 10 %; the canary fails 6 % of requests, control 0.2 %.
    let mut pooled_at = None;
    for i in 0..60_000u64 {
        let r = match (i.wrapping_mul(2_654_435_761) >> 7) % 10 {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        };
        let (side, failed, latency) = request(i, 16);
        replicas[r].record(side, failed, latency);
        let shares: Vec<Share> = replicas.iter().map(Rollout::share).collect();
        let mut pooled = Rollout::pooled(p.clone(), state.clone(), &shares);
        if pooled_at.is_none() && pooled.evaluate_regression(i).is_some() {
            pooled_at = Some(i);
            break;
        }
    }
    let pooled_at = pooled_at.expect("the pooled test never crossed");
    assert!(pooled_at < 5_000, "{pooled_at}");
    for (n, r) in replicas.iter_mut().enumerate() {
        assert!(r.evaluate_regression(pooled_at).is_none(), "replica {n} crossed alone by request {pooled_at}");
    }
}

#[test]
fn adopting_a_decision_starts_the_steps_counts_and_the_baseline_tests() {
    let p = plan(&[2_000, FULL_WEIGHT]);
    let mut replica = Rollout::new(p.clone(), 0);
    for i in 0..1_000u64 {
        let (side, failed, latency) = request(i, 500);
        replica.record(side, failed, latency);
    }
    assert!(replica.share().step_requests[1] > 0);
    let mut leader = Rollout::pooled(p.clone(), replica.state().clone(), [&replica.share()]);
    assert!(matches!(leader.evaluate(6_000), Some(Decision::Advanced { step: 1, weight_bp: FULL_WEIGHT })));
    assert!(leader.state().baseline.is_some(), "the leader froze the pooled baseline");
    replica.adopt(leader.state().clone());
    assert_eq!(replica.weight_bp(), FULL_WEIGHT);
    let share = replica.share();
    assert_eq!(share.step_requests, [0, 0]);
    assert_eq!(share.baseline.as_ref().map(|b| b.baseline), leader.state().baseline);
    replica.record(Side::Canary, true, 0.0);
    let pooled = Rollout::pooled(p, leader.state().clone(), [&replica.share()]);
    assert_eq!(pooled.evidence().baseline.map(|b| b.error_e_value > 1.0), Some(true));
}

#[test]
fn a_cut_off_replica_rolls_back_but_never_advances() {
    let p = plan(&[2_000, 5_000]);
    let mut replica = Rollout::new(p, 0);
    for i in 0..20_000u64 {
        let (side, failed, latency) = request(i, 500);
        replica.record(side, failed, latency);
        assert_eq!(replica.evaluate_regression(i), None);
    }
    assert_eq!(replica.state().phase, Phase::Step(0));
    for i in 0..2_000u64 {
        replica.record(Side::Canary, true, 0.0);
        if replica.evaluate_regression(20_000 + i).is_some() {
            assert_eq!(replica.state().phase, Phase::RolledBack);
            return;
        }
    }
    panic!("a canary failing every request was never rolled back");
}

#[test]
fn shares_travel_as_json_even_with_infinite_evidence() {
    let p = plan(&[2_000]);
    let mut r = Rollout::new(p, 0);
    r.record(Side::Control, false, 0.01);
    r.latency.log_e = f64::INFINITY;
    let json = serde_json::to_string(&r.share()).expect("serialises");
    let back: Share = serde_json::from_str(&json).expect("parses");
    assert_eq!(back.latency_events.log_e, 1e300);
    assert_eq!(back.control_latency.iter().map(|(_, c)| c).sum::<u64>(), 1);
}

#[test]
fn a_head_start_from_the_others_lets_a_small_replica_judge_sooner() {
    let p = plan(&[2_000]);
    // A big replica has already seen a canary 4x slower than control.
    let mut big = Rollout::new(p.clone(), 0);
    for i in 0..2_000u64 {
        let (side, failed, latency) = request(i, 500);
        big.record(side, failed, if side == Side::Canary { latency * 4.0 } else { latency });
    }
    let prior = Prior::from_shares([&big.share()]);
    let run = |with_prior: bool| {
        let mut small = Rollout::new(p.clone(), 0);
        if with_prior {
            small.set_prior(&prior);
        }
        for i in 0..2_000u64 {
            let (side, failed, latency) = request(i, 500);
            small.record(side, failed, if side == Side::Canary { latency * 4.0 } else { latency });
            if small.evaluate_regression(i).is_some() {
                return i;
            }
        }
        u64::MAX
    };
    let (alone, helped) = (run(false), run(true));
    assert!(helped < alone, "with the others' head start at request {helped}, alone at {alone}");
    // The borrowed reference gives tail events before this replica has 30 control requests of its own.
    let mut small = Rollout::new(p, 0);
    small.set_prior(&prior);
    small.record(Side::Canary, false, 1.0);
    assert_eq!(small.share().latency_events.hits, 1);
}
