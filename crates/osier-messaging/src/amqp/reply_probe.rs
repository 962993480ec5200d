//! Does a reply queue exist? Replies are published without `mandatory`: a returned message
//! would come back whole, and lapin logs every returned message at WARN with its body (a
//! reply's result, and the caller's context with its auth token) as decimal bytes, which a
//! retry loop turns into megabytes of log a second. Instead, a reply queue is checked with a
//! passive `queue.declare` on a connection of its own before a reply goes to it: a queue seen
//! within [`ReplyProbe::PRESENT_TTL`] is not checked again, unless one of the driver's
//! connections was made since (after a broker restart or a failover, a caller's reply queue is
//! missing until the caller declares it again); a queue still missing after
//! `kombu_missing_consumer_retry_timeout` is remembered as gone (200 entries, 60 s), and
//! replies to it are dropped at once (MSG-AMQP-08).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind};
use tokio::time::Instant;

use crate::amqp::connection::{is_channel_error, op_error, Broker};
use crate::error::MessagingError;
use crate::lock::lock;

/// Log budget of refused checks (one line per reply otherwise).
static UNCHECKED_LOG: crate::LogBudget = crate::LogBudget::new(1);

/// Names kept with the time they were recorded, at most `max`, each for `ttl`.
struct Recent {
    at: HashMap<String, Instant>,
    max: usize,
    ttl: Duration,
}

impl Recent {
    fn new(max: usize, ttl: Duration) -> Self {
        Recent {
            at: HashMap::new(),
            max,
            ttl,
        }
    }

    fn contains(&mut self, q: &str) -> bool {
        match self.at.get(q) {
            Some(t) if t.elapsed() < self.ttl => true,
            Some(_) => {
                self.at.remove(q);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, q: &str) {
        if self.at.len() >= self.max && !self.at.contains_key(q) {
            let ttl = self.ttl;
            self.at.retain(|_, t| t.elapsed() < ttl);
            if self.at.len() >= self.max {
                if let Some(oldest) = self
                    .at
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    self.at.remove(&oldest);
                }
            }
        }
        self.at.insert(q.to_string(), Instant::now());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.at.len()
    }
}

/// The probe's connection and channel (a failed passive declare closes the channel).
#[derive(Default)]
struct Link {
    conn: Option<Connection>,
    channel: Option<Channel>,
}

/// Checks reply queues (see the module docs).
pub(crate) struct ReplyProbe {
    broker: Arc<Broker>,
    link: tokio::sync::Mutex<Link>,
    /// Queues seen to exist, and the driver's connection count when the cache was started:
    /// a new connection anywhere (a broker restart, a failover) empties it.
    present: Mutex<(Recent, u64)>,
    gone: Mutex<Recent>,
}

impl ReplyProbe {
    /// How long a reply queue seen to exist is trusted without another check.
    pub(crate) const PRESENT_TTL: Duration = Duration::from_secs(5);
    /// Reply queues found gone: how many are remembered, and for how long (MSG-AMQP-08).
    pub(crate) const GONE_MAX: usize = 200;
    pub(crate) const GONE_TTL: Duration = Duration::from_secs(60);

    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        ReplyProbe {
            broker,
            link: tokio::sync::Mutex::new(Link::default()),
            present: Mutex::new((Recent::new(4096, Self::PRESENT_TTL), 0)),
            gone: Mutex::new(Recent::new(Self::GONE_MAX, Self::GONE_TTL)),
        }
    }

    /// Whether `q` was given up on recently.
    pub(crate) fn is_gone(&self, q: &str) -> bool {
        lock(&self.gone).contains(q)
    }

    /// Remembers `q` as gone.
    pub(crate) fn mark_gone(&self, q: &str) {
        lock(&self.gone).insert(q);
    }

    /// Whether queue `q` exists now (or was seen within [`Self::PRESENT_TTL`]). An error means
    /// the broker could not be asked.
    pub(crate) async fn exists(&self, q: &str) -> Result<bool, MessagingError> {
        {
            let mut present = lock(&self.present);
            let connects = self.broker.connects();
            if present.1 != connects {
                // A connection was made since: the broker may have restarted or failed over,
                // and a reply queue seen before may be gone until its owner declares it again.
                *present = (Recent::new(4096, Self::PRESENT_TTL), connects);
            } else if present.0.contains(q) {
                return Ok(true);
            }
        }
        let mut link = self.link.lock().await;
        if link.conn.as_ref().is_none_or(|c| !c.status().connected()) {
            *link = Link {
                conn: Some(self.broker.connect().await?.0),
                channel: None,
            };
        }
        let ch = match (&link.channel, &link.conn) {
            (Some(ch), _) if ch.status().connected() => ch.clone(),
            (_, Some(conn)) => {
                let ch = conn
                    .create_channel()
                    .await
                    .map_err(|e| op_error("channel.open", &e))?;
                link.channel = Some(ch.clone());
                ch
            }
            (_, None) => return Err(MessagingError::Closed),
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(q.into(), passive, FieldTable::default())
            .await
        {
            Ok(_) => {
                lock(&self.present).0.insert(q);
                Ok(true)
            }
            Err(e) if is_channel_error(&e) => {
                link.channel = None; // the broker closed it
                match e.kind() {
                    ErrorKind::ProtocolError(p) if p.get_id() == 404 => Ok(false),
                    // RESOURCE_LOCKED (405): an exclusive queue of another connection, so it
                    // exists. Any other refusal (a user without the permission, say) cannot
                    // tell: the reply goes out unchecked rather than waiting for an answer that
                    // never comes.
                    other => {
                        if !matches!(other, ErrorKind::ProtocolError(p) if p.get_id() == 405) {
                            if let Some(suppressed) = UNCHECKED_LOG.allow() {
                                tracing::warn!(error = %e, suppressed, "cannot check a reply queue; the reply is sent unchecked");
                            }
                        }
                        lock(&self.present).0.insert(q);
                        Ok(true)
                    }
                }
            }
            Err(e) => {
                *link = Link::default();
                Err(op_error("queue.declare(passive)", &e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSG-AMQP-08: a reply queue found missing is remembered (200 entries at most).
    #[test]
    fn gone_reply_queues_are_remembered_and_bounded() {
        let mut g = Recent::new(ReplyProbe::GONE_MAX, ReplyProbe::GONE_TTL);
        for i in 0..250 {
            g.insert(&format!("reply_{i}"));
        }
        assert_eq!(g.len(), ReplyProbe::GONE_MAX);
        assert!(g.contains("reply_249"));
        assert!(!g.contains("nosuch"));
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let mut g = Recent::new(10, Duration::ZERO);
        g.insert("q");
        assert!(!g.contains("q"));
    }
}
