//! `osier listen`: prints notifications as they arrive, until Ctrl-C (or `--count`), as a
//! `get_notification_listener` with an endpoint for each priority would see them. Secrets in
//! the context and payload are masked as oslo's log driver masks them.
//!
//! Without `--pool`, the listener consumes the topic's queues (`notifications.info`, ...)
//! beside the deployment's own consumers, so it takes a share of their notifications away
//! from them; with `--pool NAME` it gets its own copy in a queue of that name, which stays on
//! the broker after it exits.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Args;
use osier_messaging::secrets::{masked, masked_map};
use osier_messaging::{
    Notification, NotificationEndpoint, NotificationListener, NotificationResult, Priority, Target,
    Transport,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::{Done, Outcome};

/// `osier listen`.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Topics to listen on (repeat the flag); oslo's `notifications` by default.
    #[arg(long = "topic", default_value = "notifications")]
    pub topics: Vec<String>,
    /// Priorities to take (repeat the flag); all seven by default.
    #[arg(long = "priority")]
    pub priorities: Vec<String>,
    /// A listener pool: a queue of its own, a copy of every notification.
    #[arg(long)]
    pub pool: Option<String>,
    /// JSON lines instead of one readable line each.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many notifications.
    #[arg(long)]
    pub count: Option<u64>,
}

fn line(n: &Notification, as_json: bool) -> String {
    let payload = masked(&n.payload);
    if as_json {
        json!({
            "priority": n.priority.as_str(),
            "event_type": n.event_type,
            "publisher_id": n.publisher_id,
            "payload": payload,
            "metadata": n.metadata,
            "ctxt": masked_map(&n.ctxt.to_dict()),
        })
        .to_string()
    } else {
        format!(
            "{} {} {} {}",
            n.priority.as_str(),
            osier_messaging::Untrusted(&n.event_type),
            osier_messaging::Untrusted(&n.publisher_id),
            payload
        )
    }
}

/// Listens until Ctrl-C (or TERM) or `--count`; stops the listener cleanly either way.
pub async fn listen(transport: &Transport, a: &ListenArgs) -> Done {
    let priorities: Vec<Priority> = if a.priorities.is_empty() {
        Priority::ALL.to_vec()
    } else {
        a.priorities
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?
    };
    if a.pool.is_none() {
        tracing::warn!("no --pool: this listener shares the topic's queues with the deployment's own consumers and takes some of their notifications");
    }
    let seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let mut endpoint = NotificationEndpoint::new("osier-cli");
    for p in priorities {
        let (seen, done, as_json, count) = (seen.clone(), done.clone(), a.json, a.count);
        endpoint = endpoint.on(p, move |n| {
            let k = seen.fetch_add(1, Ordering::SeqCst) + 1;
            if count.is_none_or(|c| k <= c) {
                crate::print_line(&line(n, as_json));
            }
            if count.is_some_and(|c| k >= c) {
                done.notify_one();
            }
            NotificationResult::Handled
        });
    }
    let targets = a.topics.iter().map(Target::topic).collect();
    let mut listener =
        NotificationListener::new(transport, targets, vec![endpoint]).max_in_flight(1);
    if let Some(pool) = &a.pool {
        listener = listener.pool(pool);
    }
    // Installed before saying "listening", so a Ctrl-C right after it is caught.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            return Err(Outcome::failed(
                crate::exit::Exit::Failed,
                format!("cannot catch signals: {e}"),
            ))
        }
    };
    listener.start().await?;
    // Said on stderr whatever the log level: a script (or a test) waits for it.
    let _ = writeln!(
        std::io::stderr(),
        "osier: listening on {}; Ctrl-C stops",
        a.topics.join(", ")
    );
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = done.notified() => {}
    }
    listener.stop().await;
    listener.wait().await;
    Ok(Outcome::ok())
}
