//! The RabbitMQ transport (`rabbit://`, issue 5), wire-compatible with Python oslo.messaging
//! 18.x's rabbit driver.
//!
//! - [`wire`]: the envelope, requests, replies, failures and notifications (`oslo-wire.md`).
//! - [`options`]: `[oslo_messaging_rabbit]` under oslo's names, from code or the URL query.
//! - `connection`: hosts, failover, backoff, heartbeat, typed broker errors.
//! - `publisher`: the owner task of the sending channel (confirms, re-send after reconnect).
//! - `consumer`: the owner task of each listening channel (topology, consume, acks, reconnect).
//! - [`driver`]: the [`Driver`](crate::driver::Driver) on top of them.

mod connection;
mod consumer;
pub mod driver;
pub mod options;
mod publisher;
pub mod wire;

pub use driver::AmqpDriver;
pub use options::RabbitOptions;
