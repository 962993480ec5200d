//! Logging handlers (MSG-NOT-11): `tracing` events turned into notifications.
//!
//! oslo's `LoggingNotificationHandler` sends every log record as a notification with event type
//! `logrecord` and the record's level as priority; `PublishErrorsHandler` sends error records as
//! `error` notifications with event type `error_notification` from publisher `error.publisher`.
//! Here both are one `tracing_subscriber::Layer`, [`NotificationLayer`], in one of two modes.
//! Events from the notification machinery itself are skipped, so a notifier that logs cannot
//! feed itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::context::RequestContext;
use crate::error::MessagingError;
use crate::notify::notifier::{Notifier, NotifyDriver};
use crate::notify::Priority;

/// Which oslo handler the layer behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogHandlerMode {
    /// `LoggingNotificationHandler`: every event, event type `logrecord`.
    AllRecords,
    /// `PublishErrorsHandler`: ERROR events only, event type `error_notification`, publisher
    /// `error.publisher`.
    ErrorsOnly,
}

/// A `tracing` layer that publishes log events through a [`Notifier`].
#[derive(Debug, Clone)]
pub struct NotificationLayer {
    notifier: Notifier,
    handle: tokio::runtime::Handle,
    mode: LogHandlerMode,
}

impl NotificationLayer {
    /// A layer sending through `notifier` on `handle`'s runtime. The errors-only mode refuses a
    /// notifier with the `log` driver, which would loop (oslo skips publishing in that case).
    pub fn new(
        notifier: Notifier,
        handle: tokio::runtime::Handle,
        mode: LogHandlerMode,
    ) -> Result<Self, MessagingError> {
        if mode == LogHandlerMode::ErrorsOnly
            && notifier.has_driver(|d| matches!(d, NotifyDriver::Log))
        {
            return Err(MessagingError::InvalidOption {
                option: "notification driver".into(),
                reason: "the errors-only log handler would publish its own errors through the \
                         log driver in a loop"
                    .into(),
            });
        }
        let notifier = match mode {
            LogHandlerMode::ErrorsOnly => notifier.prepare(Some("error.publisher"), None),
            LogHandlerMode::AllRecords => notifier,
        };
        Ok(NotificationLayer {
            notifier,
            handle,
            mode,
        })
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

fn priority_of(level: &Level) -> Priority {
    match *level {
        Level::ERROR => Priority::Error,
        Level::WARN => Priority::Warn,
        Level::INFO => Priority::Info,
        _ => Priority::Debug,
    }
}

impl<S: Subscriber> Layer<S> for NotificationLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        if target.starts_with("oslo_messaging_notification")
            || target.starts_with("osier_messaging")
        {
            return; // the notification machinery's own events: never loop
        }
        let (priority, event_type) = match self.mode {
            LogHandlerMode::AllRecords => (priority_of(meta.level()), "logrecord"),
            LogHandlerMode::ErrorsOnly if *meta.level() == Level::ERROR => {
                (Priority::Error, "error_notification")
            }
            LogHandlerMode::ErrorsOnly => return,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut payload = Map::new();
        payload.insert("name".into(), target.into());
        payload.insert("levelname".into(), meta.level().as_str().into());
        payload.insert(
            "msg".into(),
            fields
                .0
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        if let Some(f) = meta.file() {
            payload.insert("pathname".into(), f.into());
        }
        if let Some(l) = meta.line() {
            payload.insert("lineno".into(), l.into());
        }
        payload.insert(
            "extra".into(),
            Value::Object(fields.0.into_iter().collect()),
        );
        let n = self.notifier.clone();
        self.handle.spawn(async move {
            n.notify(
                &RequestContext::new(),
                priority,
                event_type,
                Value::Object(payload),
            )
            .await;
        });
    }
}
