//! # osier-messaging
//!
//! oslo.messaging's model in Rust: transport URLs, targets, an RPC
//! client and server with oslo's dispatcher rules, and executors chosen per endpoint, so one
//! endpoint of a service can move from green threads to async while the others stay. Transports:
//! in-memory (`memory://`, oslo's `fake://`, the embedded default) and RabbitMQ (`rabbit://`,
//! [`amqp`]) behind the same [`Driver`](driver::Driver) trait, wire-compatible with Python
//! oslo.messaging 18.x (failover, reconnection, heartbeats on their own runtime, TLS, oslo's
//! `[oslo_messaging_rabbit]` options as [`amqp::RabbitOptions`] or URL query parameters).
//!
//! | oslo.messaging | osier-messaging |
//! |---|---|
//! | `TransportURL.parse(conf, url)` | [`TransportUrl`]`: FromStr` (passwords never shown) |
//! | `get_rpc_transport(conf, url)` | [`Transport::new`]`(url)` |
//! | `Target(topic=..., server=..., version=...)` | [`Target::topic`]`(..).with_server(..).with_version(..)` |
//! | `get_rpc_client(transport, target, timeout=...)` | [`RpcClient::new`]`(&transport, target).timeout(..)` |
//! | `client.prepare(server=..., version=...)` | [`RpcClient::prepare`]`().server(Some(..)).build()?` |
//! | `client.call(ctxt, 'method', **kwargs)` | `client.call(&ctx, "method", json!({..})).await?` or `call_green` in a green thread |
//! | `client.cast(...)` | [`RpcClient::cast`] |
//! | `get_rpc_server(transport, target, endpoints, executor=...)` | [`RpcServer::builder`]`(..).endpoint(..).executor(..).build()?` |
//! | an endpoint class with methods | [`Endpoint::new`]`(..).method_async(..)` / `.method(..)`, with `.executor(..)` per endpoint |
//! | `RemoteError` | [`MessagingError::Remote`] with oslo's failure fields ([`Failure`]) |
//! | `Notifier(transport, publisher_id, driver='messagingv2')` | [`Notifier::new`]`(..).driver(NotifyDriver::MessagingV2)` |
//! | `get_notification_listener(transport, targets, endpoints, executor=..., pool=..., allow_requeue=...)` | [`NotificationListener::new`]`(..).executor(..).pool(..).allow_requeue(..)` |
//! | a notification endpoint class (methods `info`, `error`, ...) | [`NotificationEndpoint::new`]`(..).on(Priority::Info, ..)` / `.on_async(..)`, with `.executor(..)` per endpoint |
//! | `executor_thread_pool_size` | `max_in_flight` of [`RpcServerBuilder`] and [`NotificationListener`] |
//! | `strutils.mask_dict_password` | [`secrets::masked`]; every `Debug` of a context, body or payload masks secrets |
//! | `[oslo_messaging_rabbit]` options, URL query overrides | [`amqp::RabbitOptions`], [`Transport::with_rabbit_options`], the same names in the URL query |
//! | `MessageDeliveryFailure`, connection errors | [`MessagingError::Broker`]`(`[`BrokerError`]`)` |
#![warn(missing_docs)]

pub mod amqp;
pub mod config;
mod context;
pub mod driver;
mod error;
pub mod health;
mod in_flight;
mod lock;
mod log_budget;
pub mod memory;
pub mod metrics;
pub mod notify;
#[cfg(feature = "otel")]
mod otel;
pub mod rpc;
mod runner;
pub mod secrets;
mod target;
pub mod trace_context;
mod transport;
mod untrusted;
mod url;
mod version;

pub use context::{NoOpSerializer, RequestContext, Serializer};
pub use error::{BrokerError, Cause, Failure, MessagingError};
pub use health::{Health, PingOutcome};
pub use log_budget::LogBudget;
pub use notify::listener::{
    Notification, NotificationEndpoint, NotificationFilter, NotificationListener,
    NotificationResult,
};
pub use notify::notifier::{Notifier, NotifierStats, NotifyDriver};
pub use notify::Priority;
pub use rpc::client::{Prepare, RpcClient};
pub use rpc::dispatcher::{AccessPolicy, PING_METHOD};
pub use rpc::endpoint::{Endpoint, EndpointError, Executor};
pub use rpc::lifecycle::StepOptions;
pub use rpc::server::{RpcServer, RpcServerBuilder, DEFAULT_PING_INTERVAL};
pub use target::Target;
pub use transport::{Transport, TransportOptions};
pub use untrusted::Untrusted;
pub use url::{TransportHost, TransportUrl};
pub use version::{version_is_compatible, Version};
