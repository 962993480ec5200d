//! Endpoints: typed RPC methods, and the executor each endpoint runs on.
//!
//! A method takes the request context and its arguments by name (a `serde` struct, as oslo sends
//! `args` as a dict) and returns a `serde` result or an [`EndpointError`]. It is written as an
//! `async fn` ([`Endpoint::method_async`]) or as blocking-style code ([`Endpoint::method`]) that
//! runs on a green thread or a native thread, depending on the [`Executor`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::RequestContext;
use crate::driver::Dict;
use crate::error::{Failure, MessagingError};
use crate::rpc::same_type::same_type;
use crate::target::Target;

/// Where an endpoint's methods run. Chosen per server, overridable per endpoint, so one endpoint
/// can move from green to async while the others stay (MSG-SRV-01/02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// On the bridge's tokio runtime (async methods are awaited; blocking ones go to tokio's
    /// blocking pool).
    Tokio,
    /// In a green thread of the bridge's green runtime (oslo's `eventlet` executor).
    Green,
    /// On a native thread pool (oslo's `threading` executor).
    Threads,
}

impl Executor {
    /// Its name in configuration and on the `rpc.server` span: `tokio`, `green`, `threads`.
    pub fn name(self) -> &'static str {
        match self {
            Executor::Tokio => "tokio",
            Executor::Green => "green",
            Executor::Threads => "threads",
        }
    }
}

impl FromStr for Executor {
    type Err = MessagingError;

    /// `tokio`, `green` (alias `eventlet`), `threads` (alias `threading`); anything else,
    /// including oslo's removed `blocking`, is `ExecutorLoadFailure` (MSG-SRV-01).
    fn from_str(s: &str) -> Result<Self, MessagingError> {
        match s {
            "tokio" => Ok(Executor::Tokio),
            "green" | "eventlet" => Ok(Executor::Green),
            "threads" | "threading" => Ok(Executor::Threads),
            other => Err(MessagingError::ExecutorLoadFailure(other.to_string())),
        }
    }
}

/// What an endpoint method returns on failure: becomes the caller's `RemoteError`, or, for a
/// Python caller that allows the module (`allowed_remote_exmods`), the exception itself,
/// re-created as `class(*args, **kwargs)` (MSG-ERR-01..03).
///
/// ```
/// use osier_messaging::EndpointError;
/// use serde_json::json;
///
/// // nova's `InstanceNotFound(msg, instance_id=...)`: a Python caller that allows
/// // `nova.exception` gets the exception back with its `instance_id`.
/// let e = EndpointError::new("InstanceNotFound", "Instance i-1 could not be found.")
///     .module("nova.exception")
///     .kwarg("instance_id", json!("i-1"))
///     .expected();
/// assert_eq!(e.kwargs()["instance_id"], "i-1");
/// assert_eq!(e.to_string(), "InstanceNotFound: Instance i-1 could not be found.");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointError {
    /// Exception class name the caller sees (`ValueError`, `InstanceNotFound`...).
    pub class: String,
    /// Its module.
    pub module: String,
    /// The message (`str(exc)`).
    pub message: String,
    /// Expected failures are logged at debug level only (oslo's `expected_exceptions`,
    /// MSG-SRV-07); the caller gets the same error either way.
    pub expected: bool,
    /// Arguments and traceback, when set (boxed: most failures have none, and the error stays
    /// small in the `Result` of every method).
    details: Option<Box<Details>>,
}

/// What a failure carries besides its class, module and message.
#[derive(Debug, Clone, PartialEq, Default)]
struct Details {
    args: Option<Vec<Value>>,
    kwargs: serde_json::Map<String, Value>,
    traceback: Vec<String>,
}

impl EndpointError {
    /// A failure of class `class` (module `builtins`) with `message`.
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        EndpointError {
            class: class.to_string(),
            module: "builtins".to_string(),
            message: message.into(),
            expected: false,
            details: None,
        }
    }

    /// Sets the module the class lives in.
    pub fn module(mut self, module: &str) -> Self {
        self.module = module.to_string();
        self
    }

    fn details(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    /// Sets the positional arguments (instead of `[message]`, what a Python exception raised
    /// with its message has).
    pub fn args(mut self, args: Vec<Value>) -> Self {
        self.details().args = Some(args);
        self
    }

    /// Adds a keyword argument (a Python exception's `kwargs` attribute, as nova's carry).
    pub fn kwarg(mut self, key: &str, value: Value) -> Self {
        self.details().kwargs.insert(key.to_string(), value);
        self
    }

    /// Sets the traceback lines sent with the failure (Python sends the formatted traceback).
    pub fn traceback(mut self, lines: Vec<String>) -> Self {
        self.details().traceback = lines;
        self
    }

    /// The keyword arguments set so far.
    pub fn kwargs(&self) -> serde_json::Map<String, Value> {
        self.details
            .as_ref()
            .map(|d| d.kwargs.clone())
            .unwrap_or_default()
    }

    /// Marks the failure as expected (logged at debug only).
    pub fn expected(mut self) -> Self {
        self.expected = true;
        self
    }

    pub(crate) fn into_failure(self) -> Failure {
        let mut f = Failure::new(&self.class, &self.module, self.message);
        if let Some(d) = self.details {
            if let Some(args) = d.args {
                f.args = args;
            }
            f.kwargs = d.kwargs;
            f.tb = d.traceback;
        }
        f
    }
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl std::error::Error for EndpointError {}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type AsyncFn =
    Arc<dyn Fn(RequestContext, Dict) -> BoxFuture<Result<Value, EndpointError>> + Send + Sync>;
pub(crate) type SyncFn =
    Arc<dyn Fn(RequestContext, Dict) -> Result<Value, EndpointError> + Send + Sync>;

/// A method body.
#[derive(Clone)]
pub(crate) enum Handler {
    Async(AsyncFn),
    Blocking(SyncFn),
}

/// Decodes a method's arguments (oslo's `args` dict) into its argument type, refusing what
/// Python's call `endpoint.method(ctxt, **args)` refuses, with Python's `TypeError` texts: an
/// argument the type has no field for, and a required one missing (MSG-DISP-06). A type that
/// takes no arguments (`()`, a unit struct) is called with an empty `args`; a map type (`Dict`,
/// `serde_json::Value`) takes whatever comes.
fn decode_args<A: DeserializeOwned + 'static>(
    method: &str,
    args: Dict,
) -> Result<A, EndpointError> {
    // A method that takes the arguments as they are gets them as they are: decoding a map into
    // a map of the same values is a copy of every key for nothing.
    let args = match same_type::<Dict, A>(args) {
        Ok(a) => return Ok(a),
        Err(args) => args,
    };
    let args = match same_type::<Value, A>(Value::Object(args)) {
        Ok(a) => return Ok(a),
        Err(args) => args,
    };
    let first_key = args.as_object().and_then(|m| m.keys().next().cloned());
    let mut unknown: Option<String> = None;
    let decoded = serde_ignored::deserialize(args, |path| {
        // Only a top-level name is a keyword argument; a dict argument may hold anything.
        if let serde_ignored::Path::Map {
            parent: serde_ignored::Path::Root,
            key,
        } = path
        {
            unknown.get_or_insert_with(|| key.clone());
        }
    });
    let unexpected = |key: &str| {
        EndpointError::new(
            "TypeError",
            format!("{method}() got an unexpected keyword argument '{key}'"),
        )
    };
    match decoded {
        Ok(_) if unknown.is_some() => Err(unexpected(unknown.as_deref().unwrap_or_default())),
        Ok(a) => Ok(a),
        Err(e) => match (first_key, A::deserialize(Value::Null)) {
            // A method without arguments.
            (None, Ok(a)) => Ok(a),
            (Some(key), Ok(_)) => Err(unexpected(&key)),
            _ => Err(match missing_field(&e) {
                Some(name) => EndpointError::new(
                    "TypeError",
                    format!("{method}() missing 1 required positional argument: '{name}'"),
                ),
                None => EndpointError::new("TypeError", format!("bad arguments: {e}")),
            }),
        },
    }
}

/// The field serde's "missing field" error names (`serde::de::Error::missing_field`'s text).
fn missing_field(e: &serde_json::Error) -> Option<String> {
    let text = e.to_string();
    let rest = text.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn encode<R: Serialize + 'static>(r: R) -> Result<Value, EndpointError> {
    // A `Value` result is sent as it is, not copied through serde.
    let r = match same_type::<R, Value>(r) {
        Ok(v) => return Ok(v),
        Err(r) => r,
    };
    serde_json::to_value(r)
        .map_err(|e| EndpointError::new("TypeError", format!("result is not serializable: {e}")))
}

/// An RPC endpoint: a named set of methods with a target (namespace, version) and, optionally,
/// its own executor.
///
/// ```
/// use osier_messaging::{Endpoint, EndpointError, Executor, Target};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let calc = Endpoint::new("calc")
///     .target(Target::default().with_namespace("math").with_version("1.1"))
///     .method_async("add", |_ctx, args: Add| async move { Ok::<_, EndpointError>(args.a + args.b) })
///     .method("div", |_ctx, args: Add| {
///         if args.b == 0 { return Err(EndpointError::new("ZeroDivisionError", "division by zero")); }
///         Ok(args.a / args.b)
///     })
///     .executor(Executor::Green);
/// assert_eq!(calc.name(), "calc");
/// ```
#[derive(Clone)]
pub struct Endpoint {
    name: String,
    pub(crate) target: Target,
    pub(crate) methods: HashMap<String, Handler>,
    pub(crate) exposed: HashSet<String>,
    pub(crate) executor: Option<Executor>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<&String> = self.methods.keys().collect();
        methods.sort();
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("target", &self.target.to_string())
            .field("methods", &methods)
            .field("executor", &self.executor)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with no target (namespace None, version 1.0) and no methods.
    pub fn new(name: &str) -> Self {
        Endpoint {
            name: name.to_string(),
            target: Target::default(),
            methods: HashMap::new(),
            exposed: HashSet::new(),
            executor: None,
        }
    }

    /// The endpoint's name (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace, version and legacy namespaces this endpoint serves (MSG-DISP-02).
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Runs this endpoint's methods on `executor` instead of the server's.
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Marks methods as callable under [`AccessPolicy::Explicit`](crate::AccessPolicy)
    /// (oslo's `@expose`, MSG-SRV-08).
    pub fn expose(mut self, names: &[&str]) -> Self {
        self.exposed.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Adds an `async` method.
    pub fn method_async<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(RequestContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, EndpointError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let method: Arc<str> = name.into();
        let h: AsyncFn = Arc::new(move |ctx, args| {
            let (f, method) = (f.clone(), method.clone());
            Box::pin(async move {
                let a: A = decode_args(&method, args)?;
                encode(f(ctx, a).await?)
            })
        });
        self.methods.insert(name.to_string(), Handler::Async(h));
        self
    }

    /// Adds a blocking-style method: on the green executor it runs in a green thread (and may
    /// use green I/O, sleeps and queues); on the threads or tokio executor it runs on a native
    /// thread.
    pub fn method<A, R, F>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(RequestContext, A) -> Result<R, EndpointError> + Send + Sync + 'static,
    {
        let method = name.to_string();
        let h: SyncFn = Arc::new(move |ctx, args| {
            let a: A = decode_args(&method, args)?;
            encode(f(ctx, a)?)
        });
        self.methods.insert(name.to_string(), Handler::Blocking(h));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(v: Value) -> Dict {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// serde's "missing field" text is what the `TypeError` is made from: a serde release
    /// that changed it would fail here, not silently send another message.
    #[test]
    fn a_missing_field_is_named() {
        #[derive(serde::Deserialize, Debug)]
        struct A {
            _value: i64,
        }
        let e = decode_args::<A>("m", Dict::new()).unwrap_err();
        assert_eq!(
            e.message,
            "m() missing 1 required positional argument: '_value'"
        );
        let e = decode_args::<A>("m", dict(serde_json::json!({"_value": "x"}))).unwrap_err();
        assert!(e.message.starts_with("bad arguments: "), "{}", e.message);
    }

    /// A unit type takes no arguments; an unknown nested member is not a keyword argument.
    #[test]
    fn unit_and_nested_arguments() {
        decode_args::<()>("m", Dict::new()).unwrap();
        #[derive(serde::Deserialize, Debug)]
        struct Inner {
            _a: i64,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Outer {
            _inner: Inner,
        }
        decode_args::<Outer>("m", dict(serde_json::json!({"_inner": {"_a": 1, "b": 2}}))).unwrap();
        let e = decode_args::<Outer>("m", dict(serde_json::json!({"_inner": {"_a": 1}, "c": 1})))
            .unwrap_err();
        assert_eq!(e.message, "m() got an unexpected keyword argument 'c'");
    }

    /// A method taking `Value` or `Dict` gets the arguments as they came, whatever they are,
    /// as decoding them through serde would give them; a `Value` result is sent as it is.
    #[test]
    fn map_arguments_and_value_results_pass_as_they_are() {
        let args = dict(serde_json::json!({"a": [1, 2.5, null], "b": {"c": "d"}, "_x": true}));
        let through_serde: Value = serde_json::from_value(Value::Object(args.clone())).unwrap();
        assert_eq!(
            decode_args::<Value>("m", args.clone()).unwrap(),
            through_serde
        );
        assert_eq!(decode_args::<Dict>("m", args.clone()).unwrap(), args);
        assert_eq!(
            decode_args::<Value>("m", Dict::new()).unwrap(),
            serde_json::json!({})
        );
        let v = serde_json::json!({"x": [1, {"y": null}]});
        assert_eq!(encode(v.clone()).unwrap(), v);
        assert_eq!(encode(Some(3)).unwrap(), serde_json::json!(3));
    }
}
