//! Connecting to the broker: the URL's hosts with failover, oslo's backoff, the AMQP heartbeat,
//! TLS, and errors that name the broker's reason without credentials (MSG-AMQP-04/05/12).
//!
//! Hosts are tried round-robin, starting after the one that worked last
//! (`kombu_failover_strategy=round-robin`). A refused login or virtual host, or a certificate
//! that is not trusted, is not retried: no number of attempts fixes it, and retrying would only
//! hide it (oslo retries it like a network error; the difference is deliberate).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::amqp::options::RabbitOptions;
use crate::error::{BrokerError, Cause, MessagingError};
use crate::url::TransportUrl;

/// One broker host: its AMQP URI (holds the password: never logged) and what may be shown.
#[derive(Clone)]
struct Host {
    uri: String,
    shown: String,
    user: String,
}

impl BrokerError {
    /// A refusal no retry can fix: wrong credentials, a missing vhost, an untrusted
    /// certificate. Retrying would only hide it (oslo retries these like network errors; the
    /// difference is deliberate).
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            BrokerError::AuthRefused { .. }
                | BrokerError::VhostRefused { .. }
                | BrokerError::Tls { .. }
        )
    }
}

/// The broker a driver talks to: its hosts, virtual host and options.
pub(crate) struct Broker {
    hosts: Vec<Host>,
    vhost: String,
    pub(crate) opts: RabbitOptions,
    next: AtomicUsize,
    /// Connections made so far, by every owner of this driver: a new one may follow a broker
    /// restart or a failover, after which queues that are not durable may be gone.
    connects: AtomicU64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<&str> = self.hosts.iter().map(|h| h.shown.as_str()).collect();
        f.debug_struct("Broker")
            .field("hosts", &shown)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// The broker of `url`, with oslo's defaults (guest/guest, port 5672 or 5671 with TLS,
    /// vhost `/`; no host means localhost).
    /// How many connections this driver's owners have made (see `connects`).
    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Acquire)
    }

    pub(crate) fn new(url: &TransportUrl, opts: RabbitOptions) -> Self {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let vhost = match url.virtual_host() {
            None | Some("") => "/".to_string(),
            Some(v) => v.to_string(),
        };
        let (scheme, default_port) = if opts.ssl {
            ("amqps", 5671)
        } else {
            ("amqp", 5672)
        };
        let query = format!(
            "heartbeat={}&connection_timeout=10000&channel_max=2047",
            opts.heartbeat_timeout_threshold
        );
        let one = |h: Option<&crate::url::TransportHost>| {
            let user = h
                .and_then(|h| h.username.clone())
                .unwrap_or_else(|| "guest".into());
            let pass = h
                .and_then(|h| h.password.clone())
                .unwrap_or_else(|| "guest".into());
            let host = h
                .map(|h| h.hostname.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let port = h.and_then(|h| h.port).unwrap_or(default_port);
            Host {
                uri: format!(
                    "{scheme}://{}:{}@{host}:{port}/{}?{query}",
                    enc(&user),
                    enc(&pass),
                    enc(&vhost)
                ),
                shown: format!("{host}:{port}"),
                user,
            }
        };
        let hosts = if url.hosts().is_empty() {
            vec![one(None)]
        } else {
            url.hosts().iter().map(|h| one(Some(h))).collect()
        };
        Broker {
            hosts,
            vhost,
            opts,
            next: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
        }
    }

    /// One connection attempt on each host, round-robin from the last good one. The error is the
    /// most telling one: a refused login or vhost over an unreachable host.
    pub(crate) async fn connect_once(&self) -> Result<Connection, BrokerError> {
        let n = self.hosts.len();
        let start = self.next.load(Ordering::Relaxed);
        let mut refused: Option<BrokerError> = None;
        let mut why = Vec::new();
        let mut last: Option<Cause> = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let h = &self.hosts[idx];
            // MSG-AMQP-12 / LESSON-05: the name is made when connecting, so a forked child
            // carries its own pid.
            let name = format!(
                "{}:{}:{}",
                program_name(),
                std::process::id(),
                uuid::Uuid::new_v4()
            );
            let props = ConnectionProperties::default().with_connection_name(name.into());
            let rt = async_rs::TokioRuntime::tokio_with_handle(io_runtime()?.clone());
            let tls = self.tls_config()?;
            match Connection::connect_with_config(&h.uri, props, tls, rt).await {
                Ok(c) => {
                    self.next.store(idx, Ordering::Relaxed);
                    self.connects.fetch_add(1, Ordering::AcqRel);
                    tracing::debug!(host = %h.shown, "connected to the broker");
                    return Ok(c);
                }
                Err(e) => {
                    let err = self.classify_connect(h, &e);
                    tracing::warn!(host = %h.shown, error = %err, "broker host failed");
                    match err {
                        BrokerError::AuthRefused { .. }
                        | BrokerError::VhostRefused { .. }
                        | BrokerError::Tls { .. } => {
                            refused.get_or_insert(err);
                        }
                        BrokerError::Unreachable { reason, source } => {
                            why.push(reason);
                            last = source;
                        }
                        other => {
                            why.push(other.to_string());
                            last = Some(Cause::new(other));
                        }
                    }
                }
            }
        }
        self.next.store((start + 1) % n.max(1), Ordering::Relaxed);
        Err(refused.unwrap_or_else(|| BrokerError::Unreachable {
            reason: why.join("; "),
            source: last,
        }))
    }

    /// One round over the hosts ([`connect_once`](Self::connect_once)) as a `MessagingError`.
    /// Retrying is the owners' business: the publisher counts a message's tries against its
    /// `retry` (MSG-RPC-07), consumers retry forever once started, both with
    /// [`RabbitOptions::reconnect_wait`] between rounds.
    pub(crate) async fn connect(&self) -> Result<Connection, MessagingError> {
        Ok(self.connect_once().await?)
    }

    /// TLS settings: the CA file of `ssl_ca_file` (PEM) when set, the system's roots otherwise.
    fn tls_config(&self) -> Result<lapin::tcp::OwnedTLSConfig, BrokerError> {
        let cert_chain = match (&self.opts.ssl_ca_file, self.opts.ssl) {
            (Some(path), true) => {
                Some(std::fs::read_to_string(path).map_err(|e| BrokerError::Tls {
                    reason: format!("cannot read ssl_ca_file {path}"),
                    source: Some(Cause::new(e)),
                })?)
            }
            _ => None,
        };
        Ok(lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain,
        })
    }

    fn classify_connect(&self, h: &Host, e: &lapin::Error) -> BrokerError {
        match e.kind() {
            ErrorKind::ProtocolError(p) => match p.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => BrokerError::AuthRefused {
                    host: h.shown.clone(),
                    user: h.user.clone(),
                    reason: p.get_message().to_string(),
                },
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => BrokerError::VhostRefused {
                    host: h.shown.clone(),
                    vhost: self.vhost.clone(),
                    reason: p.get_message().to_string(),
                },
                _ => BrokerError::Unreachable {
                    reason: format!("{}: {}", h.shown, p.get_message()),
                    source: Some(Cause::new(e.clone())),
                },
            },
            ErrorKind::IOError(io) if self.opts.ssl && is_tls_failure(io) => BrokerError::Tls {
                reason: h.shown.clone(),
                source: Some(Cause::new(e.clone())),
            },
            _ => {
                // lapin's messages never contain the URI, but make sure of it.
                let text = e.to_string();
                let hides_uri = text.contains(&h.uri);
                let text = if hides_uri {
                    "connection failed".to_string()
                } else {
                    text
                };
                BrokerError::Unreachable {
                    reason: format!("{}: {text}", h.shown),
                    source: (!hides_uri).then(|| Cause::new(e.clone())),
                }
            }
        }
    }
}

/// The runtime lapin's connections live on: a tokio runtime with one worker thread of its own,
/// made on first use (so after any fork). The application's runtime can be blocked or starved
/// and the AMQP heartbeats still go out and come in on time (LESSON-03, MSG-AMQP-04); measured:
/// with lapin on the application's runtime, blocking it for 7 s lost every connection.
fn io_runtime() -> Result<&'static tokio::runtime::Handle, BrokerError> {
    static RT: std::sync::OnceLock<Result<tokio::runtime::Runtime, Cause>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("osier-amqp-io")
            .enable_all()
            .build()
            .map_err(Cause::new)
    })
    .as_ref()
    .map(|rt| rt.handle())
    .map_err(|e| BrokerError::Unreachable {
        reason: format!("cannot start the AMQP I/O runtime: {e}"),
        source: Some(e.clone()),
    })
}

/// Whether an I/O error is the TLS handshake failing (rustls' errors, wrapped by tcp-stream).
fn is_tls_failure(e: &std::io::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "tls",
        "certificate",
        "handshake",
        "invalid peer",
        "unknownissuer",
        "corrupt message",
    ]
    .iter()
    .any(|k| text.contains(k))
}

/// This program's file name (for connection and queue names).
pub(crate) fn program_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "osier".into())
}

/// Maps an error of a channel operation: the broker closing the channel is
/// [`BrokerError::ChannelClosed`] with its code and text; anything else means the connection is
/// gone.
pub(crate) fn op_error(what: &str, e: &lapin::Error) -> MessagingError {
    match e.kind() {
        ErrorKind::ProtocolError(p) => BrokerError::ChannelClosed {
            code: p.get_id(),
            reason: format!("{what}: {}", p.get_message()),
            source: Some(Cause::new(e.clone())),
        }
        .into(),
        _ => BrokerError::connection_lost(what, e.clone()).into(),
    }
}

/// Whether `e` is the broker refusing one operation (the channel is closed, the connection is
/// fine) rather than the connection failing. Retrying the same operation would fail again.
pub(crate) fn is_channel_error(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URIs carry the heartbeat, the vhost and the TLS scheme; Debug shows no password.
    #[test]
    fn uris_carry_heartbeat_vhost_and_tls_scheme() {
        let url = "rabbit://a:b@h1:1234,c:d@h2/v%2Fhost".parse().unwrap();
        let b = Broker::new(&url, RabbitOptions::default());
        assert_eq!(b.hosts.len(), 2);
        assert!(b.hosts[0]
            .uri
            .starts_with("amqp://a:b@h1:1234/v%2Fhost?heartbeat=60"));
        assert!(b.hosts[1].uri.starts_with("amqp://c:d@h2:5672/"));
        assert_eq!(b.hosts[1].shown, "h2:5672");
        let tls = Broker::new(
            &"rabbit://h/".parse().unwrap(),
            RabbitOptions {
                ssl: true,
                ..RabbitOptions::default()
            },
        );
        assert!(tls.hosts[0]
            .uri
            .starts_with("amqps://guest:guest@h:5671/%2F"));
        assert!(!format!("{b:?}").contains(":b@"), "Debug shows no password");
    }
}
