//! The routing hot path: sticky bucket hashing and recording one request in a rollout.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard_core::rollout::{Analysis, Plan, Rollout, Schedule, Side, assign};

fn routing(c: &mut Criterion) {
    c.bench_function("sticky bucket", |b| b.iter(|| assign::bucket(black_box("scorer"), black_box(b"user-12345"))));
    let plan = Plan { schedule: Schedule::Fixed(2_000), analysis: Analysis::default() };
    let mut r = Rollout::new(plan, 0);
    let mut i = 0u64;
    c.bench_function("record and evaluate one request", |b| {
        b.iter(|| {
            i += 1;
            let side = if i.is_multiple_of(5) { Side::Canary } else { Side::Control };
            r.record(side, i.is_multiple_of(1000), 0.002 + (i % 37) as f64 * 1e-4);
            black_box(r.evaluate(i))
        })
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
