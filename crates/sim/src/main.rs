//! Drives the rollout decision code (`switchyard_core::rollout`) with synthetic traffic and prints the
//! table in the README: the false-rollback rate of an A/A rollout (canary identical to control) checked
//! after every request, and for error-rate and latency regressions the detection rate and the median
//! requests and seconds to rollback, beside a Flagger-style check (success rate below 99 % or p99 above a
//! fixed bound over a 60 s interval, rolled back after 5 failed checks) run on the same streams. A/A and
//! latency rows again at 100 rps with a latency test on p99 (`max_ratio` 2), a quantile slow to place.
//! Blue-green rows at 200 rps: control alone for 60 s (the baseline), then the canary takes all traffic
//! and is judged against control's frozen figures; times to rollback counted from the switch.
//! Then a fleet table (`fleet.rs`): the same traffic over 3 replicas judged by a leader pooling their
//! shares, beside each replica judged alone and the single-server rows. Last, the experiments table
//! (`experiment.rs`): A/B verdicts on a conversion metric with a guardrail.
//!
//! `switchyard-sim [--aa-runs N] [--runs N] [--minutes M] [--seed S]`

mod experiment;
mod fleet;
mod rng;
mod scenario;

use scenario::{Judge, Outcome, Scenario, run};
use std::time::Instant;

/// The simulation's knobs; the defaults are the README's table.
#[derive(clap::Parser)]
#[command(about = "Simulates the rollout decisions against a Flagger-style check")]
struct Args {
    /// A/A runs per row (false rollbacks).
    #[arg(long, default_value_t = 1_000)]
    aa_runs: u64,
    /// Runs per regression row.
    #[arg(long, default_value_t = 200)]
    runs: u64,
    /// Minutes of traffic per run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    minutes: u64,
    /// The first run's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Args {
    /// Seconds of traffic per run.
    fn seconds(&self) -> f64 {
        self.minutes as f64 * 60.0
    }
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let started = Instant::now();
    let base = Scenario::baseline(args.seconds());
    let p99 = base.with_latency_test(P99.0, P99.1);
    println!("{}", base.describe());
    println!(
        "The p99 rows: the same traffic at {P99_RPS} rps judged by a latency test on p{} with max_ratio {} \
         (x{} is the null's edge), {} s per run.",
        100.0 * P99.0,
        P99.1,
        P99.1,
        args.seconds()
    );
    println!(
        "The blue-green rows: the same traffic at {BG_RPS} rps, control alone for the first {BG_BASELINE_SECONDS} s \
         (its baseline, measured during the warm-up), then the canary takes all traffic for the rest of the {} s \
         and is judged against control's frozen figures; requests and seconds to rollback counted from the switch. \
         The Flagger-style check runs on the same streams (canary requests only, so from the switch).",
        args.seconds()
    );
    println!();
    println!("| scenario | rps | runs | judge | rolled back | median requests | median seconds | p90 seconds |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    // The single-server tallies at 200 rps, for the fleet table.
    let mut single = Vec::new();
    for rps in [20.0, 200.0] {
        aa_rows("A/A (canary = control)", &Scenario { rps, ..base.clone() }, &args, &mut failures);
        for (name, s) in base.regressions(rps) {
            let (ours, flagger) = many(&s, args.runs, args.seed + 7);
            print_rows(&name, rps, args.runs, &ours, &flagger);
            let should_catch = s.severity() >= 2.0 && s.is_regression();
            if rps == 200.0 && should_catch {
                if ours.rate() < 0.99 {
                    failures.push(format!("{name} at {rps} rps: caught {:.1} % < 99 %", 100.0 * ours.rate()));
                }
                let (o, f) = (ours.median_seconds(), flagger.median_seconds());
                if o * 10.0 > f {
                    failures.push(format!(
                        "{name} at {rps} rps: median {o:.1} s is not 10x shorter than Flagger's {f:.1} s"
                    ));
                }
            }
            if rps == 200.0 {
                single.push((name, ours));
            }
        }
    }
    // A tail quantile that needs many control requests to place: the test must not wait for them.
    aa_rows("A/A (canary = control), p99 test", &Scenario { rps: P99_RPS, ..p99.clone() }, &args, &mut failures);
    for (factor, s) in p99.latency_regressions(P99_RPS, &[1.5, 2.0, 3.0, 4.0]) {
        let name = format!("latency x{factor}, p99 test");
        let (ours, flagger) = many(&s, args.runs, args.seed + 7);
        print_rows(&name, P99_RPS, args.runs, &ours, &flagger);
        if factor == P99_FACTOR {
            let median = ours.median_seconds();
            if ours.rate() < 0.99 || median > P99_MEDIAN_SECONDS {
                failures.push(format!(
                    "{name} at {P99_RPS} rps: caught {:.1} %, median {median:.1} s; wanted >= 99 % within a median of \
                     {P99_MEDIAN_SECONDS} s",
                    100.0 * ours.rate()
                ));
            }
        }
    }
    // Blue-green: the canary alone, judged against control's figures from before the switch.
    let bg = base.blue_green(BG_RPS, BG_BASELINE_SECONDS);
    aa_rows("blue-green A/A (canary = control)", &bg, &args, &mut failures);
    for (name, s) in bg.blue_green_regressions() {
        let (ours, flagger) = many(&s, args.runs, args.seed + 7);
        print_rows(&format!("blue-green {name}"), BG_RPS, args.runs, &ours, &flagger);
    }
    fleet::table(&base, &args, &single, &mut failures);
    experiment::table(args.aa_runs, args.runs, args.seed, &mut failures);
    println!();
    println!("Simulated in {:.1} s.", started.elapsed().as_secs_f64());
    if failures.is_empty() {
        println!(
            "All targets met: A/A false rollbacks at most alpha (one server and the pooled fleet); at 200 rps every regression of 2x and more caught in >= 99 % of runs with a median time to rollback at least 10x shorter than the Flagger-style check; with the p99 test at {P99_RPS} rps, latency x{P99_FACTOR} caught in >= 99 % of runs with a median time to rollback of at most {P99_MEDIAN_SECONDS} s; the pooled fleet rolls each regression back sooner (median) than any of its replicas could alone; A/A experiments reach a verdict in at most alpha of runs, and each true lift, drop and guardrail breach gets its verdict in >= 90 % of runs."
        );
    } else {
        for f in &failures {
            println!("TARGET MISSED: {f}");
        }
        std::process::exit(1);
    }
}

/// The p99 rows: the latency test's quantile and `max_ratio`, the traffic, and the target: a canary this
/// many times slower rolled back within this median.
const P99: (f64, f64) = (0.99, 2.0);
const P99_RPS: f64 = 100.0;
const P99_FACTOR: f64 = 4.0;
const P99_MEDIAN_SECONDS: f64 = 3.0;

/// The blue-green rows: the traffic, and how long control alone is measured before the switch.
const BG_RPS: f64 = 200.0;
const BG_BASELINE_SECONDS: f64 = 60.0;

/// An A/A row (canary identical to control) with its false-rollback rate; over `alpha` is a failure.
fn aa_rows(name: &str, s: &Scenario, args: &Args, failures: &mut Vec<String>) {
    let (ours, flagger) = many(s, args.aa_runs, args.seed);
    print_rows(name, s.rps, args.aa_runs, &ours, &flagger);
    let (lo, hi) = wilson(ours.rolled_back(), args.aa_runs);
    println!(
        "|  | | | | false rollbacks {:.2} % (95 % CI {:.2}–{:.2} %) | | | |",
        100.0 * ours.rate(),
        100.0 * lo,
        100.0 * hi
    );
    if ours.rate() > s.alpha {
        failures.push(format!(
            "{name} at {} rps: false rollback rate {:.3} above alpha {}",
            s.rps,
            ours.rate(),
            s.alpha
        ));
    }
}

/// Runs `n` seeded streams through both judges, on every core.
fn many(s: &Scenario, n: u64, seed: u64) -> (Tally, Tally) {
    let mut ours = Tally::default();
    let mut flagger = Tally::default();
    for (o, f) in on_every_core(n, |i| run(s, seed * 1_000_003 + i)) {
        ours.add(o);
        flagger.add(f);
    }
    (ours, flagger)
}

/// `run(i)` for `i` in `0..n`, spread over every core (results in no particular order).
pub(crate) fn on_every_core<T: Send>(n: u64, run: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get()) as u64;
    let run = &run;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || (0..n).filter(|i| i % threads == t).map(run).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a simulation thread panicked")).collect()
    })
}

#[derive(Default)]
struct Tally {
    runs: u64,
    /// (requests, seconds) of each rollback; runs without one count as never.
    caught: Vec<(u64, f64)>,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.runs += 1;
        if let Some(x) = o.rollback {
            self.caught.push(x);
        }
    }
    fn rolled_back(&self) -> u64 {
        self.caught.len() as u64
    }
    fn rate(&self) -> f64 {
        self.rolled_back() as f64 / self.runs.max(1) as f64
    }
    /// The `q`-quantile over all runs, runs never rolled back counting as infinite.
    fn quantile(&self, q: f64, f: impl Fn(&(u64, f64)) -> f64) -> f64 {
        let mut v: Vec<f64> = self.caught.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let k = ((self.runs as f64 * q).ceil() as usize).max(1);
        v.get(k - 1).copied().unwrap_or(f64::INFINITY)
    }
    fn median_seconds(&self) -> f64 {
        self.quantile(0.5, |x| x.1)
    }
}

fn fmt(x: f64, digits: usize) -> String {
    if x.is_finite() { format!("{x:.digits$}") } else { "never".into() }
}

fn print_rows(name: &str, rps: f64, runs: u64, ours: &Tally, flagger: &Tally) {
    for (judge, t) in [(Judge::Ours, ours), (Judge::Flagger, flagger)] {
        println!(
            "| {name} | {rps} | {runs} | {} | {:.1} % | {} | {} | {} |",
            judge.name(),
            100.0 * t.rate(),
            fmt(t.quantile(0.5, |x| x.0 as f64), 0),
            fmt(t.median_seconds(), 1),
            fmt(t.quantile(0.9, |x| x.1), 1)
        );
    }
}

/// Wilson score interval for a binomial proportion.
fn wilson(k: u64, n: u64) -> (f64, f64) {
    let (k, n, z) = (k as f64, n as f64, 1.96);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}
