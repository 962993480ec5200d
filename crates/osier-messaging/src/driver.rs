//! The driver trait: what a transport (in-memory, RabbitMQ) must do. The RPC client and
//! server only talk to this, so a new driver slots in without changing the public API.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::{Failure, MessagingError};
use crate::secrets::MaskedMap;
use crate::target::Target;

/// A JSON object: a message body or a context dict.
pub type Dict = Map<String, Value>;

/// What a server sends back for a call: the result, or the failure.
pub type Outcome = Result<Value, Failure>;

/// A message to send. Its `Debug` masks secrets in the context and the body
/// ([`crate::secrets`]).
#[derive(Clone)]
pub struct Outgoing {
    /// Where to.
    pub target: Target,
    /// The serialized context.
    pub ctxt: Dict,
    /// The body: `{method, args[, namespace, version]}` for RPC.
    pub message: Dict,
    /// RPC, for a driver that [takes them as text](Driver::takes_json_args): the arguments
    /// already written as a JSON object, in place of `message`'s `args`.
    pub args_json: Option<String>,
    /// For a call: how long the caller waits in all (the server may use it for heartbeats).
    pub timeout: Option<Duration>,
    /// For a call: the call-monitor timeout (MSG-RPC-08); the server heartbeats every half of it.
    pub call_monitor_timeout: Option<Duration>,
    /// oslo's retry (None / -1 forever, 0 one attempt, N retries).
    pub retry: Option<i32>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("target", &self.target)
            .field("ctxt", &MaskedMap(&self.ctxt))
            .field("message", &MaskedMap(&self.message))
            // Their length only: the text is not read for secrets to mask.
            .field(
                "args_json",
                &self
                    .args_json
                    .as_ref()
                    .map(|a| format!("<{} bytes>", a.len())),
            )
            .field("timeout", &self.timeout)
            .field("call_monitor_timeout", &self.call_monitor_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Events on a call's reply channel.
#[derive(Debug, Clone)]
pub enum ReplyEvent {
    /// The server is still working (call monitor, MSG-DISP-08).
    Heartbeat,
    /// A part of the reply before its end, carrying a result or a failure (a server may send
    /// the result first and then an empty final message, as older oslo releases did): the
    /// call returns it when the final message brings none of its own (MSG-AMQP-09).
    Part(Outcome),
    /// The final reply.
    Done(Outcome),
    /// The request could not be delivered (the broker refused it, or the connection could not
    /// be re-established in time); the call ends with this error.
    Failed(MessagingError),
}

/// The caller's end of a call: replies and heartbeats arrive here.
#[async_trait]
pub trait ReplyWaiter: Send {
    /// The next event, or `None` once the transport is closed.
    async fn next(&mut self) -> Option<ReplyEvent>;

    /// Why no reply came before the caller's deadline, when the transport knows better than
    /// "no reply": the request never reached the broker (unreachable, refused). `None` means a
    /// plain timeout: the request went out and nobody answered in time.
    fn on_timeout(&mut self) -> Option<MessagingError> {
        None
    }

    /// The call's message id on the wire, when the transport has one (for logs, spans and a
    /// timeout's message).
    fn msg_id(&self) -> Option<&str> {
        None
    }

    /// The queue the reply comes back on, when the transport has one.
    fn reply_queue(&self) -> Option<&str> {
        None
    }
}

/// The server's end of a call: where its reply goes.
#[async_trait]
pub trait Replier: Send + Sync {
    /// Sends a heartbeat; `Err` ends the call monitor (the first failure stops it).
    async fn heartbeat(&self) -> Result<(), MessagingError>;
    /// Sends the final reply. A failure to reply is the server's to log, never to raise.
    async fn reply(&self, outcome: Outcome) -> Result<(), MessagingError>;
}

/// A received message.
pub struct Incoming {
    /// The serialized context.
    pub ctxt: Dict,
    /// The body.
    pub message: Dict,
    /// Where a call's reply goes (`None` for a cast).
    pub replier: Option<std::sync::Arc<dyn Replier>>,
    /// For a call: the caller's timeout, if it sent one.
    pub client_timeout: Option<Duration>,
    /// Acknowledges, requeues or rejects the message.
    pub acker: Box<dyn Acker>,
    /// Why the message could not be read, when it could not: `ctxt` and `message` are then
    /// empty, and `replier` is set if the caller's reply address could still be read. The
    /// receiver counts it, answers the caller with a failure where it can, and rejects it.
    pub malformed: Option<String>,
}

impl Incoming {
    /// A message that could not be read (see [`Incoming::malformed`]).
    pub fn malformed(
        why: String,
        replier: Option<std::sync::Arc<dyn Replier>>,
        acker: Box<dyn Acker>,
    ) -> Self {
        Incoming {
            ctxt: Dict::new(),
            message: Dict::new(),
            replier,
            client_timeout: None,
            acker,
            malformed: Some(why),
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("ctxt", &MaskedMap(&self.ctxt))
            .field("message", &MaskedMap(&self.message))
            .field("is_call", &self.replier.is_some())
            .field("malformed", &self.malformed)
            .finish_non_exhaustive()
    }
}

/// Acknowledgement of a received message.
pub trait Acker: Send + Sync {
    /// The message was taken (RPC: before dispatch, at most once, MSG-SRV-06).
    fn ack(&self);
    /// Puts the message back for redelivery (notifications, MSG-LSN-07).
    fn requeue(&self);
    /// Refuses the message for good: the broker drops it, or dead-letters it when its queue
    /// has a dead-letter exchange (malformed messages, notifications requeued too often).
    fn reject(&self);
}

/// A subscription that yields messages.
#[async_trait]
pub trait Listener: Send {
    /// The next message, or `None` once stopped.
    async fn poll(&mut self) -> Option<Incoming>;
    /// Stops the subscription: `poll` then drains what it already holds and returns `None`.
    fn stop(&self);
    /// Whether the subscription consumes now (connected, its consumers registered), for a
    /// server's health. Drivers that cannot lose their subscription are always up.
    fn liveness(&self) -> Liveness {
        Liveness::new(true)
    }
}

/// Whether a subscription consumes now: set by its driver (down while it reconnects), read
/// by [`RpcServer::health`](crate::RpcServer::health) and
/// [`NotificationListener::health`](crate::NotificationListener::health). Clones share the
/// state.
#[derive(Debug, Clone)]
pub struct Liveness(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Liveness {
    /// A state, up or not.
    pub fn new(up: bool) -> Self {
        Liveness(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(up)))
    }

    /// Sets the state.
    pub fn set(&self, up: bool) {
        self.0.store(up, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the subscription consumes now.
    pub fn is_up(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A transport driver (MSG-URL-04).
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Sends a cast or fanout cast.
    async fn cast(&self, msg: Outgoing) -> Result<(), MessagingError>;
    /// Sends a call; the returned waiter yields heartbeats and the reply.
    async fn call(&self, msg: Outgoing) -> Result<Box<dyn ReplyWaiter>, MessagingError>;
    /// Subscribes an RPC server: its own `(topic, server)` queue, the shared topic queue, and
    /// fanout (MSG-FAKE-02). `credit` is how many messages the receiver runs at once (at
    /// least 1); the listener holds a bounded number of messages derived from it that the
    /// receiver has not yet acknowledged, requeued or rejected, and the rest wait in the
    /// broker (in-memory: the credit itself; RabbitMQ: a QoS prefetch of
    /// [`PREFETCH_PER_CREDIT`](crate::amqp::driver::PREFETCH_PER_CREDIT) times the credit,
    /// unless `rabbit_qos_prefetch_count` sets one).
    async fn listen(
        &self,
        target: &Target,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError>;
    /// Sends a notification to `msg.target` (whose topic is already `<topic>.<priority>`).
    async fn notify(&self, msg: Outgoing) -> Result<(), MessagingError>;
    /// Subscribes a notification listener to `targets` (topics already `<topic>.<priority>`), in
    /// `pool` (`None`: the default group). Listeners in one pool share the messages; each pool,
    /// and the default group, gets every message (MSG-LSN-05). `credit` as for
    /// [`listen`](Driver::listen).
    async fn listen_notifications(
        &self,
        targets: &[Target],
        pool: Option<&str>,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError>;
    /// Waits until everything sent so far is in the broker's hands; fails if something the
    /// driver accepted could not be delivered since the last flush. Drivers that deliver at
    /// once have nothing to wait for.
    async fn flush(&self) -> Result<(), MessagingError> {
        Ok(())
    }
    /// Releases the driver's resources.
    async fn cleanup(&self);
    /// Whether `call` and `cast` take an RPC's arguments as JSON text
    /// ([`Outgoing::args_json`]) when the client has no serializer hook to run on them: a
    /// driver that writes them to the wire anyway then gets them written once, not built into
    /// a map of values first. `false`: they come in `message`'s `args`.
    fn takes_json_args(&self) -> bool {
        false
    }
    /// The RabbitMQ options in force, for a RabbitMQ driver.
    fn rabbit_options(&self) -> Option<&crate::amqp::RabbitOptions> {
        None
    }
}
