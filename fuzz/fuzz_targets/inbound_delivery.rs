//! Any delivery a broker hands the RabbitMQ driver goes the whole inbound way it goes in a
//! server, short of running a handler: the receive limit, the envelope and message decoders,
//! the reply-address salvage for undecodable calls, the dispatcher's decision, and the escaping
//! of every string that may be logged. The driver reads no delivery property but the body to
//! decide (the delivery tag only acknowledges), so the input is the body, behind one byte that
//! chooses the queue kind and the receive limit. Nothing may panic, hang or blow the stack.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use osier_messaging::amqp::inbound::{read_notification, read_request, Inbound};
use osier_messaging::amqp::wire;
use osier_messaging::rpc::dispatcher::{AccessPolicy, Decision, Dispatcher};
use osier_messaging::{Endpoint, EndpointError, Priority, Target, Untrusted};

/// Endpoints with namespaces, versions and a private method, and the built-in ping.
fn dispatcher() -> &'static Dispatcher {
    static D: OnceLock<Dispatcher> = OnceLock::new();
    D.get_or_init(|| {
        let m = |_c, a: serde_json::Value| Ok::<_, EndpointError>(a);
        Dispatcher::new(
            vec![
                Endpoint::new("a").method("echo", m).method("_private", m),
                Endpoint::new("b")
                    .target(Target::default().with_namespace("ns").with_version("2.3"))
                    .method("echo", m),
            ],
            AccessPolicy::Default,
            true,
        )
    })
}

fn shown(s: &str) {
    let _ = Untrusted(s).to_string();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let limit = if selector & 0x80 != 0 { 64 } else { 128 << 20 };
    match selector & 3 {
        // An RPC request: decode, then the server's decision.
        0 | 3 => match read_request(body, limit) {
            Inbound::Message(r) => {
                if let Some(q) = &r.reply_q {
                    assert!(q.len() <= wire::MAX_NAME_BYTES);
                }
                match dispatcher().decide(r.message.clone()) {
                    Decision::Run { method, .. } | Decision::Fail { method, .. } => shown(&method),
                    Decision::Refuse(why) => shown(&why),
                    _ => {}
                }
                // What was decoded encodes again.
                let call = match (&r.msg_id, &r.reply_q) {
                    (Some(m), Some(q)) => Some(wire::CallInfo {
                        msg_id: m,
                        reply_q: q,
                        call_monitor_timeout: r.call_monitor_timeout,
                    }),
                    _ => None,
                };
                let again = wire::encode_request(&r.message, &r.ctxt, call, "x");
                let _ = wire::encode_body(&again);
            }
            Inbound::Malformed { why, reply_to } => {
                shown(&why);
                if let Some(a) = reply_to {
                    assert!(!a.reply_q.is_empty() && a.reply_q.len() <= wire::MAX_NAME_BYTES);
                    shown(&a.msg_id);
                }
            }
        },
        // A notification: decode, then the listener's reading of its priority and event type.
        1 => match read_notification(body, limit) {
            Inbound::Message(n) => {
                if let Some(p) = n.message.get("priority").and_then(|p| p.as_str()) {
                    shown(p);
                    let _ = p.parse::<Priority>();
                }
                if let Some(e) = n.message.get("event_type").and_then(|p| p.as_str()) {
                    shown(e);
                }
            }
            Inbound::Malformed { why, .. } => shown(&why),
        },
        // A reply, as the reply queue's consumer routes it.
        _ => {
            if body.len() <= limit {
                if let Ok(inner) = wire::decode_body(body) {
                    if let Ok(r) = wire::decode_reply(&inner) {
                        shown(&r.msg_id);
                    }
                }
            }
        }
    }
});
