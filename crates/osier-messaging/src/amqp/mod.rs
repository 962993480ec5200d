//! The RabbitMQ transport (issue 5): the wire format ([`wire`]) and a first `lapin` driver
//! ([`driver`]): oslo's topology and messages on one broker host. Failover, reconnection, TLS and
//! the non-default options are not built yet.

pub mod driver;
pub mod wire;
