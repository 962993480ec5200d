//! The RPC dispatcher: oslo's exact rules for choosing an endpoint (MSG-DISP-01..07), and the
//! decision a server makes for every request it receives ([`Dispatcher::decide`]): run an
//! endpoint's method, answer a ping, answer with an error, or refuse a request that cannot be
//! dispatched at all.
//!
//! ```
//! use osier_messaging::rpc::dispatcher::{AccessPolicy, Decision, Dispatcher};
//! use osier_messaging::{Endpoint, EndpointError};
//! use serde_json::json;
//!
//! let d = Dispatcher::new(
//!     vec![Endpoint::new("e").method("add", |_c, a: serde_json::Value| Ok::<_, EndpointError>(a))],
//!     AccessPolicy::Default,
//!     false,
//! );
//! let run = json!({"method": "add", "args": {"x": 1}});
//! match d.decide(run.as_object().unwrap().clone()) {
//!     Decision::Run { target, .. } => assert_eq!(target.endpoint(), 0),
//!     _ => unreachable!(),
//! }
//! let bad = json!({"method": "add", "args": [1]});
//! assert!(matches!(d.decide(bad.as_object().unwrap().clone()), Decision::Refuse(_)));
//! ```

use serde_json::Value;

use crate::driver::Dict;
use crate::error::MessagingError;
use crate::rpc::endpoint::{Endpoint, Executor, Handler};
use crate::version::{version_is_compatible, Version};

/// Which methods callers may reach (MSG-DISP-05). A refused method looks like a missing one
/// (NoSuchMethod), because its endpoint counted as compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessPolicy {
    /// Refuses any method whose name starts with `_` (oslo's default).
    #[default]
    Default,
    /// Allows everything.
    Legacy,
    /// Allows only methods marked with [`Endpoint::expose`].
    Explicit,
}

/// oslo's ping method (MSG-DISP-07).
pub const PING_METHOD: &str = "oslo_rpc_server_ping";

/// What to run for a message.
pub(crate) enum Selected {
    /// A method of endpoint `index`.
    Method(usize),
    /// The built-in ping: answer `pong`.
    Ping,
}

/// An endpoint's method as the dispatcher chose it: the body to run and the executor the
/// endpoint asked for, so the server runs it without looking the endpoint up again.
#[derive(Clone)]
pub struct ChosenMethod {
    endpoint: usize,
    pub(crate) handler: Handler,
    executor: Option<Executor>,
}

impl ChosenMethod {
    /// The endpoint's index, in the order endpoints were added.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// The endpoint's own executor, if it chose one (otherwise the server's runs it).
    pub fn executor(&self) -> Option<Executor> {
        self.executor
    }
}

impl std::fmt::Debug for ChosenMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChosenMethod")
            .field("endpoint", &self.endpoint)
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

/// What a server does with a request it received.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Run `method` of the chosen endpoint with `args`.
    Run {
        /// What runs it, and where.
        target: ChosenMethod,
        /// The method.
        method: String,
        /// The arguments, as received (the serializer has not seen them yet).
        args: Dict,
    },
    /// Answer `pong` (MSG-DISP-07).
    Ping,
    /// A well-formed request no endpoint takes: answer with `error` (NoSuchMethod,
    /// UnsupportedVersion).
    Fail {
        /// The method asked for.
        method: String,
        /// What the caller gets back.
        error: MessagingError,
    },
    /// Not a request that can be dispatched (no method, arguments that are not an object):
    /// the server counts it, answers its caller with a `ValueError` and rejects it.
    Refuse(String),
}

/// Chooses what runs for each request (oslo's `RPCDispatcher`).
#[derive(Debug)]
pub struct Dispatcher {
    pub(crate) endpoints: Vec<Endpoint>,
    policy: AccessPolicy,
    ping: bool,
}

impl Dispatcher {
    /// A dispatcher over `endpoints` (tried in this order) with an access policy; `ping`
    /// answers [`PING_METHOD`] (`rpc_ping_enabled`).
    pub fn new(endpoints: Vec<Endpoint>, policy: AccessPolicy, ping: bool) -> Self {
        if ping
            && endpoints
                .iter()
                .any(|e| e.methods.contains_key(PING_METHOD))
        {
            tracing::warn!(
                "an endpoint defines {PING_METHOD}; it answers pings instead of the built-in"
            );
        }
        Dispatcher {
            endpoints,
            policy,
            ping,
        }
    }

    fn allowed(&self, e: &Endpoint, method: &str) -> bool {
        match self.policy {
            AccessPolicy::Default => !method.starts_with('_'),
            AccessPolicy::Legacy => true,
            AccessPolicy::Explicit => e.exposed.contains(method),
        }
    }

    /// The decision for a request's message (`{method, args[, namespace, version]}`,
    /// MSG-DISP-01), which it takes: a method that runs gets its arguments without a copy.
    /// Never panics, whatever the message holds.
    pub fn decide(&self, mut message: Dict) -> Decision {
        let args = message.remove("args");
        // Taken out, not copied: a method that runs keeps its name.
        let method = match message.remove("method") {
            Some(Value::String(m)) => m,
            None | Some(Value::Null) => return Decision::Refuse("no method".into()),
            Some(_) => return Decision::Refuse("the method is not a string".into()),
        };
        let args = match args {
            None | Some(Value::Null) => Dict::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Decision::Refuse("args is not an object".into()),
        };
        let text = |k: &str| match message.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{k} is not a string")),
        };
        let (namespace, version) = match (text("namespace"), text("version")) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(why), _) | (_, Err(why)) => return Decision::Refuse(why),
        };
        match self.select(namespace, version, &method) {
            Ok(Selected::Method(endpoint)) => {
                let e = &self.endpoints[endpoint];
                match e.methods.get(&method) {
                    Some(handler) => Decision::Run {
                        target: ChosenMethod {
                            endpoint,
                            handler: handler.clone(),
                            executor: e.executor,
                        },
                        method,
                        args,
                    },
                    // `select` only picks an endpoint that has the method.
                    None => Decision::Fail {
                        error: MessagingError::NoSuchMethod {
                            method: method.clone(),
                        },
                        method,
                    },
                }
            }
            Ok(Selected::Ping) => Decision::Ping,
            Err(error) => Decision::Fail { method, error },
        }
    }

    /// Chooses the endpoint for `(namespace, version, method)` (MSG-DISP-03). The message's
    /// version defaults to 1.0 (MSG-DISP-01); an endpoint without a version counts as 1.0
    /// (MSG-DISP-02).
    pub(crate) fn select(
        &self,
        namespace: Option<&str>,
        version: Option<&str>,
        method: &str,
    ) -> Result<Selected, MessagingError> {
        let unsupported = || MessagingError::UnsupportedVersion {
            version: version.unwrap_or("1.0").to_string(),
            method: method.to_string(),
        };
        let one_zero = Version {
            major: 1,
            minor: 0,
            rev: None,
        };
        let req: Version = match version {
            None => one_zero,
            Some(v) => v.parse().map_err(|_| unsupported())?,
        };
        let mut compatible_seen = false;
        for (i, e) in self.endpoints.iter().enumerate() {
            let ns_ok = e.target.accepts_namespace(namespace);
            let imp = e.target.version.unwrap_or(one_zero);
            if !ns_ok || !version_is_compatible(Some(&imp), Some(&req)) {
                continue;
            }
            compatible_seen = true;
            if e.methods.contains_key(method) && self.allowed(e, method) {
                return Ok(Selected::Method(i));
            }
        }
        if self.ping && method == PING_METHOD {
            return Ok(Selected::Ping);
        }
        if compatible_seen {
            Err(MessagingError::NoSuchMethod {
                method: method.to_string(),
            })
        } else {
            Err(unsupported())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::endpoint::EndpointError;
    use crate::Target;

    fn ep(name: &str, target: Target, methods: &[&str]) -> Endpoint {
        let mut e = Endpoint::new(name).target(target);
        for m in methods {
            e = e.method(m, |_c, _a: serde_json::Value| Ok::<_, EndpointError>(1));
        }
        e
    }

    fn chosen(d: &Dispatcher, ns: Option<&str>, v: Option<&str>, m: &str) -> Result<usize, String> {
        match d.select(ns, v, m) {
            Ok(Selected::Method(i)) => Ok(i),
            Ok(Selected::Ping) => Ok(usize::MAX),
            Err(e) => Err(match e {
                MessagingError::NoSuchMethod { .. } => "NoSuchMethod".into(),
                MessagingError::UnsupportedVersion { .. } => "UnsupportedVersion".into(),
                other => other.to_string(),
            }),
        }
    }

    /// TEST-MSG-03: the dispatcher scenarios.
    #[test]
    fn dispatcher_scenarios() {
        let none = Dispatcher::new(vec![], AccessPolicy::Default, false);
        assert_eq!(
            chosen(&none, None, None, "foo").unwrap_err(),
            "UnsupportedVersion"
        );

        let d = Dispatcher::new(
            vec![ep("a", Target::default(), &["foo", "_priv"])],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(chosen(&d, None, None, "foo"), Ok(0));
        assert_eq!(
            chosen(&d, None, None, "_priv").unwrap_err(),
            "NoSuchMethod",
            "MSG-DISP-05"
        );
        assert_eq!(
            chosen(&d, None, None, "nosuch").unwrap_err(),
            "NoSuchMethod"
        );

        let ns = Dispatcher::new(
            vec![
                ep("a", Target::default(), &["foo"]),
                ep("b", Target::default().with_namespace("nsb"), &["foo"]),
            ],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(chosen(&ns, Some("nsb"), None, "foo"), Ok(1));
        assert_eq!(
            chosen(&ns, Some("wrong"), None, "foo").unwrap_err(),
            "UnsupportedVersion"
        );

        let vers = Dispatcher::new(
            vec![
                ep("a", Target::default().with_version("1.5"), &["foo"]),
                ep("b", Target::default().with_version("3.4"), &["foo"]),
            ],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(chosen(&vers, None, Some("3.2"), "foo"), Ok(1));
        let vers2 = Dispatcher::new(
            vec![
                ep("a", Target::default().with_version("1.5"), &["foo"]),
                ep("b", Target::default().with_version("3.0"), &["foo"]),
            ],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(
            chosen(&vers2, None, Some("3.2"), "foo").unwrap_err(),
            "UnsupportedVersion"
        );
        // MSG-DISP-03's verified cases: 1.4 and 2.0 against 1.3 unsupported; 1.2 against 1.3 ok
        let v13 = Dispatcher::new(
            vec![ep("a", Target::default().with_version("1.3"), &["foo"])],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(
            chosen(&v13, None, Some("1.4"), "foo").unwrap_err(),
            "UnsupportedVersion"
        );
        assert_eq!(
            chosen(&v13, None, Some("2.0"), "foo").unwrap_err(),
            "UnsupportedVersion"
        );
        assert_eq!(chosen(&v13, None, Some("1.2"), "foo"), Ok(0));

        let legacy = Dispatcher::new(
            vec![ep(
                "a",
                Target::default()
                    .with_namespace("ns")
                    .with_legacy_namespaces(vec![None]),
                &["foo"],
            )],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(chosen(&legacy, None, None, "foo"), Ok(0));
        assert_eq!(
            chosen(&legacy, Some("wrong"), None, "foo").unwrap_err(),
            "UnsupportedVersion"
        );
    }

    /// MSG-DISP-05 / TEST-MSG-03: the explicit policy allows only exposed methods; legacy allows
    /// private ones.
    #[test]
    fn access_policies() {
        let e = ep("a", Target::default(), &["foo", "bar", "_p"]).expose(&["bar"]);
        let d = Dispatcher::new(vec![e.clone()], AccessPolicy::Explicit, false);
        assert_eq!(chosen(&d, None, None, "foo").unwrap_err(), "NoSuchMethod");
        assert_eq!(chosen(&d, None, None, "bar"), Ok(0));
        let l = Dispatcher::new(vec![e], AccessPolicy::Legacy, false);
        assert_eq!(chosen(&l, None, None, "_p"), Ok(0));
    }

    /// MSG-DISP-07 / TEST-MSG-03: ping answers unless an endpoint defines the ping method.
    #[test]
    fn ping_unless_endpoint_defines_it() {
        let d = Dispatcher::new(
            vec![ep("a", Target::default(), &["foo"])],
            AccessPolicy::Default,
            true,
        );
        assert_eq!(chosen(&d, None, None, PING_METHOD), Ok(usize::MAX));
        let own = Dispatcher::new(
            vec![ep("a", Target::default(), &[PING_METHOD])],
            AccessPolicy::Default,
            true,
        );
        assert_eq!(chosen(&own, None, None, PING_METHOD), Ok(0));
        let off = Dispatcher::new(
            vec![ep("a", Target::default(), &["foo"])],
            AccessPolicy::Default,
            false,
        );
        assert_eq!(
            chosen(&off, None, None, PING_METHOD).unwrap_err(),
            "NoSuchMethod"
        );
    }
}
