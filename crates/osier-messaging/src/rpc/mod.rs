//! RPC: client, server, dispatcher, endpoints and executors.

pub mod client;
pub mod dispatcher;
pub mod endpoint;
pub mod server;
