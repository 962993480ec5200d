//! Connecting to the broker: the URL's hosts with failover, oslo's backoff, the AMQP heartbeat,
//! TLS, and errors that name the broker's reason without credentials (MSG-AMQP-04/05/12).
//!
//! Hosts are tried in turn from the one that worked last; a driver starts at a random host
//! (`kombu_failover_strategy=shuffle`, the default here) or at the first (`round-robin`). A host
//! whose attempt failed, or whose connection an owner lost, is tried after every other host until
//! a connection to it works again: a frozen node is not tried first on every reconnect. Each
//! attempt has a deadline (`connect_timeout`, TCP, TLS and the AMQP handshake together): a node
//! that accepts the TCP connection and then says nothing fails like one that refuses it.
//!
//! A refused login or virtual host, or a certificate that is not trusted, is not retried: no
//! number of attempts fixes it, and retrying would only hide it (oslo retries it like a network
//! error; the difference is deliberate).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::amqp::options::{FailoverStrategy, RabbitOptions};
use crate::error::{BrokerError, Cause, MessagingError};
use crate::lock::lock;
use crate::url::TransportUrl;

/// Which host of the URL a connection went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostId(usize);

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
    /// When each host last failed (an attempt, or a connection lost); `None` once one worked.
    failed: Mutex<Vec<Option<Instant>>>,
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
            "heartbeat={}&connection_timeout=10000&channel_max=2047&auth_mechanism={}",
            opts.heartbeat_timeout_threshold,
            opts.rabbit_login_method.uri_name()
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
        let start = match opts.kombu_failover_strategy {
            FailoverStrategy::RoundRobin => 0,
            // uuid's v4 generator is this crate's source of randomness.
            FailoverStrategy::Shuffle => {
                (uuid::Uuid::new_v4().as_u128() % hosts.len() as u128) as usize
            }
        };
        Broker {
            failed: Mutex::new(vec![None; hosts.len()]),
            hosts,
            vhost,
            opts,
            next: AtomicUsize::new(start),
            connects: AtomicU64::new(0),
        }
    }

    /// `host:port` of `host`, for logs.
    pub(crate) fn shown(&self, host: HostId) -> &str {
        self.hosts.get(host.0).map_or("?", |h| h.shown.as_str())
    }

    /// An owner lost its connection to `host`: it is tried last until a connection to it works.
    pub(crate) fn lost(&self, host: HostId) {
        self.mark(host.0, true);
    }

    /// The order of one round: from the last good host on, the hosts that have not failed, then
    /// those that have, the longest-failed first.
    fn order(&self) -> Vec<usize> {
        let n = self.hosts.len();
        let start = self.next.load(Ordering::Relaxed) % n.max(1);
        let failed = lock(&self.failed).clone();
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        // A stable sort keeps the round-robin order within each group.
        order.sort_by_key(|&i| failed[i].map_or((0, None), |t| (1, Some(t))));
        order
    }

    fn mark(&self, idx: usize, failed: bool) {
        if let Some(f) = lock(&self.failed).get_mut(idx) {
            *f = failed.then(Instant::now);
        }
    }

    /// One connection attempt on each host, in the [`order`](Self::order) of the module docs.
    /// The error is the most telling one: a refused login or vhost over an unreachable host;
    /// otherwise `Unreachable` naming each host and why it failed.
    pub(crate) async fn connect_once(&self) -> Result<(Connection, HostId), BrokerError> {
        let mut refused: Option<BrokerError> = None;
        let mut why = Vec::new();
        let mut last: Option<Cause> = None;
        for idx in self.order() {
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
            // lapin has no deadline of its own on the handshake.
            let deadline = self.opts.connect_deadline();
            let attempt = tokio::time::timeout(
                deadline,
                Connection::connect_with_config(&h.uri, props, tls, rt),
            )
            .await;
            let attempt = match attempt {
                Ok(r) => r.map_err(|e| self.classify_connect(h, &e)),
                Err(_) => Err(BrokerError::Unreachable {
                    reason: format!("{}: no answer within {deadline:?}", h.shown),
                    source: None,
                }),
            };
            match attempt {
                Ok(c) => {
                    self.next.store(idx, Ordering::Relaxed);
                    self.mark(idx, false);
                    self.connects.fetch_add(1, Ordering::AcqRel);
                    tracing::debug!(host = %h.shown, "connected to the broker");
                    return Ok((c, HostId(idx)));
                }
                Err(err) => {
                    self.mark(idx, true);
                    tracing::debug!(host = %h.shown, error = %err, "broker host failed");
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
        Err(refused.unwrap_or_else(|| BrokerError::Unreachable {
            reason: why.join("; "),
            source: last,
        }))
    }

    /// One round over the hosts ([`connect_once`](Self::connect_once)) as a `MessagingError`.
    /// Retrying is the owners' business: the publisher counts a message's tries against its
    /// `retry` (MSG-RPC-07), consumers retry forever once started, both with
    /// [`RabbitOptions::reconnect_wait`] between rounds.
    pub(crate) async fn connect(&self) -> Result<(Connection, HostId), MessagingError> {
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
        let read = |option: &str, path: &str| {
            std::fs::read(path).map_err(|e| BrokerError::Tls {
                reason: format!("cannot read {option} {path}"),
                source: Some(Cause::new(e)),
            })
        };
        // Mutual TLS: the client certificate, and its key from its own file or the same one.
        let identity = match (&self.opts.ssl_cert_file, self.opts.ssl) {
            (Some(cert), true) => {
                let pem = read("ssl_cert_file", cert)?;
                let key = match &self.opts.ssl_key_file {
                    Some(k) => read("ssl_key_file", k)?,
                    None => pem.clone(),
                };
                Some(lapin::tcp::OwnedIdentity::PKCS8 { pem, key })
            }
            _ => None,
        };
        Ok(lapin::tcp::OwnedTLSConfig {
            identity,
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

/// What went wrong with a connection or channel, in words for an operator's log line (lapin's
/// own `Display` shows some states as debug structures).
pub(crate) fn describe(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(p) => {
            format!("the broker closed it: {} {}", p.get_id(), p.get_message())
        }
        ErrorKind::IOError(io) => io.to_string(),
        ErrorKind::MissingHeartbeatError => {
            "no heartbeat from the broker in time (the node is down, frozen or cut off)".into()
        }
        ErrorKind::InvalidConnectionState(_) | ErrorKind::InvalidChannelState(..) => {
            "the connection is closed".into()
        }
        _ => e.to_string(),
    }
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

    fn three_hosts(strategy: FailoverStrategy) -> Broker {
        Broker::new(
            &"rabbit://h1,h2,h3/".parse().unwrap(),
            RabbitOptions {
                kombu_failover_strategy: strategy,
                ..RabbitOptions::default()
            },
        )
    }

    /// A host whose attempt failed, or whose connection was lost, is tried after every other
    /// host, the longest-failed first; one that works again goes back in its place.
    #[test]
    fn a_host_that_failed_is_tried_last() {
        let b = three_hosts(FailoverStrategy::RoundRobin);
        assert_eq!(
            b.order(),
            vec![0, 1, 2],
            "round-robin starts at the first host"
        );
        b.lost(HostId(0));
        assert_eq!(b.order(), vec![1, 2, 0], "the lost host goes last");
        b.mark(1, true);
        assert_eq!(
            b.order(),
            vec![2, 0, 1],
            "failed hosts in the order they failed"
        );
        b.mark(0, false);
        assert_eq!(
            b.order(),
            vec![0, 2, 1],
            "a host that works again is back in its place"
        );
    }

    /// With `shuffle` (the default), drivers start at different hosts, so the clients of a
    /// cluster spread over it instead of all moving to the same next node.
    #[test]
    fn shuffled_drivers_spread_over_the_hosts() {
        let mut first = std::collections::BTreeSet::new();
        for _ in 0..200 {
            first.insert(three_hosts(FailoverStrategy::Shuffle).order()[0]);
        }
        assert_eq!(
            first.len(),
            3,
            "every host is some driver's first: {first:?}"
        );
        assert_eq!(
            RabbitOptions::default().kombu_failover_strategy,
            FailoverStrategy::Shuffle
        );
    }
}
