//! `RpcServer`: listens on a target, dispatches to endpoints on their executors, replies
//! (MSG-SRV-*).
//!
//! ```
//! use osier_messaging::{Endpoint, EndpointError, Executor, RequestContext, RpcClient, RpcServer, Target, Transport};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Echo { value: i64 }
//!
//! let bridge = osier_bridge::Bridge::builder().build().unwrap();
//! let transport = Transport::new("memory://").unwrap();
//! let server = RpcServer::builder(&transport, Target::topic("doc-demo").with_server("s1"))
//!     .bridge(bridge.clone())
//!     .executor(Executor::Tokio)
//!     .endpoint(Endpoint::new("echo").method_async("echo", |_ctx, a: Echo| async move {
//!         Ok::<_, EndpointError>(a.value)
//!     }))
//!     .build()
//!     .unwrap();
//! let client = RpcClient::new(&transport, Target::topic("doc-demo"));
//! let v: i64 = bridge.tokio().block_on(async {
//!     server.start().await.unwrap();
//!     let v = client.call(&RequestContext::new(), "echo", serde_json::json!({"value": 7})).await.unwrap();
//!     server.stop();
//!     server.wait().await;
//!     v
//! });
//! assert_eq!(v, 7);
//! ```

// An outcome carries its failure by value: it is the reply itself, built once per request.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::context::{NoOpSerializer, RequestContext, Serializer};
use crate::driver::{Dict, Incoming, Outcome};
use crate::error::{Failure, MessagingError};
use crate::rpc::dispatcher::{AccessPolicy, Dispatcher, Selected};
use crate::rpc::endpoint::{Endpoint, EndpointError, Executor, Handler};
use crate::target::Target;
use crate::transport::Transport;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Configures an [`RpcServer`] (oslo's `get_rpc_server`).
#[must_use]
pub struct RpcServerBuilder {
    transport: Transport,
    target: Target,
    endpoints: Vec<Endpoint>,
    executor: Executor,
    policy: AccessPolicy,
    serializer: Arc<dyn Serializer>,
    bridge: Option<osier_bridge::Bridge>,
}

impl std::fmt::Debug for RpcServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServerBuilder")
            .field("target", &self.target.to_string())
            .field("endpoints", &self.endpoints)
            .field("executor", &self.executor)
            .finish_non_exhaustive()
    }
}

impl RpcServerBuilder {
    /// Adds an endpoint; endpoints are tried in the order added (MSG-DISP-03).
    pub fn endpoint(mut self, e: Endpoint) -> Self {
        self.endpoints.push(e);
        self
    }

    /// The default executor for endpoints that do not choose one (default: tokio).
    pub fn executor(mut self, e: Executor) -> Self {
        self.executor = e;
        self
    }

    /// The access policy (default: refuse `_private` methods).
    pub fn access_policy(mut self, p: AccessPolicy) -> Self {
        self.policy = p;
        self
    }

    /// The serializer for context, arguments and results.
    pub fn serializer(mut self, s: Arc<dyn Serializer>) -> Self {
        self.serializer = s;
        self
    }

    /// The bridge whose tokio and green runtimes run the server (default: the process-wide one).
    pub fn bridge(mut self, b: osier_bridge::Bridge) -> Self {
        self.bridge = Some(b);
        self
    }

    /// Builds the server (not started; a bad target is reported by `start`, as oslo does).
    pub fn build(self) -> Result<RpcServer, MessagingError> {
        let bridge = self
            .bridge
            .unwrap_or_else(|| osier_bridge::Bridge::global().clone());
        let ping = self.transport.opts.rpc_ping_enabled;
        Ok(RpcServer {
            inner: Arc::new(Inner {
                dispatcher: Dispatcher::new(self.endpoints, self.policy, ping),
                transport: self.transport,
                target: self.target,
                executor: self.executor,
                serializer: self.serializer,
                bridge,
                state: Mutex::new(State::Idle),
                inflight: AtomicUsize::new(0),
                idle: Notify::new(),
                dropped: AtomicU64::new(0),
            }),
        })
    }
}

enum State {
    Idle,
    Running {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    },
    Stopped {
        task: tokio::task::JoinHandle<()>,
    },
}

struct Inner {
    transport: Transport,
    target: Target,
    dispatcher: Dispatcher,
    executor: Executor,
    serializer: Arc<dyn Serializer>,
    bridge: osier_bridge::Bridge,
    state: Mutex<State>,
    inflight: AtomicUsize,
    idle: Notify,
    dropped: AtomicU64,
}

/// An RPC server. Cloning gives another handle.
#[derive(Clone)]
pub struct RpcServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("target", &self.inner.target.to_string())
            .finish_non_exhaustive()
    }
}

impl RpcServer {
    /// A builder for a server on `transport` listening on `target` (which needs a topic and a
    /// server).
    pub fn builder(transport: &Transport, target: Target) -> RpcServerBuilder {
        RpcServerBuilder {
            transport: transport.clone(),
            target,
            endpoints: Vec::new(),
            executor: Executor::Tokio,
            policy: AccessPolicy::Default,
            serializer: Arc::new(NoOpSerializer),
            bridge: None,
        }
    }

    /// Starts listening (MSG-SRV-03). A target without topic or server is `InvalidTarget`; a
    /// second start while running logs a warning and does nothing.
    pub async fn start(&self) -> Result<(), MessagingError> {
        let t = &self.inner.target;
        if t.topic.is_none() {
            return Err(t.invalid("an RPC server needs a topic"));
        }
        if t.server.is_none() {
            return Err(t.invalid("an RPC server needs a server"));
        }
        if matches!(*lock(&self.inner.state), State::Running { .. }) {
            tracing::warn!(target = %t, "RPC server already started");
            return Ok(());
        }
        let mut listener = self.inner.transport.driver.listen(t).await?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let inner = self.inner.clone();
        let task = self.inner.bridge.tokio().spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = listener.poll() => m,
                    _ = stop_rx.changed() => { listener.stop(); None }
                };
                let Some(msg) = msg else { break };
                inner.inflight.fetch_add(1, Ordering::AcqRel);
                let i2 = inner.clone();
                tokio::spawn(async move {
                    handle(&i2, msg).await;
                    if i2.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
                        i2.idle.notify_waiters();
                    }
                });
            }
        });
        *lock(&self.inner.state) = State::Running {
            stop: stop_tx,
            task,
        };
        Ok(())
    }

    /// Stops taking new messages (MSG-SRV-04). Requests in flight carry on; `wait` waits for
    /// them.
    pub fn stop(&self) {
        let mut st = lock(&self.inner.state);
        if let State::Running { .. } = &*st {
            if let State::Running { stop, task } = std::mem::replace(&mut *st, State::Idle) {
                let _ = stop.send(true);
                *st = State::Stopped { task };
            }
        }
    }

    /// Waits until the listener has stopped and every request in flight has been answered.
    pub async fn wait(&self) {
        let task = match std::mem::replace(&mut *lock(&self.inner.state), State::Idle) {
            State::Stopped { task } => Some(task),
            other => {
                *lock(&self.inner.state) = other;
                None
            }
        };
        if let Some(t) = task {
            let _ = t.await;
        }
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.inflight.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Messages dropped because they were malformed (logged, never a crash).
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// Polls a boxed future, turning a panic into its message.
struct CatchUnwind<F>(F);

impl<T, F: std::future::Future<Output = T> + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<T, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(fut).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(p) => std::task::Poll::Ready(Err(p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into()))),
        }
    }
}

fn panic_failure(msg: String) -> Failure {
    let mut f = Failure::new("Panic", "osier", msg);
    f.tb = vec!["the endpoint panicked; the server keeps serving".into()];
    f
}

async fn run(
    inner: &Arc<Inner>,
    executor: Executor,
    h: Handler,
    ctx: RequestContext,
    args: Dict,
) -> Result<Value, Failure> {
    let bridge = &inner.bridge;
    let join_err = |e: tokio::task::JoinError| match e.try_into_panic() {
        Ok(p) => panic_failure(
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into()),
        ),
        Err(e) => Failure::new("Cancelled", "osier", e.to_string()),
    };
    let green_err = |e: osier_green::GreenError| match e {
        osier_green::GreenError::Panicked(m) => panic_failure(m),
        other => Failure::new("GreenThreadError", "osier", other.to_string()),
    };
    let r: Result<Result<Value, EndpointError>, Failure> = match (executor, h) {
        // Already on a tokio task of its own: run the future right here, catching a panic.
        (Executor::Tokio, Handler::Async(f)) => {
            CatchUnwind(f(ctx, args)).await.map_err(panic_failure)
        }
        (Executor::Tokio | Executor::Threads, Handler::Blocking(f)) => {
            tokio::task::spawn_blocking(move || f(ctx, args))
                .await
                .map_err(join_err)
        }
        (Executor::Threads, Handler::Async(f)) => {
            let handle = bridge.tokio().clone();
            tokio::task::spawn_blocking(move || handle.block_on(f(ctx, args)))
                .await
                .map_err(join_err)
        }
        (Executor::Green, Handler::Blocking(f)) => bridge
            .spawn_green(move || f(ctx, args))
            .await
            .map_err(green_err),
        (Executor::Green, Handler::Async(f)) => {
            let b = bridge.clone();
            bridge
                .spawn_green(move || b.yield_future(f(ctx, args)))
                .await
                .map_err(green_err)
                .and_then(|r| r.map_err(|e| Failure::new("BridgeError", "osier", e.to_string())))
        }
    };
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if e.expected {
                tracing::debug!(class = %e.class, message = %e.message, "expected endpoint failure");
            } else {
                tracing::error!(class = %e.class, message = %e.message, "endpoint failed");
            }
            Err(e.into_failure())
        }
        Err(f) => {
            tracing::error!(class = %f.class, message = %f.message, "endpoint failed");
            Err(f)
        }
    }
}

async fn handle(inner: &Arc<Inner>, msg: Incoming) {
    // RPC is at most once: acknowledge before dispatching (MSG-SRV-06).
    msg.acker.ack();
    let ctx = inner.serializer.deserialize_context(msg.ctxt);
    let Some(method) = msg
        .message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        inner.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target = %inner.target, "dropping a malformed RPC message (no method)");
        return;
    };
    let namespace = msg.message.get("namespace").and_then(Value::as_str);
    let version = msg.message.get("version").and_then(Value::as_str);
    let raw_args = match msg.message.get("args") {
        None | Some(Value::Null) => Dict::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                method,
                "dropping an RPC message whose args are not an object"
            );
            return;
        }
    };
    let outcome: Outcome = match inner.dispatcher.select(namespace, version, &method) {
        Err(e) => {
            if !method.ends_with("_ignore_errors") {
                tracing::error!(method, error = %e, "cannot dispatch RPC message");
            }
            Err(Failure::from_error(&e))
        }
        Ok(Selected::Ping) => Ok(Value::String("pong".into())),
        Ok(Selected::Method(i, h)) => {
            let mut args = Dict::new();
            let mut bad = None;
            for (k, v) in raw_args {
                match inner.serializer.deserialize_entity(&ctx, v) {
                    Ok(v) => {
                        args.insert(k, v);
                    }
                    Err(e) => bad = Some(e),
                }
            }
            match bad {
                Some(e) => Err(Failure::new("SerializationError", "osier", e.to_string())),
                None => {
                    let executor = inner.dispatcher.endpoints[i]
                        .executor
                        .unwrap_or(inner.executor);
                    let heartbeats =
                        start_heartbeats(msg.client_timeout, msg.replier.clone(), &method);
                    let r = run(inner, executor, h, ctx.clone(), args).await;
                    if let Some(hb) = heartbeats {
                        hb.abort();
                    }
                    r.and_then(|v| {
                        inner
                            .serializer
                            .serialize_entity(&ctx, v)
                            .map_err(|e| Failure::new("SerializationError", "osier", e.to_string()))
                    })
                }
            }
        }
    };
    if let Some(r) = msg.replier {
        if let Err(e) = r.reply(outcome).await {
            tracing::warn!(method, error = %e, "could not send the RPC reply");
        }
    }
}

/// The call-monitor watchdog (MSG-DISP-08): a heartbeat every `int(timeout)/2` seconds while the
/// method runs; an interval under 1 s warns and sends none; the first failed heartbeat ends it.
fn start_heartbeats(
    client_timeout: Option<Duration>,
    replier: Option<Arc<dyn crate::driver::Replier>>,
    method: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    let cm = client_timeout?;
    let interval = Duration::from_secs(cm.as_secs() / 2);
    if interval < Duration::from_secs(1) {
        tracing::warn!(
            method,
            ?cm,
            "call monitor timeout under 2 s: no heartbeats will be sent"
        );
        return None;
    }
    let replier = replier?;
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if replier.heartbeat().await.is_err() {
                return;
            }
        }
    }))
}
