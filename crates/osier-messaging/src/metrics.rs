//! Metrics an operator can scrape, through the [`metrics`](https://docs.rs/metrics) facade, named and
//! labelled as oslo.metrics names oslo.messaging's, so existing dashboards carry over.
//!
//! | oslo.metrics (`oslo_messaging_metrics`) | osier |
//! |---|---|
//! | `metrics_enabled = True` and the oslo.metrics collector | install a recorder (e.g. `osier_service::metrics_endpoint`, or any `metrics` exporter) before creating clients and servers |
//! | `metrics_process_name` | [`TransportOptions::metrics_process_name`](crate::TransportOptions::metrics_process_name), the `process` label |
//! | `oslo_messaging_rpc_client_*`, `oslo_messaging_rpc_server_*` | the same names, labels and histogram buckets |
//!
//! The RPC metrics, per target and method, on each side:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`RPC_CLIENT_INVOCATION_START_TOTAL`] | counter | `call_type` (`call`, `cast`), `exchange`, `topic`, `namespace`, `version`, `server`, `fanout`, `process`, `method`, `timeout` |
//! | [`RPC_CLIENT_INVOCATION_END_TOTAL`] | counter (successes) | as above |
//! | [`RPC_CLIENT_PROCESSING_SECONDS`] | histogram (successes) | as above |
//! | [`RPC_CLIENT_EXCEPTION_TOTAL`] | counter | as above, and `exception` (the oslo class name) |
//! | [`RPC_SERVER_INVOCATION_START_TOTAL`] | counter | `exchange`, `topic`, `server`, `endpoint`, `namespace`, `version`, `method`, `process` |
//! | [`RPC_SERVER_INVOCATION_END_TOTAL`] | counter (every end) | as above |
//! | [`RPC_SERVER_PROCESSING_SECONDS`] | histogram | as above |
//! | [`RPC_SERVER_EXCEPTION_TOTAL`] | counter | as above, and `exception` |
//!
//! and osier's own, which oslo.metrics has no name for:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`RPC_CLIENT_IN_FLIGHT`] | gauge | the client labels |
//! | [`RPC_SERVER_IN_FLIGHT`] | gauge | `exchange`, `topic`, `server`, `process` |
//! | [`AMQP_RECONNECTS_TOTAL`] | counter | `role` (`publisher`, `listener`) |
//! | [`AMQP_UNCONFIRMED`] | gauge | messages published and not yet confirmed by the broker |
//! | [`MESSAGES_REQUEUED_TOTAL`] | counter | `kind` (`notification`) |
//! | [`MESSAGES_DROPPED_TOTAL`] | counter | `kind` (`rpc`, `notification`), `reason` |
//! | [`NOTIFICATIONS_SENT_TOTAL`] | counter | `priority` |
//! | [`NOTIFICATIONS_RECEIVED_TOTAL`] | counter | `priority` |
//!
//! As in oslo, a server counts only requests for a method one of its endpoints has, with the
//! endpoint's namespace and version: a peer cannot grow the label sets by sending made-up
//! method names. Exception classes come back from peers, so at most [`MAX_EXCEPTION_LABELS`]
//! distinct ones are kept as labels; any further class counts as `other`. Label values are
//! written as Python writes them (`None`, `True`, `False`), as oslo.metrics' exporter shows them.
//!
//! Handles are taken once per client (or server) and method, so the cost per call is a map
//! lookup and a few atomic adds; a recorder installed after a client's first call to a method
//! is not seen by that client for that method.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::metrics::{Counter, Gauge, Histogram, Label};

use crate::error::MessagingError;
use crate::lock::lock;
use crate::target::Target;

/// RPC calls and casts a client started.
pub const RPC_CLIENT_INVOCATION_START_TOTAL: &str =
    "oslo_messaging_rpc_client_invocation_start_total";
/// RPC calls and casts that succeeded.
pub const RPC_CLIENT_INVOCATION_END_TOTAL: &str = "oslo_messaging_rpc_client_invocation_end_total";
/// How long successful calls and casts took, in seconds.
pub const RPC_CLIENT_PROCESSING_SECONDS: &str = "oslo_messaging_rpc_client_processing_seconds";
/// RPC calls and casts that failed, by exception class.
pub const RPC_CLIENT_EXCEPTION_TOTAL: &str = "oslo_messaging_rpc_client_exception_total";
/// Requests a server started running (a method one of its endpoints has).
pub const RPC_SERVER_INVOCATION_START_TOTAL: &str =
    "oslo_messaging_rpc_server_invocation_start_total";
/// Requests a server finished running, whatever their outcome.
pub const RPC_SERVER_INVOCATION_END_TOTAL: &str = "oslo_messaging_rpc_server_invocation_end_total";
/// How long methods ran, in seconds.
pub const RPC_SERVER_PROCESSING_SECONDS: &str = "oslo_messaging_rpc_server_processing_seconds";
/// Methods that failed, by exception class.
pub const RPC_SERVER_EXCEPTION_TOTAL: &str = "oslo_messaging_rpc_server_exception_total";
/// Calls and casts a client has under way.
pub const RPC_CLIENT_IN_FLIGHT: &str = "osier_rpc_client_in_flight";
/// Requests a server is running.
pub const RPC_SERVER_IN_FLIGHT: &str = "osier_rpc_server_in_flight";
/// Connections to the broker re-established after a loss.
pub const AMQP_RECONNECTS_TOTAL: &str = "osier_amqp_reconnects_total";
/// Messages published and not yet confirmed by the broker.
pub const AMQP_UNCONFIRMED: &str = "osier_amqp_publisher_unconfirmed";
/// Messages handed back to the broker for redelivery.
pub const MESSAGES_REQUEUED_TOTAL: &str = "osier_messages_requeued_total";
/// Messages dropped: not readable, refused, or requeued too often.
pub const MESSAGES_DROPPED_TOTAL: &str = "osier_messages_dropped_total";
/// Notifications sent, by priority.
pub const NOTIFICATIONS_SENT_TOTAL: &str = "osier_notifications_sent_total";
/// Notifications received by listeners, by priority.
pub const NOTIFICATIONS_RECEIVED_TOTAL: &str = "osier_notifications_received_total";

/// oslo.metrics' buckets for the two `processing_seconds` histograms.
pub const PROCESSING_SECONDS_BUCKETS: [f64; 17] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0,
    100.0,
];

/// How many distinct exception classes are kept as label values; further ones count as
/// `other`.
pub const MAX_EXCEPTION_LABELS: usize = 256;

/// How many (call type, method) pairs a client keeps handles for; further ones are looked up on
/// every call.
const MAX_CACHED_METHODS: usize = 1024;

/// Gives every metric above its help text (the `# HELP` lines of a Prometheus scrape). Call it
/// once the recorder is installed.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RPC_CLIENT_INVOCATION_START_TOTAL,
        "Total number of RPC invocation start."
    );
    describe_counter!(
        RPC_CLIENT_INVOCATION_END_TOTAL,
        "Total number of RPC invocation end."
    );
    describe_histogram!(
        RPC_CLIENT_PROCESSING_SECONDS,
        Unit::Seconds,
        "Duration of RPC processing."
    );
    describe_counter!(
        RPC_CLIENT_EXCEPTION_TOTAL,
        "Total number of exception while RPC processing."
    );
    describe_counter!(
        RPC_SERVER_INVOCATION_START_TOTAL,
        "Total number of RPC invocation start. This doesn't count if rpc server failed to find method from endpoints."
    );
    describe_counter!(
        RPC_SERVER_INVOCATION_END_TOTAL,
        "Total number of RPC invocation end."
    );
    describe_histogram!(
        RPC_SERVER_PROCESSING_SECONDS,
        Unit::Seconds,
        "Duration of RPC processing."
    );
    describe_counter!(
        RPC_SERVER_EXCEPTION_TOTAL,
        "Total number of exception while RPC processing."
    );
    describe_gauge!(RPC_CLIENT_IN_FLIGHT, "RPC calls and casts under way.");
    describe_gauge!(RPC_SERVER_IN_FLIGHT, "RPC requests being run.");
    describe_counter!(
        AMQP_RECONNECTS_TOTAL,
        "Connections to the broker re-established after a loss."
    );
    describe_gauge!(
        AMQP_UNCONFIRMED,
        "Messages published and not yet confirmed by the broker."
    );
    describe_counter!(
        MESSAGES_REQUEUED_TOTAL,
        "Messages handed back to the broker for redelivery."
    );
    describe_counter!(
        MESSAGES_DROPPED_TOTAL,
        "Messages dropped: not readable, refused, or requeued too often."
    );
    describe_counter!(NOTIFICATIONS_SENT_TOTAL, "Notifications sent.");
    describe_counter!(
        NOTIFICATIONS_RECEIVED_TOTAL,
        "Notifications received by listeners."
    );
}

/// A label value as Python's `str()` writes it (oslo.metrics' exporter shows `None`).
fn py_str(v: Option<&str>) -> String {
    v.unwrap_or("None").to_string()
}

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_string()
}

/// An exception class as a label value: the first [`MAX_EXCEPTION_LABELS`] distinct classes
/// as themselves, any further one as `other`.
fn exception_label(class: &str) -> String {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = lock(&SEEN);
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(class) {
        return class.to_string();
    }
    if seen.len() < MAX_EXCEPTION_LABELS {
        seen.insert(class.to_string());
        return class.to_string();
    }
    "other".to_string()
}

/// The oslo class name of a client-side error, as `ex.__class__.__name__` gives it in Python.
pub(crate) fn client_exception_class(e: &MessagingError) -> String {
    let class = match e {
        MessagingError::Timeout(_) => "MessagingTimeout",
        MessagingError::Remote(f) => return exception_label(&f.class),
        MessagingError::NoSuchMethod { .. } => "NoSuchMethod",
        MessagingError::UnsupportedVersion { .. } => "UnsupportedVersion",
        MessagingError::InvalidTarget { .. } => "InvalidTarget",
        MessagingError::VersionCap { .. } => "RPCVersionCapError",
        MessagingError::Serialization { .. } => "SerializationError",
        MessagingError::TooLarge { .. } => "MessageTooLarge",
        MessagingError::Broker(_) | MessagingError::Delivery(_) => "MessageDeliveryFailure",
        _ => "MessagingException",
    };
    class.to_string()
}

/// A client's handles for one (call type, method).
pub(crate) struct ClientMeters {
    start: Counter,
    end: Counter,
    seconds: Histogram,
    in_flight: Gauge,
    labels: Vec<Label>,
}

impl ClientMeters {
    fn new(target: &Target, process: &str, method: &str, call_type: &'static str) -> Self {
        let labels = vec![
            Label::from_static_parts("call_type", call_type),
            Label::new("exchange", py_str(target.exchange.as_deref())),
            Label::new("topic", py_str(target.topic.as_deref())),
            Label::new("namespace", py_str(target.namespace.as_deref())),
            Label::new(
                "version",
                py_str(target.version.as_ref().map(|v| v.to_string()).as_deref()),
            ),
            Label::new("server", py_str(target.server.as_deref())),
            Label::new("fanout", py_bool(target.fanout)),
            Label::new("process", process.to_string()),
            Label::new("method", method.to_string()),
            // oslo.messaging passes no timeout to its collector: the label is always None.
            Label::from_static_parts("timeout", "None"),
        ];
        ClientMeters {
            start: ::metrics::counter!(RPC_CLIENT_INVOCATION_START_TOTAL, labels.clone()),
            end: ::metrics::counter!(RPC_CLIENT_INVOCATION_END_TOTAL, labels.clone()),
            seconds: ::metrics::histogram!(RPC_CLIENT_PROCESSING_SECONDS, labels.clone()),
            in_flight: ::metrics::gauge!(RPC_CLIENT_IN_FLIGHT, labels.clone()),
            labels,
        }
    }
}

/// A client's handles, by method: calls and casts apart. Shared by a client's clones; looked
/// up by `&str`, so a call allocates nothing here once its method has handles.
pub(crate) struct ClientMeterCache {
    process: String,
    calls: Mutex<HashMap<String, Arc<ClientMeters>>>,
    casts: Mutex<HashMap<String, Arc<ClientMeters>>>,
}

impl ClientMeterCache {
    pub(crate) fn new(process: &str) -> Self {
        ClientMeterCache {
            process: process.to_string(),
            calls: Mutex::new(HashMap::new()),
            casts: Mutex::new(HashMap::new()),
        }
    }

    /// Starts counting a call or cast of `method` to `target`.
    pub(crate) fn start(
        &self,
        target: &Target,
        method: &str,
        call_type: &'static str,
    ) -> Invocation {
        let map = if call_type == "call" {
            &self.calls
        } else {
            &self.casts
        };
        let meters = {
            let mut map = lock(map);
            match map.get(method) {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(ClientMeters::new(target, &self.process, method, call_type));
                    if map.len() < MAX_CACHED_METHODS {
                        map.insert(method.to_string(), m.clone());
                    }
                    m
                }
            }
        };
        meters.start.increment(1);
        meters.in_flight.increment(1.0);
        Invocation {
            meters,
            t0: Instant::now(),
        }
    }
}

/// A call or cast under way; dropping it (the caller gave up) only ends its time in flight.
pub(crate) struct Invocation {
    meters: Arc<ClientMeters>,
    t0: Instant,
}

impl Invocation {
    /// Records the outcome, as oslo's `measure_metrics` does: a success adds its duration and
    /// an end; a failure adds an exception of its class.
    pub(crate) fn finish<T>(self, r: &Result<T, MessagingError>) {
        match r {
            Ok(_) => {
                self.meters.seconds.record(self.t0.elapsed().as_secs_f64());
                self.meters.end.increment(1);
            }
            Err(e) => {
                let mut labels = self.meters.labels.clone();
                labels.push(Label::new("exception", client_exception_class(e)));
                ::metrics::counter!(RPC_CLIENT_EXCEPTION_TOTAL, labels).increment(1);
            }
        }
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        self.meters.in_flight.decrement(1.0);
    }
}

/// A server's handles for one (endpoint, method).
pub(crate) struct ServerMeters {
    start: Counter,
    end: Counter,
    seconds: Histogram,
    labels: Vec<Label>,
}

/// A server's handles: its in-flight gauge, and per (endpoint, method) the rest.
pub(crate) struct ServerMeterCache {
    base: Vec<Label>,
    in_flight: Gauge,
    /// By endpoint index, then method (looked up by `&str`: nothing allocated per request).
    map: Mutex<Vec<HashMap<String, Arc<ServerMeters>>>>,
}

impl ServerMeterCache {
    pub(crate) fn new(target: &Target, process: &str) -> Self {
        let base = vec![
            Label::new("exchange", py_str(target.exchange.as_deref())),
            Label::new("topic", py_str(target.topic.as_deref())),
            Label::new("server", py_str(target.server.as_deref())),
            Label::new("process", process.to_string()),
        ];
        ServerMeterCache {
            in_flight: ::metrics::gauge!(RPC_SERVER_IN_FLIGHT, base.clone()),
            base,
            map: Mutex::new(Vec::new()),
        }
    }

    /// Starts counting a request for `method` of endpoint `index` (named `endpoint`, with its
    /// target's namespace and version). Only methods an endpoint has come here, so the map
    /// stays as small as the endpoints.
    pub(crate) fn start(
        &self,
        index: usize,
        endpoint: &str,
        ep_target: &Target,
        method: &str,
    ) -> Running {
        let meters = {
            let mut by_endpoint = lock(&self.map);
            if by_endpoint.len() <= index {
                by_endpoint.resize_with(index + 1, HashMap::new);
            }
            let methods = &mut by_endpoint[index];
            match methods.get(method) {
                Some(m) => m.clone(),
                None => methods
                    .entry(method.to_string())
                    .or_insert_with(|| {
                        let mut labels = self.base.clone();
                        labels.push(Label::new("endpoint", endpoint.to_string()));
                        labels.push(Label::new(
                            "namespace",
                            py_str(ep_target.namespace.as_deref()),
                        ));
                        labels.push(Label::new(
                            "version",
                            py_str(ep_target.version.as_ref().map(|v| v.to_string()).as_deref()),
                        ));
                        labels.push(Label::new("method", method.to_string()));
                        Arc::new(ServerMeters {
                            start: ::metrics::counter!(
                                RPC_SERVER_INVOCATION_START_TOTAL,
                                labels.clone()
                            ),
                            end: ::metrics::counter!(
                                RPC_SERVER_INVOCATION_END_TOTAL,
                                labels.clone()
                            ),
                            seconds: ::metrics::histogram!(
                                RPC_SERVER_PROCESSING_SECONDS,
                                labels.clone()
                            ),
                            labels,
                        })
                    })
                    .clone(),
            }
        };
        meters.start.increment(1);
        self.in_flight.increment(1.0);
        Running {
            meters,
            in_flight: self.in_flight.clone(),
            t0: Instant::now(),
        }
    }
}

/// A request being run by a server.
pub(crate) struct Running {
    meters: Arc<ServerMeters>,
    in_flight: Gauge,
    t0: Instant,
}

impl Running {
    /// Records the end, and the failure's class when it failed.
    pub(crate) fn finish(self, failed: Option<&str>) {
        self.meters.seconds.record(self.t0.elapsed().as_secs_f64());
        self.meters.end.increment(1);
        if let Some(class) = failed {
            let mut labels = self.meters.labels.clone();
            labels.push(Label::new("exception", exception_label(class)));
            ::metrics::counter!(RPC_SERVER_EXCEPTION_TOTAL, labels).increment(1);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
    }
}

/// A reconnection of a `role` (`publisher`, `listener`).
pub(crate) fn reconnected(role: &'static str) {
    ::metrics::counter!(AMQP_RECONNECTS_TOTAL, "role" => role).increment(1);
}

/// One publisher's share of [`AMQP_UNCONFIRMED`]: publishers add what they hold to one gauge.
pub(crate) struct Unconfirmed {
    gauge: Gauge,
    shown: usize,
}

impl Default for Unconfirmed {
    fn default() -> Self {
        Unconfirmed {
            gauge: ::metrics::gauge!(AMQP_UNCONFIRMED),
            shown: 0,
        }
    }
}

impl Unconfirmed {
    /// This publisher now holds `n` messages the broker has not confirmed.
    pub(crate) fn show(&mut self, n: usize) {
        if n > self.shown {
            self.gauge.increment((n - self.shown) as f64);
        } else if n < self.shown {
            self.gauge.decrement((self.shown - n) as f64);
        }
        self.shown = n;
    }
}

impl Drop for Unconfirmed {
    fn drop(&mut self) {
        self.show(0);
    }
}

/// A message handed back for redelivery.
pub(crate) fn requeued(kind: &'static str) {
    ::metrics::counter!(MESSAGES_REQUEUED_TOTAL, "kind" => kind).increment(1);
}

/// A message dropped, and why.
pub(crate) fn dropped(kind: &'static str, reason: &'static str) {
    ::metrics::counter!(MESSAGES_DROPPED_TOTAL, "kind" => kind, "reason" => reason).increment(1);
}

/// One counter by a label with `N` known values (notifications by priority), each handle
/// taken on the first count of its value and kept, so a count is an atomic add: a notifier's
/// ([`NOTIFICATIONS_SENT_TOTAL`]) and a listener's ([`NOTIFICATIONS_RECEIVED_TOTAL`]). As
/// with a client's handles, a recorder installed after a value's first count is not seen here
/// for that value.
pub(crate) struct CountersBy<const N: usize> {
    name: &'static str,
    label: &'static str,
    handles: [std::sync::OnceLock<Counter>; N],
}

impl<const N: usize> CountersBy<N> {
    pub(crate) const fn new(name: &'static str, label: &'static str) -> Self {
        CountersBy {
            name,
            label,
            handles: [const { std::sync::OnceLock::new() }; N],
        }
    }

    /// Counts one of the label's value `value`, the `index`th of the `N`. An index out of
    /// range (a caller's bug) is counted through a handle taken for this count alone.
    pub(crate) fn increment(&self, index: usize, value: &'static str) {
        let take = || ::metrics::counter!(self.name, self.label => value);
        match self.handles.get(index) {
            Some(h) => h.get_or_init(take).increment(1),
            None => take().increment(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_value_count_each_value_under_its_label() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, || {
            let c = CountersBy::<2>::new("t_total", "kind");
            c.increment(0, "a");
            c.increment(1, "b");
            c.increment(1, "b");
            // Out of range: still counted, under the value given.
            c.increment(7, "c");
        });
        let mut seen: Vec<(String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(ck, _, _, v)| {
                let label = ck.key().labels().map(|l| l.value().to_string()).collect();
                let DebugValue::Counter(n) = v else {
                    panic!("not a counter: {v:?}")
                };
                (label, n)
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".to_string(), 1),
                ("b".to_string(), 2),
                ("c".to_string(), 1)
            ]
        );
    }

    #[test]
    fn exception_labels_stop_growing_at_their_bound() {
        for i in 0..MAX_EXCEPTION_LABELS + 10 {
            let _ = exception_label(&format!("Crafted{i}"));
        }
        assert_eq!(exception_label("YetAnotherCraftedClass"), "other");
    }

    #[test]
    fn server_meters_are_kept_per_endpoint_and_method_in_any_order() {
        let cache = ServerMeterCache::new(&Target::topic("t"), "p");
        let target = Target::topic("t");
        let endpoint_of = |r: &Running| {
            r.meters
                .labels
                .iter()
                .find(|l| l.key() == "endpoint")
                .map(|l| l.value().to_string())
        };
        // The third endpoint's request comes first: the cache grows to hold it.
        let third = cache.start(2, "c", &target, "echo");
        let first = cache.start(0, "a", &target, "echo");
        assert_eq!(endpoint_of(&third).as_deref(), Some("c"));
        assert_eq!(endpoint_of(&first).as_deref(), Some("a"));
        assert!(!Arc::ptr_eq(&third.meters, &first.meters));
        let again = cache.start(2, "c", &target, "echo");
        assert!(
            Arc::ptr_eq(&third.meters, &again.meters),
            "made once, then reused"
        );
        let other = cache.start(2, "c", &target, "other");
        assert!(!Arc::ptr_eq(&third.meters, &other.meters));
    }

    #[test]
    fn client_errors_carry_oslo_class_names() {
        assert_eq!(
            client_exception_class(&MessagingError::Timeout("t".into())),
            "MessagingTimeout"
        );
        assert_eq!(
            client_exception_class(&MessagingError::Broker(crate::BrokerError::Nacked)),
            "MessageDeliveryFailure"
        );
    }
}
