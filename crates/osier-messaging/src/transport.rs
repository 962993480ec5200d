//! `Transport`: a driver chosen by URL, plus the options every client and server on it share.
//!
//! ```
//! use osier_messaging::Transport;
//!
//! let t = Transport::new("memory://").unwrap();
//! assert_eq!(t.url().driver(), "memory");
//! assert!(Transport::new("nosuch://").is_err()); // DriverLoadFailure (MSG-URL-04)
//! assert!(Transport::new("rabbit://guest:guest@127.0.0.1:5672/").is_ok()); // connects on first use
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::driver::Driver;
use crate::error::MessagingError;
use crate::memory::MemoryDriver;
use crate::url::TransportUrl;

/// Options shared by everything on a transport (oslo's `[DEFAULT]` options of the same names).
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// The exchange used by targets that name none (`control_exchange`, default `openstack`).
    pub control_exchange: String,
    /// The call timeout when neither the client nor `prepare` sets one (`rpc_response_timeout`,
    /// default 60 s).
    pub rpc_response_timeout: Duration,
    /// The largest serialized message accepted, in bytes (default 16 MiB).
    pub max_message_size: usize,
    /// Answer `oslo_rpc_server_ping` with `pong` (`rpc_ping_enabled`, default off, MSG-DISP-07).
    pub rpc_ping_enabled: bool,
    /// Publish requests with AMQP's `mandatory` flag and wait for the broker's verdict, so a
    /// call or cast nobody consumes fails with [`BrokerError::Undeliverable`] instead of
    /// vanishing (oslo's `TransportOptions(at_least_once=True)`, MSG-RPC-09; default off). The
    /// in-memory driver ignores it.
    ///
    /// [`BrokerError::Undeliverable`]: crate::BrokerError::Undeliverable
    pub at_least_once: bool,
    /// The `process` label of every RPC metric (oslo's `[oslo_messaging_metrics]
    /// metrics_process_name`, default empty; see [`metrics`](crate::metrics)).
    pub metrics_process_name: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            control_exchange: "openstack".into(),
            rpc_response_timeout: Duration::from_secs(60),
            max_message_size: 16 << 20,
            rpc_ping_enabled: false,
            at_least_once: false,
            metrics_process_name: String::new(),
        }
    }
}

/// A transport: a URL, its driver and shared options. Cloning shares all three (every client,
/// server and notifier holds a clone).
#[derive(Clone)]
pub struct Transport {
    url: Arc<TransportUrl>,
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) opts: Arc<TransportOptions>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.url) // redacted by TransportUrl's Debug
            .field("opts", &self.opts)
            .finish()
    }
}

impl Transport {
    /// A transport for `url` with the default options.
    pub fn new(url: &str) -> Result<Self, MessagingError> {
        Self::with_options(url, TransportOptions::default())
    }

    /// A transport for `url` with `opts`.
    pub fn with_options(url: &str, opts: TransportOptions) -> Result<Self, MessagingError> {
        let url: TransportUrl = url.parse()?;
        let driver: Arc<dyn Driver> = match url.driver() {
            // oslo's in-memory driver is `fake`; `memory` is ours. The query is ignored, as the
            // fake driver does (MSG-URL-05).
            "memory" | "fake" => Arc::new(MemoryDriver::new(&opts.control_exchange)),
            "rabbit" | "kombu" => Arc::new(
                crate::amqp::AmqpDriver::new(&url, &opts.control_exchange)?
                    .at_least_once(opts.at_least_once),
            ),
            other => {
                return Err(MessagingError::DriverLoadFailure {
                    driver: other.to_string(),
                    reason: "unknown driver (available: memory, fake, rabbit, kombu)".into(),
                })
            }
        };
        Ok(Transport {
            url: Arc::new(url),
            driver,
            opts: Arc::new(opts),
        })
    }

    /// A `rabbit://` transport with rabbit options set in code; the URL's query parameters
    /// still override them, as in oslo (MSG-URL-05).
    pub fn with_rabbit_options(
        url: &str,
        opts: TransportOptions,
        rabbit: crate::amqp::RabbitOptions,
    ) -> Result<Self, MessagingError> {
        let url: TransportUrl = url.parse()?;
        if !matches!(url.driver(), "rabbit" | "kombu") {
            return Err(MessagingError::DriverLoadFailure {
                driver: url.driver().to_string(),
                reason: "rabbit options given for a transport that is not rabbit://".into(),
            });
        }
        let rabbit = rabbit.with_url_query(&url)?;
        let driver = Arc::new(
            crate::amqp::AmqpDriver::with_options(&url, &opts.control_exchange, rabbit)?
                .at_least_once(opts.at_least_once),
        );
        Ok(Transport {
            url: Arc::new(url),
            driver,
            opts: Arc::new(opts),
        })
    }

    /// The transport URL.
    pub fn url(&self) -> &TransportUrl {
        &self.url
    }

    /// The shared options.
    pub fn options(&self) -> &TransportOptions {
        &self.opts
    }

    /// The RabbitMQ options in force (those set in code or an oslo config file, with the URL's
    /// query applied); `None` for a transport that is not `rabbit://`.
    pub fn rabbit_options(&self) -> Option<&crate::amqp::RabbitOptions> {
        self.driver.rabbit_options()
    }

    /// Waits until every cast and notification sent so far is confirmed by the broker, and
    /// fails if one could not be delivered since the last flush (RabbitMQ driver; the in-memory
    /// driver delivers at once). Call it before a process exits.
    pub async fn flush(&self) -> Result<(), MessagingError> {
        self.driver.flush().await
    }

    /// Releases the driver's resources (for the in-memory driver: wipes every exchange in the
    /// process, MSG-FAKE-01).
    pub async fn cleanup(&self) {
        self.driver.cleanup().await;
    }
}
