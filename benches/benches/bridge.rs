//! Criterion benches of the bridge beside its baselines, in one run. The table with
//! ratios is `cargo xtask bench-bridge`.

use criterion::{criterion_group, criterion_main, Criterion};
use osier_benches::bridge as b;

fn bridge(c: &mut Criterion) {
    let mut g = c.benchmark_group("bridge");
    g.bench_function("yield_future_ready", |x| x.iter_custom(b::yield_ready));
    g.bench_function("green_tokio_green_round_trip", |x| {
        x.iter_custom(b::green_tokio_green)
    });
    g.bench_function("wrap_greenthread_trivial", |x| {
        x.iter_custom(b::wrap_trivial)
    });
    g.bench_function("baseline_tokio_task_round_trip", |x| {
        x.iter_custom(b::tokio_task_rt)
    });
    g.bench_function("baseline_os_tokio_os_handoff", |x| {
        x.iter_custom(b::os_tokio_os)
    });
    g.bench_function("baseline_may_pingpong", |x| x.iter_custom(b::may_pingpong));
    g.finish();
}

criterion_group!(benches, bridge);
criterion_main!(benches);
