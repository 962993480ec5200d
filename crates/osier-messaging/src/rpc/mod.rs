//! RPC: client, server, dispatcher, endpoints and executors.

pub mod client;
pub mod dispatcher;
pub mod endpoint;
mod executor;
pub mod lifecycle;
mod same_type;
pub mod server;
mod span_fields;
