//! The process's metrics over HTTP in the Prometheus text format (feature `prometheus`, on by
//! default; nothing listens until [`metrics_endpoint`] is called).
//!
//! | oslo | osier-service |
//! |---|---|
//! | `[oslo_messaging_metrics] metrics_enabled = True`, the oslo.metrics daemon exporting to Prometheus | [`metrics_endpoint`]`(addr)` in the process itself |
//!
//! It installs the process-wide [`metrics`] recorder, so call it at the start of `main`, before
//! clients and servers are created (they take their metric handles once). Everything
//! `osier_messaging` records appears with oslo.metrics' names and buckets
//! (`oslo_messaging_rpc_client_processing_seconds`, ...), next to the launcher's
//! [`SERVICES_HEALTHY`](crate::SERVICES_HEALTHY) gauge: 1 while every service is healthy, 0 otherwise (the state the
//! systemd watchdog follows).
//!
//! ```no_run
//! let endpoint = osier_service::metrics_endpoint(([127, 0, 0, 1], 9464).into())?;
//! println!("scrape http://{}/metrics", endpoint.address());
//! # Ok::<(), osier_service::MetricsEndpointError>(())
//! ```

use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsEndpointError {
    /// Port 0: the endpoint needs an address scrapers can be told.
    #[error("the metrics endpoint needs a fixed port (got {0}); port 0 would give an address nobody knows")]
    NoPort(SocketAddr),
    /// The exporter could not be built (the address could not be bound, say).
    #[error("the metrics endpoint could not listen on {address}")]
    Listen {
        /// Where it was asked to listen.
        address: SocketAddr,
        /// The exporter's error.
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
    /// Another recorder was installed first.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    /// The endpoint's thread could not be started.
    #[error("the metrics endpoint's thread could not start")]
    Thread(#[source] std::io::Error),
}

/// A running metrics endpoint (it runs until the process ends).
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    address: SocketAddr,
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What a scrape returns now.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Installs the process-wide recorder and serves it at `address` (any path answers) on a thread
/// of its own, so scrapes go on whatever the services' runtimes do.
pub fn metrics_endpoint(address: SocketAddr) -> Result<MetricsEndpoint, MetricsEndpointError> {
    if address.port() == 0 {
        return Err(MetricsEndpointError::NoPort(address));
    }
    let builder = PrometheusBuilder::new().with_http_listener(address);
    // oslo.metrics' buckets for the `processing_seconds` histograms.
    #[cfg(feature = "rpc")]
    let builder = builder
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("processing_seconds".into()),
            &osier_messaging::metrics::PROCESSING_SECONDS_BUCKETS,
        )
        .map_err(|source| MetricsEndpointError::Listen { address, source })?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("osier-metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(MetricsEndpointError::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let (recorder, exporter) = match builder.build() {
                    Ok(built) => built,
                    Err(source) => {
                        let _ = tx.send(Err(MetricsEndpointError::Listen { address, source }));
                        return;
                    }
                };
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    let _ = tx.send(Err(MetricsEndpointError::AlreadyInstalled));
                    return;
                }
                let _ = tx.send(Ok(handle));
                if let Err(e) = exporter.await {
                    tracing::error!(%address, error = ?e, "the metrics endpoint stopped");
                }
            });
        })
        .map_err(MetricsEndpointError::Thread)?;
    let handle = rx
        .recv()
        .map_err(|_| MetricsEndpointError::Thread(std::io::Error::other("the thread ended")))??;
    describe();
    tracing::info!(%address, "serving metrics in the Prometheus text format");
    Ok(MetricsEndpoint { address, handle })
}

fn describe() {
    metrics::describe_gauge!(
        crate::SERVICES_HEALTHY,
        "1 while every service of the launcher is healthy, 0 otherwise."
    );
    #[cfg(feature = "rpc")]
    osier_messaging::metrics::describe();
}
