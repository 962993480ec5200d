//! Criterion benches of the green runtime beside raw may (one worker) and tokio, in one run.
//! The side-by-side table with eventlet is `cargo xtask bench-eventlet`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use osier_benches as b;

fn spawn_wait(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_wait");
    g.bench_function(BenchmarkId::new("osier", 1), |x| {
        x.iter_custom(b::osier_spawn_wait)
    });
    g.bench_function(BenchmarkId::new("may_1w", 1), |x| {
        x.iter_custom(b::may_spawn_wait)
    });
    g.bench_function(BenchmarkId::new("tokio_mt2", 1), |x| {
        x.iter_custom(|n| b::tokio_spawn_wait(b::tokio_mt(), n))
    });
    g.bench_function(BenchmarkId::new("tokio_ct", 1), |x| {
        x.iter_custom(|n| b::tokio_spawn_wait(b::tokio_ct(), n))
    });
    g.finish();
}

fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_way_switch");
    g.bench_function("osier_queue", |x| x.iter_custom(b::osier_switch));
    g.bench_function("may_1w_mpsc", |x| x.iter_custom(b::may_switch));
    g.bench_function("tokio_mt2_mpsc", |x| {
        x.iter_custom(|n| b::tokio_switch(b::tokio_mt(), n))
    });
    g.bench_function("tokio_ct_mpsc", |x| {
        x.iter_custom(|n| b::tokio_switch(b::tokio_ct(), n))
    });
    g.finish();
}

fn sleep0(c: &mut Criterion) {
    let mut g = c.benchmark_group("sleep0");
    g.bench_function("osier", |x| x.iter_custom(b::osier_sleep0));
    g.bench_function("may_1w", |x| x.iter_custom(b::may_yield));
    g.bench_function("tokio_mt2", |x| {
        x.iter_custom(|n| b::tokio_yield(b::tokio_mt(), n))
    });
    g.bench_function("tokio_ct", |x| {
        x.iter_custom(|n| b::tokio_yield(b::tokio_ct(), n))
    });
    g.finish();
}

fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_trivial_jobs");
    g.bench_function("osier_greenpool", |x| x.iter_custom(b::osier_pool));
    g.bench_function("may_1w", |x| x.iter_custom(b::may_pool));
    g.bench_function("tokio_mt2", |x| {
        x.iter_custom(|n| b::tokio_pool(b::tokio_mt(), n))
    });
    g.bench_function("tokio_ct", |x| {
        x.iter_custom(|n| b::tokio_pool(b::tokio_ct(), n))
    });
    g.finish();
}

criterion_group!(benches, spawn_wait, switch, sleep0, pool);
criterion_main!(benches);
