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

/// The rabbit driver's options. Defaults are oslo.messaging 18.x's, except where a field says
/// otherwise.
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
    /// The longest wait between reconnect attempts, in seconds. **oslo: 30; here: 2**, so every
    /// client, server and listener finds a restarted cluster within seconds (the cluster fault
    /// scenarios require a call to succeed within 5 s of a majority of nodes being back, and
    /// each of those needs its own reconnection first).
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
    /// Client certificate and key (`ssl_cert_file`, `ssl_key_file`): not supported yet; setting
    /// them is refused with a clear error rather than ignored.
    pub ssl_cert_file: Option<String>,
    /// See `ssl_cert_file`.
    pub ssl_key_file: Option<String>,
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
            rabbit_interval_max: 2.0,
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
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl RabbitOptions {
    /// These options with the URL's query parameters applied (they override, as in oslo).
    /// Parameters of other drivers or unknown names are ignored; a known name with a value that
    /// does not parse is an [`InvalidTransportUrl`](MessagingError::InvalidTransportUrl) error.
    pub fn with_url_query(mut self, url: &TransportUrl) -> Result<Self, MessagingError> {
        for (k, v) in url.query() {
            let bad = |what: &str| MessagingError::InvalidTransportUrl {
                url: url.to_string(),
                reason: format!("query parameter {k}={v:?}: expected {what}"),
            };
            macro_rules! set {
                (bool $f:ident) => {
                    self.$f = parse_bool(v).ok_or_else(|| bad("true or false"))?
                };
                (num $f:ident) => {
                    self.$f = v.parse().map_err(|_| bad("a number"))?
                };
            }
            match k.as_str() {
                "amqp_durable_queues" => set!(bool amqp_durable_queues),
                "amqp_auto_delete" => set!(bool amqp_auto_delete),
                "rabbit_quorum_queue" => set!(bool rabbit_quorum_queue),
                "rabbit_quorum_delivery_limit" => set!(num rabbit_quorum_delivery_limit),
                "rabbit_quorum_max_memory_length" => set!(num rabbit_quorum_max_memory_length),
                "rabbit_quorum_max_memory_bytes" => set!(num rabbit_quorum_max_memory_bytes),
                "rabbit_transient_quorum_queue" => set!(bool rabbit_transient_quorum_queue),
                "rabbit_ha_queues" => set!(bool rabbit_ha_queues),
                "rabbit_transient_queues_ttl" => set!(num rabbit_transient_queues_ttl),
                "rabbit_qos_prefetch_count" => set!(num rabbit_qos_prefetch_count),
                "use_queue_manager" => set!(bool use_queue_manager),
                "enable_cancel_on_failover" => set!(bool enable_cancel_on_failover),
                "heartbeat_timeout_threshold" => set!(num heartbeat_timeout_threshold),
                "rabbit_retry_interval" => set!(num rabbit_retry_interval),
                "rabbit_retry_backoff" => set!(num rabbit_retry_backoff),
                "rabbit_interval_max" => set!(num rabbit_interval_max),
                "kombu_reconnect_delay" => set!(num kombu_reconnect_delay),
                "kombu_failover_strategy" => {
                    self.kombu_failover_strategy = match v.as_str() {
                        "round-robin" => FailoverStrategy::RoundRobin,
                        "shuffle" => FailoverStrategy::Shuffle,
                        _ => return Err(bad("round-robin or shuffle")),
                    }
                }
                "connect_timeout" => set!(num connect_timeout),
                "notify_max_wait" => set!(num notify_max_wait),
                "kombu_missing_consumer_retry_timeout" => {
                    set!(num kombu_missing_consumer_retry_timeout)
                }
                "wait_for_confirms" => set!(bool wait_for_confirms),
                "max_receive_bytes" => set!(num max_receive_bytes),
                "ssl" => set!(bool ssl),
                "ssl_ca_file" => self.ssl_ca_file = Some(v.clone()),
                "ssl_cert_file" => self.ssl_cert_file = Some(v.clone()),
                "ssl_key_file" => self.ssl_key_file = Some(v.clone()),
                other => {
                    tracing::debug!(parameter = other, "transport URL query parameter ignored")
                }
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Refuses combinations oslo refuses (MSG-AMQP-03: HA with quorum queues is a RuntimeError
    /// there) and values that cannot work.
    pub fn validate(&self) -> Result<(), MessagingError> {
        let bad = |reason: &str| MessagingError::DriverLoadFailure {
            driver: "rabbit".into(),
            reason: reason.into(),
        };
        if self.ssl_cert_file.is_some() || self.ssl_key_file.is_some() {
            return Err(bad(
                "ssl_cert_file / ssl_key_file (TLS client certificates) are not supported yet",
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
    /// maximum makes the difference small there).
    pub fn reconnect_wait(&self, attempt: u32) -> Duration {
        let w = self.kombu_reconnect_delay
            + self.rabbit_retry_interval
            + f64::from(attempt) * self.rabbit_retry_backoff;
        Duration::from_secs_f64(w.min(self.rabbit_interval_max))
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
        t
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
            t.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        t
    }

    /// Consumer arguments.
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
        // The defaults: every 2 s.
        let d = RabbitOptions::default();
        assert_eq!(d.reconnect_wait(0).as_secs_f64(), 2.0);
        assert_eq!(d.reconnect_wait(1).as_secs_f64(), 2.0);
        assert_eq!(d.reconnect_wait(9).as_secs_f64(), 2.0);
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
