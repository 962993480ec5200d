//! RPC: client, server, dispatcher, endpoints and executors.

pub mod client;
pub mod dispatcher;
pub mod endpoint;
mod executor;
mod in_span;
pub mod lifecycle;
mod same_type;
pub mod server;
mod span_fields;
