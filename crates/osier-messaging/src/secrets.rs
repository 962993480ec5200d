//! What must never reach a log line, an error or `Debug` output: values under sensitive keys,
//! at any depth of a context, a payload, a body or a failure's keyword arguments.
//!
//! A key is sensitive when, lower-cased, it contains one of oslo.utils' `strutils` sanitize
//! keys (`password`, `token`, `secret`, `auth_token`, `private_key`, `passphrase`, ...) or
//! `credential`, as oslo's `mask_dict_password` decides it. Unlike oslo, lists are searched too.
//!
//! ```
//! use osier_messaging::secrets::{is_sensitive_key, masked, Masked};
//! use serde_json::json;
//!
//! assert!(is_sensitive_key("X-Auth-Token") && is_sensitive_key("keystonecredential"));
//! let payload = json!({"user": "alice", "auth": {"password": "s3cret", "methods": ["password"]}});
//! assert_eq!(
//!     masked(&payload),
//!     json!({"user": "alice", "auth": {"password": "***", "methods": ["password"]}})
//! );
//! assert!(!format!("{:?}", Masked(&payload)).contains("s3cret"));
//! ```

use serde_json::{Map, Value};
use tracing::Metadata;
use tracing_subscriber::filter::FilterFn;

/// oslo.utils' `strutils._SANITIZE_KEYS` (lower case), and `credential`.
const SENSITIVE_KEYS: &[&str] = &[
    "adminpass",
    "admin_pass",
    "password",
    "admin_password",
    "auth_token",
    "new_pass",
    "auth_password",
    "secret_uuid",
    "secret",
    "sys_pswd",
    "token",
    "configdrive",
    "chappassword",
    "encrypted_key",
    "private_key",
    "fernetkey",
    "sslkey",
    "passphrase",
    "cephclusterfsid",
    "octaviaheartbeatkey",
    "rabbitcookie",
    "cephmanilaclientkey",
    "pacemakerremoteauthkey",
    "designaterndckey",
    "cephadminkey",
    "heatauthencryptionkey",
    "cephclientkey",
    "keystonecredential",
    "barbicansimplecryptokek",
    "cephrgwkey",
    "swifthashsuffix",
    "migrationsshkey",
    "cephmdskey",
    "cephmonkey",
    "chapsecret",
    "credential",
];

/// What a sensitive value is shown as.
pub const MASK: &str = "***";

/// Whether a value under `key` is a secret (see the module docs).
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE_KEYS.iter().any(|s| k.contains(s))
}

/// Replaces every value under a sensitive key in `v`, at any depth, by [`MASK`].
pub fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => mask_map(m),
        Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}

/// [`mask`] for a JSON object.
pub fn mask_map(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        if is_sensitive_key(k) {
            *v = Value::String(MASK.into());
        } else {
            mask(v);
        }
    }
}

/// `v` with every value under a sensitive key, at any depth, replaced by [`MASK`].
pub fn masked(v: &Value) -> Value {
    let mut v = v.clone();
    mask(&mut v);
    v
}

/// [`masked`] for a JSON object.
pub fn masked_map(m: &Map<String, Value>) -> Map<String, Value> {
    let mut m = m.clone();
    mask_map(&mut m);
    m
}

/// Shows a JSON value masked (see [`masked`]), as JSON, for `Debug` and `Display`.
pub struct Masked<'a>(pub &'a Value);

impl std::fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", masked(self.0))
    }
}

impl std::fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", masked(self.0))
    }
}

/// Shows a JSON object masked (see [`masked_map`]).
pub struct MaskedMap<'a>(pub &'a Map<String, Value>);

impl std::fmt::Debug for MaskedMap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Value::Object(masked_map(self.0)))
    }
}

/// A filter for the application's `tracing` subscriber that keeps lapin's secrets out of the
/// log: lapin (the AMQP client underneath) logs every frame at TRACE, the connection's
/// `Connection.StartOk` with the broker password among them, and the whole body of a message
/// the broker returned at WARN (target `lapin::returned_messages`; osier reports a returned
/// message itself, without the body). This filter drops both and lets everything else through.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(osier_messaging::secrets::lapin_secret_filter());
/// # let _ = subscriber;
/// ```
pub fn lapin_secret_filter() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    FilterFn::new(keeps_lapin_secrets_out as fn(&Metadata<'_>) -> bool)
}

fn keeps_lapin_secrets_out(m: &Metadata<'_>) -> bool {
    let t = m.target();
    let lapin = t.starts_with("lapin") || t.starts_with("amq_protocol");
    !(t.starts_with("lapin::returned_messages") || lapin && *m.level() == tracing::Level::TRACE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// oslo's keys match inside longer names, in any case; ordinary keys do not.
    #[test]
    fn sensitive_keys_match_as_oslo_does() {
        for k in [
            "password",
            "admin_password",
            "OS_PASSWORD",
            "auth_token",
            "X-Subject-Token",
            "trust_token",
            "secret_key",
            "ssh_private_key",
            "keystonecredential",
            "credentials",
        ] {
            assert!(is_sensitive_key(k), "{k}");
        }
        for k in ["user", "project_id", "request_id", "methods", "name"] {
            assert!(!is_sensitive_key(k), "{k}");
        }
    }

    /// Secrets two levels down, inside lists too, are masked; nothing else changes.
    #[test]
    fn secrets_are_masked_at_any_depth() {
        let v = json!({
            "user": "u",
            "auth": {"identity": {"password": {"user": {"password": "p1"}}}},
            "list": [{"token": "t1"}, "plain"],
            "count": 3
        });
        let m = masked(&v);
        assert_eq!(m["auth"]["identity"]["password"], json!(MASK));
        assert_eq!(m["list"], json!([{"token": MASK}, "plain"]));
        assert_eq!(
            (m["user"].clone(), m["count"].clone()),
            (json!("u"), json!(3))
        );
        let shown = format!("{:?} {}", Masked(&v), Masked(&v));
        assert!(!shown.contains("p1") && !shown.contains("t1"), "{shown}");
    }
}
