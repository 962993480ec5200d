//! `Target`: where a message goes, and what an endpoint offers (MSG-TGT-01..03).
//!
//! ```
//! use osier_messaging::Target;
//!
//! let client = Target::topic("compute").with_version("1.3");
//! let directed = client.clone().with_server("host-1");
//! assert_eq!(directed.server.as_deref(), Some("host-1"));
//! assert_eq!(directed.to_string(), "<Target topic=compute, server=host-1, version=1.3>");
//! ```

use std::fmt;

use crate::error::MessagingError;
use crate::version::Version;

/// oslo's `Target`: exchange, topic, namespace, version, server, fanout, legacy namespaces.
/// Builder-style `with_*` methods return a changed copy (oslo's `target(**overrides)`), which,
/// as in oslo, does not carry `legacy_namespaces` over (MSG-TGT-03).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Exchange; `None` means the transport's control exchange (`openstack`).
    pub exchange: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Namespace; `None` is the "null namespace".
    pub namespace: Option<String>,
    /// RPC API version, `X.Y[.Z]`.
    pub version: Option<Version>,
    /// A specific server.
    pub server: Option<String>,
    /// Deliver to every server on the topic.
    pub fanout: bool,
    /// Extra namespaces an endpoint accepts besides `namespace`.
    pub legacy_namespaces: Vec<Option<String>>,
}

impl Target {
    /// A target with just a topic.
    pub fn topic(topic: impl Into<String>) -> Self {
        Target {
            topic: Some(topic.into()),
            ..Target::default()
        }
    }

    /// The namespaces an endpoint with this target accepts: `[namespace] + legacy_namespaces`.
    pub fn accepted_namespaces(&self) -> Vec<Option<String>> {
        let mut v = vec![self.namespace.clone()];
        v.extend(self.legacy_namespaces.iter().cloned());
        v
    }

    /// Whether an endpoint with this target accepts `namespace`: its own or a legacy one
    /// (the test of [`accepted_namespaces`](Self::accepted_namespaces), made per request
    /// without building the list).
    pub fn accepts_namespace(&self, namespace: Option<&str>) -> bool {
        self.namespace.as_deref() == namespace
            || self
                .legacy_namespaces
                .iter()
                .any(|n| n.as_deref() == namespace)
    }

    fn copy(&self) -> Self {
        Target {
            legacy_namespaces: Vec::new(),
            ..self.clone()
        }
    }

    /// A copy with `exchange` set.
    pub fn with_exchange(self, exchange: impl Into<String>) -> Self {
        Target {
            exchange: Some(exchange.into()),
            ..self.copy()
        }
    }

    /// A copy with `topic` set.
    pub fn with_topic(self, topic: impl Into<String>) -> Self {
        Target {
            topic: Some(topic.into()),
            ..self.copy()
        }
    }

    /// A copy with `namespace` set.
    pub fn with_namespace(self, namespace: impl Into<String>) -> Self {
        Target {
            namespace: Some(namespace.into()),
            ..self.copy()
        }
    }

    /// A copy with `version` set; an invalid version string panics. Use
    /// [`try_with_version`](Target::try_with_version) for input from outside the program.
    pub fn with_version(self, version: &str) -> Self {
        match self.clone().try_with_version(version) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// A copy with `version` set, refusing strings that are not `int.int[.int]`.
    pub fn try_with_version(self, version: &str) -> Result<Self, MessagingError> {
        Ok(Target {
            version: Some(version.parse()?),
            ..self.copy()
        })
    }

    /// A copy with `version` cleared (oslo's `target(version=None)`).
    pub fn without_version(self) -> Self {
        Target {
            version: None,
            ..self.copy()
        }
    }

    /// A copy with `server` set.
    pub fn with_server(self, server: impl Into<String>) -> Self {
        Target {
            server: Some(server.into()),
            ..self.copy()
        }
    }

    /// A copy with `server` cleared.
    pub fn without_server(self) -> Self {
        Target {
            server: None,
            ..self.copy()
        }
    }

    /// A copy with `fanout` set.
    pub fn with_fanout(self, fanout: bool) -> Self {
        Target {
            fanout,
            ..self.copy()
        }
    }

    /// A copy that also accepts `legacy` namespaces.
    pub fn with_legacy_namespaces(mut self, legacy: Vec<Option<String>>) -> Self {
        self.legacy_namespaces = legacy;
        self
    }

    pub(crate) fn invalid(&self, reason: &str) -> MessagingError {
        MessagingError::InvalidTarget {
            target: Box::new(self.clone()),
            reason: reason.to_string(),
        }
    }

    /// The topic and server an RPC server listens on, or `InvalidTarget` naming the one that is
    /// missing (MSG-SRV-03). The one check of a server's target: the server refuses to start
    /// on it, and each driver reads its queue names through it.
    pub(crate) fn server_address(&self) -> Result<(&str, &str), MessagingError> {
        let topic = self
            .topic
            .as_deref()
            .ok_or_else(|| self.invalid("an RPC server needs a topic"))?;
        let server = self
            .server
            .as_deref()
            .ok_or_else(|| self.invalid("an RPC server needs a server"))?;
        Ok((topic, server))
    }

    /// The topic a notification listener's target listens on, or `InvalidTarget`.
    pub(crate) fn listen_topic(&self) -> Result<&str, MessagingError> {
        self.topic
            .as_deref()
            .ok_or_else(|| self.invalid("a notification listener needs a topic on every target"))
    }

    /// The topic, or `InvalidTarget("A topic is required to send")` (MSG-URL-07).
    pub(crate) fn require_topic(&self) -> Result<&str, MessagingError> {
        self.topic
            .as_deref()
            .ok_or_else(|| self.invalid("A topic is required to send"))
    }
}

/// Lists only the fields that are set, like oslo's repr (MSG-TGT-03).
impl fmt::Display for Target {
    /// `<Target topic=compute, server=host-1>`: the fields that are set, written straight to
    /// the formatter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut part = |f: &mut fmt::Formatter<'_>, k: &str, v: &str| {
            let s = std::mem::replace(&mut sep, ", ");
            [s, k, "=", v].iter().try_for_each(|p| f.write_str(p))
        };
        f.write_str("<Target ")?;
        if let Some(v) = &self.exchange {
            part(f, "exchange", v)?;
        }
        if let Some(v) = &self.topic {
            part(f, "topic", v)?;
        }
        if let Some(v) = &self.namespace {
            part(f, "namespace", v)?;
        }
        if let Some(v) = &self.server {
            part(f, "server", v)?;
        }
        if let Some(v) = &self.version {
            part(f, "version", "")?;
            write!(f, "{v}")?;
        }
        if self.fanout {
            part(f, "fanout", "True")?;
        }
        f.write_str(">")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSG-TGT-03 / TEST-MSG-02: overrides copy every field but legacy namespaces; clearing works;
    /// the display lists only set fields; equality is field by field.
    #[test]
    fn overrides_copy_fields_but_not_legacy_namespaces() {
        let t = Target::topic("t")
            .with_exchange("e")
            .with_namespace("ns")
            .with_version("1.2")
            .with_server("s")
            .with_legacy_namespaces(vec![None]);
        assert_eq!(t.accepted_namespaces(), vec![Some("ns".to_string()), None]);
        assert!(t.accepts_namespace(Some("ns")) && t.accepts_namespace(None));
        assert!(!t.accepts_namespace(Some("other")));
        let t2 = t.clone().with_fanout(true);
        assert_eq!(t2.accepted_namespaces(), vec![Some("ns".to_string())]);
        assert!(!t2.accepts_namespace(None));
        assert_eq!(t2.exchange.as_deref(), Some("e"));
        assert!(t2.fanout);
        let cleared = t2.without_server().without_version();
        assert_eq!(cleared.server, None);
        assert_eq!(cleared.version, None);
        assert_eq!(
            cleared.to_string(),
            "<Target exchange=e, topic=t, namespace=ns, fanout=True>"
        );
        assert_eq!(Target::topic("a"), Target::topic("a"));
        assert_ne!(Target::topic("a"), Target::topic("a").with_server("x"));
    }

    /// MSG-RPC-02: a bad version string is a typed error.
    #[test]
    fn bad_version_is_refused() {
        assert!(Target::topic("t").try_with_version("5").is_err());
    }
}
