//! oslo.config files: a transport and a notifier built from the same file a Python service of
//! the fleet reads (`nova.conf`, `neutron.conf`...), with oslo's meaning for every option.
//!
//! | section | options read |
//! |---|---|
//! | `[DEFAULT]` | `transport_url`, `control_exchange`, `rpc_response_timeout`, `rpc_ping_enabled` |
//! | `[oslo_messaging_rabbit]` | every option of [`RabbitOptions`] (`rabbit://` transports) |
//! | `[oslo_messaging_notifications]` | `driver`, `topics`, `transport_url`, `retry` |
//! | `[oslo_messaging_metrics]` | `metrics_process_name`; the collector's own options (`metrics_enabled`, `metrics_socket_file`, ...) are logged at WARN: osier records through the `metrics` facade instead ([`crate::metrics`]) |
//!
//! A `rabbit://` URL's query parameters override the file's `[oslo_messaging_rabbit]`, as they
//! do in oslo. Other sections, and the service's own options in `[DEFAULT]`, are not ours and
//! are left alone; an option of `[oslo_messaging_rabbit]` or `[oslo_messaging_notifications]`
//! that osier does not know is logged at WARN naming it (oslo.config ignores it silently). A
//! value that does not parse is a [`MessagingError::Config`] error naming section and option.
//!
//! ```
//! use osier_messaging::config::OsloConfig;
//!
//! let conf = OsloConfig::parse(
//!     "[DEFAULT]\n\
//!      transport_url = rabbit://nova:secret@rabbit1:5672,nova:secret@rabbit2:5672/\n\
//!      control_exchange = nova\n\
//!      [oslo_messaging_rabbit]\n\
//!      rabbit_quorum_queue = true\n\
//!      [oslo_messaging_notifications]\n\
//!      driver = messagingv2\n\
//!      topics = notifications,ceilometer\n",
//! )
//! .unwrap();
//! let transport = conf.transport().unwrap(); // connects on first use
//! assert_eq!(transport.options().control_exchange, "nova");
//! assert!(conf.rabbit_options().unwrap().rabbit_quorum_queue);
//! let notifier = conf.notifier(&transport, "compute.host1").unwrap();
//! assert!(notifier.is_enabled());
//! ```

use std::path::Path;
use std::time::Duration;

use crate::amqp::options::parse_bool;
use crate::amqp::RabbitOptions;
use crate::error::{Cause, MessagingError};
use crate::notify::notifier::{Notifier, NotifyDriver};
use crate::transport::{Transport, TransportOptions};
use crate::untrusted::Untrusted;

const DEFAULT: &str = "DEFAULT";
const RABBIT: &str = "oslo_messaging_rabbit";
const NOTIFICATIONS: &str = "oslo_messaging_notifications";
const METRICS: &str = "oslo_messaging_metrics";

/// An oslo.config file, parsed (INI: `[section]`s of `name = value`, `#` and `;` comment
/// lines, indented continuation lines, a name given twice for a multi-valued option).
pub struct OsloConfig {
    ini: ini::Ini,
}

impl std::fmt::Debug for OsloConfig {
    /// Section names only: the values hold passwords (`transport_url`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sections: Vec<&str> = self.ini.sections().flatten().collect();
        f.debug_struct("OsloConfig")
            .field("sections", &sections)
            .finish_non_exhaustive()
    }
}

fn config_error(reason: String, source: Option<Cause>) -> MessagingError {
    MessagingError::Config { reason, source }
}

impl OsloConfig {
    /// Reads and parses `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MessagingError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                format!("cannot read {}", path.display()),
                Some(Cause::new(e)),
            )
        })?;
        Self::parse(&text).map_err(|e| match e {
            MessagingError::Config { reason, source } => {
                config_error(format!("{}: {reason}", path.display()), source)
            }
            other => other,
        })
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Self, MessagingError> {
        let opts = ini::ParseOption {
            // oslo.config keeps quotes and backslashes as they are written.
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let ini = ini::Ini::load_from_str_opt(text, opts)
            .map_err(|e| config_error(format!("not an oslo.config file: {e}"), None))?;
        Ok(OsloConfig { ini })
    }

    /// The value of `name` in `section` (the last one, if given more than once).
    pub fn get(&self, section: &str, name: &str) -> Option<&str> {
        self.ini
            .section(Some(section))
            .and_then(|s| s.get_all(name).last())
            .map(str::trim)
    }

    /// Every value of a multi-valued option, in order.
    fn get_all(&self, section: &str, name: &str) -> Vec<&str> {
        self.ini
            .section(Some(section))
            .map(|s| s.get_all(name).map(str::trim).collect())
            .unwrap_or_default()
    }

    fn bad_value(section: &str, name: &str, value: &str, expected: &str) -> MessagingError {
        config_error(
            format!(
                "[{section}] {name} = {:?}: expected {expected}",
                Untrusted(value)
            ),
            None,
        )
    }

    /// `[DEFAULT] transport_url`.
    pub fn transport_url(&self) -> Result<&str, MessagingError> {
        self.get(DEFAULT, "transport_url")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| config_error("[DEFAULT] transport_url is not set".into(), None))
    }

    /// `[DEFAULT] control_exchange`, `rpc_response_timeout` and `rpc_ping_enabled` over
    /// osier's defaults.
    pub fn transport_options(&self) -> Result<TransportOptions, MessagingError> {
        let mut o = TransportOptions::default();
        if let Some(v) = self.get(DEFAULT, "control_exchange") {
            o.control_exchange = v.to_string();
        }
        if let Some(v) = self.get(DEFAULT, "rpc_response_timeout") {
            let secs: u64 = v
                .parse()
                .map_err(|_| Self::bad_value(DEFAULT, "rpc_response_timeout", v, "seconds"))?;
            o.rpc_response_timeout = Duration::from_secs(secs);
        }
        if let Some(v) = self.get(DEFAULT, "rpc_ping_enabled") {
            o.rpc_ping_enabled = parse_bool(v)
                .ok_or_else(|| Self::bad_value(DEFAULT, "rpc_ping_enabled", v, "true or false"))?;
        }
        if let Some(v) = self.get(METRICS, "metrics_process_name") {
            o.metrics_process_name = v.to_string();
        }
        for opt in [
            "metrics_enabled",
            "metrics_buffer_size",
            "metrics_socket_file",
            "metrics_thread_stop_timeout",
        ] {
            if self.get(METRICS, opt).is_some() {
                tracing::warn!(
                    section = METRICS,
                    option = opt,
                    "config option not honoured: osier sends no metrics to an oslo.metrics collector socket; install a `metrics` recorder (osier_service::metrics_endpoint serves Prometheus) instead"
                );
            }
        }
        Ok(o)
    }

    /// `[DEFAULT] executor_thread_pool_size` (default 64): how many requests or notifications a
    /// server or listener handles at once, for
    /// [`RpcServerBuilder::max_in_flight`](crate::RpcServerBuilder::max_in_flight) and
    /// [`NotificationListener::max_in_flight`](crate::NotificationListener::max_in_flight).
    /// Zero, or a value that is not a number, is an error naming the option.
    pub fn executor_thread_pool_size(&self) -> Result<usize, MessagingError> {
        match self.get(DEFAULT, "executor_thread_pool_size") {
            None => Ok(crate::rpc::server::DEFAULT_MAX_IN_FLIGHT),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Self::bad_value(
                    DEFAULT,
                    "executor_thread_pool_size",
                    v,
                    "a number of at least 1",
                )
            }),
        }
    }

    /// `[oslo_messaging_rabbit]` over oslo's defaults (options osier does not know are logged
    /// at WARN; refusals come when a transport is made from them).
    pub fn rabbit_options(&self) -> Result<RabbitOptions, MessagingError> {
        let mut o = RabbitOptions::default();
        let Some(section) = self.ini.section(Some(RABBIT)) else {
            return Ok(o);
        };
        for (name, value) in section.iter() {
            match o.set(name, value.trim()) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    section = RABBIT,
                    option = %Untrusted(name),
                    "config option unknown to osier: ignored"
                ),
                Err(expected) => return Err(Self::bad_value(RABBIT, name, value, expected)),
            }
        }
        Ok(o)
    }

    /// The RPC transport: `[DEFAULT] transport_url` with the file's options.
    pub fn transport(&self) -> Result<Transport, MessagingError> {
        self.transport_for(self.transport_url()?)
    }

    /// The notification transport: `[oslo_messaging_notifications] transport_url`, or the RPC
    /// transport's URL when it is not set (as oslo falls back).
    pub fn notification_transport(&self) -> Result<Transport, MessagingError> {
        match self
            .get(NOTIFICATIONS, "transport_url")
            .filter(|u| !u.is_empty())
        {
            Some(url) => self.transport_for(url),
            None => self.transport(),
        }
    }

    fn transport_for(&self, url: &str) -> Result<Transport, MessagingError> {
        let options = self.transport_options()?;
        let parsed: crate::url::TransportUrl = url.parse()?;
        if matches!(parsed.driver(), "rabbit" | "kombu") {
            Transport::with_rabbit_options(url, options, self.rabbit_options()?)
        } else {
            Transport::with_options(url, options)
        }
    }

    /// A notifier on `transport` with `[oslo_messaging_notifications]`: `driver` (each value,
    /// and each comma-separated name in it: `messagingv2`, `messaging`, `log`, `noop`; none
    /// means no driver, so nothing is sent, as in oslo), `topics` (default `notifications`)
    /// and `retry` (default -1). The `routing` and `test` drivers are given in code, not in the
    /// file: naming them here is an error.
    pub fn notifier(
        &self,
        transport: &Transport,
        publisher_id: &str,
    ) -> Result<Notifier, MessagingError> {
        let mut n = Notifier::new(transport, publisher_id);
        if let Some(section) = self.ini.section(Some(NOTIFICATIONS)) {
            for (name, _) in section.iter() {
                if !matches!(name, "driver" | "topics" | "transport_url" | "retry") {
                    tracing::warn!(
                        section = NOTIFICATIONS,
                        option = %Untrusted(name),
                        "config option unknown to osier: ignored"
                    );
                }
            }
        }
        let drivers = self.get_all(NOTIFICATIONS, "driver");
        for name in drivers.iter().flat_map(|d| d.split(',')).map(str::trim) {
            let d =
                match name {
                    "" => continue,
                    "messagingv2" => NotifyDriver::MessagingV2,
                    "messaging" => NotifyDriver::Messaging,
                    "log" => NotifyDriver::Log,
                    "noop" => NotifyDriver::Noop,
                    other => return Err(Self::bad_value(
                        NOTIFICATIONS,
                        "driver",
                        other,
                        "messagingv2, messaging, log or noop (routing and test are set in code)",
                    )),
                };
            n = n.driver(d);
        }
        if let Some(v) = self.get(NOTIFICATIONS, "topics") {
            let topics: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            n = n.topics(&topics);
        }
        if let Some(v) = self.get(NOTIFICATIONS, "retry") {
            let retry: i32 = v
                .parse()
                .map_err(|_| Self::bad_value(NOTIFICATIONS, "retry", v, "an integer"))?;
            n = n.retry(retry);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nova.conf-style file as a deployment writes it (kolla's quorum, transient quorum and
    /// queue manager settings), with sections and options that are not ours: it loads
    /// unchanged and means what it means to a Python service.
    const NOVA_CONF: &str = r#"
[DEFAULT]
debug = False
log_dir = /var/log/kolla/nova
state_path = /var/lib/nova
# the fleet's broker cluster
transport_url = rabbit://openstack:Secr3tpw@192.0.2.10:5672,openstack:Secr3tpw@192.0.2.11:5672,openstack:Secr3tpw@192.0.2.12:5672//
control_exchange = nova
rpc_response_timeout = 120
my_ip = 192.0.2.20
enabled_apis = osapi_compute,metadata

[api]
use_forwarded_for = true

[oslo_messaging_rabbit]
heartbeat_in_pthread = false
rabbit_quorum_queue = true
rabbit_transient_quorum_queue = true
use_queue_manager = true
amqp_durable_queues = true
rabbit_qos_prefetch_count = 64
kombu_reconnect_splay = 0.5

[oslo_messaging_notifications]
transport_url = rabbit://openstack:Secr3tpw@192.0.2.10:5672//
driver = messagingv2
topics = notifications,notifications_designate
retry = 3

[oslo_concurrency]
lock_path = /var/lib/nova/tmp

[keystone_authtoken]
www_authenticate_uri = http://192.0.2.5:5000
auth_type = password
password = KeystonePass
memcached_servers = 192.0.2.10:11211,
    192.0.2.11:11211
"#;

    #[test]
    fn a_nova_conf_loads_with_oslos_meaning() {
        let c = OsloConfig::parse(NOVA_CONF).unwrap();
        assert!(c.transport_url().unwrap().contains("192.0.2.12:5672"));
        let t = c.transport_options().unwrap();
        assert_eq!(t.control_exchange, "nova");
        assert_eq!(t.rpc_response_timeout, Duration::from_secs(120));
        // heartbeat_in_pthread is an oslo option of older releases: warned, not refused.
        let r = c.rabbit_options().unwrap();
        assert!(r.rabbit_quorum_queue && r.rabbit_transient_quorum_queue);
        assert!(r.use_queue_manager && r.amqp_durable_queues);
        assert_eq!(r.rabbit_qos_prefetch_count, 64);
        assert_eq!(r.kombu_reconnect_splay, 0.5);
        assert_eq!(
            c.get("keystone_authtoken", "memcached_servers"),
            Some("192.0.2.10:11211,\n192.0.2.11:11211"),
            "an indented line continues the value"
        );
        let transport = c.transport().unwrap();
        assert_eq!(transport.options().control_exchange, "nova");
        let notifications = c.notification_transport().unwrap();
        assert_eq!(notifications.url().hosts().len(), 1);
        let n = c.notifier(&notifications, "compute.host1").unwrap();
        assert!(n.has_driver(|d| matches!(d, NotifyDriver::MessagingV2)));
        let shown = format!("{c:?} {transport:?}");
        assert!(!shown.contains("Secr3t"), "no password in Debug: {shown}");
    }

    /// The URL's query overrides the file's `[oslo_messaging_rabbit]`, as in oslo.
    #[test]
    fn the_url_query_overrides_the_file() {
        let c = OsloConfig::parse(
            "[DEFAULT]\ntransport_url = rabbit://h/?rabbit_qos_prefetch_count=5\n\
             [oslo_messaging_rabbit]\nrabbit_qos_prefetch_count = 64\namqp_durable_queues = true\n",
        )
        .unwrap();
        let t = c.transport().unwrap();
        let merged = t.rabbit_options().expect("a rabbit transport");
        assert_eq!(merged.rabbit_qos_prefetch_count, 5, "the URL's value wins");
        assert!(merged.amqp_durable_queues, "the file's other options stay");
    }

    /// `executor_thread_pool_size` is read from `[DEFAULT]`, 64 when absent; 0 is refused.
    #[test]
    fn executor_thread_pool_size_bounds_servers_and_listeners() {
        let c = OsloConfig::parse("[DEFAULT]\nexecutor_thread_pool_size = 16\n").unwrap();
        assert_eq!(c.executor_thread_pool_size().unwrap(), 16);
        let c = OsloConfig::parse("[DEFAULT]\n").unwrap();
        assert_eq!(c.executor_thread_pool_size().unwrap(), 64);
        let c = OsloConfig::parse("[DEFAULT]\nexecutor_thread_pool_size = 0\n").unwrap();
        let e = c.executor_thread_pool_size().unwrap_err().to_string();
        assert!(e.contains("[DEFAULT] executor_thread_pool_size"), "{e}");
    }

    /// A value that does not parse names its section and option; an option osier refuses is
    /// refused when the transport is made; no transport_url is an error.
    #[test]
    fn bad_values_are_errors_naming_the_option() {
        let c = OsloConfig::parse(
            "[DEFAULT]\ntransport_url = rabbit://h/\n[oslo_messaging_rabbit]\nrabbit_qos_prefetch_count = lots\n",
        )
        .unwrap();
        let e = c.transport().unwrap_err().to_string();
        assert!(
            e.contains("[oslo_messaging_rabbit] rabbit_qos_prefetch_count"),
            "{e}"
        );
        let c = OsloConfig::parse(
            "[DEFAULT]\ntransport_url = rabbit://h/\n[oslo_messaging_rabbit]\nrabbit_stream_fanout = true\n",
        )
        .unwrap();
        assert!(matches!(
            c.transport().unwrap_err(),
            MessagingError::InvalidOption { option, .. } if option == "rabbit_stream_fanout"
        ));
        let c = OsloConfig::parse("[DEFAULT]\ndebug = true\n").unwrap();
        assert!(c.transport().is_err());
        let c = OsloConfig::parse(
            "[DEFAULT]\ntransport_url = memory://\n[oslo_messaging_notifications]\ndriver = routing\n",
        )
        .unwrap();
        let t = c.transport().unwrap();
        assert!(c.notifier(&t, "p").is_err(), "routing is given in code");
    }

    /// No notification driver means a notifier that sends nothing, as in oslo.
    #[test]
    fn no_driver_means_no_notifications() {
        let c = OsloConfig::parse("[DEFAULT]\ntransport_url = memory://\n").unwrap();
        let t = c.transport().unwrap();
        let n = c.notifier(&t, "p").unwrap();
        assert!(!n.has_driver(|_| true));
    }
}
