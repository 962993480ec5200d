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
//!     server.stop().await.unwrap();
//!     server.wait().await.unwrap();
//!     v
//! });
//! assert_eq!(v, 7);
//! ```

// An outcome carries its failure by value: it is the reply itself, built once per request.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use crate::context::{NoOpSerializer, RequestContext, Serializer};
use crate::driver::{Dict, Incoming, Outcome};
use crate::error::{Failure, MessagingError};
use crate::health::{Health, HealthState, PingOutcome};
use crate::in_flight::InFlight;
use crate::metrics::ServerMeterCache;
use crate::rpc::dispatcher::{AccessPolicy, Decision, Dispatcher, PING_METHOD};
use crate::rpc::endpoint::{Endpoint, Executor, Handler};
use crate::rpc::executor::run;
use crate::rpc::in_span::InSpan;
use crate::rpc::lifecycle::{at, Phase, StepOptions, Steps};
use crate::rpc::span_fields::LazyFields;
use crate::runner::note_panic_sites;
use crate::target::Target;
use crate::trace_context::{self, TraceParent};
use crate::transport::Transport;
use crate::untrusted::Untrusted;

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
    max_in_flight: usize,
    ping_interval: Duration,
}

/// How often a server with `rpc_ping_enabled` pings itself through the broker unless told
/// otherwise ([`RpcServerBuilder::ping_interval`]).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How many requests a server runs at once unless told otherwise (oslo's
/// `executor_thread_pool_size` default).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// How long a reply still being sent when `stop` is called may take before it is given up
/// (a reply to a missing queue would otherwise hold `wait` for
/// `kombu_missing_consumer_retry_timeout`).
pub const REPLY_GRACE_AFTER_STOP: Duration = Duration::from_secs(2);

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

    /// How many requests run at once, on every executor together (oslo's
    /// `executor_thread_pool_size`, default [`DEFAULT_MAX_IN_FLIGHT`]; at least 1). A request
    /// is taken off the transport, and acknowledged, only when one of these slots is free, so
    /// the backlog of a slow server waits in the broker, and the server's memory is bounded by
    /// this number, not by the traffic. On RabbitMQ the listener's QoS prefetch is four times
    /// this number (deliveries ready for the next free slot), unless
    /// `rabbit_qos_prefetch_count` sets one.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// How often the server pings itself through the broker (its own topic and server, oslo's
    /// `oslo_rpc_server_ping`) when the transport has `rpc_ping_enabled`; each ping may take
    /// as long. The outcome is part of [`RpcServer::health`]. Default
    /// [`DEFAULT_PING_INTERVAL`]; under one second is [`MessagingError::InvalidOption`] at
    /// build.
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.ping_interval = every;
        self
    }

    /// Builds the server (not started; a bad target is reported by `start`, as oslo does).
    /// Without [`bridge`](Self::bridge), the process-wide bridge is used, started now if it
    /// was not: [`MessagingError::Bridge`] if it cannot start.
    pub fn build(self) -> Result<RpcServer, MessagingError> {
        if self.max_in_flight == 0 {
            return Err(MessagingError::InvalidOption {
                option: "max_in_flight".into(),
                reason: "a server needs at least one request slot".into(),
            });
        }
        if self.ping_interval < Duration::from_secs(1) {
            return Err(MessagingError::InvalidOption {
                option: "ping_interval".into(),
                reason: "a server pings itself at most once a second".into(),
            });
        }
        let bridge = match self.bridge {
            Some(b) => b,
            None => osier_bridge::Bridge::try_global()
                .map_err(|e| MessagingError::Bridge(crate::error::Cause::new(e)))?
                .clone(),
        };
        let ping = self.transport.opts.rpc_ping_enabled;
        let meters = ServerMeterCache::new(&self.target, &self.transport.opts.metrics_process_name);
        Ok(RpcServer {
            inner: Arc::new(Inner {
                dispatcher: Dispatcher::new(self.endpoints, self.policy, ping),
                transport: self.transport,
                target_label: self.target.to_string(),
                target: self.target,
                executor: self.executor,
                serializer: self.serializer,
                bridge,
                steps: Steps::new(),
                inflight: Arc::new(InFlight::new("request")),
                dropped: AtomicU64::new(0),
                max_in_flight: self.max_in_flight,
                meters,
                health: HealthState::default(),
                ping_interval: self.ping_interval,
            }),
        })
    }
}

struct Inner {
    transport: Transport,
    target: Target,
    dispatcher: Dispatcher,
    executor: Executor,
    serializer: Arc<dyn Serializer>,
    bridge: osier_bridge::Bridge,
    steps: Steps,
    /// Requests being handled, each on a task of its own.
    inflight: Arc<InFlight>,
    dropped: AtomicU64,
    max_in_flight: usize,
    meters: ServerMeterCache,
    /// `target` as the `rpc.server` span shows it, written once.
    target_label: String,
    health: HealthState,
    ping_interval: Duration,
}

/// An RPC server. Cloning gives another handle.
#[derive(Clone)]
pub struct RpcServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("target", &self.inner.target_label)
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
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            ping_interval: DEFAULT_PING_INTERVAL,
        }
    }

    /// Starts listening (MSG-SRV-03). A target without topic or server is `InvalidTarget`; a
    /// second start while running logs a warning and does nothing; a start after a full
    /// start/stop/wait cycle begins a new cycle (MSG-SRV-05).
    pub async fn start(&self) -> Result<(), MessagingError> {
        self.start_with(StepOptions::default()).await
    }

    /// Stops taking new messages (MSG-SRV-04). Requests in flight carry on; `wait` waits for
    /// them. Waits for a `start` in progress, or not yet made, to finish first (MSG-SRV-05).
    pub async fn stop(&self) -> Result<(), MessagingError> {
        self.stop_with(StepOptions::default()).await
    }

    /// Waits until the listener has stopped and every request in flight has been answered.
    /// Waits for `stop` first (MSG-SRV-05).
    pub async fn wait(&self) -> Result<(), MessagingError> {
        self.wait_with(StepOptions::default()).await
    }

    /// Does nothing, like oslo's `reset()` for RPC servers (MSG-SRV-04); here so service code
    /// written against oslo's `Service` contract can call it.
    pub fn reset(&self) {}

    /// The target the server listens on.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// Whether the server is alive beyond "the process runs": started, consuming, and (with
    /// `rpc_ping_enabled`) its last ping through the broker answered. See
    /// [`health`](crate::health).
    pub fn health(&self) -> Health {
        self.inner.health.health()
    }

    /// Which start/stop/wait cycle the server is in (1 after the first start).
    pub fn cycle(&self) -> u64 {
        self.inner.steps.lock().cycle
    }

    /// [`start`](RpcServer::start) with a timeout and a "possible hang" log delay.
    pub async fn start_with(&self, opts: StepOptions) -> Result<(), MessagingError> {
        let t = &self.inner.target;
        t.server_address()?;
        // Failures name where a handler panicked (once per process).
        note_panic_sites();
        // Claim the start of a new cycle, or wait for a concurrent start to finish.
        let cycle = {
            let mut life = self.inner.steps.lock();
            match life.phase {
                Phase::Idle | Phase::Done => {
                    life.cycle += 1;
                    life.phase = Phase::Starting;
                    Some(life.cycle)
                }
                Phase::Starting => None,
                _ => {
                    tracing::warn!(target = %t, "RPC server already started");
                    return Ok(());
                }
            }
        };
        let Some(cycle) = cycle else {
            let c = self.cycle();
            self.inner
                .steps
                .await_phase("start", &self.inner.target, opts, |l| {
                    at(l, c, Phase::Started)
                })
                .await?;
            return Ok(());
        };
        let credit = self.inner.max_in_flight;
        let mut listener = match self.inner.transport.driver.listen(t, credit).await {
            Ok(l) => l,
            Err(e) => {
                self.inner.steps.set_phase(Phase::Idle);
                return Err(e);
            }
        };
        let (stop_tx, mut stop_rx) = watch::channel(false);
        self.inner.health.started(listener.liveness());
        if self.inner.transport.opts.rpc_ping_enabled {
            start_self_ping(&self.inner, stop_tx.subscribe());
        }
        let inner = self.inner.clone();
        let slots = Arc::new(Semaphore::new(credit));
        // On a hub's own runtime when the bridge runs tokio on its hubs (a green handler is
        // then a hop on one thread), else on the multi-thread runtime.
        let task = self.inner.bridge.spawn_on_hub(async move {
            let mut stopping = false;
            // Made once (a `changed()` made on every turn would make and drop a waiter on the
            // watch for each request); polled no more once it has fired.
            let stopped = stop_rx.changed();
            tokio::pin!(stopped);
            loop {
                // A free slot first; only then a message: the rest wait in the broker.
                let slot = tokio::select! {
                    biased;
                    _ = &mut stopped, if !stopping => {
                        // The listener cancels its subscriptions (an AMQP listener also deletes
                        // its fanout queue) and then ends its stream.
                        listener.stop();
                        stopping = true;
                        continue;
                    }
                    // Made only when polled: a disabled branch's future is still made, and
                    // `poll` boxes one.
                    m = async { listener.poll().await }, if stopping => match m {
                        // Delivered before the cancel took effect: back to the queue for
                        // another server (MSG-SRV-05: no new request starts once stop() was
                        // called).
                        Some(m) => {
                            m.acker.requeue();
                            continue;
                        }
                        None => break,
                    },
                    s = slots.clone().acquire_owned(), if !stopping => s,
                };
                let Ok(slot) = slot else { break }; // the semaphore is never closed
                let msg = tokio::select! {
                    m = listener.poll() => m,
                    _ = &mut stopped, if !stopping => {
                        listener.stop();
                        stopping = true;
                        continue;
                    }
                };
                let Some(msg) = msg else { break };
                let i2 = inner.clone();
                inner.inflight.spawn(async move {
                    handle(&i2, msg).await;
                    drop(slot);
                });
            }
        });
        {
            let mut life = self.inner.steps.lock();
            life.stop = Some(stop_tx);
            life.task = Some(task);
            debug_assert_eq!(life.cycle, cycle);
        }
        self.inner.steps.set_phase(Phase::Started);
        Ok(())
    }

    /// [`stop`](RpcServer::stop) with a timeout and a "possible hang" log delay.
    pub async fn stop_with(&self, opts: StepOptions) -> Result<(), MessagingError> {
        let cycle = self.inner.steps.current_or_next_cycle();
        let go = self
            .inner
            .steps
            .await_phase("stop", &self.inner.target, opts, |l| {
                at(l, cycle, Phase::Started)
            })
            .await?;
        if go.is_none() {
            return Ok(()); // the cycle moved on: this stop belongs to a finished cycle
        }
        let sender = {
            let mut life = self.inner.steps.lock();
            if life.cycle != cycle || life.phase != Phase::Started {
                None // another stop ran, or is running: wait for it below
            } else {
                life.phase = Phase::Stopping;
                life.stop.take()
            }
        };
        if let Some(tx) = sender {
            let _ = tx.send(true);
            self.inner.health.stopped();
            self.inner.steps.set_phase(Phase::Stopped);
            return Ok(());
        }
        self.inner
            .steps
            .await_phase("stop", &self.inner.target, opts, |l| {
                at(l, cycle, Phase::Stopped)
            })
            .await?;
        Ok(())
    }

    /// [`wait`](RpcServer::wait) with a timeout and a "possible hang" log delay.
    pub async fn wait_with(&self, opts: StepOptions) -> Result<(), MessagingError> {
        let cycle = self.inner.steps.current_or_next_cycle();
        let go = self
            .inner
            .steps
            .await_phase("wait", &self.inner.target, opts, |l| {
                at(l, cycle, Phase::Stopped)
            })
            .await?;
        if go.is_none() {
            return Ok(());
        }
        let task = {
            let mut life = self.inner.steps.lock();
            if life.cycle != cycle || life.phase != Phase::Stopped {
                None
            } else {
                life.phase = Phase::Waiting;
                life.task.take()
            }
        };
        let Some(task) = task else {
            self.inner
                .steps
                .await_phase("wait", &self.inner.target, opts, |l| {
                    at(l, cycle, Phase::Done)
                })
                .await?;
            return Ok(());
        };
        let _ = task.await;
        self.inner.inflight.idle().await;
        self.inner.steps.set_phase(Phase::Done);
        Ok(())
    }

    /// Messages dropped because they could not be dispatched: undecodable, over the receive
    /// limit, without a method, or with arguments that are not an object (each logged within
    /// a log budget, answered with a failure when the caller's reply address could be read,
    /// and rejected).
    pub fn dropped_messages(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// Log budgets: a flood of bad requests writes a bounded amount of log.
static MALFORMED_LOG: crate::LogBudget = crate::LogBudget::new(10);
static DISPATCH_LOG: crate::LogBudget = crate::LogBudget::new(10);
static REPLY_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// The failure a caller gets for a request that cannot be dispatched: a `ValueError`, which a
/// Python caller raises as such (built-in exceptions cross the wire, MSG-ERR-03).
fn malformed_failure(why: &str) -> Failure {
    Failure::new(
        "ValueError",
        "builtins",
        format!("malformed RPC request: {why}"),
    )
}

/// Counts, logs (within the budget), answers and rejects a request that cannot be dispatched.
async fn refuse(inner: &Arc<Inner>, msg: Incoming, why: &str) {
    inner.dropped.fetch_add(1, Ordering::Relaxed);
    crate::metrics::dropped("rpc", "malformed");
    if let Some(suppressed) = MALFORMED_LOG.allow() {
        tracing::warn!(
            target = %inner.target,
            reason = %Untrusted(why),
            answered = msg.replier.is_some(),
            suppressed,
            "dropping an RPC request that cannot be dispatched"
        );
    }
    msg.acker.reject();
    if let Some(r) = &msg.replier {
        send_reply(inner, r.as_ref(), Err(malformed_failure(why)), "").await;
    }
}

/// Sends a reply; once the server is stopping, gives it [`REPLY_GRACE_AFTER_STOP`] to go.
async fn send_reply(
    inner: &Arc<Inner>,
    r: &dyn crate::driver::Replier,
    outcome: Outcome,
    method: &str,
) {
    let reply = r.reply(outcome);
    tokio::pin!(reply);
    let sent = tokio::select! {
        res = &mut reply => Some(res),
        _ = inner.steps.stopping() => None,
    };
    let sent = match sent {
        Some(res) => res,
        None => match tokio::time::timeout(REPLY_GRACE_AFTER_STOP, &mut reply).await {
            Ok(res) => res,
            Err(_) => Err(MessagingError::Delivery(format!(
                "the server is stopping and the reply was not sent within {REPLY_GRACE_AFTER_STOP:?}"
            ))),
        },
    };
    if let Err(e) = sent {
        if let Some(suppressed) = REPLY_LOG.allow() {
            tracing::warn!(method = %Untrusted(method), error = %e, suppressed, "could not send the RPC reply");
        }
    }
}

async fn handle(inner: &Arc<Inner>, mut msg: Incoming) {
    let decision = match &msg.malformed {
        Some(why) => Decision::Refuse(why.clone()),
        None => inner.dispatcher.decide(std::mem::take(&mut msg.message)),
    };
    if let Decision::Refuse(why) = &decision {
        return refuse(inner, msg, why).await;
    }
    // RPC is at most once: acknowledge before dispatching (MSG-SRV-06).
    msg.acker.ack();
    let (outcome, method): (Outcome, String) = match decision {
        Decision::Fail { method, error } => {
            if !method.ends_with("_ignore_errors") {
                if let Some(suppressed) = DISPATCH_LOG.allow() {
                    tracing::error!(method = %Untrusted(&method), error = %Untrusted(&error.to_string()), suppressed, "cannot dispatch RPC message");
                }
            }
            (Err(Failure::from_error(&error)), method)
        }
        Decision::Ping => (Ok(Value::String("pong".into())), PING_METHOD.to_string()),
        Decision::Run {
            target,
            method,
            args,
        } => {
            #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
            let mut ctx = inner.serializer.deserialize_context(msg.ctxt);
            let executor = target.executor().unwrap_or(inner.executor);
            // Every log line of the method carries its request's fields, whatever its executor.
            let span = server_span(&inner.target_label, &ctx, &method, executor);
            // The handler's calls, made with the context it received, are children of this
            // server span.
            #[cfg(feature = "otel")]
            if let Some(own) = crate::otel::of(&span) {
                ctx.set(trace_context::KEY, own.header());
            }
            let heartbeats = start_heartbeats(msg.client_timeout, msg.replier.clone(), &method);
            let ep = &inner.dispatcher.endpoints[target.endpoint()];
            let running = inner
                .meters
                .start(target.endpoint(), ep.name(), &ep.target, &method);
            let outcome = {
                let mut in_span = std::pin::pin!(InSpan::new(
                    run_method(inner, executor, &method, target.handler, &ctx, args),
                    span,
                ));
                let outcome = in_span.as_mut().await;
                // The span is still the future's (no second handle to clone and close).
                let span = in_span.span();
                match &outcome {
                    Ok(_) => {
                        span.record("outcome", "ok");
                        running.finish(None);
                    }
                    Err(f) => {
                        span.record("outcome", &*Untrusted(&f.class).shown());
                        running.finish(Some(&f.class));
                    }
                };
                outcome
            };
            if let Some(hb) = heartbeats {
                hb.abort();
            }
            (outcome, method)
        }
        Decision::Refuse(_) => return,
    };
    if let Some(r) = &msg.replier {
        send_reply(inner, r.as_ref(), outcome, &method).await;
    }
}

/// Pings the server through the broker at once and then every `ping_interval` until it stops
/// (`rpc_ping_enabled`), and records the outcome for [`RpcServer::health`]; logs when pings
/// start failing and when they are answered again.
fn start_self_ping(inner: &Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let every = inner.ping_interval;
    let client = crate::RpcClient::new(&inner.transport, inner.target.clone()).timeout(every);
    let inner = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut failing = false;
        let ctx = RequestContext::new();
        loop {
            let t0 = tokio::time::Instant::now();
            let ping = client.call::<Value>(&ctx, PING_METHOD, serde_json::json!({}));
            let r = tokio::select! {
                r = ping => r,
                _ = stop.changed() => return,
            };
            let Some(inner) = inner.upgrade() else { return };
            let outcome = match r {
                Ok(Value::String(s)) if s == "pong" => PingOutcome::Answered(t0.elapsed()),
                Ok(other) => PingOutcome::Failed(format!(
                    "answered {} instead of pong",
                    crate::rpc::client::json_kind(&other)
                )),
                Err(e) => PingOutcome::Failed(e.to_string()),
            };
            match &outcome {
                PingOutcome::Failed(e) if !failing => {
                    tracing::warn!(target = %inner.target, error = %e, "the RPC server's ping through the broker to itself failed: it may be deaf");
                    failing = true;
                }
                PingOutcome::Answered(_) if failing => {
                    tracing::info!(target = %inner.target, "the RPC server answers its ping through the broker again");
                    failing = false;
                }
                _ => {}
            }
            inner.health.pinged(outcome);
            drop(inner);
            tokio::select! {
                _ = tokio::time::sleep_until(t0 + every) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// Deserializes the arguments, runs the method on its executor, serializes the result.
async fn run_method(
    inner: &Arc<Inner>,
    executor: Executor,
    method: &str,
    h: Handler,
    ctx: &RequestContext,
    raw_args: Dict,
) -> Outcome {
    let mut args = Dict::new();
    for (k, v) in raw_args {
        match inner.serializer.deserialize_entity(ctx, v) {
            Ok(v) => {
                args.insert(k, v);
            }
            Err(e) => return Err(Failure::new("SerializationError", "osier", e.to_string())),
        }
    }
    let v = run(&inner.bridge, executor, method, h, ctx.clone(), args).await?;
    inner
        .serializer
        .serialize_entity(ctx, v)
        .map_err(|e| Failure::new("SerializationError", "osier", e.to_string()))
}

/// The `rpc.server` span of a request. The caller's trace is read only if the span is enabled
/// (its field values are made only then).
fn server_span(
    target_label: &str,
    ctx: &RequestContext,
    method: &str,
    executor: Executor,
) -> tracing::Span {
    let caller = std::cell::OnceCell::new();
    let caller_trace = || {
        caller
            .get_or_init(|| ctx.get(trace_context::KEY).and_then(TraceParent::parse))
            .as_ref()
    };
    let f = LazyFields::new(ctx, method);
    let span = tracing::info_span!(
        "rpc.server",
        target = target_label,
        method = &*f.get().method,
        executor = executor.name(),
        request_id = &*f.get().request_id,
        global_request_id = &*f.get().global_request_id,
        trace_id = caller_trace().map(TraceParent::trace_id),
        parent_span_id = caller_trace().map(TraceParent::span_id),
        outcome = tracing::field::Empty,
    );
    #[cfg(feature = "otel")]
    if let Some(Some(tp)) = caller.get() {
        crate::otel::continue_remote(&span, tp);
    }
    span
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
        static SHORT_MONITOR_LOG: crate::LogBudget = crate::LogBudget::new(1);
        SHORT_MONITOR_LOG.allow()?;
        tracing::warn!(
            method = %Untrusted(method),
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
