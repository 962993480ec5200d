//! `[oslo_messaging_rabbit]`: the rabbit driver's options, under oslo's names, settable in code
//! and as transport URL query parameters (MSG-AMQP-03/05/10).
//!
//! ```
//! use osier_messaging::amqp::RabbitOptions;
//! use osier_messaging::TransportUrl;
//!
//! let url: TransportUrl = "rabbit://h/?rabbit_qos_prefetch_count=10&amqp_durable_queues=true"
//!     .parse()
//!     .unwrap();
//! let opts = RabbitOptions::default().with_url_query(&url).unwrap();
//! assert_eq!(opts.rabbit_qos_prefetch_count, 10);
//! assert!(opts.amqp_durable_queues);
//! // A query value that does not parse is an error, not a silent default.
//! let bad: TransportUrl = "rabbit://h/?rabbit_qos_prefetch_count=lots".parse().unwrap();
//! assert!(RabbitOptions::default().with_url_query(&bad).is_err());
//! ```

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};

use crate::error::MessagingError;
use crate::url::TransportUrl;

/// How a driver picks the first host to try (`kombu_failover_strategy`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverStrategy {
    /// Start at the first host of the URL.
    RoundRobin,
    /// Start at a host chosen at random when the driver is made.
    Shuffle,
}

/// The SASL mechanism of the AMQP login (`rabbit_login_method`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// `AMQPLAIN` (oslo's default): user and password in an AMQP table.
    AmqPlain,
    /// `PLAIN`: user and password, SASL PLAIN.
    Plain,
    /// `EXTERNAL`: the broker takes the identity from the TLS client certificate
    /// (`ssl_cert_file`); the URL's user and password are not sent.
    External,
}

impl LoginMethod {
    /// The mechanism's name in lapin's URI query (`auth_mechanism`).
    pub(crate) fn uri_name(self) -> &'static str {
        match self {
            LoginMethod::AmqPlain => "amqplain",
            LoginMethod::Plain => "plain",
            LoginMethod::External => "external",
        }
    }
}

/// The rabbit driver's options. Defaults are oslo.messaging 18.x's, except where a field says
/// otherwise. Every `[oslo_messaging_rabbit]` option of oslo.messaging 18.x is a field here and
/// is honoured, or refused at transport creation, or (where it cannot change what osier does)
/// warned about at WARN naming it: docs/conformance.md has the table.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitOptions {
    /// Control exchange, topic, server and notification queues are durable (default false).
    pub amqp_durable_queues: bool,
    /// Control exchange, topic, server and notification queues are auto-delete (default false).
    pub amqp_auto_delete: bool,
    /// Topic, server and notification queues are quorum queues (and durable) (default false).
    pub rabbit_quorum_queue: bool,
    /// `x-delivery-limit` on quorum queues (0: unset).
    pub rabbit_quorum_delivery_limit: u32,
    /// `x-max-in-memory-length` on quorum queues (0: unset).
    pub rabbit_quorum_max_memory_length: u32,
    /// `x-max-in-memory-bytes` on quorum queues (0: unset).
    pub rabbit_quorum_max_memory_bytes: u32,
    /// Reply and fanout queues are quorum queues (and durable); the fanout exchange is durable.
    pub rabbit_transient_quorum_queue: bool,
    /// `x-ha-policy: all` on queues (obsolete since RabbitMQ 3.0; refused with quorum queues).
    pub rabbit_ha_queues: bool,
    /// `x-expires` on reply and fanout queues, in seconds (1800; 0: none).
    pub rabbit_transient_queues_ttl: u32,
    /// `Basic.Qos` prefetch on listen channels (0: unlimited, no `Basic.Qos`).
    pub rabbit_qos_prefetch_count: u16,
    /// Stable reply and fanout queue names `<host>:<process>:<n>`, and fanout queues kept on stop.
    pub use_queue_manager: bool,
    /// The consumer argument `x-cancel-on-ha-failover: true`.
    pub enable_cancel_on_failover: bool,
    /// The AMQP heartbeat asked for at connection tune, in seconds (60; 0 turns it off). lapin
    /// sends heartbeats from its own I/O thread, so busy green or async code never starves them
    /// (LESSON-03).
    pub heartbeat_timeout_threshold: u16,
    /// The first wait before reconnecting, in seconds (1).
    pub rabbit_retry_interval: f64,
    /// How much each further wait grows, in seconds (2).
    pub rabbit_retry_backoff: f64,
    /// The longest wait between reconnect attempts, in seconds (30, oslo's). After a long
    /// outage each client, server and listener may sleep that long before it looks again; a
    /// deployment that wants a restarted cluster found within seconds sets it lower (the
    /// cluster fault scenarios run with 2).
    pub rabbit_interval_max: f64,
    /// Added before every reconnect, in seconds (1; oslo's `kombu_reconnect_delay`). It is also
    /// the wait before the first reconnect after a connection is lost: a cluster needs a moment
    /// to move the queues of a lost node (a quorum queue elects a new leader) before a client
    /// that reconnected to a survivor can publish to them.
    pub kombu_reconnect_delay: f64,
    /// How the URL's hosts are tried (`kombu_failover_strategy`). **oslo: `round-robin`; here:
    /// `shuffle`**, so the clients of a cluster spread over its nodes instead of all moving to
    /// the same next one. Either way a host whose connection failed or was lost is tried last.
    pub kombu_failover_strategy: FailoverStrategy,
    /// How long one connection attempt to one host may take, TCP, TLS and the AMQP handshake
    /// together, in seconds (5, kombu's default connect timeout). A frozen node (sockets open,
    /// nothing answers) fails after this and the next host is tried. osier's own option
    /// (`connect_timeout` in the URL query).
    pub connect_timeout: f64,
    /// The longest a notification's `notify()` waits, in seconds (10). It waits for a place in
    /// the publisher's window (512 messages not yet confirmed) and, with `wait_for_confirms`, for
    /// the broker's confirm. A notification handed to the publisher in time is kept and sent
    /// once the broker is back, even if `notify()` returned first; one that found no place in
    /// time is dropped with an error logged (notifying never fails the caller, MSG-NOT-05).
    /// osier's own option (`notify_max_wait` in the URL query).
    pub notify_max_wait: f64,
    /// How long a server keeps retrying a reply whose queue is missing, in seconds (60).
    pub kombu_missing_consumer_retry_timeout: f64,
    /// Casts and notifications return only once the broker confirmed them, one at a time, as
    /// oslo does (default false: they return once written and the confirms are pipelined; see
    /// [`driver`](crate::amqp::driver) for what that trades). osier's own option.
    pub wait_for_confirms: bool,
    /// The largest message body a listener or reply queue accepts, in bytes (default 128 MiB,
    /// RabbitMQ's own default `max_message_size`). A larger request or notification is
    /// rejected (dead-lettered if its queue has a dead-letter exchange) and counted as dropped,
    /// unparsed; a larger reply is dropped. osier's own option (`max_receive_bytes` in the URL
    /// query).
    pub max_receive_bytes: usize,
    /// Connect with TLS (`amqps`); also set by `ssl=true` in the URL query.
    pub ssl: bool,
    /// A PEM file of CA certificates to trust (`ssl_ca_file`); the system roots otherwise.
    pub ssl_ca_file: Option<String>,
    /// A PEM file with the client certificate (chain) presented to the broker (mutual TLS);
    /// its key is read from `ssl_key_file`, or from this file when no key file is given.
    pub ssl_cert_file: Option<String>,
    /// A PEM file with the client certificate's private key.
    pub ssl_key_file: Option<String>,
    /// `ssl_version`: osier's TLS (rustls) speaks TLS 1.2 and 1.3 and negotiates the highest
    /// both sides have. `TLSv1_2`, `TLSv1_3` and `TLS` are accepted with a warning (no pinning
    /// to one version); older versions (`TLSv1`, `TLSv1_1`, `SSLv23`, `SSLv3`) are refused.
    pub ssl_version: Option<String>,
    /// `ssl_enforce_hostname_verification`: osier always checks the broker's certificate
    /// against the host name it connects to. oslo defaults to false; an explicit `false` is
    /// warned about (it cannot be honoured), `true` is what osier does anyway.
    pub ssl_enforce_hostname_verification: Option<bool>,
    /// `ssl_enforce_fips_mode`: refused when true (rustls with ring is not a FIPS module).
    pub ssl_enforce_fips_mode: bool,
    /// The login's SASL mechanism (`rabbit_login_method`, default `AMQPLAIN` as oslo's).
    pub rabbit_login_method: LoginMethod,
    /// A random extra wait of up to this many seconds before each reconnect
    /// (`kombu_reconnect_splay`, default 0), so clients do not all come back at once.
    pub kombu_reconnect_splay: f64,
    /// `kombu_compression`: refused when set. osier neither compresses what it sends nor reads
    /// compressed messages, so a fleet that turned it on must leave it off for osier's services.
    pub kombu_compression: Option<String>,
    /// `heartbeat_rate` (3): how often oslo checks the heartbeat within the threshold. lapin
    /// sends a heartbeat every half threshold and checks on its own schedule; another value is
    /// warned about.
    pub heartbeat_rate: u32,
    /// `direct_mandatory_flag` (true, deprecated in oslo): osier always notices a missing reply
    /// queue; `false` is warned about.
    pub direct_mandatory_flag: bool,
    /// `rpc_conn_pool_size`, `conn_pool_min_size`, `conn_pool_ttl`: oslo's pool of publishing
    /// connections. osier publishes over one connection per transport (pipelined with
    /// confirms), so setting any of them is warned about. The names set, in the order given.
    pub connection_pool_options: Vec<String>,
    /// The host name in queue manager names (`hostname`, default the machine's).
    pub hostname: Option<String>,
    /// The process name in queue manager names (`processname`, default the program's file
    /// name).
    pub processname: Option<String>,
    /// Fanout through one stream queue per topic (`rabbit_stream_fanout`, default false): every
    /// server of the topic reads the shared `<topic>_fanout` stream (`x-queue-type: stream`,
    /// `x-max-age` from `rabbit_transient_queues_ttl`) from where it stopped, or from the last
    /// chunk when it starts, instead of a queue of its own. Needs `rabbit_qos_prefetch_count`
    /// above 0 and `rabbit_transient_quorum_queue`, as oslo requires.
    pub rabbit_stream_fanout: bool,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        RabbitOptions {
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            rabbit_quorum_queue: false,
            rabbit_quorum_delivery_limit: 0,
            rabbit_quorum_max_memory_length: 0,
            rabbit_quorum_max_memory_bytes: 0,
            rabbit_transient_quorum_queue: false,
            rabbit_ha_queues: false,
            rabbit_transient_queues_ttl: 1800,
            rabbit_qos_prefetch_count: 0,
            use_queue_manager: false,
            enable_cancel_on_failover: false,
            heartbeat_timeout_threshold: 60,
            rabbit_retry_interval: 1.0,
            rabbit_retry_backoff: 2.0,
            rabbit_interval_max: 30.0,
            kombu_reconnect_delay: 1.0,
            kombu_failover_strategy: FailoverStrategy::Shuffle,
            connect_timeout: 5.0,
            notify_max_wait: 10.0,
            kombu_missing_consumer_retry_timeout: 60.0,
            wait_for_confirms: false,
            max_receive_bytes: 128 << 20,
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            ssl_version: None,
            ssl_enforce_hostname_verification: None,
            ssl_enforce_fips_mode: false,
            rabbit_login_method: LoginMethod::AmqPlain,
            kombu_reconnect_splay: 0.0,
            kombu_compression: None,
            heartbeat_rate: 3,
            direct_mandatory_flag: true,
            connection_pool_options: Vec::new(),
            hostname: None,
            processname: None,
            rabbit_stream_fanout: false,
        }
    }
}

/// An oslo.config boolean: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl RabbitOptions {
    /// These options with the URL's query parameters applied (they override, as in oslo).
    /// A known name with a value that does not parse is an
    /// [`InvalidTransportUrl`](MessagingError::InvalidTransportUrl) error; an unknown name is
    /// logged at WARN and otherwise ignored (oslo ignores it silently: a typo would go unseen).
    pub fn with_url_query(mut self, url: &TransportUrl) -> Result<Self, MessagingError> {
        for (k, v) in url.query() {
            match self.set(k, v) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    parameter = %crate::Untrusted(k),
                    "transport URL query parameter unknown to the rabbit driver: ignored"
                ),
                Err(what) => {
                    return Err(MessagingError::InvalidTransportUrl {
                        url: url.to_string(),
                        reason: format!("query parameter {k}={v:?}: expected {what}"),
                    })
                }
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Sets option `name` (oslo's name) from its text form, as a URL query or a config file
    /// gives it. `Ok(false)`: no such option; `Err`: what the value should have been.
    pub fn set(&mut self, name: &str, v: &str) -> Result<bool, &'static str> {
        fn num<T: std::str::FromStr>(v: &str) -> Result<T, &'static str> {
            v.trim().parse().map_err(|_| "a number")
        }
        fn boolean(v: &str) -> Result<bool, &'static str> {
            parse_bool(v).ok_or("true or false")
        }
        let text = || Some(v.to_string()).filter(|s| !s.is_empty());
        match name {
            "amqp_durable_queues" => self.amqp_durable_queues = boolean(v)?,
            "amqp_auto_delete" => self.amqp_auto_delete = boolean(v)?,
            "rabbit_quorum_queue" => self.rabbit_quorum_queue = boolean(v)?,
            "rabbit_quorum_delivery_limit" => self.rabbit_quorum_delivery_limit = num(v)?,
            "rabbit_quorum_max_memory_length" => self.rabbit_quorum_max_memory_length = num(v)?,
            "rabbit_quorum_max_memory_bytes" => self.rabbit_quorum_max_memory_bytes = num(v)?,
            "rabbit_transient_quorum_queue" => self.rabbit_transient_quorum_queue = boolean(v)?,
            "rabbit_ha_queues" => self.rabbit_ha_queues = boolean(v)?,
            "rabbit_transient_queues_ttl" => self.rabbit_transient_queues_ttl = num(v)?,
            "rabbit_qos_prefetch_count" => self.rabbit_qos_prefetch_count = num(v)?,
            "use_queue_manager" => self.use_queue_manager = boolean(v)?,
            "enable_cancel_on_failover" => self.enable_cancel_on_failover = boolean(v)?,
            "heartbeat_timeout_threshold" => self.heartbeat_timeout_threshold = num(v)?,
            "heartbeat_rate" => self.heartbeat_rate = num(v)?,
            "rabbit_retry_interval" => self.rabbit_retry_interval = num(v)?,
            "rabbit_retry_backoff" => self.rabbit_retry_backoff = num(v)?,
            "rabbit_interval_max" => self.rabbit_interval_max = num(v)?,
            "kombu_reconnect_delay" => self.kombu_reconnect_delay = num(v)?,
            "kombu_reconnect_splay" => self.kombu_reconnect_splay = num(v)?,
            "kombu_failover_strategy" => {
                self.kombu_failover_strategy = match v.trim() {
                    "round-robin" => FailoverStrategy::RoundRobin,
                    "shuffle" => FailoverStrategy::Shuffle,
                    _ => return Err("round-robin or shuffle"),
                }
            }
            "kombu_missing_consumer_retry_timeout" => {
                self.kombu_missing_consumer_retry_timeout = num(v)?
            }
            "kombu_compression" => self.kombu_compression = text(),
            "rabbit_login_method" => {
                self.rabbit_login_method = match v.trim().to_ascii_uppercase().as_str() {
                    "AMQPLAIN" => LoginMethod::AmqPlain,
                    "PLAIN" => LoginMethod::Plain,
                    "EXTERNAL" => LoginMethod::External,
                    _ => return Err("AMQPLAIN, PLAIN or EXTERNAL"),
                }
            }
            "direct_mandatory_flag" => self.direct_mandatory_flag = boolean(v)?,
            "rpc_conn_pool_size" | "conn_pool_min_size" | "conn_pool_ttl" => {
                num::<u64>(v)?;
                self.connection_pool_options.push(name.to_string());
            }
            "hostname" => self.hostname = text(),
            "processname" => self.processname = text(),
            "rabbit_stream_fanout" => self.rabbit_stream_fanout = boolean(v)?,
            "ssl" => self.ssl = boolean(v)?,
            "ssl_ca_file" => self.ssl_ca_file = text(),
            "ssl_cert_file" => self.ssl_cert_file = text(),
            "ssl_key_file" => self.ssl_key_file = text(),
            "ssl_version" => self.ssl_version = text(),
            "ssl_enforce_hostname_verification" => {
                self.ssl_enforce_hostname_verification = Some(boolean(v)?)
            }
            "ssl_enforce_fips_mode" => self.ssl_enforce_fips_mode = boolean(v)?,
            // osier's own.
            "connect_timeout" => self.connect_timeout = num(v)?,
            "notify_max_wait" => self.notify_max_wait = num(v)?,
            "wait_for_confirms" => self.wait_for_confirms = boolean(v)?,
            "max_receive_bytes" => self.max_receive_bytes = num(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Options set to values osier cannot honour and oslo would only act on quietly: each is
    /// a line naming the option and what osier does instead. The driver logs them at WARN
    /// when it is made.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.heartbeat_rate != 3 {
            w.push(format!("heartbeat_rate={} has no effect: lapin sends a heartbeat every half heartbeat_timeout_threshold and notices a silent broker after it", self.heartbeat_rate));
        }
        if !self.direct_mandatory_flag {
            w.push("direct_mandatory_flag=false has no effect: osier always notices a missing reply queue (oslo deprecated the option)".into());
        }
        for name in &self.connection_pool_options {
            w.push(format!("{name} has no effect: osier publishes over one connection per transport, with pipelined confirms, not a pool"));
        }
        if let Some(v @ ("TLSv1_2" | "TLSv1_3" | "TLS" | "PROTOCOL_TLS" | "PROTOCOL_TLS_CLIENT")) =
            self.ssl_version.as_deref()
        {
            w.push(format!("ssl_version={v} does not pin the version: osier negotiates TLS 1.3 or 1.2, the highest the broker offers"));
        }
        if self.ssl_enforce_hostname_verification == Some(false) && self.ssl {
            w.push("ssl_enforce_hostname_verification=false cannot be honoured: osier always verifies the broker certificate's host name".into());
        }
        w
    }

    /// Refuses combinations oslo refuses (MSG-AMQP-03: HA with quorum queues is a RuntimeError
    /// there) and values that cannot work.
    pub fn validate(&self) -> Result<(), MessagingError> {
        let bad = |reason: &str| MessagingError::DriverLoadFailure {
            driver: "rabbit".into(),
            reason: reason.into(),
        };
        let refuse = |option: &str, reason: &str| MessagingError::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        };
        if self.ssl_key_file.is_some() && self.ssl_cert_file.is_none() {
            return Err(refuse(
                "ssl_key_file",
                "a key without ssl_cert_file: set the client certificate too",
            ));
        }
        if self.rabbit_login_method == LoginMethod::External && self.ssl_cert_file.is_none() {
            return Err(refuse(
                "rabbit_login_method",
                "EXTERNAL takes the identity from a TLS client certificate: set ssl=true and ssl_cert_file",
            ));
        }
        if let Some(v) = self.ssl_version.as_deref() {
            if !matches!(
                v,
                "TLSv1_2" | "TLSv1_3" | "TLS" | "PROTOCOL_TLS" | "PROTOCOL_TLS_CLIENT"
            ) {
                return Err(refuse(
                    "ssl_version",
                    "osier speaks TLS 1.2 and 1.3 only (TLSv1_2, TLSv1_3 or TLS)",
                ));
            }
        }
        if self.ssl_enforce_fips_mode {
            return Err(refuse(
                "ssl_enforce_fips_mode",
                "osier's TLS (rustls with ring) is not a FIPS-validated module",
            ));
        }
        if self.kombu_compression.is_some() {
            return Err(refuse(
                "kombu_compression",
                "osier neither compresses messages nor reads compressed ones",
            ));
        }
        if self.rabbit_stream_fanout && self.rabbit_qos_prefetch_count == 0 {
            return Err(refuse(
                "rabbit_stream_fanout",
                "needs rabbit_qos_prefetch_count to be set to a value greater than 0 (as oslo requires)",
            ));
        }
        if self.rabbit_stream_fanout && !self.rabbit_transient_quorum_queue {
            return Err(refuse(
                "rabbit_stream_fanout",
                "needs rabbit_transient_quorum_queue to be set to true (as oslo requires)",
            ));
        }
        if self.rabbit_ha_queues && (self.rabbit_quorum_queue || self.rabbit_transient_quorum_queue)
        {
            return Err(bad(
                "rabbit_ha_queues cannot be combined with quorum queues (x-ha-policy and x-queue-type conflict)",
            ));
        }
        for (name, v) in [
            ("rabbit_retry_interval", self.rabbit_retry_interval),
            ("rabbit_retry_backoff", self.rabbit_retry_backoff),
            ("rabbit_interval_max", self.rabbit_interval_max),
            ("kombu_reconnect_delay", self.kombu_reconnect_delay),
            ("kombu_reconnect_splay", self.kombu_reconnect_splay),
            (
                "kombu_missing_consumer_retry_timeout",
                self.kombu_missing_consumer_retry_timeout,
            ),
            ("notify_max_wait", self.notify_max_wait),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(&format!(
                    "{name} must be a non-negative number of seconds"
                )));
            }
        }
        if !(self.connect_timeout.is_finite() && self.connect_timeout > 0.0) {
            return Err(bad("connect_timeout must be a positive number of seconds"));
        }
        Ok(())
    }

    /// [`connect_timeout`](Self::connect_timeout) as a duration.
    pub(crate) fn connect_deadline(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.connect_timeout)
            .unwrap_or(std::time::Duration::from_secs(5))
    }

    /// [`kombu_reconnect_delay`](Self::kombu_reconnect_delay) as a duration: the wait before
    /// the first reconnect after a lost connection.
    pub(crate) fn first_reconnect_delay(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.kombu_reconnect_delay)
            .unwrap_or(std::time::Duration::ZERO)
    }

    /// The wait before reconnect attempt `attempt` (0-based): `kombu_reconnect_delay` plus
    /// `rabbit_retry_interval + attempt * rabbit_retry_backoff`, the whole at most
    /// `rabbit_interval_max` (MSG-AMQP-05; oslo caps only the growing part, and its larger
    /// maximum makes the difference small there), plus a random part of up to
    /// `kombu_reconnect_splay`.
    pub fn reconnect_wait(&self, attempt: u32) -> Duration {
        let w = self.kombu_reconnect_delay
            + self.rabbit_retry_interval
            + f64::from(attempt) * self.rabbit_retry_backoff;
        Duration::from_secs_f64(w.min(self.rabbit_interval_max) + self.splay())
    }

    /// A random wait in `[0, kombu_reconnect_splay)` seconds.
    fn splay(&self) -> f64 {
        if self.kombu_reconnect_splay <= 0.0 {
            return 0.0;
        }
        // uuid's v4 generator is this crate's source of randomness: its low 53 bits are all
        // random (the version and variant bits are higher up).
        let bits = uuid::Uuid::new_v4().as_u128() & ((1 << 53) - 1);
        self.kombu_reconnect_splay * (bits as f64 / (1u64 << 53) as f64)
    }

    /// Whether the topic exchange and the topic/server/notification queues are durable.
    pub(crate) fn durable(&self) -> bool {
        self.amqp_durable_queues || self.rabbit_quorum_queue
    }

    /// Arguments of topic, server and notification queues.
    pub(crate) fn queue_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        if self.rabbit_ha_queues {
            t.insert("x-ha-policy".into(), AMQPValue::LongString("all".into()));
        }
        if self.rabbit_quorum_queue {
            self.quorum_args(&mut t);
        }
        t
    }

    /// A quorum queue's arguments: its type, and the delivery limit and in-memory bounds when
    /// set (oslo gives them to transient quorum queues too).
    fn quorum_args(&self, t: &mut FieldTable) {
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        for (k, v) in [
            ("x-delivery-limit", self.rabbit_quorum_delivery_limit),
            (
                "x-max-in-memory-length",
                self.rabbit_quorum_max_memory_length,
            ),
            ("x-max-in-memory-bytes", self.rabbit_quorum_max_memory_bytes),
        ] {
            if v > 0 {
                t.insert(k.into(), AMQPValue::LongLongInt(i64::from(v)));
            }
        }
    }

    /// Arguments of reply and fanout queues.
    pub(crate) fn transient_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        if self.rabbit_transient_queues_ttl > 0 {
            let ms = i64::from(self.rabbit_transient_queues_ttl) * 1000;
            t.insert(
                "x-expires".into(),
                i32::try_from(ms)
                    .map(AMQPValue::LongInt)
                    .unwrap_or(AMQPValue::LongLongInt(ms)),
            );
        }
        if self.rabbit_ha_queues {
            t.insert("x-ha-policy".into(), AMQPValue::LongString("all".into()));
        }
        if self.rabbit_transient_quorum_queue {
            self.quorum_args(&mut t);
        }
        t
    }

    /// Consumer arguments.
    /// Arguments of the stream queue a topic's fanout goes through (`rabbit_stream_fanout`).
    pub(crate) fn stream_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        );
        if self.rabbit_transient_queues_ttl > 0 {
            // A string, as oslo sends it.
            let age = format!("{}s", self.rabbit_transient_queues_ttl);
            t.insert("x-max-age".into(), AMQPValue::LongString(age.into()));
        }
        t
    }

    pub(crate) fn consumer_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        if self.enable_cancel_on_failover {
            t.insert("x-cancel-on-ha-failover".into(), AMQPValue::Boolean(true));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> TransportUrl {
        s.parse().unwrap()
    }

    fn with(query: &str) -> Result<RabbitOptions, MessagingError> {
        RabbitOptions::default().with_url_query(&url(&format!("rabbit://h/?{query}")))
    }

    fn refused(query: &str) -> String {
        match with(query) {
            Err(MessagingError::InvalidOption { option, .. }) => option,
            other => panic!("{query}: expected a refusal, got {other:?}"),
        }
    }

    /// Every oslo.messaging 18.x `[oslo_messaging_rabbit]` option is known by its name.
    #[test]
    fn every_oslo_rabbit_option_is_known() {
        let oslo = [
            ("rpc_conn_pool_size", "30"),
            ("conn_pool_min_size", "2"),
            ("conn_pool_ttl", "1200"),
            ("ssl", "false"),
            ("ssl_version", "TLSv1_2"),
            ("ssl_key_file", "/k"),
            ("ssl_cert_file", "/c"),
            ("ssl_ca_file", "/ca"),
            ("ssl_enforce_hostname_verification", "false"),
            ("ssl_enforce_fips_mode", "false"),
            ("kombu_reconnect_delay", "1.0"),
            ("kombu_reconnect_splay", "0"),
            ("kombu_compression", ""),
            ("kombu_missing_consumer_retry_timeout", "60"),
            ("kombu_failover_strategy", "round-robin"),
            ("rabbit_login_method", "AMQPLAIN"),
            ("rabbit_retry_interval", "1"),
            ("rabbit_retry_backoff", "2"),
            ("rabbit_interval_max", "30"),
            ("rabbit_ha_queues", "false"),
            ("rabbit_quorum_queue", "false"),
            ("rabbit_transient_quorum_queue", "false"),
            ("rabbit_quorum_delivery_limit", "0"),
            ("rabbit_quorum_max_memory_length", "0"),
            ("rabbit_quorum_max_memory_bytes", "0"),
            ("rabbit_transient_queues_ttl", "1800"),
            ("rabbit_qos_prefetch_count", "0"),
            ("heartbeat_timeout_threshold", "60"),
            ("heartbeat_rate", "3"),
            ("direct_mandatory_flag", "true"),
            ("enable_cancel_on_failover", "false"),
            ("use_queue_manager", "false"),
            ("hostname", "node1.example.com"),
            ("processname", "nova-api"),
            ("rabbit_stream_fanout", "false"),
            ("amqp_durable_queues", "false"),
            ("amqp_auto_delete", "false"),
        ];
        let mut o = RabbitOptions::default();
        for (name, value) in oslo {
            assert_eq!(o.set(name, value), Ok(true), "{name}");
        }
        assert_eq!(
            o.set("rabit_quorum_queue", "true"),
            Ok(false),
            "a typo is unknown"
        );
    }

    /// What cannot be honoured and would change behaviour is refused at transport creation,
    /// naming the option.
    #[test]
    fn options_that_cannot_be_honoured_are_refused() {
        assert_eq!(refused("rabbit_stream_fanout=true"), "rabbit_stream_fanout");
        assert_eq!(
            refused("rabbit_stream_fanout=true&rabbit_qos_prefetch_count=10"),
            "rabbit_stream_fanout",
            "without transient quorum queues"
        );
        assert!(with(
            "rabbit_stream_fanout=true&rabbit_qos_prefetch_count=10&rabbit_transient_quorum_queue=true"
        )
        .is_ok());
        assert_eq!(refused("kombu_compression=gzip"), "kombu_compression");
        assert_eq!(
            refused("ssl_enforce_fips_mode=true"),
            "ssl_enforce_fips_mode"
        );
        assert_eq!(refused("ssl=true&ssl_version=TLSv1_1"), "ssl_version");
        assert_eq!(refused("ssl=true&ssl_key_file=/k"), "ssl_key_file");
        assert_eq!(
            refused("rabbit_login_method=EXTERNAL"),
            "rabbit_login_method"
        );
        assert!(
            with("rabbit_login_method=DIGEST").is_err(),
            "an unknown mechanism"
        );
        let ok = with("ssl=true&ssl_cert_file=/c&rabbit_login_method=external").unwrap();
        assert_eq!(ok.rabbit_login_method, LoginMethod::External);
    }

    /// What cannot change what osier does is accepted and warned about, one line per option
    /// naming it; the defaults warn about nothing.
    #[test]
    fn options_without_effect_are_warned_about() {
        assert!(RabbitOptions::default().warnings().is_empty());
        let o = with(
            "heartbeat_rate=2&direct_mandatory_flag=false&rpc_conn_pool_size=10&conn_pool_ttl=60\
             &ssl=true&ssl_version=TLSv1_2&ssl_enforce_hostname_verification=false",
        )
        .unwrap();
        let w = o.warnings();
        for name in [
            "heartbeat_rate",
            "direct_mandatory_flag",
            "rpc_conn_pool_size",
            "conn_pool_ttl",
            "ssl_version",
            "ssl_enforce_hostname_verification",
        ] {
            assert!(w.iter().any(|l| l.starts_with(name)), "{name}: {w:?}");
        }
        assert_eq!(w.len(), 6);
    }

    /// `kombu_reconnect_splay` adds a random part of up to its value to every wait.
    #[test]
    fn reconnect_splay_adds_a_bounded_random_wait() {
        let o = RabbitOptions {
            kombu_reconnect_splay: 0.5,
            ..RabbitOptions::default()
        };
        let waits: Vec<f64> = (0..200)
            .map(|_| o.reconnect_wait(0).as_secs_f64())
            .collect();
        assert!(waits.iter().all(|w| (2.0..2.5).contains(w)), "{waits:?}");
        let spread = waits.iter().cloned().fold(f64::MIN, f64::max)
            - waits.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.1, "random, not constant: {spread}");
    }

    /// MSG-AMQP-05: the waits grow by the backoff and stop at the maximum.
    #[test]
    fn reconnect_waits_grow_then_cap() {
        let o = RabbitOptions {
            kombu_reconnect_delay: 0.0,
            rabbit_interval_max: 30.0,
            ..RabbitOptions::default()
        };
        let w: Vec<f64> = (0..5).map(|a| o.reconnect_wait(a).as_secs_f64()).collect();
        assert_eq!(w, vec![1.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(o.reconnect_wait(100).as_secs_f64(), 30.0);
        // The defaults (oslo's): 2 s, 4 s, 6 s... up to 30 s.
        let d = RabbitOptions::default();
        assert_eq!(d.reconnect_wait(0).as_secs_f64(), 2.0);
        assert_eq!(d.reconnect_wait(1).as_secs_f64(), 4.0);
        assert_eq!(d.reconnect_wait(99).as_secs_f64(), 30.0);
    }

    /// MSG-URL-05: URL query parameters override, under oslo's names.
    #[test]
    fn url_query_overrides_options() {
        let o = RabbitOptions::default()
            .with_url_query(&url(
                "rabbit://h/?rabbit_quorum_queue=true&rabbit_quorum_delivery_limit=5&rabbit_transient_queues_ttl=0&enable_cancel_on_failover=yes&heartbeat_timeout_threshold=10",
            ))
            .unwrap();
        assert!(o.rabbit_quorum_queue && o.durable());
        assert_eq!(o.heartbeat_timeout_threshold, 10);
        let qa = o.queue_args();
        assert_eq!(
            qa.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            qa.inner().get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(5))
        );
        assert!(o.transient_args().inner().is_empty());
        assert!(o
            .consumer_args()
            .inner()
            .contains_key("x-cancel-on-ha-failover"));
    }

    /// oslo's defaults: transient queues expire after 30 minutes; nothing else is set.
    #[test]
    fn default_arguments_match_oslo() {
        let o = RabbitOptions::default();
        assert!(!o.durable());
        assert!(o.queue_args().inner().is_empty());
        assert_eq!(
            o.transient_args().inner().get("x-expires"),
            Some(&AMQPValue::LongInt(1_800_000))
        );
        assert!(o.consumer_args().inner().is_empty());
    }

    /// MSG-AMQP-03: the quorum limits go on every quorum queue: topic, server and notification
    /// queues with `rabbit_quorum_queue`, reply and fanout queues with
    /// `rabbit_transient_quorum_queue` (as oslo declares them).
    #[test]
    fn quorum_limits_go_on_every_quorum_queue() {
        let o = RabbitOptions::default()
            .with_url_query(&url(
                "rabbit://h/?rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true\
                 &rabbit_quorum_delivery_limit=5&rabbit_quorum_max_memory_length=100",
            ))
            .unwrap();
        for args in [o.queue_args(), o.transient_args()] {
            let a = args.inner();
            assert_eq!(
                a.get("x-queue-type"),
                Some(&AMQPValue::LongString("quorum".into()))
            );
            assert_eq!(a.get("x-delivery-limit"), Some(&AMQPValue::LongLongInt(5)));
            assert_eq!(
                a.get("x-max-in-memory-length"),
                Some(&AMQPValue::LongLongInt(100))
            );
            assert!(a.get("x-max-in-memory-bytes").is_none(), "0: not set");
        }
    }

    /// MSG-AMQP-03: HA queues and quorum queues together are refused.
    #[test]
    fn ha_with_quorum_is_refused() {
        let e = RabbitOptions::default()
            .with_url_query(&url("rabbit://h/?rabbit_ha_queues=1&rabbit_quorum_queue=1"))
            .unwrap_err();
        assert!(matches!(e, MessagingError::DriverLoadFailure { .. }), "{e}");
    }

    #[test]
    fn bad_query_value_is_an_error_naming_the_parameter() {
        let e = RabbitOptions::default()
            .with_url_query(&url("rabbit://u:secret@h/?amqp_durable_queues=maybe"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("amqp_durable_queues"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
