//! The oslo.messaging wire format against messages captured from Python oslo.messaging
//! (`tests/data/oslo-wire-vectors.json`): every one decodes, and what we encode has their shape.

use std::time::Duration;

use osier_messaging::amqp::wire::{self, CallInfo, DuplicateFilter, WireError};
use osier_messaging::Failure;
use serde_json::{json, Value};

fn vectors() -> Vec<Value> {
    let text = include_str!("data/oslo-wire-vectors.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["vectors"].as_array().unwrap().clone()
}

fn vector(name: &str) -> (Value, serde_json::Map<String, Value>) {
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name}"));
    let inner = wire::decode_body(v["body"].as_str().unwrap().as_bytes()).unwrap();
    (v, inner)
}

/// MSG-AMQP-01: every captured message decodes (envelope and bare bodies).
#[test]
fn every_captured_vector_decodes() {
    let all = vectors();
    assert_eq!(all.len(), 17);
    for v in all {
        let body = v["body"].as_str().unwrap();
        let inner =
            wire::decode_body(body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        let name = v["name"].as_str().unwrap();
        if name.starts_with("rpc_call_request")
            || name.contains("cast_request")
            || name == "rpc_call_monitor_request"
        {
            let r = wire::decode_request(inner).unwrap();
            assert!(r.message["method"].is_string(), "{name}");
            assert!(r.message["args"].is_object(), "{name}");
        } else if name.contains("reply") {
            let r = wire::decode_reply(&inner).unwrap();
            assert_eq!(r.msg_id.len(), 32, "{name}");
        } else {
            let n = wire::decode_notification(inner);
            assert!(n.message["priority"].is_string(), "{name}");
        }
    }
}

/// MSG-AMQP-01: a call request's members and the flattened context.
#[test]
fn call_request_vector() {
    let (v, inner) = vector("rpc_call_request");
    assert_eq!(v["routing_key"], "probe.s1");
    let r = wire::decode_request(inner).unwrap();
    assert_eq!(r.message["method"], "echo");
    assert_eq!(r.message["args"], json!({"value": 1}));
    assert_eq!(r.msg_id.as_deref().map(str::len), Some(32));
    assert!(r.reply_q.as_deref().unwrap().starts_with("reply_"));
    assert_eq!(r.call_monitor_timeout, None, "_timeout: null");
    assert_eq!(r.ctxt["user_id"], "probe-user");
    assert_eq!(
        r.ctxt["request_id"],
        "req-dfc3625d-f814-46b7-8fa1-a21da201ca85"
    );
    assert!(!r.ctxt.contains_key("_msg_id"));
    assert_eq!(
        r.ctxt["client_timeout"],
        Value::Null,
        "as a Python endpoint sees it"
    );
}

/// Sections 5.1/5.2: namespace and version travel only when set; a cast has no call members;
/// call-monitor requests carry `_timeout`; nested context values survive.
#[test]
fn request_variants() {
    let r = wire::decode_request(vector("rpc_call_request_namespace_version").1).unwrap();
    assert_eq!(
        (
            r.message["namespace"].as_str(),
            r.message["version"].as_str()
        ),
        (Some("probe_ns"), Some("2.1"))
    );
    let cast = wire::decode_request(vector("rpc_cast_request").1).unwrap();
    assert!(cast.msg_id.is_none() && cast.reply_q.is_none() && cast.call_monitor_timeout.is_none());
    let (fan_v, fan) = vector("rpc_fanout_cast_request");
    assert_eq!(
        (fan_v["exchange"].as_str(), fan_v["routing_key"].as_str()),
        (Some("probe_fanout"), Some(""))
    );
    assert!(wire::decode_request(fan).unwrap().msg_id.is_none());
    let cm = wire::decode_request(vector("rpc_call_monitor_request").1).unwrap();
    assert_eq!(cm.call_monitor_timeout, Some(Duration::from_secs(2)));
    let ctx = wire::decode_request(vector("rpc_call_request_context").1).unwrap();
    assert_eq!(ctx.ctxt["nested"], json!({"a": 1}));
    assert_eq!(ctx.ctxt["is_admin"], json!(false));
}

/// Sections 6/7: replies, heartbeats and the failure-in-a-string, with oslo's class names.
#[test]
fn reply_and_failure_vectors() {
    let ok = wire::decode_reply(&vector("rpc_call_reply").1).unwrap();
    assert_eq!(
        (ok.result.clone(), ok.ending, ok.failure.is_none()),
        (json!(1), true, true)
    );
    let hb = wire::decode_reply(&vector("rpc_call_monitor_heartbeat_reply").1).unwrap();
    assert!(!hb.ending && hb.result.is_null() && hb.failure.is_none());
    let custom = wire::decode_reply(&vector("rpc_failure_reply_custom").1)
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(
        (
            custom.class.as_str(),
            custom.module.as_str(),
            custom.message.as_str()
        ),
        ("ProbeError", "probe_exceptions", "boom")
    );
    assert_eq!(custom.kwargs["code"], json!(7));
    assert!(!custom.tb.is_empty());
    let builtin = wire::decode_reply(&vector("rpc_failure_reply_builtin").1)
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(
        (builtin.class.as_str(), builtin.module.as_str()),
        ("ValueError", "builtins")
    );
    let nsm = wire::decode_reply(&vector("rpc_failure_reply_no_such_method").1)
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(
        (nsm.class.as_str(), nsm.module.as_str()),
        ("NoSuchMethod", "oslo_messaging.rpc.dispatcher")
    );
    let uv = wire::decode_reply(&vector("rpc_failure_reply_unsupported_version").1)
        .unwrap()
        .failure
        .unwrap();
    assert_eq!(uv.class, "UnsupportedVersion");
    let ours_uv = Failure::from_error(&osier_messaging::MessagingError::UnsupportedVersion {
        version: "9.9".into(),
        method: "echo".into(),
    });
    assert_eq!(
        ours_uv.message,
        "Endpoint does not support RPC version 9.9. Attempted method: echo"
    );
    assert!(
        uv.message
            .starts_with("Endpoint does not support RPC version "),
        "{}",
        uv.message
    );
    // what our server sends for the same errors uses the same names
    let ours =
        Failure::from_error(&osier_messaging::MessagingError::NoSuchMethod { method: "x".into() });
    assert_eq!(
        (ours.class.as_str(), ours.module.as_str()),
        (nsm.class.as_str(), nsm.module.as_str())
    );
    assert_eq!(ours.message, "Endpoint does not support RPC method x");
}

/// MSG-AMQP-01: notifications (2.0 envelope, request context, warn, legacy 1.0 body).
#[test]
fn notification_vectors() {
    let (v, inner) = vector("notification_v2_info");
    assert_eq!(v["routing_key"], "notifications.info");
    let n = wire::decode_notification(inner);
    assert_eq!(n.message["priority"], "INFO");
    assert_eq!(
        n.message["message_id"].as_str().map(str::len),
        Some(36),
        "dashed uuid"
    );
    assert!(n.ctxt.is_empty(), "a plain dict context is not sent");
    let ts = n.message["timestamp"].as_str().unwrap();
    assert_eq!((ts.len(), &ts[10..11]), (26, " "));
    let rc = wire::decode_notification(vector("notification_v2_request_context").1);
    assert!(rc.ctxt.contains_key("user_identity") && rc.ctxt["auth_token"].is_null());
    assert_eq!(
        wire::decode_notification(vector("notification_v2_warn").1).message["priority"],
        "WARN"
    );
    let (v1, legacy) = vector("notification_v1_legacy");
    assert!(
        v1["body"].as_str().unwrap().starts_with("{\"message_id\""),
        "no envelope"
    );
    assert_eq!(
        wire::decode_notification(legacy).message["event_type"],
        "probe.info.simple"
    );
}

/// MSG-AMQP-01: what we encode is the 2.0 envelope with the message as a JSON string, and
/// it decodes back (round trip for requests, replies with failures, heartbeats, notifications).
#[test]
fn our_encoding_round_trips_in_the_envelope() {
    let msg = json!({"method": "echo", "args": {"v": "h\u{e9}llo"}, "version": "1.2"});
    let ctx = json!({"request_id": "req-1", "roles": ["admin"]});
    let inner = wire::encode_request(
        msg.as_object().unwrap(),
        ctx.as_object().unwrap(),
        Some(CallInfo {
            msg_id: "abc",
            reply_q: "reply_q1",
            call_monitor_timeout: Some(Duration::from_secs(4)),
        }),
        &wire::new_id(),
    );
    assert_eq!(inner["_timeout"], json!(4));
    assert_eq!(inner["_context_roles"], json!(["admin"]));
    let body = wire::encode_body(&inner);
    let outer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outer.as_object().unwrap().len(), 2);
    assert_eq!(outer["oslo.version"], "2.0");
    assert!(
        outer["oslo.message"].is_string(),
        "the message travels as a JSON string"
    );
    let back = wire::decode_request(wire::decode_body(&body).unwrap()).unwrap();
    assert_eq!(back.message["args"]["v"], "h\u{e9}llo");
    // The context comes back with the call-monitor timeout as `client_timeout`, as a Python
    // endpoint's ctxt has it.
    let mut with_timeout = ctx.as_object().unwrap().clone();
    with_timeout.insert("client_timeout".into(), json!(4));
    assert_eq!(back.ctxt, with_timeout);
    assert_eq!(back.call_monitor_timeout, Some(Duration::from_secs(4)));

    let f = Failure::new("ValueError", "builtins", "bad");
    let reply = wire::encode_reply(None, Some(&f), true, "abc", &wire::new_id());
    assert!(
        reply["failure"].is_string(),
        "the failure travels as a JSON string"
    );
    let r = wire::decode_reply(&wire::decode_body(&wire::encode_body(&reply)).unwrap()).unwrap();
    assert_eq!(r.failure, Some(f));
    let hb = wire::decode_reply(&wire::encode_reply(None, None, false, "abc", "u")).unwrap();
    assert!(!hb.ending && hb.failure.is_none());

    let note = json!({"message_id": "m", "publisher_id": "p", "event_type": "e", "priority": "INFO", "payload": {}, "timestamp": "t"});
    let n = wire::encode_notification(note.as_object().unwrap(), ctx.as_object().unwrap(), "u2");
    let back = wire::decode_notification(wire::decode_body(&wire::encode_body_v1(&n)).unwrap());
    assert_eq!(back.unique_id.as_deref(), Some("u2"));
    assert_eq!(back.ctxt["request_id"], "req-1");
    assert_eq!(wire::expiration_ms(Duration::from_secs(60)), "60000");
}

/// MSG-AMQP-01: what Python receivers refuse we refuse too (envelope 2.1 or 3.0); what they
/// tolerate we tolerate (compact JSON, no `args`, no `_unique_id`, `ending` missing = false).
#[test]
fn tolerance_matches_python() {
    for ver in ["2.1", "3.0"] {
        let body = json!({"oslo.version": ver, "oslo.message": "{}"}).to_string();
        assert!(matches!(
            wire::decode_body(body.as_bytes()),
            Err(WireError::UnsupportedEnvelope(_))
        ));
    }
    assert!(matches!(
        wire::decode_body(b"not json"),
        Err(WireError::NotJson(_))
    ));
    assert!(matches!(
        wire::decode_body(b"[1]"),
        Err(WireError::NotObject)
    ));
    let r = wire::decode_request(
        json!({"method": "m", "extra": 1})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    assert_eq!(r.message["args"], json!({}));
    assert!(r.unique_id.is_none());
    let reply =
        wire::decode_reply(json!({"result": 2, "_msg_id": "x"}).as_object().unwrap()).unwrap();
    assert!(!reply.ending);
    assert!(
        wire::decode_request(json!({"args": {}}).as_object().unwrap().clone()).is_err(),
        "no method"
    );
}

/// MSG-AMQP-07: the duplicate filter remembers the last `DUPLICATE_WINDOW` `_unique_id`s, more
/// than a publisher re-sends after a lost connection (its whole window of unconfirmed messages).
#[test]
fn duplicate_filter_window() {
    const { assert!(wire::DUPLICATE_WINDOW >= 2 * 512) };
    let mut f = DuplicateFilter::new();
    assert!(!f.is_duplicate(Some("a")));
    assert!(f.is_duplicate(Some("a")));
    for i in 0..512 {
        assert!(!f.is_duplicate(Some(&i.to_string())));
    }
    assert!(
        f.is_duplicate(Some("a")),
        "a whole publisher window later, still known"
    );
    assert!(
        f.is_duplicate(Some("0")),
        "re-sent after the window: still known"
    );
    for i in 512..wire::DUPLICATE_WINDOW {
        assert!(!f.is_duplicate(Some(&i.to_string())));
    }
    assert!(!f.is_duplicate(Some("a")), "pushed out of the window");
    assert!(!f.is_duplicate(None) && !f.is_duplicate(None));
}

/// MSG-AMQP-07: a second copy of a notification that arrives while the first is still being
/// handled is a duplicate too; once the first is requeued instead, the next copy is taken.
#[test]
fn duplicate_filter_holds_copies_while_the_first_is_handled() {
    let mut f = DuplicateFilter::new();
    assert!(f.begin(Some("a")));
    assert!(!f.begin(Some("a")), "a copy while the first is handled");
    f.finish(Some("a"), false);
    assert!(f.begin(Some("a")), "requeued: the next delivery is taken");
    f.finish(Some("a"), true);
    assert!(!f.begin(Some("a")), "handled: remembered");
    assert!(f.begin(None) && f.begin(None), "no id: never a duplicate");
}

/// MSG-AMQP-07: notifications taken and handled are remembered within the window and
/// forgotten beyond it, like requests; a requeue does not forget an id already remembered.
#[test]
fn duplicate_filter_window_counts_handled_notifications() {
    let mut f = DuplicateFilter::new();
    for i in 0..=wire::DUPLICATE_WINDOW {
        let id = i.to_string();
        assert!(f.begin(Some(&id)));
        assert!(!f.contains(Some(&id)), "taken, not yet remembered");
        f.finish(Some(&id), true);
        assert!(f.contains(Some(&id)));
    }
    assert!(!f.contains(Some("0")), "pushed out of the window");
    assert!(f.begin(Some("0")), "forgotten: taken again");
    assert!(f.is_duplicate(Some("1")), "a request with a remembered id");
    f.finish(Some("1"), false);
    assert!(
        f.contains(Some("1")),
        "a requeue does not forget a remembered id"
    );
}

/// The envelope written around the message's text is byte for byte the envelope serialised as
/// a map (MSG-AMQP-01): quotes, backslashes, control characters, non-ASCII text and
/// nesting in the message survive, escaped once more inside the envelope's string.
#[test]
fn the_envelope_is_the_same_bytes_as_the_envelope_serialised_as_a_map() {
    let msg = serde_json::json!({
        "method": "echo \"quoted\" \\ back\nline\u{1}",
        "args": {"s": "ü € 𝄞", "n": [1, 2.5, -3, null, true], "deep": {"a": {"b": []}}},
        "_msg_id": "m1",
        "_unique_id": "u1",
    });
    let inner = msg.as_object().unwrap().clone();
    let as_map = serde_json::json!({
        "oslo.version": "2.0",
        "oslo.message": serde_json::Value::Object(inner.clone()).to_string(),
    });
    assert_eq!(
        String::from_utf8(wire::encode_body(&inner)).unwrap(),
        as_map.to_string()
    );
    assert_eq!(
        wire::decode_body(&wire::encode_body(&inner)).unwrap(),
        inner
    );
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// Requests and replies written straight from their parts are the bytes of their maps
/// enveloped (MSG-AMQP-01): member order (context first, `c` before `m`), escapes in keys and
/// values, call and cast, call-monitor timeouts, missing `args`, failures in their string.
#[test]
fn bodies_written_from_their_parts_are_the_bytes_of_their_maps() {
    let contexts = [
        json!({}),
        json!({"request_id": "req-1", "user": "u", "roles": ["a", "b"], "is_admin": false}),
        json!({"": 1, "Z\"q\\": "\u{1}\n", "ümlaut": {"deep": [1, {"x": null}]}, "_x": 2.5}),
    ];
    let messages = [
        json!({"method": "echo", "args": {"value": {"x": 1}}}),
        json!({"method": "m", "args": {"s": "a \"q\" \\ é\n\u{1}", "n": [1, 2.5, null]}}),
        json!({"method": "m\"\\", "namespace": "ns", "version": "2.1"}),
        json!({"method": "m", "args": null, "extra": "not sent"}),
    ];
    let calls = [
        None,
        Some(CallInfo {
            msg_id: "m1",
            reply_q: "reply_\"q",
            call_monitor_timeout: None,
        }),
        Some(CallInfo {
            msg_id: "m2",
            reply_q: "r",
            call_monitor_timeout: Some(Duration::from_millis(1500)),
        }),
        Some(CallInfo {
            msg_id: "m3",
            reply_q: "r",
            call_monitor_timeout: Some(Duration::from_secs(2)),
        }),
    ];
    for ctxt in &contexts {
        for message in &messages {
            for call in calls {
                let (m, c) = (obj(message.clone()), obj(ctxt.clone()));
                assert_eq!(
                    String::from_utf8(wire::encode_request_body(&m, &c, call, "u1")).unwrap(),
                    String::from_utf8(wire::encode_body(&wire::encode_request(&m, &c, call, "u1")))
                        .unwrap(),
                    "{message} {ctxt} {call:?}"
                );
                // The arguments given as their JSON text (as a client writes them for the
                // AMQP driver) make the same bytes.
                if let Some(args) = m.get("args").filter(|a| a.is_object()) {
                    let text = serde_json::to_string(args).unwrap();
                    let mut bare = m.clone();
                    bare.remove("args");
                    assert_eq!(
                        String::from_utf8(wire::encode_request_body_with_args(
                            &bare,
                            Some(&text),
                            &c,
                            call,
                            "u1"
                        ))
                        .unwrap(),
                        String::from_utf8(wire::encode_request_body(&m, &c, call, "u1")).unwrap(),
                        "{message} {ctxt} {call:?}"
                    );
                }
            }
        }
    }
    let failure: Failure =
        serde_json::from_value(json!({"class": "E", "module": "m", "message": "no \"x\"", "tb": [], "args": [], "kwargs": {}}))
            .unwrap();
    let result = json!({"r": ["é", 1, {"q": "\"\\"}]});
    for (r, f, ending) in [
        (Some(&result), None, true),
        (None, Some(&failure), true),
        (None, None, false),
        (Some(&Value::Null), None, true),
    ] {
        assert_eq!(
            wire::encode_reply_body(r, f, ending, "m1", "u1"),
            wire::encode_body(&wire::encode_reply(r, f, ending, "m1", "u1")),
        );
    }
}

/// Requests and replies read in one pass come out as reading the map and picking from it
/// does, error for error: every captured vector, and bodies crafted to hit each rule.
#[test]
fn bodies_read_in_one_pass_are_what_the_map_readers_make_of_them() {
    let mut bodies: Vec<String> = vectors()
        .iter()
        .map(|v| v["body"].as_str().unwrap().to_string())
        .collect();
    let inner_of = |v: Value| json!({"oslo.version": "2.0", "oslo.message": v.to_string()});
    for v in [
        json!({"method": "m"}),
        json!({"method": "m", "args": null}),
        json!({"method": "m", "args": [1]}),
        json!({"method": 5, "args": {}}),
        json!({"args": {}}),
        json!({"method": "m", "_msg_id": 5, "_reply_q": ["x"], "_unique_id": null}),
        json!({"method": "m", "_msg_id": "a", "_reply_q": "q".repeat(256)}),
        json!({"method": "m", "_timeout": "5", "_context_client_timeout": 9}),
        json!({"method": "m", "_timeout": 1e20, "_context_": 1, "_context_a\"b": {"c": [1]}}),
        json!({"method": "m", "oslo.message": "x", "ending": true, "result": 1}),
        json!({"result": {"a": 1}, "_msg_id": "x", "ending": true}),
        json!({"result": null, "failure": null, "_msg_id": "x"}),
        json!({"failure": "{\"class\": \"E\", \"module\": \"m\", \"message\": \"x\"}", "_msg_id": "x", "ending": 1}),
        json!({"failure": "not json", "_msg_id": "x"}),
        json!({"failure": 5, "_msg_id": "x"}),
        json!({"result": 1}),
    ] {
        bodies.push(v.to_string());
        bodies.push(inner_of(v).to_string());
    }
    for raw in [
        r#"{"oslo.version": "2.1", "oslo.message": "{}"}"#,
        r#"{"oslo.version": 2, "oslo.message": "{}"}"#,
        r#"{"oslo.version": "2.0"}"#,
        r#"{"oslo.version": "2.0", "oslo.message": {"method": "m"}}"#,
        r#"{"oslo.version": "2.0", "oslo.message": "[1]"}"#,
        r#"{"oslo.version": "2.0", "oslo.message": "{\"method\": "}"#,
        r#"{"method": "m", "method": "n", "_msg_id": "a", "_msg_id": "b"}"#,
        r#"{"\u006dethod": "m", "_context_\u0041": 1}"#,
        r#"[1, {"method": "m"}]"#,
        r#""text""#,
        "5",
        "null",
        "not json",
        r#"{"method": "m"} trailing"#,
        "",
    ] {
        bodies.push(raw.to_string());
    }
    // A lone surrogate in `args`: a request reads it and is refused; a reply does not read
    // `args` (see the next test).
    let surrogate = r#"{"method": "m", "args": {"s": "\ud800"}, "_msg_id": "x"}"#;
    assert!(wire::decode_request_body(surrogate.as_bytes()).is_err());
    assert!(wire::decode_reply_body(surrogate.as_bytes()).is_ok());
    let shown = |r: Result<Value, WireError>| r.map_err(|e| e.to_string());
    for b in &bodies {
        let b = b.as_bytes();
        let request = |r: wire::RequestWire| {
            json!({"m": r.message, "c": r.ctxt, "id": r.msg_id, "q": r.reply_q,
                   "t": r.call_monitor_timeout.map(|t| t.as_secs_f64()), "u": r.unique_id})
        };
        assert_eq!(
            shown(wire::decode_request_body(b).map(request)),
            shown(
                wire::decode_body(b)
                    .and_then(wire::decode_request)
                    .map(request)
            ),
            "{}",
            String::from_utf8_lossy(b)
        );
        let reply = |r: wire::ReplyWire| {
            json!({"r": r.result, "f": r.failure.map(|f| serde_json::to_value(f).unwrap()),
                   "e": r.ending, "id": r.msg_id})
        };
        assert_eq!(
            shown(wire::decode_reply_body(b).map(reply)),
            shown(
                wire::decode_body(b)
                    .and_then(|m| wire::decode_reply(&m))
                    .map(reply)
            ),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
}

/// A request member nobody reads is skipped, not built: nested deeper than the decoder
/// builds, it does not make the request malformed (Python reads it too), where a body read
/// whole as a map is refused.
#[test]
fn a_request_member_nobody_reads_is_skipped_unbuilt() {
    let body = format!(
        r#"{{"method": "m", "args": {{}}, "unknown": {}1{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    assert!(wire::decode_body(body.as_bytes()).is_err());
    let r = wire::decode_request_body(body.as_bytes()).unwrap();
    assert_eq!(r.message["method"], "m");
}

/// Notifications written from their parts are the bytes of their maps enveloped: message,
/// `_unique_id` and context merged in key order, with the same winner where names meet (the
/// context over the others, `_unique_id` over the message's).
#[test]
fn notifications_written_from_their_parts_are_the_bytes_of_their_maps() {
    let messages = [
        json!({"event_type": "e", "message_id": "m", "payload": {"a": [1, "é"]}, "priority": "INFO",
               "publisher_id": "p", "timestamp": "2026-01-01 00:00:00.000000"}),
        json!({}),
        json!({"_unique_id": "theirs", "_context_user": "theirs", "_a": 1, "_context_": 0,
               "_contextz": 2, "_d": 3, "_v": 4, "zz": 5, "_context_zz": 6}),
    ];
    let contexts = [
        json!({}),
        json!({"user": "ours", "request_id": "r", "": "empty"}),
        json!({"a": 1, "zz": {"n": null}, "\u{7f}": 2}),
    ];
    for message in &messages {
        for ctxt in &contexts {
            let (m, c) = (obj(message.clone()), obj(ctxt.clone()));
            assert_eq!(
                String::from_utf8(wire::encode_notification_body(&m, &c, "u1")).unwrap(),
                String::from_utf8(wire::encode_body(&wire::encode_notification(&m, &c, "u1")))
                    .unwrap(),
                "{message} {ctxt}"
            );
        }
    }
}

/// Notifications read in one pass come out as reading the map and splitting it does.
#[test]
fn notifications_read_in_one_pass_are_what_the_map_reader_makes_of_them() {
    let mut bodies: Vec<String> = vectors()
        .iter()
        .map(|v| v["body"].as_str().unwrap().to_string())
        .collect();
    for v in [
        json!({"event_type": "e", "_unique_id": 5, "_context_a": 1, "payload": {}}),
        json!({"_context_": {"x": [1]}, "oslo.message": "bare", "_unique_id": "u"}),
    ] {
        bodies.push(v.to_string());
        bodies.push(json!({"oslo.version": "2.0", "oslo.message": v.to_string()}).to_string());
    }
    bodies.extend([
        "[]".into(),
        "not json".into(),
        r#"{"oslo.version": "9"}"#.into(),
    ]);
    let shown = |r: Result<wire::NotificationWire, WireError>| {
        r.map(|n| json!({"m": n.message, "c": n.ctxt, "u": n.unique_id}))
            .map_err(|e| e.to_string())
    };
    for b in &bodies {
        let b = b.as_bytes();
        assert_eq!(
            shown(wire::decode_notification_body(b)),
            shown(wire::decode_body(b).map(wire::decode_notification)),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
}
