//! Fleet mode: one rollout decided by a fleet of replicas instead of one server. It exists to check the
//! README's two claims about pooling (`Rollout::pooled`): A/A false rollbacks stay within alpha when
//! shares are uneven, late and read by a leader that may fail over; and the pooled test rolls a failing
//! canary back sooner than any replica could on its own share of the traffic.
//!
//! The model: 200 rps, each request to replica r with probability 60 / 30 / 10 %, then to the canary at
//! that replica's current weight (a fixed 20 % split, the same traffic as the single-server rows). Each
//! replica records its requests in its own `Rollout` and publishes `share()` every 100 ms (the fleet's
//! default `publish_interval`; random phase, ±20 ms jitter), reading the others' latest shares as it does
//! (`Prior`: its plug-ins' head start and, until it has its own, a tail reference); the leader gets a
//! share 0–20 ms later, keeps the latest per replica, and every 100 ms
//! pools them and evaluates. A rollback counts at the tick that decides it; it reaches each replica
//! 0–1 s later, which routes at the old weight until then. In half the runs the leader fails at a random
//! time and nothing is decided for 2–2.5 s: the shares are the state, so the next leader carries on from
//! them. Beside the fleet, each replica is judged alone (`evaluate_regression` after every request it
//! serves, as a replica cut off from the others would be) on the same stream.

use crate::rng::Rng;
use crate::scenario::{Outcome, Scenario};
use crate::{Args, Tally, fmt, wilson};
use switchyard_core::rollout::{Decision, FULL_WEIGHT, Plan, Prior, Rollout, Schedule, Share, Side};

/// Each replica's share of the traffic, and the fleet's traffic.
const TRAFFIC: [f64; 3] = [0.6, 0.3, 0.1];
const RPS: f64 = 200.0;
/// Seconds: the leader's tick; a replica's share period and its jitter either way; a share's way to the
/// leader; a decision's way to the replicas; a failed leader's gap, plus up to `OUTAGE_EXTRA`.
const TICK: f64 = 0.1;
const PUBLISH: f64 = 0.1;
const JITTER: f64 = 0.02;
const DELIVERY: f64 = 0.02;
const ADOPT: f64 = 1.0;
const OUTAGE: f64 = 2.0;
const OUTAGE_EXTRA: f64 = 0.5;
/// The A/A rows' length (a third of the fleet's cost is theirs); the regressions run for `--minutes`.
const AA_SECONDS: f64 = 300.0;

/// What one run decided.
#[derive(Debug, Default)]
struct FleetRun {
    /// The leader's rollback: requests served fleet-wide by then, and its time.
    fleet: Option<(u64, f64)>,
    /// Each replica judged alone: its own requests by then, and the time.
    alone: [Option<(u64, f64)>; 3],
    /// Canary requests served after the leader's decision, until each replica had applied it.
    after: u64,
    failover: bool,
}

struct Replica {
    rollout: Rollout,
    /// The same replica judging its own evidence (regression rows only).
    alone: Option<Rollout>,
    served: u64,
    next_publish: f64,
    /// Shares on their way to the leader (at most one: shares are >= 150 ms apart, delivery <= 20 ms).
    in_flight: Vec<(f64, Share)>,
    /// The latest share the leader has from this replica.
    latest: Option<Share>,
    /// When the leader's decision reaches this replica, while it is on its way.
    adopt_at: Option<f64>,
}

enum Event {
    Publish(usize),
    Deliver(usize, usize),
    Tick,
    Adopt(usize),
}

/// The next thing to happen: a replica publishes, a share arrives, the leader ticks (until it has
/// decided), a decision arrives.
fn next_event(reps: &[Replica], tick: Option<f64>) -> Option<(f64, Event)> {
    let mut best: Option<(f64, Event)> = tick.map(|t| (t, Event::Tick));
    let mut consider = |at: f64, e: Event| {
        if best.as_ref().is_none_or(|(b, _)| at < *b) {
            best = Some((at, e));
        }
    };
    for (r, rep) in reps.iter().enumerate() {
        if tick.is_some() {
            consider(rep.next_publish, Event::Publish(r));
        }
        for (k, (at, _)) in rep.in_flight.iter().enumerate() {
            consider(*at, Event::Deliver(r, k));
        }
        if let Some(at) = rep.adopt_at {
            consider(at, Event::Adopt(r));
        }
    }
    best
}

/// A request's arm, outcome and latency at the canary weight `weight_bp`, from its draws.
fn arm(s: &Scenario, weight_bp: u32, route: f64, fail: f64, latency: f64) -> (Side, bool, f64) {
    if route < f64::from(weight_bp) / f64::from(FULL_WEIGHT) {
        (Side::Canary, fail < s.canary_error, latency * s.latency_factor)
    } else {
        (Side::Control, fail < s.control_error, latency)
    }
}

/// One seeded run of the fleet (and, with `alone`, of each replica judged alone) over `seconds`.
fn run(s: &Scenario, seconds: f64, seed: u64, alone: bool) -> FleetRun {
    let mut traffic = Rng::new(seed);
    let mut timing = Rng::new(seed ^ 0x00f1_ee70_0000_0000);
    let plan = Plan { schedule: Schedule::Fixed((s.canary_share * 10_000.0) as u32), analysis: s.analysis };
    let mut state = Rollout::new(plan.clone(), 0).state().clone();
    let mut reps: Vec<Replica> = TRAFFIC
        .iter()
        .map(|_| Replica {
            rollout: Rollout::new(plan.clone(), 0),
            alone: alone.then(|| Rollout::new(plan.clone(), 0)),
            served: 0,
            next_publish: PUBLISH * timing.uniform(),
            in_flight: Vec::new(),
            latest: None,
            adopt_at: None,
        })
        .collect();
    let mut out = FleetRun::default();
    let mut tick = TICK * timing.uniform();
    let outage = timing.bernoulli(0.5).then(|| {
        let start = seconds * timing.uniform();
        (start, start + OUTAGE + OUTAGE_EXTRA * timing.uniform())
    });
    out.failover = outage.is_some();
    for i in 0..(RPS * seconds) as u64 {
        let t = i as f64 / RPS;
        // What happened since the last request, in time order.
        while let Some((at, event)) = next_event(&reps, out.fleet.is_none().then_some(tick))
            && at <= t
        {
            match event {
                Event::Publish(r) => {
                    // Its round also reads the others' shares from the store: its plug-ins' head start.
                    let others =
                        reps.iter().enumerate().filter(|(j, _)| *j != r).filter_map(|(_, o)| o.latest.as_ref());
                    let prior = Prior::from_shares(others);
                    let rep = &mut reps[r];
                    rep.rollout.set_prior(&prior);
                    rep.in_flight.push((at + DELIVERY * timing.uniform(), rep.rollout.share()));
                    rep.next_publish = at + PUBLISH + JITTER * (2.0 * timing.uniform() - 1.0);
                }
                Event::Deliver(r, k) => reps[r].latest = Some(reps[r].in_flight.remove(k).1),
                Event::Tick => {
                    tick += TICK;
                    if outage.is_some_and(|(from, to)| (from..to).contains(&at)) {
                        continue;
                    }
                    let mut leader =
                        Rollout::pooled(plan.clone(), state, reps.iter().filter_map(|r| r.latest.as_ref()));
                    let decision = leader.evaluate(ms(at));
                    state = leader.state().clone();
                    if matches!(decision, Some(Decision::RolledBack { .. })) {
                        out.fleet = Some((i, at));
                        for rep in &mut reps {
                            rep.adopt_at = Some(at + ADOPT * timing.uniform());
                        }
                    }
                }
                Event::Adopt(r) => {
                    reps[r].rollout.adopt(state.clone());
                    reps[r].adopt_at = None;
                }
            }
        }
        let pick = traffic.uniform();
        let (route, fail) = (traffic.uniform(), traffic.uniform());
        let mut latency = s.median_seconds * (s.sigma * traffic.normal()).exp();
        if traffic.bernoulli(s.outlier_rate) {
            latency *= s.outlier_factor;
        }
        if t < s.warmup_seconds {
            latency *= s.warmup_factor;
        }
        // Replica 0, 1 or 2 by the cumulative shares.
        let r = usize::from(pick >= TRAFFIC[0]) + usize::from(pick >= TRAFFIC[0] + TRAFFIC[1]);
        let rep = &mut reps[r];
        rep.served += 1;
        let (side, failed, seconds_taken) = arm(s, rep.rollout.weight_bp(), route, fail, latency);
        out.after += u64::from(out.fleet.is_some() && side == Side::Canary);
        rep.rollout.record(side, failed, seconds_taken);
        if let Some(a) = &mut rep.alone
            && a.is_judging()
        {
            let (side, failed, seconds_taken) = arm(s, a.weight_bp(), route, fail, latency);
            a.record(side, failed, seconds_taken);
            if a.evaluate_regression(ms(t)).is_some() {
                out.alone[r] = Some((rep.served, t));
            }
        }
        let fleet_done = out.fleet.is_some() && reps.iter().all(|r| r.adopt_at.is_none());
        if fleet_done && reps.iter().all(|r| r.alone.as_ref().is_none_or(|a| !a.is_judging())) {
            break;
        }
    }
    out
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0) as u64
}

/// Runs `n` seeded runs on every core.
fn many(s: &Scenario, seconds: f64, n: u64, seed: u64, alone: bool) -> Vec<FleetRun> {
    crate::on_every_core(n, |i| run(s, seconds, seed * 1_000_003 + i, alone))
}

fn tally(runs: &[FleetRun], f: impl Fn(&FleetRun) -> Option<(u64, f64)>) -> Tally {
    let mut t = Tally::default();
    for r in runs {
        t.add(Outcome { rollback: f(r) });
    }
    t
}

fn row(name: &str, runs: u64, judge: &str, t: &Tally) {
    println!(
        "| {name} | {RPS} | {runs} | {judge} | {:.1} % | {} | {} | {} |",
        100.0 * t.rate(),
        fmt(t.quantile(0.5, |x| x.0 as f64), 0),
        fmt(t.median_seconds(), 1),
        fmt(t.quantile(0.9, |x| x.1), 1)
    );
}

const FLEET: &str = "fleet, pooled (leader every 100 ms)";

/// The fleet table: A/A, then the regressions beside each replica alone and one server (`single`: the
/// single-server tallies at 200 rps, by scenario name).
pub fn table(base: &Scenario, args: &Args, single: &[(String, Tally)], failures: &mut Vec<String>) {
    println!();
    println!("Fleet: 3 replicas with 60 / 30 / 10 % of the traffic");
    println!();
    println!(
        "The same traffic at {RPS} rps (canary share {:.0} %, fixed split), each request sent to replica 1, 2 or 3 \
         with probability 60 / 30 / 10 %, then to the canary at that replica's current weight. Each replica records \
         its requests in its own rollout and publishes its share every {} ms (random phase, ±{} ms jitter), \
         reading the others' latest shares as it does (its tests' head start); the leader gets a share 0–{} ms \
         later, keeps the latest per replica, and every {} ms pools them and evaluates. \
         A rollback counts at the leader's tick that decides it, and reaches each replica 0–{} s later (canary \
         requests served meanwhile are counted). In half the runs the leader fails at a random time: no tick for \
         {}–{} s, then the next leader carries on from the latest shares. A/A runs last {AA_SECONDS} s, regressions \
         {} s. \"replica N % alone\": that replica's own rollout on the same requests it serves, with \
         evaluate_regression after each (as when cut off from the fleet); \"one server\": the single-server rows \
         above (all {RPS} rps on one rollout). Median requests: served fleet-wide by the decision (by a replica \
         alone, its own).",
        100.0 * base.canary_share,
        1000.0 * PUBLISH,
        1000.0 * JITTER,
        1000.0 * DELIVERY,
        1000.0 * TICK,
        ADOPT,
        OUTAGE,
        OUTAGE + OUTAGE_EXTRA,
        args.seconds()
    );
    println!();
    println!("| scenario | rps | runs | judge | rolled back | median requests | median seconds | p90 seconds |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let aa = Scenario { rps: RPS, ..base.clone() };
    let seconds = AA_SECONDS.min(args.seconds());
    let runs = many(&aa, seconds, args.aa_runs, args.seed + 11, false);
    let fleet = tally(&runs, |r| r.fleet);
    let name = "A/A (canary = control)";
    row(name, args.aa_runs, FLEET, &fleet);
    let (lo, hi) = wilson(fleet.rolled_back(), args.aa_runs);
    let failovers = runs.iter().filter(|r| r.failover).count();
    let failed_over = runs.iter().filter(|r| r.failover && r.fleet.is_some()).count();
    println!(
        "|  | | | | false rollbacks {:.2} % (95 % CI {:.2}–{:.2} %); {failovers} runs with a leader failover, \
         {failed_over} of them rolled back | | | |",
        100.0 * fleet.rate(),
        100.0 * lo,
        100.0 * hi
    );
    if fleet.rate() > aa.alpha {
        failures.push(format!("fleet {name}: false rollback rate {:.3} above alpha {}", fleet.rate(), aa.alpha));
    }
    let mut quotes = Vec::new();
    let chosen = base
        .regressions(RPS)
        .into_iter()
        .filter(|(_, s)| [0.01, 0.05].contains(&s.canary_error) || [2.0, 4.0].contains(&s.latency_factor));
    for (name, s) in chosen {
        let runs = many(&s, args.seconds(), args.runs, args.seed + 13, true);
        let fleet = tally(&runs, |r| r.fleet);
        row(&name, args.runs, FLEET, &fleet);
        let alone: Vec<Tally> = (0..TRAFFIC.len()).map(|k| tally(&runs, |r| r.alone[k])).collect();
        for (share, t) in TRAFFIC.iter().zip(&alone) {
            row(&name, args.runs, &format!("replica {:.0} % alone", 100.0 * share), t);
        }
        let one = single.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
        if let Some(t) = one {
            row(&name, args.runs, &format!("one server, all {RPS} rps"), t);
        }
        let mut after: Vec<u64> = runs.iter().filter(|r| r.fleet.is_some()).map(|r| r.after).collect();
        after.sort_unstable();
        let at = |q: f64| after.get(((after.len() as f64 * q).ceil() as usize).max(1) - 1).copied();
        let show = |x: Option<u64>| x.map_or("none".into(), |x| x.to_string());
        println!(
            "|  | | | | canary requests after the decision: median {}, p90 {} | | | |",
            show(at(0.5)),
            show(at(0.9))
        );
        // The point of pooling: the fleet decides sooner than any replica could on its own share.
        if let Some(a) = alone.iter().map(Tally::median_seconds).reduce(f64::min)
            && fleet.median_seconds() > a
        {
            failures.push(format!(
                "fleet {name}: median {:.1} s, slower than a replica alone ({a:.1} s)",
                fleet.median_seconds()
            ));
        }
        let secs = |t: &Tally| {
            let m = t.median_seconds();
            if m.is_finite() { format!("{m:.1} s") } else { "never".into() }
        };
        quotes.push(format!(
            "- {name}: fleet median {} vs the 60 % replica alone {} vs the 30 % replica alone {} vs the 10 % replica \
             alone {}{}",
            secs(&fleet),
            secs(&alone[0]),
            secs(&alone[1]),
            secs(&alone[2]),
            one.map_or(String::new(), |t| format!(" (one server with all traffic: {})", secs(t)))
        ));
    }
    println!();
    println!("Median seconds to rollback, the fleet against each replica's own share of the traffic:");
    for q in quotes {
        println!("{q}");
    }
}
