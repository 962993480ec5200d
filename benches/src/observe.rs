//! Tracing and metrics switched on as an operator runs them, for the benches' "observed" rows:
//! a `tracing` subscriber at INFO that formats every span and event as
//! `osier_service::logging::init` does (into a sink, so the cost is the formatting, not a
//! terminal), and a Prometheus recorder holding every metric
//! osier records (oslo.metrics' buckets) with its upkeep every 5 s, as
//! `osier_service::metrics_endpoint` installs it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::prelude::*;

/// Installs both, process-wide; returns the recorder's handle (a scrape renders it).
/// `OSIER_BENCH_OBSERVE` takes one part apart, to see which costs what: `tracing` or
/// `metrics` installs only that one; `spans` installs a subscriber that keeps the spans (and
/// filters at INFO) but formats nothing, as a pipeline that only exports them would; `off`
/// installs nothing, so the same binary gives the baseline (for instruction counts under
/// callgrind). `OSIER_BENCH_LOG_FORMAT=json` formats with the `fmt` layer's JSON format instead,
/// `=default` with tracing-subscriber's own field formatter instead of osier-service's;
/// `OSIER_BENCH_LEVELS=env` filters with an `EnvFilter` instead of the static filter.
pub fn install() -> PrometheusHandle {
    let only = std::env::var("OSIER_BENCH_OBSERVE").unwrap_or_default();
    if only == "off" {
        return PrometheusBuilder::new().build_recorder().handle();
    }
    if only != "metrics" {
        install_tracing(only != "spans");
    }
    if only == "spans" {
        return PrometheusBuilder::new().build_recorder().handle();
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("processing_seconds".into()),
            &osier_messaging::metrics::PROCESSING_SECONDS_BUCKETS,
        )
        .expect("buckets are not empty")
        .build_recorder();
    let handle = recorder.handle();
    // As the endpoint's exporter does: histogram samples are folded into buckets every 5 s.
    let upkeep = handle.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(5));
        upkeep.run_upkeep();
    });
    if only != "tracing" {
        metrics::set_global_recorder(recorder).expect("no recorder installed yet");
        osier_messaging::metrics::describe();
    }
    handle
}

/// A subscriber at INFO that keeps every span and, with `format`, writes each span and event
/// into a sink through osier-service's `fmt` layer (`OSIER_BENCH_LOG_FORMAT=json`: the `fmt`
/// layer's JSON format; `=default`: its text format with tracing-subscriber's field formatter).
fn install_tracing(format: bool) {
    use tracing_subscriber::{fmt, Layer, Registry};
    let sink = std::io::sink;
    let fmt: Option<Box<dyn Layer<Registry> + Send + Sync>> =
        match std::env::var("OSIER_BENCH_LOG_FORMAT").as_deref() {
            _ if !format => None,
            Ok("json") => Some(fmt::layer().json().with_writer(sink).boxed()),
            Ok("default") => Some(fmt::layer().with_ansi(false).with_writer(sink).boxed()),
            _ => Some(osier_service::logging::layer().with_writer(sink).boxed()),
        };
    // Without a layer at all (not a `None` one, which costs every span a little): what an
    // export-only pipeline pays.
    let installed = match fmt {
        None => {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(levels()))
        }
        Some(fmt) => tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(fmt).with(levels()),
        ),
    };
    installed.expect("no subscriber installed yet");
}

/// The level filter `logging::init` installs for `info` (a static one);
/// `OSIER_BENCH_LEVELS=env` puts tracing-subscriber's `EnvFilter` in its place, as a subscriber
/// built with `EnvFilter` has it, to see what following every span costs.
fn levels<S>() -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if std::env::var("OSIER_BENCH_LEVELS").as_deref() == Ok("env") {
        return Box::new(tracing_subscriber::EnvFilter::new("info"));
    }
    osier_service::logging::filter("info").expect("valid directives")
}
