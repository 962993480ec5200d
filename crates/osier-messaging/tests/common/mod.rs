//! Helpers shared by the broker tests (`amqp.rs`, `amqp_faults.rs`, `amqp_tls.rs`). Each test
//! binary uses a different subset.
#![allow(dead_code)]

pub mod log_capture;
pub mod raw;

use std::sync::OnceLock;

use osier_bridge::Bridge;
use osier_messaging::{
    Endpoint, EndpointError, MessagingError, Notifier, NotifyDriver, RequestContext, RpcClient,
    RpcServer, Target, Transport,
};

/// The broker every test uses when `OSIER_AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker the tests talk to, from `OSIER_AMQP_URL` (an `amqp://user:pass@host:port/vhost`
/// URI; default [`DEFAULT_AMQP_URL`]): the one place tests read it.
#[derive(Debug)]
pub struct TestBroker {
    pub user: String,
    pub pass: String,
    pub host: String,
    pub port: u16,
    /// As in the URI's path (percent-encoded; `%2f` is `/`).
    pub vhost: String,
}

impl TestBroker {
    fn parse(uri: &str) -> Option<TestBroker> {
        let rest = uri.strip_prefix("amqp://")?;
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 5672),
        };
        Some(TestBroker {
            user: user.into(),
            pass: pass.into(),
            host: host.into(),
            port,
            vhost: if vhost.is_empty() {
                "%2f".into()
            } else {
                vhost.into()
            },
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The transport URL (`rabbit://`) of this broker.
    pub fn url(&self) -> String {
        let vhost = if self.vhost == "%2f" { "" } else { &self.vhost };
        format!(
            "rabbit://{}:{}@{}/{vhost}",
            self.user,
            self.pass,
            self.addr()
        )
    }

    /// [`url`](Self::url) with a query (`key=value&...`).
    pub fn url_with(&self, query: &str) -> String {
        format!("{}?{query}", self.url())
    }

    /// The transport URL with other credentials.
    pub fn url_as(&self, user: &str, pass: &str) -> String {
        format!("rabbit://{user}:{pass}@{}/", self.addr())
    }

    /// The AMQP URI, for raw lapin connections next to the driver under test.
    pub fn raw_uri(&self) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            self.user,
            self.pass,
            self.addr(),
            self.vhost
        )
    }
}

/// The test broker, checked once to be reachable: a test that needs RabbitMQ calls this first
/// and fails at once, saying how to start it, when it is not there.
pub fn broker() -> &'static TestBroker {
    static B: OnceLock<TestBroker> = OnceLock::new();
    B.get_or_init(|| {
        let uri = std::env::var("OSIER_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into());
        let b = TestBroker::parse(&uri).unwrap_or_else(|| {
            panic!("OSIER_AMQP_URL={uri:?} is not an amqp://user:pass@host:port/vhost URI")
        });
        let reach = std::net::ToSocketAddrs::to_socket_addrs(&b.addr())
            .map_err(|e| e.to_string())
            .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
            .and_then(|a| {
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = reach {
            panic!(
                "RabbitMQ is not reachable at {} ({e}). These tests need a broker: start the \
                 local one with `rabbitmq-server -detached` (`.ci/run` does), or point \
                 OSIER_AMQP_URL at one (amqp://user:pass@host:port/vhost).",
                b.addr()
            );
        }
        b
    })
}

/// Whether tests that close the broker's connections or stop its application may run: only
/// with `OSIER_BROKER_FAULTS=1` (`cargo xtask ci` sets it), never in a contributor's plain
/// `cargo test` against the broker they work with.
pub fn broker_faults_allowed() -> bool {
    std::env::var("OSIER_BROKER_FAULTS").is_ok_and(|v| v == "1")
}

/// One bridge per test binary.
pub fn bridge() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| Bridge::builder().build().unwrap())
}

/// Runs `f` on the bridge's tokio runtime.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    bridge().tokio().block_on(f)
}

/// `rabbitmqctl`, or the command in `OSIER_RABBITMQCTL` (e.g. `docker exec <id> rabbitmqctl`).
pub fn rabbitmqctl_cmd() -> std::process::Command {
    let spec = std::env::var("OSIER_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let mut parts = spec.split_whitespace();
    let mut c = std::process::Command::new(parts.next().unwrap_or("rabbitmqctl"));
    c.args(parts);
    c
}

/// A plain lapin connection and channel to the local broker (keep the connection alive while
/// the channel is used).
pub async fn raw_channel() -> (lapin::Connection, lapin::Channel) {
    let conn =
        lapin::Connection::connect(&broker().raw_uri(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Deletes the queues and exchanges a test declared (oslo never deletes topic queues itself).
pub async fn clean_up(queues: &[String], exchanges: &[String]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let (conn, ch) = raw_channel().await;
    for q in queues {
        if let Err(e) = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("queue_delete {q}: {e}");
        }
    }
    for e in exchanges {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    // lapin's close has been seen to wait for ever (once, in a bench): the work is done.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.close(200, "bye".into()),
    )
    .await;
}

/// An RPC server on `top`/`server` whose endpoint `e` has `echo`, returning its arguments.
pub fn echo_server(t: &Transport, top: &str, server: &str) -> RpcServer {
    RpcServer::builder(t, Target::topic(top).with_server(server))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e").method_async("echo", |_c, a: serde_json::Value| async move {
                Ok::<_, EndpointError>(a)
            }),
        )
        .build()
        .unwrap()
}

/// The error of one cast on `t` with a single connection attempt (`retry(0)`; oslo's default,
/// retry forever, would wait for the broker).
pub async fn failed_cast(t: &Transport) -> MessagingError {
    RpcClient::new(t, Target::topic("x"))
        .retry(0)
        .cast(&RequestContext::new(), "m", serde_json::json!({}))
        .await
        .unwrap_err()
}

/// A TCP proxy to the test broker that can be cut: [`Proxy::cut`] closes every connection
/// through it and refuses new ones, so the broker goes away for the clients behind the proxy,
/// and only for them.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1, on the current tokio runtime.
    pub async fn start() -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (c, cs) = (cut.clone(), conns.clone());
        let target = broker().addr();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, cut, conns }
    }

    /// The transport URL of the broker through this proxy, with `query`.
    pub fn url(&self, query: &str) -> String {
        let b = broker();
        format!(
            "rabbit://{}:{}@127.0.0.1:{}/?{query}",
            b.user, b.pass, self.port
        )
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Lets new connections through again (the broker is back for the clients behind it).
    #[allow(dead_code)] // not every test binary restores
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits until `cond` holds, failing the test with `what` after `limit`.
pub async fn until(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// A messagingv2 notifier sending to `topic`.
pub fn notifier(t: &Transport, topic: &str) -> Notifier {
    Notifier::new(t, "osier.tests")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[topic])
}
