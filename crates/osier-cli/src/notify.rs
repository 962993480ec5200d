//! `osier notify`: one notification, as `oslo_messaging.Notifier(transport, publisher_id,
//! driver='messagingv2', topics=[...]).info(ctxt, event_type, payload)`.

use clap::Args;
use osier_messaging::{Notifier, NotifyDriver, Priority, RequestContext, Transport};
use serde_json::Value;

use crate::kv;
use crate::{Done, Outcome};

/// `osier notify`.
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// The topic (oslo's `notifications` by default).
    #[arg(long, default_value = "notifications")]
    pub topic: String,
    /// audit, debug, info, warn, error, critical, sample.
    #[arg(long, default_value = "info")]
    pub priority: String,
    /// What happened (`compute.instance.create.end`).
    #[arg(long)]
    pub event_type: String,
    /// Who says so (`compute.host-1`).
    #[arg(long, default_value = "osier-cli")]
    pub publisher_id: String,
    /// The payload as one JSON document (instead of key=value arguments).
    #[arg(long, conflicts_with = "fields")]
    pub payload: Option<String>,
    /// The payload's fields, key=value (JSON values; key:=value for a string).
    pub fields: Vec<String>,
}

/// Sends it; succeeds once the broker has it.
pub async fn notify(transport: &Transport, a: &NotifyArgs) -> Done {
    let priority: Priority = a.priority.parse()?;
    let payload = match &a.payload {
        Some(json) => serde_json::from_str::<Value>(json)
            .map_err(|e| Outcome::usage(format!("--payload is not JSON: {e}")))?,
        None => Value::Object(kv::parse(&a.fields)?),
    };
    let notifier = Notifier::new(transport, &a.publisher_id)
        .driver(NotifyDriver::MessagingV2)
        .topics(&[a.topic.as_str()])
        .retry(0);
    let failed = || {
        notifier
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = failed();
    notifier
        .notify(
            &RequestContext::with_new_request_id(),
            priority,
            &a.event_type,
            payload,
        )
        .await;
    transport.flush().await?;
    // A notifier never fails its caller (oslo logs and goes on); the CLI must say.
    if failed() > before {
        return Err(Outcome::failed(
            crate::exit::Exit::Unreachable,
            "the notification was not sent (the log above says why)",
        ));
    }
    Ok(Outcome::ok())
}
