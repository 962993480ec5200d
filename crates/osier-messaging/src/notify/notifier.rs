//! `Notifier`: publishes notifications; never raises to the caller (MSG-NOT-01..10).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use osier_messaging::notify::notifier::{Notifier, NotifyDriver};
//! use osier_messaging::{RequestContext, Transport};
//!
//! let t = Transport::new("memory://").unwrap();
//! let n = Notifier::new(&t, "compute.host1")
//!     .driver(NotifyDriver::MessagingV2)
//!     .topics(&["notifications"]);
//! n.info(&RequestContext::new(), "compute.instance.create.end", serde_json::json!({"id": 1})).await;
//! assert!(n.is_enabled());
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::context::{NoOpSerializer, RequestContext, Serializer};
use crate::driver::{Dict, Outgoing};
use crate::lock::lock;
use crate::notify::{Priority, PriorityCounters};
use crate::secrets::{is_sensitive_key, mask_map, masked_map, MaskedMap};
use crate::target::Target;
use crate::transport::Transport;

/// A notification as the `test` driver records it (MSG-NOT-10). Its `Debug` masks secrets.
#[derive(Clone, PartialEq)]
pub struct Recorded {
    /// The sanitized context.
    pub ctxt: Dict,
    /// The message: `message_id`, `publisher_id`, `event_type`, `priority`, `payload`,
    /// `timestamp`.
    pub message: Dict,
    /// The priority.
    pub priority: Priority,
    /// The retry setting.
    pub retry: Option<i32>,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("ctxt", &MaskedMap(&self.ctxt))
            .field("message", &MaskedMap(&self.message))
            .field("priority", &self.priority)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Where a notifier sends (oslo's notification drivers, MSG-NOT-01).
#[derive(Clone, Debug)]
pub enum NotifyDriver {
    /// `messaging`: the 1.0 format, no envelope.
    Messaging,
    /// `messagingv2`: the 2.0 envelope (the on-the-wire difference matters on AMQP).
    MessagingV2,
    /// `log`: a `tracing` event at the priority's level (MSG-NOT-08).
    Log,
    /// `noop`: drops everything.
    Noop,
    /// `test`: keeps every notification in memory (MSG-NOT-10).
    Test(Arc<Mutex<Vec<Recorded>>>),
    /// `routing`: sends each notification to the drivers whose rules accept it (MSG-NOT-09).
    Routing(Arc<RoutingConfig>),
}

/// One rule of the routing driver: shell-style globs (`*`, `?`, `[...]`) on the event type and
/// the lower-case priority. A rule that lists neither accepts everything.
#[derive(Debug, Clone, Default)]
pub struct RoutingRule {
    /// Globs the event type must match (one of them), if given.
    pub accepted_events: Option<Vec<String>>,
    /// Globs the priority must match (one of them), if given.
    pub accepted_priorities: Option<Vec<String>>,
}

/// The routing driver's configuration (oslo's `routing_config` file, given as data): groups of
/// named drivers, each with its rule. The selected drivers are the union over all groups, each
/// driver once; only drivers named here are used; an empty config routes nothing.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    /// `(group, driver name, driver, rule)`.
    pub routes: Vec<(String, String, NotifyDriver, RoutingRule)>,
}

impl RoutingConfig {
    /// An empty config (routes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `driver` under `name` in `group` with `rule`.
    pub fn route(
        mut self,
        group: &str,
        name: &str,
        driver: NotifyDriver,
        rule: RoutingRule,
    ) -> Self {
        self.routes
            .push((group.to_string(), name.to_string(), driver, rule));
        self
    }

    /// The drivers that accept `(event_type, priority)`, each named driver once.
    fn select(&self, event_type: &str, priority: Priority) -> Vec<&NotifyDriver> {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for (_, name, driver, rule) in &self.routes {
            let ok_event = rule
                .accepted_events
                .as_ref()
                .is_none_or(|g| g.iter().any(|p| glob_match(p, event_type)));
            let ok_prio = rule.accepted_priorities.as_ref().is_none_or(|g| {
                g.iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), priority.as_str()))
            });
            if ok_event && ok_prio && !seen.contains(&name.as_str()) {
                seen.push(name);
                out.push(driver);
            }
        }
        out
    }
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut class = String::new();
                let mut closed = false;
                if chars.peek() == Some(&'!') {
                    chars.next();
                    class.push('^');
                }
                for d in chars.by_ref() {
                    if d == ']' {
                        closed = true;
                        break;
                    }
                    if d == '\\' || d == '^' {
                        class.push('\\');
                    }
                    class.push(d);
                }
                if closed {
                    re.push('[');
                    re.push_str(&class);
                    re.push(']');
                } else {
                    re.push_str("\\[");
                    re.push_str(&regex::escape(&class));
                }
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(text))
}

/// Publishes notifications. Cheap to clone; [`prepare`](Notifier::prepare) makes a
/// sub-notifier that shares the drivers (MSG-NOT-06).
#[derive(Clone)]
pub struct Notifier {
    transport: Transport,
    publisher_id: String,
    drivers: Arc<Vec<NotifyDriver>>,
    topics: Arc<Vec<String>>,
    retry: Option<i32>,
    serializer: Arc<dyn Serializer>,
    stats: Arc<NotifierStats>,
    /// Notifications sent, by priority; shared with the sub-notifiers.
    sent_meters: Arc<PriorityCounters>,
}

/// Counters of a notifier, shared with the sub-notifiers [`prepare`](Notifier::prepare) makes.
/// A notification sent to two topics (or by two messaging drivers) counts twice.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Notifications a messaging driver's transport accepted: delivered, or kept by the
    /// transport until the broker takes them.
    pub sent: AtomicU64,
    /// Notifications a messaging driver could not send (each also logged at ERROR): they are
    /// lost, as oslo's are when its driver raises.
    pub failed: AtomicU64,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("publisher_id", &self.publisher_id)
            .field("drivers", &self.drivers)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Appends the `width` last decimal digits of `v` (not negative), zero-padded.
fn push_digits(out: &mut String, v: i64, width: u32) {
    for i in (0..width).rev() {
        let d = (v / 10i64.pow(i)) % 10;
        out.push(char::from(b'0' + d as u8));
    }
}

/// `str(datetime.utcnow())`: `YYYY-MM-DD HH:MM:SS.ffffff`, without the fraction when the
/// microseconds are zero (MSG-NOT-02).
pub fn oslo_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Written digit by digit (`format!` with widths costs a few thousand instructions, on
    // every notification sent). The year is never negative (the time is after the epoch); one
    // past 9999 is written in full, as Python cannot hold one anyway.
    let mut out = String::with_capacity(26);
    if year > 9999 {
        out.push_str(&year.to_string());
    } else {
        push_digits(&mut out, year, 4);
    }
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push(' ');
    push_digits(&mut out, h, 2);
    out.push(':');
    push_digits(&mut out, m, 2);
    out.push(':');
    push_digits(&mut out, s, 2);
    if micros != 0 {
        out.push('.');
        push_digits(&mut out, i64::from(micros), 6);
    }
    out
}

/// oslo sends a context object as its redacted copy, and a plain dict or none as `{}`
/// (MSG-NOT-03). A `RequestContext` is the object form: top-level secrets are dropped, and
/// secrets deeper down masked ([`crate::secrets`]).
fn sanitize(ctx: &RequestContext) -> Dict {
    let mut kept = ctx.to_dict();
    kept.retain(|k, _| !is_sensitive_key(k));
    mask_map(&mut kept);
    kept
}

impl Notifier {
    /// A notifier with no driver: like oslo's default configuration, it sends nothing
    /// (MSG-NOT-01). Add drivers with [`driver`](Notifier::driver).
    pub fn new(transport: &Transport, publisher_id: &str) -> Self {
        Notifier {
            transport: transport.clone(),
            publisher_id: publisher_id.to_string(),
            drivers: Arc::new(Vec::new()),
            topics: Arc::new(vec!["notifications".into()]),
            retry: None,
            serializer: Arc::new(NoOpSerializer),
            stats: Arc::default(),
            sent_meters: Arc::new(PriorityCounters::sent()),
        }
    }

    /// The notifier's counters.
    pub fn stats(&self) -> &NotifierStats {
        &self.stats
    }

    /// Adds a driver.
    pub fn driver(mut self, d: NotifyDriver) -> Self {
        Arc::make_mut(&mut self.drivers).push(d);
        self
    }

    /// The topics (default `["notifications"]`).
    pub fn topics(mut self, topics: &[&str]) -> Self {
        self.topics = Arc::new(topics.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The retry setting passed to the transport (default: the transport's, -1).
    pub fn retry(mut self, retry: i32) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The payload serializer.
    pub fn serializer(mut self, s: Arc<dyn Serializer>) -> Self {
        self.serializer = s;
        self
    }

    /// A sub-notifier with another publisher id and/or retry, sharing the drivers (MSG-NOT-06).
    pub fn prepare(&self, publisher_id: Option<&str>, retry: Option<i32>) -> Self {
        let mut n = self.clone();
        if let Some(p) = publisher_id {
            n.publisher_id = p.to_string();
        }
        if retry.is_some() {
            n.retry = retry;
        }
        n
    }

    /// True if one of the drivers satisfies `f`.
    pub fn has_driver(&self, f: impl Fn(&NotifyDriver) -> bool) -> bool {
        self.drivers.iter().any(f)
    }

    /// False only when the drivers are exactly `[noop]` (MSG-NOT-07).
    pub fn is_enabled(&self) -> bool {
        !(self.drivers.len() == 1 && matches!(self.drivers[0], NotifyDriver::Noop))
    }

    /// Sends at `priority`. Never fails: every driver error is logged (MSG-NOT-05).
    pub async fn notify(
        &self,
        ctx: &RequestContext,
        priority: Priority,
        event_type: &str,
        payload: Value,
    ) {
        let payload = match self.serializer.serialize_entity(ctx, payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(event_type, error = %e, "could not serialize a notification payload");
                return;
            }
        };
        let mut message = Map::new();
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        message.insert("message_id".into(), (*id).into());
        message.insert("publisher_id".into(), self.publisher_id.clone().into());
        message.insert("event_type".into(), event_type.into());
        message.insert("priority".into(), priority.as_upper_str().into());
        message.insert("payload".into(), payload);
        message.insert("timestamp".into(), oslo_timestamp(SystemTime::now()).into());
        let ctxt = sanitize(ctx);
        match (&self.drivers[..], &self.topics[..]) {
            // The usual set-up, one messaging driver and one topic: the notification goes as
            // it is, not copied.
            ([NotifyDriver::Messaging | NotifyDriver::MessagingV2], [topic]) => {
                self.send_to_topic(topic, ctxt, message, priority, event_type)
                    .await
            }
            (drivers, _) => {
                for d in drivers {
                    self.send_via(d, &ctxt, &message, priority, event_type)
                        .await;
                }
            }
        }
        self.sent_meters.count(priority);
    }

    /// Sends the notification to `<topic>.<priority>` through the transport, counted as sent
    /// or failed (a failure is logged, never raised: oslo's notifier does not raise either).
    async fn send_to_topic(
        &self,
        topic: &str,
        ctxt: Dict,
        message: Dict,
        priority: Priority,
        event_type: &str,
    ) {
        let out = Outgoing {
            target: Target::topic(format!("{topic}.{priority}")),
            ctxt,
            message,
            timeout: None,
            args_json: None,
            call_monitor_timeout: None,
            retry: self.retry,
        };
        match self.transport.driver.notify(out).await {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(topic, event_type, error = %e, "could not send notification");
            }
        }
    }

    async fn send_via(
        &self,
        d: &NotifyDriver,
        ctxt: &Dict,
        message: &Dict,
        priority: Priority,
        event_type: &str,
    ) {
        match d {
            NotifyDriver::Noop => {}
            NotifyDriver::Test(store) => lock(store).push(Recorded {
                ctxt: ctxt.clone(),
                message: message.clone(),
                priority,
                retry: self.retry,
            }),
            NotifyDriver::Log => log_notification(priority, event_type, message),
            NotifyDriver::Messaging | NotifyDriver::MessagingV2 => {
                for topic in self.topics.iter() {
                    self.send_to_topic(topic, ctxt.clone(), message.clone(), priority, event_type)
                        .await;
                }
            }
            NotifyDriver::Routing(cfg) => {
                for sub in cfg.select(event_type, priority) {
                    if matches!(sub, NotifyDriver::Routing(_)) {
                        tracing::warn!("a routing driver inside a routing driver is ignored");
                        continue;
                    }
                    Box::pin(self.send_via(sub, ctxt, message, priority, event_type)).await;
                }
            }
        }
    }

    /// `audit` notification.
    pub async fn audit(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Audit, event_type, payload).await
    }
    /// `debug` notification.
    pub async fn debug(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Debug, event_type, payload).await
    }
    /// `info` notification.
    pub async fn info(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Info, event_type, payload).await
    }
    /// `warn` notification (oslo's `warn` and `warning`).
    pub async fn warn(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Warn, event_type, payload).await
    }
    /// `error` notification.
    pub async fn error(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Error, event_type, payload).await
    }
    /// `critical` notification.
    pub async fn critical(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Critical, event_type, payload)
            .await
    }
    /// `sample` notification.
    pub async fn sample(&self, ctx: &RequestContext, event_type: &str, payload: Value) {
        self.notify(ctx, Priority::Sample, event_type, payload)
            .await
    }
}

/// The `log` driver: one `tracing` event at the priority's level (MSG-NOT-08), the message as
/// JSON with secrets masked as oslo masks passwords; `sample` has no level and is dropped with
/// a warning.
fn log_notification(priority: Priority, event_type: &str, message: &Dict) {
    let text = Value::Object(masked_map(message)).to_string();
    const T: &str = "oslo_messaging_notification";
    match priority {
        Priority::Debug => tracing::debug!(target: T, event_type, "{text}"),
        Priority::Info | Priority::Audit => tracing::info!(target: T, event_type, "{text}"),
        Priority::Warn => tracing::warn!(target: T, event_type, "{text}"),
        Priority::Error | Priority::Critical => tracing::error!(target: T, event_type, "{text}"),
        Priority::Sample => tracing::warn!(
            event_type,
            "the log notification driver drops sample notifications"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSG-NOT-03: the context a notification carries leaves out top-level secrets and masks
    /// deeper ones; everything else goes as it is.
    #[test]
    fn the_sent_context_drops_top_level_secrets_and_masks_deeper_ones() {
        let mut ctx = RequestContext::new();
        ctx.set("auth_token", "t0p");
        ctx.set("user_id", "alice");
        ctx.set(
            "auth",
            serde_json::json!({"identity": {"password": "d33p", "methods": ["password"]}}),
        );
        let sent = sanitize(&ctx);
        assert!(!sent.contains_key("auth_token"));
        assert_eq!(sent["user_id"], "alice");
        assert_eq!(
            sent["auth"],
            serde_json::json!({"identity": {"password": "***", "methods": ["password"]}})
        );
    }

    /// MSG-NOT-09: fnmatch-style globs.
    #[test]
    fn glob_match_is_fnmatch() {
        assert!(glob_match("compute.*", "compute.instance.create"));
        assert!(!glob_match("compute.*", "network.x"));
        assert!(glob_match("c?mpute", "compute"));
        assert!(glob_match("[ei]nfo", "info"));
        assert!(!glob_match("[!ei]nfo", "info"));
        assert!(
            glob_match("a.b", "a.b") && !glob_match("a.b", "axb"),
            "dots are literal"
        );
    }

    /// The counters tell sent from failed notifications, per topic, and sub-notifiers count
    /// into them too.
    #[tokio::test]
    async fn stats_count_sent_and_failed_notifications() {
        let ctx = RequestContext::new();
        let t = Transport::new("memory://").unwrap();
        let n = Notifier::new(&t, "p")
            .driver(NotifyDriver::MessagingV2)
            .topics(&["a", "b"]);
        n.info(&ctx, "e", Value::Null).await;
        n.prepare(Some("q"), None)
            .warn(&ctx, "e", Value::Null)
            .await;
        assert_eq!(n.stats().sent.load(Ordering::Relaxed), 4);
        assert_eq!(n.stats().failed.load(Ordering::Relaxed), 0);
        // Nothing listens on port 1: with no retry, the send fails.
        let down = Transport::new("rabbit://guest:guest@127.0.0.1:1/").unwrap();
        let n = Notifier::new(&down, "p")
            .driver(NotifyDriver::MessagingV2)
            .retry(0);
        n.info(&ctx, "e", Value::Null).await;
        assert_eq!(n.stats().sent.load(Ordering::Relaxed), 0);
        assert_eq!(n.stats().failed.load(Ordering::Relaxed), 1);
    }

    /// MSG-NOT-02: the timestamp is Python's str(datetime).
    #[test]
    fn timestamp_is_pythons_str_of_a_datetime() {
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(oslo_timestamp(t), "2023-11-14 22:13:20.123456");
        let whole = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(oslo_timestamp(whole), "2000-02-29 00:00:00");
        let first = UNIX_EPOCH + std::time::Duration::from_micros(7);
        assert_eq!(oslo_timestamp(first), "1970-01-01 00:00:00.000007");
        let late = UNIX_EPOCH + std::time::Duration::from_micros(253_402_300_799_999_999);
        assert_eq!(oslo_timestamp(late), "9999-12-31 23:59:59.999999");
        let beyond = UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_800);
        assert_eq!(oslo_timestamp(beyond), "10000-01-01 00:00:00");
    }
}
