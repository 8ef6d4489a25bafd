//! The experiments table: A/B verdicts on a business metric (`switchyard_core::experiment`) read after
//! every 100 outcomes, at 1,000 outcomes a second split 50/50, for up to 30 minutes per run. Conversion
//! rates as the issue states them (10 % control). Rows: A/A (how often a verdict is wrong), a true 5 %
//! lift and a 5 % drop under the "any confident change" rule (`min_effect` 0, `max_drop` 0), the
//! default rule (kill on a drop of more than 5 %) with a 10 % drop and with A/A, and a guardrail (a 2 %
//! complaint rate allowed 10 % worse) breached while the primary improves.

use crate::rng::Rng;
use switchyard_core::experiment::{Direction, Experiment, Guardrail, KillReason, Plan, Verdict};

const RATE: f64 = 1_000.0;
const SECONDS: f64 = 1_800.0;
const CHECK_EVERY: u64 = 100;
const CONTROL: f64 = 0.10;
const COMPLAINTS: f64 = 0.02;

/// What one run ended with, and when (seconds).
#[derive(Clone, Copy)]
enum End {
    Ship(f64),
    Kill(f64, bool),
    Running,
}

struct Row {
    name: &'static str,
    plan: Plan,
    conversion: [f64; 2],
    complaints: Option<[f64; 2]>,
    /// The verdict this row should reach (`None`: none, A/A).
    expect: Option<&'static str>,
}

fn any_change() -> Plan {
    let mut p = Plan::new("conversion");
    p.max_drop = 0.0;
    p
}

fn with_guardrail(mut p: Plan) -> Plan {
    p.guardrails.push(Guardrail { metric: "complaint".into(), direction: Direction::Lower, max_degradation: 0.1 });
    p
}

fn rows() -> Vec<Row> {
    let r = |name, plan, conversion, complaints, expect| Row { name, plan, conversion, complaints, expect };
    vec![
        r("A/A, any confident change", any_change(), [CONTROL; 2], None, None),
        r("lift +5 % (10 % -> 10.5 %), any confident change", any_change(), [CONTROL, 0.105], None, Some("ship")),
        r("drop -5 % (10 % -> 9.5 %), any confident change", any_change(), [CONTROL, 0.095], None, Some("kill")),
        r("A/A, default rule (kill on a drop > 5 %)", Plan::new("conversion"), [CONTROL; 2], None, None),
        r("drop -10 %, default rule", Plan::new("conversion"), [CONTROL, 0.09], None, Some("kill")),
        r(
            "lift +5 %, complaints +30 % (2 % -> 2.6 %, guardrail allows +10 %)",
            with_guardrail(any_change()),
            [CONTROL, 0.105],
            Some([COMPLAINTS, 0.026]),
            Some("kill"),
        ),
    ]
}

fn run(row: &Row, seed: u64) -> End {
    let Ok(mut e) = Experiment::new(row.plan.clone()) else { return End::Running };
    let mut rng = Rng::new(seed);
    let total = (RATE * SECONDS) as u64;
    for i in 1..=total {
        let canary = rng.bernoulli(0.5);
        let arm = usize::from(canary);
        e.record("conversion", canary, 0.5, f64::from(u8::from(rng.bernoulli(row.conversion[arm]))));
        if let Some(c) = row.complaints {
            e.record("complaint", canary, 0.5, f64::from(u8::from(rng.bernoulli(c[arm]))));
        }
        if i % CHECK_EVERY == 0 {
            let at = i as f64 / RATE;
            match e.evaluate().verdict {
                Verdict::KeepRunning => {}
                Verdict::Ship => return End::Ship(at),
                Verdict::Kill { reason } => return End::Kill(at, matches!(reason, KillReason::Guardrail { .. })),
            }
        }
    }
    End::Running
}

fn many(row: &Row, n: u64, seed: u64) -> Vec<End> {
    crate::on_every_core(n, |i| run(row, seed * 7_919 + i))
}

fn median(mut v: Vec<f64>, runs: usize) -> String {
    v.sort_by(f64::total_cmp);
    match v.get(runs.div_ceil(2).max(1) - 1) {
        Some(x) => format!("{x:.0}"),
        None => "never".into(),
    }
}

/// Prints the table; A/A rows above `alpha` and rows that miss their verdict in most runs are failures.
pub fn table(aa_runs: u64, runs: u64, seed: u64, failures: &mut Vec<String>) {
    println!();
    println!(
        "Experiments: {RATE} outcomes/s split 50/50, the verdict read after every {CHECK_EVERY} outcomes, up to {SECONDS} s \
         per run; alpha 0.05 (a false ship at most 2.5 %, a false kill at most 2.5 %); `min_outcomes` 100 per arm."
    );
    println!();
    println!("| scenario | runs | ship | kill (by a guardrail) | keep running | median seconds to the verdict |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (k, row) in rows().iter().enumerate() {
        let n = if row.expect.is_none() { aa_runs } else { runs };
        let ends = many(row, n, seed + k as u64);
        let count = |f: fn(&End) -> bool| ends.iter().filter(|e| f(e)).count();
        let (ship, kill, running) = (
            count(|e| matches!(e, End::Ship(_))),
            count(|e| matches!(e, End::Kill(..))),
            count(|e| matches!(e, End::Running)),
        );
        let by_guardrail = count(|e| matches!(e, End::Kill(_, true)));
        let times: Vec<f64> = ends
            .iter()
            .filter_map(|e| match (e, row.expect) {
                (End::Ship(t), Some("ship")) | (End::Kill(t, _), Some("kill")) => Some(*t),
                _ => None,
            })
            .collect();
        let pct = |c: usize| 100.0 * c as f64 / n as f64;
        println!(
            "| {} | {n} | {:.1} % | {:.1} % ({by_guardrail}) | {:.1} % | {} |",
            row.name,
            pct(ship),
            pct(kill),
            pct(running),
            if row.expect.is_some() { median(times, n as usize) } else { "–".into() }
        );
        match row.expect {
            None if pct(ship + kill) > 100.0 * row.plan.alpha => failures.push(format!(
                "experiment {}: {:.2} % of A/A runs reached a verdict (alpha {})",
                row.name,
                pct(ship + kill),
                row.plan.alpha
            )),
            Some("ship") if pct(ship) < 90.0 => {
                failures.push(format!("experiment {}: shipped in {:.1} % of runs (< 90 %)", row.name, pct(ship)))
            }
            Some("kill") if pct(kill) < 90.0 => {
                failures.push(format!("experiment {}: killed in {:.1} % of runs (< 90 %)", row.name, pct(kill)))
            }
            _ => {}
        }
        if row.complaints.is_some() && by_guardrail * 10 < kill * 9 {
            failures.push(format!("experiment {}: the guardrail killed only {by_guardrail} of {kill}", row.name));
        }
    }
}
