//! `TransportUrl`: oslo.messaging's transport URL (MSG-URL-01..04).
//!
//! ```
//! use osier_messaging::TransportUrl;
//!
//! let url: TransportUrl = "rabbit://guest:s%26cret@h1:5672,h2/vhost?heartbeat=30".parse().unwrap();
//! assert_eq!(url.driver(), "rabbit");
//! assert_eq!(url.hosts()[0].password.as_deref(), Some("s&cret"));
//! assert_eq!(url.virtual_host(), Some("vhost"));
//! // the password never shows in Display or Debug
//! assert_eq!(url.to_string(), "rabbit://guest:***@h1:5672,h2/vhost?heartbeat=30");
//! assert!(!format!("{url:?}").contains("s&cret"));
//! // ... but the exact URL can be rebuilt on purpose
//! assert_eq!(url.to_url_string(), "rabbit://guest:s%26cret@h1:5672,h2/vhost?heartbeat=30");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::MessagingError;

/// Python's `quote(s, safe='')`: everything but `A-Za-z0-9_.-~` is encoded.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');
/// Python's `quote(s)` with its default `safe='/'`.
const PATH: &AsciiSet = &USERINFO.remove(b'/');
/// Python's `quote_plus` as used by `urlencode` (a space becomes `+`, handled separately).
const QUERY: &AsciiSet = USERINFO;

/// One broker in a transport URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransportHost {
    /// Host name or address (IPv6 without brackets); may be empty (`u:p@` with no host).
    pub hostname: String,
    /// Port, when given.
    pub port: Option<u16>,
    /// User name, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded. Never shown by `Display` or `Debug`.
    pub password: Option<String>,
}

impl fmt::Debug for TransportHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportHost")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A parsed transport URL: `driver://[user[:pass]@]host[:port][,...]/[virtual_host][?query]`.
///
/// Equality and hashing use the transport, virtual host and hosts, not the query (MSG-URL-03).
#[derive(Clone)]
pub struct TransportUrl {
    transport: String,
    hosts: Vec<TransportHost>,
    virtual_host: Option<String>,
    query: BTreeMap<String, String>,
}

impl PartialEq for TransportUrl {
    fn eq(&self, o: &Self) -> bool {
        self.transport == o.transport
            && self.virtual_host == o.virtual_host
            && self.hosts == o.hosts
    }
}
impl Eq for TransportUrl {}
impl std::hash::Hash for TransportUrl {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.transport.hash(h);
        self.virtual_host.hash(h);
        self.hosts.hash(h);
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn bad(url: &str, why: impl Into<String>) -> MessagingError {
    MessagingError::InvalidTransportUrl {
        url: redact(url),
        reason: why.into(),
    }
}

/// Replaces passwords in a raw URL string by `***`, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (netloc, tail) = rest.split_at(end);
    let hosts: Vec<String> = netloc
        .split(',')
        .map(|h| match h.rsplit_once('@') {
            Some((cred, host)) => match cred.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => h.to_string(),
            },
            None => h.to_string(),
        })
        .collect();
    format!("{scheme}://{}{tail}", hosts.join(","))
}

fn parse_host(raw: &str, url: &str) -> Result<TransportHost, MessagingError> {
    let (cred, hostport) = match raw.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, raw),
    };
    let (username, password) = match cred {
        None => (None, None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) => (Some(decode(u)), Some(decode(p))),
            None => (Some(decode(c)), None),
        },
    };
    let (hostname, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(url, "unterminated IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(bad(
                    url,
                    format!("unexpected text after IPv6 host: {after:?}"),
                ))
            }
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| bad(url, format!("invalid port {p:?}")))?,
        ),
    };
    Ok(TransportHost {
        hostname,
        port,
        username,
        password,
    })
}

impl FromStr for TransportUrl {
    type Err = MessagingError;

    fn from_str(url: &str) -> Result<Self, MessagingError> {
        let (scheme, rest) = match url.split_once(':') {
            Some((s, r)) if !s.is_empty() && !s.contains('/') => (s, r),
            _ => return Err(bad(url, "No scheme specified")),
        };
        let (before_query, query_str) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (netloc, path) = match before_query.strip_prefix("//") {
            Some(r) => match r.find('/') {
                Some(i) => (&r[..i], Some(&r[i..])),
                None => (r, None),
            },
            None => ("", (!before_query.is_empty()).then_some(before_query)),
        };
        let virtual_host = path.map(|p| decode(p.strip_prefix('/').unwrap_or(p)));
        let mut hosts = Vec::new();
        for raw in netloc.split(',').filter(|h| !h.is_empty()) {
            hosts.push(parse_host(raw, url)?);
        }
        let with_creds = hosts.iter().filter(|h| h.username.is_some()).count();
        if with_creds != 0 && with_creds != hosts.len() {
            tracing::warn!(url = %redact(url), "transport URL mixes hosts with and without credentials");
        }
        let mut query: BTreeMap<String, String> = BTreeMap::new();
        for pair in query_str.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")));
            query
                .entry(k)
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v)
                })
                .or_insert(v);
        }
        Ok(TransportUrl {
            transport: scheme.to_string(),
            hosts,
            virtual_host,
            query,
        })
    }
}

impl TransportUrl {
    /// The scheme as written (`kombu+memory`).
    pub fn transport(&self) -> &str {
        &self.transport
    }

    /// The driver name: the scheme up to its first `+` (MSG-URL-04).
    pub fn driver(&self) -> &str {
        self.transport.split('+').next().unwrap_or(&self.transport)
    }

    /// The hosts, in URL order.
    pub fn hosts(&self) -> &[TransportHost] {
        &self.hosts
    }

    /// The percent-decoded virtual host: `None` when the URL has no path at all.
    pub fn virtual_host(&self) -> Option<&str> {
        self.virtual_host.as_deref()
    }

    /// Query parameters; a key given several times has its values joined with commas.
    pub fn query(&self) -> &BTreeMap<String, String> {
        &self.query
    }

    fn format(&self, show_password: bool) -> String {
        let mut s = format!("{}://", self.transport);
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                let mut out = String::new();
                if let Some(u) = &h.username {
                    out.push_str(&utf8_percent_encode(u, USERINFO).to_string());
                    if let Some(p) = &h.password {
                        out.push(':');
                        if show_password {
                            out.push_str(&utf8_percent_encode(p, USERINFO).to_string());
                        } else {
                            out.push_str("***");
                        }
                    }
                    out.push('@');
                }
                if h.hostname.contains(':') {
                    out.push_str(&format!("[{}]", h.hostname));
                } else {
                    out.push_str(&h.hostname);
                }
                if let Some(p) = h.port {
                    out.push_str(&format!(":{p}"));
                }
                out
            })
            .collect();
        s.push_str(&hosts.join(","));
        s.push('/');
        if let Some(v) = &self.virtual_host {
            s.push_str(&utf8_percent_encode(v, PATH).to_string());
        }
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| {
                    let enc = |x: &str| {
                        utf8_percent_encode(x, QUERY)
                            .to_string()
                            .replace("%20", "+")
                    };
                    format!("{}={}", enc(k), enc(v))
                })
                .collect();
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }

    /// The URL with the passwords in clear (MSG-URL-02's format). Never log this.
    pub fn to_url_string(&self) -> String {
        self.format(true)
    }
}

/// Formats the URL with every password replaced by `***` (MSG-URL-03, redacted).
impl fmt::Display for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(false))
    }
}

impl fmt::Debug for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportUrl({})", self.format(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TransportUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn host(h: &str, port: Option<u16>, u: Option<&str>, pw: Option<&str>) -> TransportHost {
        TransportHost {
            hostname: h.into(),
            port,
            username: u.map(Into::into),
            password: pw.map(Into::into),
        }
    }

    /// MSG-URL-01 / TEST-MSG-01: the parse table.
    #[test]
    fn parse_table() {
        let u = p("foo:");
        assert_eq!(
            (u.transport(), u.hosts().len(), u.virtual_host()),
            ("foo", 0, None)
        );
        assert_eq!(p("foo://host").virtual_host(), None);
        assert_eq!(p("foo://host/").virtual_host(), Some(""));
        assert_eq!(p("foo:////").virtual_host(), Some("/"));
        assert_eq!(p("foo://host//").virtual_host(), Some("/"));
        assert_eq!(p("foo://host/vh%2Fx").virtual_host(), Some("vh/x"));
        assert_eq!(
            p("foo://u%40x:p%3Aw@host:1234/").hosts()[0],
            host("host", Some(1234), Some("u@x"), Some("p:w"))
        );
        // credentials split at the LAST '@': a user name may contain '@'
        assert_eq!(
            p("foo://a@b:c@host/").hosts()[0],
            host("host", None, Some("a@b"), Some("c"))
        );
        assert_eq!(
            p("foo://[ffff::1]:1234/").hosts()[0],
            host("ffff::1", Some(1234), None, None)
        );
        assert_eq!(
            p("foo://[ffff::1]/").hosts()[0],
            host("ffff::1", None, None, None)
        );
        let two = p("foo://u1:p1@h1:1000,,u2:p2@h2:2000/");
        assert_eq!(two.hosts().len(), 2, "empty pieces are skipped");
        assert_eq!(
            two.hosts()[1],
            host("h2", Some(2000), Some("u2"), Some("p2"))
        );
        assert_eq!(
            p("foo://u:p@/").hosts()[0],
            host("", None, Some("u"), Some("p"))
        );
        assert_eq!(p("foo://h/?a=1&a=2&b=x").query()["a"], "1,2");
    }

    /// MSG-URL-01: a missing scheme and a non-numeric port are typed errors.
    #[test]
    fn bad_urls_are_typed_errors() {
        for bad in ["", "//host/", ":x"] {
            let e = bad.parse::<TransportUrl>();
            assert!(e.is_err(), "{bad} should fail");
        }
        let e = "foo://u:secret@host:abc/"
            .parse::<TransportUrl>()
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("invalid port"), "{text}");
        assert!(!text.contains("secret"), "password leaked: {text}");
    }

    /// MSG-URL-02 / TEST-MSG-01: the format table, passwords included on purpose.
    #[test]
    fn format_table() {
        assert_eq!(p("t:////vhost").to_url_string(), "t:////vhost");
        assert_eq!(p("t://b%24:s%26@h/").to_url_string(), "t://b%24:s%26@h/");
        assert_eq!(
            p("t://b1:s1@h1:1000,b2:s2@h2:2000/").to_url_string(),
            "t://b1:s1@h1:1000,b2:s2@h2:2000/"
        );
        assert_eq!(
            p("t://[ffff::1]:5672/").to_url_string(),
            "t://[ffff::1]:5672/"
        );
        assert_eq!(p("t://h").to_url_string(), "t://h/");
    }

    /// MSG-URL-03: equality ignores the query; the password is redacted everywhere it is shown.
    #[test]
    fn equality_ignores_query_and_password_is_redacted() {
        assert_eq!(p("t://u:p@h/v?a=1"), p("t://u:p@h/v?b=2"));
        assert_ne!(p("t://u:p@h/v"), p("t://u:p@h/w"));
        let u = p("rabbit://me:topsecret@h1,me:topsecret@h2/");
        for shown in [u.to_string(), format!("{u:?}"), format!("{:?}", u.hosts())] {
            assert!(!shown.contains("topsecret"), "{shown}");
        }
    }

    /// MSG-URL-04: the driver is the scheme up to the first '+'.
    #[test]
    fn driver_is_scheme_before_plus() {
        assert_eq!(p("kombu+memory://").driver(), "kombu");
        assert_eq!(p("memory://").driver(), "memory");
    }
}
