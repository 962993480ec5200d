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

/// What an endpoint method returns on failure: becomes the caller's `RemoteError`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointError {
    /// Exception class name the caller sees (`ValueError`, `InstanceNotFound`...).
    pub class: String,
    /// Its module.
    pub module: String,
    /// The message.
    pub message: String,
    /// Expected failures are logged at debug level only (oslo's `expected_exceptions`,
    /// MSG-SRV-07); the caller gets the same error either way.
    pub expected: bool,
}

impl EndpointError {
    /// A failure of class `class` with `message`.
    pub fn new(class: &str, message: impl Into<String>) -> Self {
        EndpointError {
            class: class.to_string(),
            module: "builtins".to_string(),
            message: message.into(),
            expected: false,
        }
    }

    /// Sets the module the class lives in.
    pub fn module(mut self, module: &str) -> Self {
        self.module = module.to_string();
        self
    }

    /// Marks the failure as expected (logged at debug only).
    pub fn expected(mut self) -> Self {
        self.expected = true;
        self
    }

    pub(crate) fn into_failure(self) -> Failure {
        Failure::new(&self.class, &self.module, self.message)
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

fn decode_args<A: DeserializeOwned>(args: Dict) -> Result<A, EndpointError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| EndpointError::new("TypeError", format!("bad arguments: {e}")))
}

fn encode<R: Serialize>(r: R) -> Result<Value, EndpointError> {
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
        let h: AsyncFn = Arc::new(move |ctx, args| {
            let f = f.clone();
            Box::pin(async move {
                let a: A = decode_args(args)?;
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
        let h: SyncFn = Arc::new(move |ctx, args| {
            let a: A = decode_args(args)?;
            encode(f(ctx, a)?)
        });
        self.methods.insert(name.to_string(), Handler::Blocking(h));
        self
    }
}
