//! The RabbitMQ transport (issue 5). This release has the wire format only ([`wire`]): the
//! driver that speaks it over `lapin` is next.

pub mod wire;
