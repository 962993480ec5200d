//! oslo's topology on RabbitMQ (MSG-AMQP-02, shaped by the options of MSG-AMQP-03): the exchanges and
//! queues a message kind needs with their flags and arguments ([`ExchangeSpec`],
//! [`QueueSpec`], declared by the publisher and the consumers alike), the naming rules
//! (process-unique suffixes, AMQP's 255-byte names), and the bindings of an RPC server and of
//! a notification listener ([`Layout`]).

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::amqp::options::RabbitOptions;
use crate::amqp::queue_manager;
use crate::amqp::wire;
use crate::error::MessagingError;
use crate::target::Target;
use crate::untrusted::Untrusted;

/// An exchange to declare before publishing (once per connection).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExchangeSpec {
    pub name: String,
    pub fanout: bool,
    pub durable: bool,
    pub auto_delete: bool,
}

impl ExchangeSpec {
    /// `exchange.declare` with these flags: the one place publisher and consumers declare.
    pub(crate) async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let kind = if self.fanout {
            ExchangeKind::Fanout
        } else {
            ExchangeKind::Topic
        };
        let opts = ExchangeDeclareOptions {
            durable: self.durable,
            auto_delete: self.auto_delete,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(self.name.as_str().into(), kind, opts, FieldTable::default())
            .await
    }
}

/// A queue to declare and bind before publishing (notifications, MSG-NOT-12).
#[derive(Debug, Clone)]
pub(crate) struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub args: FieldTable,
}

impl QueueSpec {
    /// `queue.declare` with these flags and arguments.
    pub(crate) async fn declare(&self, ch: &Channel) -> Result<(), lapin::Error> {
        let opts = QueueDeclareOptions {
            durable: self.durable,
            auto_delete: self.auto_delete,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(self.name.as_str().into(), opts, self.args.clone())
            .await
            .map(|_| ())
    }
}

/// Exchanges, queues and bindings a listener needs, and the queues it consumes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topology {
    pub exchanges: Vec<ExchangeSpec>,
    pub queues: Vec<QueueSpec>,
    /// `(queue, exchange, routing key)`.
    pub bindings: Vec<(String, String, String)>,
    /// Queues deleted when the listener stops (an RPC server's fanout queue).
    pub delete_on_stop: Vec<String>,
    /// A stream queue among those consumed (the fanout with `rabbit_stream_fanout`): it is
    /// read from an offset, and never deleted (other servers read it too).
    pub stream: Option<String>,
}

impl Topology {
    /// The same topology with every exchange and queue non-durable (oslo's fallback when a
    /// shared exchange exists with the other durability).
    pub(crate) fn non_durable(&self) -> Topology {
        let mut t = self.clone();
        for e in &mut t.exchanges {
            e.durable = false;
        }
        for q in &mut t.queues {
            q.durable = false;
        }
        t
    }
}

/// A process-unique name part: random, or with `use_queue_manager` the queue manager's
/// `<hostname>:<processname>:<n>`, taken when the queue is made, so after any fork or setsid
/// (LESSON-05).
pub(crate) fn queue_suffix(opts: &RabbitOptions) -> Result<String, MessagingError> {
    if !opts.use_queue_manager {
        return Ok(wire::new_id().into());
    }
    queue_manager::next_name(opts).map_err(|e| MessagingError::InvalidOption {
        option: "use_queue_manager".into(),
        reason: format!("the queue manager's counter in /dev/shm cannot be kept: {e}"),
    })
}

/// Checks that every name AMQP must carry for `target` fits in a short string, so a name too
/// long is refused with a clear error before anything is sent.
pub(crate) fn check_names(target: &Target, names: &[&str]) -> Result<(), MessagingError> {
    match names.iter().find(|n| n.len() > wire::MAX_NAME_BYTES) {
        Some(n) => Err(target.invalid(&format!(
            "the AMQP name {:?} is {} bytes; exchange names, queue names and routing keys hold at most {}",
            Untrusted(n),
            n.len(),
            wire::MAX_NAME_BYTES
        ))),
        None => Ok(()),
    }
}

/// The topology of one driver: its options and control exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout<'a> {
    pub(crate) opts: &'a RabbitOptions,
    pub(crate) control_exchange: &'a str,
}

impl Layout<'_> {
    /// The exchange a target's messages go to: its own, or the control exchange.
    pub(crate) fn exchange_of(&self, t: &Target) -> String {
        self.exchange_name_of(t).to_string()
    }

    /// [`exchange_of`](Self::exchange_of), borrowed.
    pub(crate) fn exchange_name_of<'a>(&'a self, t: &'a Target) -> &'a str {
        t.exchange.as_deref().unwrap_or(self.control_exchange)
    }

    /// The topic exchange (control exchange or the target's).
    pub(crate) fn topic_exchange(&self, name: String) -> ExchangeSpec {
        ExchangeSpec {
            name,
            fanout: false,
            durable: self.opts.durable(),
            auto_delete: self.opts.amqp_auto_delete,
        }
    }

    pub(crate) fn fanout_exchange(&self, topic: &str) -> ExchangeSpec {
        ExchangeSpec {
            name: format!("{topic}_fanout"),
            fanout: true,
            durable: self.opts.rabbit_transient_quorum_queue,
            auto_delete: true,
        }
    }

    /// A topic, server or notification queue.
    pub(crate) fn queue(&self, name: String) -> QueueSpec {
        QueueSpec {
            name,
            durable: self.opts.durable(),
            auto_delete: self.opts.amqp_auto_delete,
            args: self.opts.queue_args(),
        }
    }

    /// A reply or fanout queue.
    pub(crate) fn transient_queue(&self, name: String) -> QueueSpec {
        QueueSpec {
            name,
            durable: self.opts.rabbit_transient_quorum_queue,
            auto_delete: false,
            args: self.opts.transient_args(),
        }
    }

    /// An RPC server's topology: its `(topic, server)` queue and the shared topic
    /// queue on the topic exchange, and a fanout queue of its own on the topic's fanout
    /// exchange (deleted on stop unless the queue manager keeps it); returns it with the
    /// queues to consume.
    pub(crate) fn rpc_server(
        &self,
        target: &Target,
    ) -> Result<(Topology, Vec<String>), MessagingError> {
        let (topic, server) = target.server_address()?;
        let topic = topic.to_string();
        let ex = self.topic_exchange(self.exchange_of(target));
        let fanout_ex = self.fanout_exchange(&topic);
        let server_q = format!("{topic}.{server}");
        let stream = self.opts.rabbit_stream_fanout;
        // With stream fanout, one stream per topic that every server reads.
        let fanout_q = if stream {
            format!("{topic}_fanout")
        } else {
            format!("{topic}_fanout_{}", queue_suffix(self.opts)?)
        };
        check_names(target, &[&ex.name, &fanout_ex.name, &server_q, &fanout_q])?;
        let fanout_spec = if stream {
            QueueSpec {
                name: fanout_q.clone(),
                durable: true,
                auto_delete: false,
                args: self.opts.stream_args(),
            }
        } else {
            self.transient_queue(fanout_q.clone())
        };
        let topo = Topology {
            bindings: vec![
                (topic.clone(), ex.name.clone(), topic.clone()),
                (server_q.clone(), ex.name.clone(), server_q.clone()),
                (fanout_q.clone(), fanout_ex.name.clone(), topic.clone()),
            ],
            exchanges: vec![ex, fanout_ex],
            queues: vec![
                self.queue(topic.clone()),
                self.queue(server_q.clone()),
                fanout_spec,
            ],
            // Fanout queues are deleted on stop unless the queue manager keeps them, or they
            // are the topic's shared stream.
            delete_on_stop: if self.opts.use_queue_manager || stream {
                vec![]
            } else {
                vec![fanout_q.clone()]
            },
            stream: stream.then(|| fanout_q.clone()),
        };
        Ok((topo, vec![topic, server_q, fanout_q]))
    }

    /// A notification listener's topology: per target (topic already `<topic>.<priority>`),
    /// a queue named after the routing key, or, in a pool, the pool's one queue bound once per
    /// routing key; returns it with the queues to consume.
    pub(crate) fn notification_listener(
        &self,
        targets: &[Target],
        pool: Option<&str>,
    ) -> Result<(Topology, Vec<String>), MessagingError> {
        let mut topo = Topology::default();
        let mut queues: Vec<String> = Vec::new();
        for t in targets {
            let key = t.listen_topic()?.to_string();
            let ex = self.topic_exchange(self.exchange_of(t));
            if !topo.exchanges.iter().any(|e| e.name == ex.name) {
                topo.exchanges.push(ex.clone());
            }
            let queue = pool.map(str::to_string).unwrap_or_else(|| key.clone());
            check_names(t, &[&ex.name, &key, &queue])?;
            if !queues.contains(&queue) {
                queues.push(queue.clone());
                topo.queues.push(self.queue(queue.clone()));
            }
            topo.bindings.push((queue, ex.name, key));
        }
        Ok((topo, queues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str) -> RabbitOptions {
        RabbitOptions::default()
            .with_url_query(&url.parse().unwrap())
            .unwrap()
    }

    fn layout(o: &RabbitOptions) -> Layout<'_> {
        Layout {
            opts: o,
            control_exchange: "openstack",
        }
    }

    /// MSG-AMQP-03: with `rabbit_stream_fanout`, a server's fanout is the topic's one stream
    /// (`<topic>_fanout`, durable, `x-queue-type: stream`, `x-max-age` as a string), read from
    /// an offset and never deleted on stop.
    #[test]
    fn stream_fanout_reads_the_topics_one_stream() {
        let o = opts(
            "rabbit://h/?rabbit_stream_fanout=true&rabbit_transient_quorum_queue=true&rabbit_qos_prefetch_count=5",
        );
        let (topo, consumed) = layout(&o)
            .rpc_server(&Target::topic("t").with_server("s"))
            .unwrap();
        assert_eq!(topo.stream.as_deref(), Some("t_fanout"));
        assert!(consumed.contains(&"t_fanout".to_string()));
        assert!(topo.delete_on_stop.is_empty());
        let q = topo.queues.iter().find(|q| q.name == "t_fanout").unwrap();
        assert!(q.durable && !q.auto_delete);
        let args = q.args.inner();
        assert_eq!(
            args.get("x-queue-type"),
            Some(&lapin::types::AMQPValue::LongString("stream".into()))
        );
        assert_eq!(
            args.get("x-max-age"),
            Some(&lapin::types::AMQPValue::LongString("1800s".into()))
        );
        let plain = opts("rabbit://h/");
        let (topo, _) = layout(&plain)
            .rpc_server(&Target::topic("t").with_server("s"))
            .unwrap();
        assert!(topo.stream.is_none() && topo.delete_on_stop.len() == 1);
    }

    /// MSG-AMQP-03: the option variants change the declared flags and arguments.
    #[test]
    fn durable_and_quorum_options_shape_the_topology() {
        let o = opts("rabbit://h/?amqp_durable_queues=true&amqp_auto_delete=true");
        let d = layout(&o);
        let ex = d.topic_exchange("openstack".into());
        assert!(ex.durable && ex.auto_delete && !ex.fanout);
        let q = d.queue("topic".into());
        assert!(q.durable && q.auto_delete);
        let o = opts("rabbit://h/?rabbit_transient_quorum_queue=true");
        let d = layout(&o);
        let fq = d.transient_queue("t_fanout_x".into());
        assert!(fq.durable);
        assert!(d.fanout_exchange("t").durable);
        let o = opts("rabbit://h/");
        let plain = layout(&o);
        let fq = plain.transient_queue("t_fanout_x".into());
        assert!(!fq.durable && !fq.auto_delete);
        assert!(!plain.fanout_exchange("t").durable);
        assert!(plain.fanout_exchange("t").auto_delete);
    }

    /// LESSON-05: with the queue manager, names are `<hostname>:<processname>:<n>`, a new
    /// number for each queue of this service generation, taken when the name is made (so after
    /// a fork); without it, they are random.
    #[test]
    fn queue_names_are_derived_when_made() {
        let processname = format!("osier-test-{}", uuid::Uuid::new_v4().simple());
        let qm = RabbitOptions {
            use_queue_manager: true,
            hostname: Some("node1".into()),
            processname: Some(processname.clone()),
            ..RabbitOptions::default()
        };
        let first = queue_suffix(&qm).unwrap();
        assert_eq!(first, format!("node1:{processname}:1"));
        assert_eq!(queue_suffix(&qm).unwrap(), format!("node1:{processname}:2"));
        let _ = std::fs::remove_file(format!("/dev/shm/node1_{processname}_qmanager"));
        let plain = RabbitOptions::default();
        assert_ne!(queue_suffix(&plain).unwrap(), queue_suffix(&plain).unwrap());
    }
}
