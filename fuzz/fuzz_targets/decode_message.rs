//! Any bytes a broker delivers go through the same decoders the driver uses: the envelope, then
//! the request, reply and notification readers. None may panic (issue 5).
#![no_main]

use libfuzzer_sys::fuzz_target;
use osier_messaging::amqp::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(inner) = wire::decode_body(data) {
        let _ = wire::decode_reply(&inner);
        let _ = wire::decode_notification(inner.clone());
        if let Ok(req) = wire::decode_request(inner) {
            // What was decoded encodes again.
            let call = match (&req.msg_id, &req.reply_q) {
                (Some(m), Some(q)) => Some(wire::CallInfo {
                    msg_id: m,
                    reply_q: q,
                    call_monitor_timeout: req.call_monitor_timeout,
                }),
                _ => None,
            };
            let again = wire::encode_request(&req.message, &req.ctxt, call, "x");
            let _ = wire::encode_body(&again);
        }
    }
});
