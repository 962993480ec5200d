//! The RabbitMQ transport (`rabbit://`), wire-compatible with Python oslo.messaging
//! 18.x's rabbit driver.
//!
//! - [`wire`]: the envelope, requests, replies, failures and notifications on the wire.
//! - [`inbound`]: what a delivery's body is: a message, or malformed (why, and the reply address).
//! - [`options`]: `[oslo_messaging_rabbit]` under oslo's names, from code or the URL query.
//! - `connection`: hosts, failover, backoff, heartbeat, typed broker errors.
//! - `publisher`: the owner task of the sending channel (confirms, re-send after reconnect).
//! - `topology`: exchanges and queues with their flags, naming rules, the bindings of servers
//!   and listeners.
//! - `queue_manager`: `use_queue_manager`'s stable reply and fanout queue names, numbered per
//!   service generation in a counter shared by the processes of one host (as oslo's).
//! - `reply`: the reply queue and its waiters, reply routing, the server's replier.
//! - `reply_inbox`: one call's inbox of reply events, filled by the reply queue's consumer.
//! - `reply_probe`: whether a reply queue exists (a passive declare, cached), and the queues
//!   found gone.
//! - `supervisor`: restarts an owner task that panicked, with an ERROR line and a count.
//! - `consumer`: the owner task of each listening channel (topology, consume, acks, reconnect).
//! - `ack_batch`: a consumer's settlements, coalesced into as few frames as its deliveries'
//!   order allows (a `multiple` ack for a run).
//! - `future_set`: the sets of futures and streams an owner waits on (messages in flight,
//!   acks, a listener's queues), without futures' wake-up after every poll.
//! - `wake_count` (tests only): a waker that counts its wakes, for the owners' wake-up tests.
//! - [`driver`]: the [`Driver`](crate::driver::Driver) on top of them.

mod ack_batch;
mod connection;
mod consumer;
pub mod driver;
mod future_set;
pub mod inbound;
pub mod options;
mod publisher;
mod queue_manager;
mod reply;
mod reply_inbox;
mod reply_probe;
mod supervisor;
mod topology;
#[cfg(test)]
mod wake_count;
pub mod wire;

pub use supervisor::owner_restarts;

pub use driver::AmqpDriver;
pub use options::{FailoverStrategy, RabbitOptions};
