//! Spans exported to OpenTelemetry (feature `otel`): [`layer`] gives a `tracing` layer for the
//! application's subscriber that sends every span (osier's `rpc.call`, `rpc.cast`, `rpc.server`
//! and the application's own) to an OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names one, and prints them on stdout otherwise. With
//! it, osier-messaging's `traceparent` carries the spans' OpenTelemetry ids, so two services
//! show one trace.
//!
//! | Python | osier-service |
//! |---|---|
//! | `opentelemetry-instrument` / `osprofiler` with an OTLP exporter | [`layer`]`("nova-compute")` in the subscriber, [`OtelGuard`] kept until exit |
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! let (otel, _guard) = osier_service::otel::layer("my-service")?;
//! tracing_subscriber::registry()
//!     .with(otel)
//!     .with(tracing_subscriber::fmt::layer())
//!     .init();
//! // ... run the service; dropping the guard at the end of main flushes the last spans.
//! # Ok::<(), osier_service::otel::OtelError>(())
//! ```

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetryLayer;

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The OTLP exporter refused its configuration (the endpoint, say).
    #[error("the OTLP span exporter could not be built")]
    Otlp(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// An OTLP collector over HTTP (its endpoint from the standard `OTEL_EXPORTER_OTLP_*`
    /// variables).
    Otlp,
    /// The process's standard output.
    Stdout,
}

/// Flushes and shuts the exporter down when dropped: keep it until the end of `main`.
#[derive(Debug)]
pub struct OtelGuard {
    provider: SdkTracerProvider,
    destination: Destination,
}

impl OtelGuard {
    /// Where the spans go.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "spans could not all be exported at shutdown");
        }
    }
}

/// Whether the environment names an OTLP collector.
fn collector_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// A layer exporting spans as `service_name`, to an OTLP collector if one is configured, to
/// stdout otherwise; and the guard that flushes them.
pub fn layer<S>(service_name: &str) -> Result<(OpenTelemetryLayer<S, Tracer>, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let resource = Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let (provider, destination) = if collector_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(OtelError::Otlp)?;
        (
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
            Destination::Otlp,
        )
    } else {
        (
            SdkTracerProvider::builder()
                .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
                .with_resource(resource)
                .build(),
            Destination::Stdout,
        )
    };
    Ok(with_provider(provider, destination))
}

/// A layer over a provider of the caller's (an in-memory exporter in tests, another exporter).
pub fn with_provider<S>(
    provider: SdkTracerProvider,
    destination: Destination,
) -> (OpenTelemetryLayer<S, Tracer>, OtelGuard)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let tracer = provider.tracer("osier");
    (
        tracing_opentelemetry::layer().with_tracer(tracer),
        OtelGuard {
            provider,
            destination,
        },
    )
}
