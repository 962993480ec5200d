//! A plain AMQP peer (lapin, no osier code): it publishes bodies as any client on the network
//! can, crafted or not, and consumes queues of its own.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::{json, Value};

use super::raw_channel;

/// A 2.0 envelope around `inner` (the inner message as a JSON string, as oslo sends it).
pub fn envelope(inner: &str) -> Vec<u8> {
    json!({"oslo.version": "2.0", "oslo.message": inner})
        .to_string()
        .into_bytes()
}

/// The inner message of a 2.0 envelope.
pub fn inner(body: &[u8]) -> Value {
    let outer: Value = serde_json::from_slice(body).unwrap();
    serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap()
}

/// Publishes `body` to `queue` through the default exchange as `application/json`.
pub async fn publish_raw(ch: &lapin::Channel, queue: &str, body: &[u8]) {
    publish_with_content_type(ch, queue, body, Some("application/json")).await;
}

/// Publishes `body` to `queue` through the default exchange with `content_type` (none: no
/// such property), and waits for the broker to take it.
pub async fn publish_with_content_type(
    ch: &lapin::Channel,
    queue: &str,
    body: &[u8],
    content_type: Option<&str>,
) {
    let mut props = BasicProperties::default();
    if let Some(ct) = content_type {
        props = props.with_content_type(ct.into());
    }
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Declares queue `name` for this connection alone (exclusive, auto-delete) and consumes it
/// without acks.
pub async fn consume_own_queue(ch: &lapin::Channel, name: &str) -> lapin::Consumer {
    let opts = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(name.into(), opts, FieldTable::default())
        .await
        .unwrap();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    ch.basic_consume(name.into(), "".into(), no_ack, FieldTable::default())
        .await
        .unwrap()
}

/// A reply queue of the plain peer's own, for requests it publishes itself.
pub struct RawReplyQueue {
    pub name: String,
    pub consumer: lapin::Consumer,
    _conn: lapin::Connection,
}

impl RawReplyQueue {
    pub async fn new() -> Self {
        let (conn, ch) = raw_channel().await;
        let name = format!("reply_raw_{}", uuid::Uuid::new_v4().simple());
        let consumer = consume_own_queue(&ch, &name).await;
        RawReplyQueue {
            name,
            consumer,
            _conn: conn,
        }
    }

    /// The next final reply (heartbeats skipped), decoded from its envelope.
    pub async fn next_reply(&mut self) -> Value {
        loop {
            let d = tokio::time::timeout(Duration::from_secs(20), self.consumer.next())
                .await
                .expect("no reply within 20 s")
                .unwrap()
                .unwrap();
            let inner = inner(&d.data);
            if inner["ending"] == json!(true) {
                return inner;
            }
        }
    }
}
