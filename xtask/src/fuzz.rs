//! `cargo xtask fuzz`: the cargo-fuzz target of the inbound path, seeded from the captured
//! oslo messages, with a dictionary.

use std::process::Command;

use crate::{root, run, target_dir};

/// Tokens that reach the inbound path's corners quickly (numbers no duration holds, names of
/// the members that matter, escapes Python's json writes).
pub(crate) const FUZZ_DICTIONARY: &str = r#"
"\x22_timeout\x22"
"\x22_reply_q\x22"
"\x22_msg_id\x22"
"\x22_unique_id\x22"
"\x22oslo.version\x22"
"\x22oslo.message\x22"
"\x222.0\x22"
"\x22method\x22"
"\x22args\x22"
"\x22namespace\x22"
"\x22version\x22"
"\x22priority\x22"
"\x22event_type\x22"
"\x22failure\x22"
"\x22ending\x22"
"1e20"
"1e308"
"-1e400"
"\x5cud800"
"\x5cudc00"
"\x5cu0000"
"[[[[[[[["
"{\x22a\x22:{\x22a\x22:"
"#;

/// Writes the captured oslo messages as seeds (one per queue kind) and the dictionary, then
/// runs the inbound-path fuzz target for `--seconds N` (default 600) or `--runs N` executions.
pub(crate) fn fuzz(rest: &[String]) -> Result<(), String> {
    let limit = match rest {
        [] => "-max_total_time=600".to_string(),
        [flag, n] if flag == "--seconds" => {
            let n: u64 = n.parse().map_err(|_| "--seconds takes a number")?;
            format!("-max_total_time={n}")
        }
        [flag, n] if flag == "--runs" => {
            let n: u64 = n.parse().map_err(|_| "--runs takes a number")?;
            format!("-runs={n}")
        }
        _ => return Err("usage: cargo xtask fuzz [--seconds N | --runs N]".into()),
    };
    let corpus = root().join("fuzz/corpus/inbound_delivery");
    std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(
        root().join("crates/osier-messaging/tests/data/oslo-wire-vectors.json"),
    )
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    for vec in v["vectors"].as_array().into_iter().flatten() {
        if let (Some(name), Some(body)) = (vec["name"].as_str(), vec["body"].as_str()) {
            // The message bare too (the driver accepts both forms), so that the dictionary's
            // member names match it as they are, unescaped.
            let bare = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["oslo.message"].as_str().map(str::to_string));
            let forms = [Some(("", body.to_string())), bare.map(|b| ("-bare", b))];
            for (suffix, text) in forms.into_iter().flatten() {
                // The first byte chooses the queue kind: 0 request, 1 notification, 2 reply.
                for kind in 0u8..3 {
                    let mut seed = vec![kind];
                    seed.extend_from_slice(text.as_bytes());
                    std::fs::write(corpus.join(format!("{name}{suffix}-{kind}")), seed)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let dict = target_dir().join("xtask/inbound.dict");
    std::fs::create_dir_all(target_dir().join("xtask")).map_err(|e| e.to_string())?;
    std::fs::write(&dict, FUZZ_DICTIONARY).map_err(|e| e.to_string())?;
    run(
        "cargo fuzz (inbound_delivery)",
        Command::new("cargo")
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", "inbound_delivery", "--"])
            .arg(format!("-dict={}", dict.display()))
            .arg(limit),
    )
}
