//! Errors of osier-messaging: oslo.messaging's exception tree (MSG-ERR-05) as one enum, and the
//! failure a server sends back for a failed call (MSG-ERR-01..04).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::target::Target;

/// Everything that can go wrong in osier-messaging.
///
/// | oslo.messaging | here |
/// |---|---|
/// | `InvalidTransportURL` | [`InvalidTransportUrl`](MessagingError::InvalidTransportUrl) |
/// | `DriverLoadFailure` | [`DriverLoadFailure`](MessagingError::DriverLoadFailure) |
/// | `InvalidTarget` | [`InvalidTarget`](MessagingError::InvalidTarget) |
/// | `MessagingTimeout` | [`Timeout`](MessagingError::Timeout) |
/// | `RPCVersionCapError` | [`VersionCap`](MessagingError::VersionCap) |
/// | `NoSuchMethod`, `UnsupportedVersion` | [`NoSuchMethod`](MessagingError::NoSuchMethod), [`UnsupportedVersion`](MessagingError::UnsupportedVersion) |
/// | `RemoteError` (and the `_Remote` re-created classes) | [`Remote`](MessagingError::Remote) with the [`Failure`] |
/// | `ExecutorLoadFailure` | [`ExecutorLoadFailure`](MessagingError::ExecutorLoadFailure) |
/// | `MessageDeliveryFailure`, `ClientSendError` | [`Delivery`](MessagingError::Delivery) |
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessagingError {
    /// The transport URL could not be parsed. The URL is shown with passwords redacted.
    #[error("invalid transport URL {url}: {reason}")]
    InvalidTransportUrl {
        /// The URL, passwords replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No driver for this scheme.
    #[error("no transport driver {driver:?}: {reason}")]
    DriverLoadFailure {
        /// The driver name (the scheme up to its first `+`).
        driver: String,
        /// Why it could not be loaded.
        reason: String,
    },
    /// A target lacks what the operation needs (MSG-URL-07, MSG-RPC-05).
    #[error("invalid target {target}: {reason}")]
    InvalidTarget {
        /// The target.
        target: Box<Target>,
        /// What is wrong with it.
        reason: String,
    },
    /// A version string is not `int.int[.int]` (MSG-RPC-02).
    #[error("invalid version {0:?}: expected int.int[.int]")]
    InvalidVersion(String),
    /// No reply (and no heartbeat, with a call monitor) in time (MSG-RPC-05, MSG-RPC-08).
    #[error("timed out waiting for a reply: {0}")]
    Timeout(String),
    /// The message's version is above the client's version cap, or has none while a cap is set
    /// (MSG-RPC-06).
    #[error(
        "requested message version {version:?} is incompatible with the version cap {version_cap}"
    )]
    VersionCap {
        /// The message's version (`None`: the message has none).
        version: Option<String>,
        /// The cap.
        version_cap: String,
    },
    /// No compatible endpoint has the method (MSG-DISP-03).
    #[error("Endpoint does not support RPC method {method}")]
    NoSuchMethod {
        /// The method.
        method: String,
    },
    /// No endpoint is compatible with the namespace and version (MSG-DISP-03).
    #[error("Endpoint does not support RPC version {version}. Attempted method: {method}")]
    UnsupportedVersion {
        /// The requested version.
        version: String,
        /// The method.
        method: String,
    },
    /// The server's endpoint failed; the failure as the server described it (MSG-ERR-02).
    #[error("Remote error: {} {}", .0.class, .0.message)]
    Remote(Box<Failure>),
    /// An executor name that does not exist (MSG-SRV-01).
    #[error("executor {0:?} is not available (tokio, green, threads)")]
    ExecutorLoadFailure(String),
    /// The message could not be handed to the transport (the caller is gone, the server stopped
    /// before its reply went out).
    #[error("message delivery failed: {0}")]
    Delivery(String),
    /// A message, its arguments or a result could not be serialized or deserialized. `source()`
    /// is serde's or the wire format's error, when one caused it.
    #[error("serialization failed: {reason}{}", caused_by(.source))]
    Serialization {
        /// What was being (de)serialized, or what is wrong with it.
        reason: String,
        /// The error underneath.
        #[source]
        source: Option<Cause>,
    },
    /// A message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A notification priority that does not exist.
    #[error("unknown notification priority {0:?}")]
    UnknownPriority(String),
    /// A notification filter's pattern is not a valid regular expression.
    #[error("invalid notification filter pattern {pattern:?}: {reason}")]
    InvalidFilter {
        /// The pattern.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// A server lifecycle step waited too long for the step before it (MSG-SRV-05).
    #[error("task timeout: {0}")]
    TaskTimeout(String),
    /// The transport or server was closed.
    #[error("the transport is closed")]
    Closed,
    /// The bridge between green threads and tokio failed: the default bridge could not start,
    /// or a green call could not wait for its future (`call_green` on a tokio thread, a bridge
    /// shut down). `source()` is the bridge's own error.
    #[error("the green/async bridge failed: {0}")]
    Bridge(#[source] Cause),
    /// A config file could not be read, or a value in it does not parse.
    #[error("configuration: {reason}{}", caused_by(.source))]
    Config {
        /// What is wrong, naming the file, section and option where known (never a value that
        /// may hold a secret).
        reason: String,
        /// The error underneath (reading the file).
        #[source]
        source: Option<Cause>,
    },
    /// An option set to a value that cannot work.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: String,
        /// Why the value was refused.
        reason: String,
    },
    /// The broker refused or lost what the driver asked for (RabbitMQ driver).
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What went wrong talking to the broker, with the broker's own reason. Hosts are shown as
/// `host:port`, never with credentials.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// No host of the URL accepted a connection (refused, unresolvable, timed out). `reason`
    /// names each host tried and why it failed; `source()` is the last host's error.
    #[error("broker unreachable: {reason}")]
    Unreachable {
        /// Each host and its failure, `host:port: why`, separated by `; `.
        reason: String,
        /// The last host's error.
        #[source]
        source: Option<Cause>,
    },
    /// The broker refused the credentials (ACCESS_REFUSED).
    #[error("broker refused the login of user {user:?} on {host}: {reason}")]
    AuthRefused {
        /// The host.
        host: String,
        /// The user name (not the password).
        user: String,
        /// The broker's reason.
        reason: String,
    },
    /// The virtual host does not exist or the user may not use it.
    #[error("virtual host {vhost:?} refused on {host}: {reason}")]
    VhostRefused {
        /// The host.
        host: String,
        /// The virtual host.
        vhost: String,
        /// The broker's reason.
        reason: String,
    },
    /// The broker closed the channel (an inequivalent declare, a missing exchange...).
    #[error("the broker closed the channel: {code} {reason}")]
    ChannelClosed {
        /// The AMQP reply code (406 PRECONDITION_FAILED, 404 NOT_FOUND, ...).
        code: u16,
        /// The operation and the broker's reply text.
        reason: String,
        /// The AMQP client's error.
        #[source]
        source: Option<Cause>,
    },
    /// The connection broke and could not be re-established within the retries or the timeout,
    /// or messages handed to it were never confirmed.
    #[error("connection to the broker lost: {reason}{}", caused_by(.source))]
    ConnectionLost {
        /// What was being done, or what was lost.
        reason: String,
        /// The AMQP client's error, when one caused it.
        #[source]
        source: Option<Cause>,
    },
    /// A reply could not be routed to its queue for `kombu_missing_consumer_retry_timeout`
    /// (MSG-AMQP-08), or a heartbeat found the queue gone.
    #[error("reply queue {0:?} does not exist (the caller is gone)")]
    Unroutable(String),
    /// With `at_least_once`, the broker returned a request no queue is bound for (oslo's
    /// MessageUndeliverable, MSG-RPC-09).
    #[error(
        "message undeliverable: nothing consumes exchange {exchange:?} routing key {routing_key:?}"
    )]
    Undeliverable {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The broker refused to take the message (a negative publisher confirm).
    #[error("the broker did not accept the message (nack)")]
    Nacked,
    /// TLS could not be set up: the CA file cannot be read, or the handshake failed (an
    /// untrusted certificate...).
    #[error("TLS: {reason}{}", caused_by(.source))]
    Tls {
        /// The host or file concerned.
        reason: String,
        /// The I/O or TLS error underneath.
        #[source]
        source: Option<Cause>,
    },
    /// An exchange name, queue name or routing key longer than AMQP can carry (255 bytes);
    /// refused before anything was sent.
    #[error("AMQP name {name} is {len} bytes; AMQP names hold at most 255")]
    NameTooLong {
        /// The name (escaped and cut for display).
        name: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// A failure as a server sends it back (oslo's serialized exception, MSG-ERR-01): `class`,
/// `module`, `message`, `tb`, `args`, `kwargs`. Its `Debug` masks secrets among the
/// arguments.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The exception class name (`NoSuchMethod`, `ValueError`, a Rust error type name...).
    pub class: String,
    /// Its module (`oslo_messaging.rpc.dispatcher`, `builtins`, a Rust module path...).
    pub module: String,
    /// `str(exc)`.
    pub message: String,
    /// Formatted traceback lines (for a Rust panic: the panic location, when known).
    #[serde(default)]
    pub tb: Vec<String>,
    /// Positional arguments of the exception.
    #[serde(default)]
    pub args: Vec<serde_json::Value>,
    /// Keyword arguments of the exception.
    #[serde(default)]
    pub kwargs: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args = serde_json::Value::Array(self.args.clone());
        f.debug_struct("Failure")
            .field("class", &self.class)
            .field("module", &self.module)
            .field("message", &self.message)
            .field("tb", &self.tb)
            .field("args", &crate::secrets::Masked(&args))
            .field("kwargs", &crate::secrets::MaskedMap(&self.kwargs))
            .finish()
    }
}

impl Failure {
    /// A failure with a class, module and message and no traceback or arguments.
    pub fn new(class: &str, module: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Failure {
            class: class.to_string(),
            module: module.to_string(),
            args: vec![serde_json::Value::String(message.clone())],
            message,
            tb: Vec::new(),
            kwargs: serde_json::Map::new(),
        }
    }

    /// The failure for a dispatcher error, with oslo's class and module names, so a Python
    /// client sees what a Python server would send (MSG-ERR-04).
    pub fn from_error(e: &MessagingError) -> Self {
        let disp = "oslo_messaging.rpc.dispatcher";
        match e {
            MessagingError::NoSuchMethod { method } => {
                let mut f = Failure::new("NoSuchMethod", disp, e.to_string());
                f.args = vec![serde_json::Value::String(method.clone())];
                f
            }
            MessagingError::UnsupportedVersion { version, method } => {
                let mut f = Failure::new("UnsupportedVersion", disp, e.to_string());
                f.args = vec![version.clone().into()];
                f.kwargs.insert("method".into(), method.clone().into());
                f
            }
            MessagingError::Remote(f) => (**f).clone(),
            other => Failure::new(
                "MessagingException",
                "oslo_messaging.exceptions",
                other.to_string(),
            ),
        }
    }

    /// The caller's error for this failure: the dispatcher's `NoSuchMethod` and
    /// `UnsupportedVersion` (whatever module names them) as their own variants, with the method
    /// and version read from the failure; anything else as [`MessagingError::Remote`].
    ///
    /// ```
    /// use osier_messaging::{Failure, MessagingError};
    ///
    /// // As a Python server sends it: the message is the only argument.
    /// let f = Failure::new(
    ///     "NoSuchMethod",
    ///     "oslo_messaging.rpc.dispatcher",
    ///     "Endpoint does not support RPC method resize",
    /// );
    /// assert_eq!(f.into_error(), MessagingError::NoSuchMethod { method: "resize".into() });
    /// ```
    pub fn into_error(self) -> MessagingError {
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        match self.class.as_str() {
            "NoSuchMethod" => {
                let method = text(self.kwargs.get("method"))
                    .or_else(|| {
                        self.message
                            .strip_prefix("Endpoint does not support RPC method ")
                            .map(str::to_string)
                    })
                    .unwrap_or(self.message);
                MessagingError::NoSuchMethod { method }
            }
            "UnsupportedVersion" => {
                let rest = self
                    .message
                    .strip_prefix("Endpoint does not support RPC version ");
                let (version, method) = match rest.map(|r| r.split_once(". Attempted method: ")) {
                    Some(Some((v, m))) => (v.to_string(), m.to_string()),
                    Some(None) => (rest.unwrap_or_default().to_string(), String::new()),
                    None => (
                        text(self.args.first()).unwrap_or_default(),
                        text(self.kwargs.get("method")).unwrap_or_default(),
                    ),
                };
                MessagingError::UnsupportedVersion { version, method }
            }
            _ => MessagingError::Remote(Box::new(self)),
        }
    }

    /// oslo strips a `_Remote` suffix from class and module when both carry it (MSG-ERR-01).
    pub fn strip_remote_suffix(mut self) -> Self {
        if let (Some(c), Some(m)) = (
            self.class.strip_suffix("_Remote"),
            self.module.strip_suffix("_Remote"),
        ) {
            let (c, m) = (c.to_string(), m.to_string());
            self.class = c;
            self.module = m;
        }
        self
    }
}

/// The error behind another, shared so that the errors holding it stay `Clone`: its `Display`
/// is the error's own, and `source()` goes on down its chain. Two causes are equal when they are
/// the same error.
///
/// An error of this crate that holds a cause prints the cause's message after its own words, so
/// that a log line showing only the error (`error = %e`) still says what happened underneath;
/// `source()` leads to the cause itself for code that inspects or downcasts it.
///
/// ```
/// use std::error::Error;
/// use osier_messaging::MessagingError;
///
/// let bad = serde_json::from_str::<u32>("\"x\"").unwrap_err();
/// let e = MessagingError::serialization("the reply", bad);
/// assert!(e.to_string().starts_with("serialization failed: the reply: invalid type"));
/// let cause = e.source().unwrap();
/// assert!(cause.to_string().starts_with("invalid type"));
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Keeps `e` as a cause.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(e))
    }

    /// The error itself (to downcast it, for example).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cause {}

/// `": <cause>"` when there is a cause, nothing otherwise: the tail of a `Display` that shows
/// its cause.
fn caused_by(source: &Option<Cause>) -> String {
    match source {
        Some(c) => format!(": {c}"),
        None => String::new(),
    }
}

impl MessagingError {
    /// A serialization error caused by `source` while handling `what` (`"the reply"`, `"the
    /// arguments of method m"`...).
    pub fn serialization(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        MessagingError::Serialization {
            reason: what.into(),
            source: Some(Cause::new(source)),
        }
    }
}

impl BrokerError {
    /// The connection was lost while doing `what`, because of `source` (the AMQP client's
    /// error).
    pub(crate) fn connection_lost(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BrokerError::ConnectionLost {
            reason: what.into(),
            source: Some(Cause::new(source)),
        }
    }

    /// Messages or confirms were lost for a reason that is no error of the client's: `reason`
    /// says which.
    pub(crate) fn lost(reason: impl Into<String>) -> Self {
        BrokerError::ConnectionLost {
            reason: reason.into(),
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatcher's failures come back as their own variants from a Python server (the
    /// message is all it sends) and from osier's (which adds the method as a keyword).
    #[test]
    fn dispatcher_failures_become_their_variants() {
        let disp = "oslo_messaging.rpc.dispatcher";
        let py = Failure::new(
            "UnsupportedVersion",
            disp,
            "Endpoint does not support RPC version 3.0. Attempted method: echo",
        );
        assert_eq!(
            py.into_error(),
            MessagingError::UnsupportedVersion {
                version: "3.0".into(),
                method: "echo".into()
            }
        );
        let ours = Failure::from_error(&MessagingError::NoSuchMethod { method: "m".into() });
        assert_eq!(
            ours.into_error(),
            MessagingError::NoSuchMethod { method: "m".into() }
        );
        let other = Failure::new("ValueError", "builtins", "bad");
        assert_eq!(
            other.clone().into_error(),
            MessagingError::Remote(Box::new(other))
        );
    }
}
