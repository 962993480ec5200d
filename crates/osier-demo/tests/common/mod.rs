//! What the demo's tests share: the real parts (RabbitMQ, PostgreSQL) and a stage run in this
//! process.
#![allow(dead_code)] // each test file uses part of it

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use osier_demo::load::{self, LoadConfig, LoadReport};
use osier_demo::service::{self, Config};
use osier_demo::stage::Stage;
use osier_demo::store::DbUrl;
use osier_messaging::{Transport, TransportOptions};
use osier_service::Service;

/// The broker, from `OSIER_AMQP_URL` (as the other crates' tests), as a transport URL.
pub fn rabbit_url() -> String {
    let uri = std::env::var("OSIER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rest = uri
        .strip_prefix("amqp://")
        .unwrap_or_else(|| panic!("OSIER_AMQP_URL={uri:?} is not an amqp:// URI"));
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let vhost = if vhost == "%2f" || vhost == "%2F" {
        ""
    } else {
        vhost
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if !reachable(host) {
        panic!(
            "RabbitMQ is not reachable at {host}: start it (`rabbitmq-server -detached`) or \
             point OSIER_AMQP_URL at one"
        );
    }
    format!("rabbit://{authority}/{vhost}")
}

/// PostgreSQL from `OSIER_DEMO_PG` (default: the local server's `test` database), or None,
/// said on stderr, when it cannot be reached.
pub fn postgres() -> Option<DbUrl> {
    let url = std::env::var("OSIER_DEMO_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = DbUrl::parse(&url).expect("OSIER_DEMO_PG is a postgres:// URL");
    let host = url
        .split_once("://")
        .map(|(_, r)| r.rsplit('@').next().unwrap_or(r))
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    if reachable(host) {
        Some(db)
    } else {
        eprintln!("PostgreSQL is not reachable at {host} (OSIER_DEMO_PG): the PostgreSQL checks did not run");
        None
    }
}

fn reachable(host: &str) -> bool {
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// An in-memory transport of its own (its own control exchange), so tests run side by side.
pub fn memory() -> Transport {
    let opts = TransportOptions {
        control_exchange: format!("demo-{}", uuid::Uuid::new_v4().simple()),
        ..TransportOptions::default()
    };
    Transport::with_options("memory://", opts).expect("memory:// is a transport")
}

/// A SQLite file of its own, removed when dropped.
pub struct TempDb(pub DbUrl);

impl TempDb {
    pub fn new() -> Self {
        TempDb(DbUrl::temporary())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.0.remove();
    }
}

pub fn bridge() -> osier_bridge::Bridge {
    osier_bridge::Bridge::builder()
        .build()
        .expect("the runtimes start")
}

pub fn config(db: &DbUrl, host: &str) -> Config {
    Config {
        db: db.clone(),
        host: host.into(),
        aggregate_every: Duration::from_millis(50),
    }
}

pub fn short_load() -> LoadConfig {
    LoadConfig {
        duration: Duration::from_millis(600),
        resources: 5,
        batch: 50,
        queriers: 2,
        settle_timeout: Duration::from_secs(30),
    }
}

/// Starts the services of `stages` (one per stage, host `metering-<n>`), runs the load
/// generator against them, stops them, and returns what it found.
pub fn run(
    stages: &[Stage],
    transport: &Transport,
    db: &DbUrl,
) -> Result<LoadReport, load::LoadError> {
    let bridge = bridge();
    let services: Vec<_> = stages
        .iter()
        .map(|s| {
            let cfg = config(db, &format!("metering-{}", s.number()));
            let m = bridge
                .tokio()
                .block_on(service::build(
                    *s,
                    transport,
                    &bridge,
                    &cfg,
                    Default::default(),
                ))
                .expect("the service builds");
            bridge
                .tokio()
                .block_on(m.start())
                .expect("the service starts");
            m
        })
        .collect();
    let r = bridge
        .tokio()
        .block_on(load::run(transport, &short_load(), |_| {}));
    for m in &services {
        bridge
            .tokio()
            .block_on(m.stop(true))
            .expect("the service stops");
        bridge.tokio().block_on(m.wait()).expect("the service ends");
    }
    r
}
