//! What the driver makes of a delivery's body, before anything else sees it: a request or a
//! notification, or a malformed message with the reason and, for a call, the reply address
//! that could still be read. Pure functions, so the fuzz target drives exactly this path.
//!
//! Nothing here panics or allocates beyond the body's own size: a body over the receive limit
//! is refused before it is parsed, values nested deeper than the decoder allows are refused
//! (and skipped, not built, when only the reply address is wanted).
//!
//! ```
//! use osier_messaging::amqp::inbound::{read_request, Inbound};
//!
//! let body = br#"{"method": "echo", "args": [], "_msg_id": "m1", "_reply_q": "reply_x"}"#;
//! match read_request(body, 1 << 20) {
//!     Inbound::Malformed { why, reply_to } => {
//!         assert_eq!(why, "bad member args");
//!         assert_eq!(reply_to.unwrap().msg_id, "m1"); // the caller gets a failure
//!     }
//!     Inbound::Message(_) => unreachable!(),
//! }
//! ```

use crate::amqp::wire::{self, NotificationWire, ReplyAddress, RequestWire};

/// A delivery as the driver reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound<T> {
    /// A well-formed message.
    Message(T),
    /// A message that cannot be dispatched: why, and where a failure reply can go.
    Malformed {
        /// What is wrong (no message content: safe to log as it is).
        why: String,
        /// For a call whose `_msg_id` and `_reply_q` could be read.
        reply_to: Option<ReplyAddress>,
    },
}

/// Why a delivery is refused for its `content_type`, if it is: oslo's consumers decode
/// `application/json` only; anything else (or none) reaches them as raw bytes they cannot read,
/// and they reject the message without a reply (MSG-AMQP-07).
///
/// ```
/// use osier_messaging::amqp::inbound::content_type_refusal;
///
/// assert_eq!(content_type_refusal(Some("application/json")), None);
/// assert!(content_type_refusal(Some("text/plain")).is_some());
/// assert!(content_type_refusal(None).is_some());
/// ```
pub fn content_type_refusal(content_type: Option<&str>) -> Option<String> {
    match content_type {
        Some(wire::CONTENT_TYPE) => None,
        Some(other) => Some(format!(
            "content_type {:?} is not {:?}",
            crate::Untrusted(other),
            wire::CONTENT_TYPE
        )),
        None => Some(format!(
            "no content_type (expected {:?})",
            wire::CONTENT_TYPE
        )),
    }
}

/// A delivery's `content_type` property.
pub(crate) fn content_type(d: &lapin::message::Delivery) -> Option<&str> {
    d.properties.content_type().as_ref().map(|c| c.as_str())
}

fn too_large(len: usize, max_bytes: usize) -> String {
    format!("message of {len} bytes exceeds the receive limit of {max_bytes} bytes")
}

/// Reads an RPC request : the envelope, then the request's members.
pub fn read_request(body: &[u8], max_bytes: usize) -> Inbound<RequestWire> {
    if body.len() > max_bytes {
        // Not parsed at all: a reply address would cost a parse of the whole body.
        return Inbound::Malformed {
            why: too_large(body.len(), max_bytes),
            reply_to: None,
        };
    }
    match wire::decode_request_body(body) {
        Ok(r) => Inbound::Message(r),
        Err(e) => Inbound::Malformed {
            why: e.to_string(),
            reply_to: wire::salvage_reply_address(body),
        },
    }
}

/// Reads a notification.
pub fn read_notification(body: &[u8], max_bytes: usize) -> Inbound<NotificationWire> {
    if body.len() > max_bytes {
        return Inbound::Malformed {
            why: too_large(body.len(), max_bytes),
            reply_to: None,
        };
    }
    match wire::decode_notification_body(body) {
        Ok(n) => Inbound::Message(n),
        Err(e) => Inbound::Malformed {
            why: e.to_string(),
            reply_to: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(extra: &str) -> String {
        format!(r#"{{"method": "m", "_msg_id": "m1", "_reply_q": "reply_x"{extra}}}"#)
    }

    #[test]
    fn a_body_over_the_limit_is_refused_unread() {
        let body = call(r#", "args": {"a": "xxxxxxxxxxxxxxxxxxxx"}"#);
        match read_request(body.as_bytes(), 16) {
            Inbound::Malformed { why, reply_to } => {
                assert!(why.contains("receive limit of 16 bytes"), "{why}");
                assert_eq!(reply_to, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_undecodable_call_keeps_its_reply_address() {
        for extra in [
            r#", "args": {"s": "\ud800"}"#.to_string(),
            format!(
                r#", "args": {{"deep": {}0{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            r#", "args": 5"#.to_string(),
        ] {
            match read_request(call(&extra).as_bytes(), 1 << 20) {
                Inbound::Malformed { reply_to, .. } => {
                    assert_eq!(reply_to.map(|a| a.msg_id).as_deref(), Some("m1"), "{extra}")
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_reply_queue_longer_than_an_amqp_name_is_malformed_without_address() {
        let body = format!(
            r#"{{"method": "m", "_msg_id": "m1", "_reply_q": "{}"}}"#,
            "q".repeat(256)
        );
        assert_eq!(
            read_request(body.as_bytes(), 1 << 20),
            Inbound::Malformed {
                why: "bad member _reply_q".into(),
                reply_to: None
            }
        );
    }

    #[test]
    fn a_huge_call_monitor_timeout_means_none() {
        for t in ["1e20", "1e308", "-5", "0"] {
            let body = call(&format!(r#", "_timeout": {t}"#));
            match read_request(body.as_bytes(), 1 << 20) {
                Inbound::Message(r) => assert_eq!(r.call_monitor_timeout, None, "{t}"),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_a_million_deep_is_refused_without_overflowing_the_stack() {
        let body = format!(
            r#"{{"method": "m", "args": {{"a": {}{}}}, "_msg_id": "m1", "_reply_q": "q"}}"#,
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        match read_request(body.as_bytes(), 64 << 20) {
            Inbound::Malformed { reply_to, .. } => assert!(reply_to.is_some()),
            other => panic!("{other:?}"),
        }
    }
}
