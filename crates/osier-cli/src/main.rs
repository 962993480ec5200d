//! `osier`: the operator's command line for a deployment speaking oslo.messaging (Python
//! services, osier services, or both).
//!
//! | oslo.messaging (Python) | osier |
//! |---|---|
//! | `RPCClient(t, Target(topic, server)).call(ctxt, 'm', a=1)` | `osier call --topic T --server S m a=1` |
//! | `client.prepare(fanout=True).cast(ctxt, 'm')` | `osier cast --topic T --fanout m` |
//! | `Notifier(t, 'pub', driver='messagingv2').info(ctxt, 'ev', payload)` | `osier notify --event-type ev --publisher-id pub k=v` |
//! | `get_notification_listener(t, [Target(topic)], [endpoint], pool=...)` | `osier listen --topic notifications [--pool P] [--json]` |
//! | `client.call(ctxt, 'oslo_rpc_server_ping')` (`rpc_ping_enabled`) | `osier ping --topic T --server S` |
//! | `rabbitmqctl list_queues` / the management UI, by hand | `osier topology --topic T` |
//!
//! The transport comes from `--url`, `$OSIER_URL` or `--config-file`; no output ever shows its
//! password. Exit status: 0 ok, 1 the server answered with a failure, 2 usage, 3 timeout,
//! 4 broker unreachable (or login refused), 5 anything else.

mod exit;
mod kv;
mod listen;
mod notify;
mod rpc;
mod topology;
mod transport_args;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use osier_messaging::MessagingError;

use exit::Exit;

/// The operator's command line for an oslo.messaging deployment.
#[derive(Debug, Parser)]
#[command(name = "osier", version)]
struct Cli {
    #[command(flatten)]
    transport: transport_args::TransportArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call a method on a server and print its result as JSON.
    Call(rpc::CallArgs),
    /// Cast a method (no reply); with --fanout, to every server of the topic.
    Cast(rpc::CastArgs),
    /// Send a notification.
    Notify(notify::NotifyArgs),
    /// Print notifications as they arrive, until Ctrl-C.
    Listen(listen::ListenArgs),
    /// oslo's RPC ping of a server (rpc_ping_enabled).
    Ping(rpc::PingArgs),
    /// The oslo exchanges, queues, bindings and consumers of a topic (RabbitMQ's management API).
    Topology(topology::TopologyArgs),
}

/// What a command gives: `Ok` when it worked, `Err` when it failed; an [`Outcome`] either way,
/// so `?` ends a command with the failure's status and message.
pub type Done = Result<Outcome, Outcome>;

/// How a command ended: what to print on stdout, what to say on stderr, the exit status.
#[derive(Debug)]
pub struct Outcome {
    exit: Exit,
    stdout: Option<String>,
    stderr: Option<String>,
}

impl Outcome {
    fn ok() -> Self {
        Outcome {
            exit: Exit::Ok,
            stdout: None,
            stderr: None,
        }
    }
    fn output(s: String) -> Self {
        Outcome {
            exit: Exit::Ok,
            stdout: Some(s),
            stderr: None,
        }
    }
    fn usage(why: impl Into<String>) -> Self {
        Outcome::failed(Exit::Usage, why)
    }
    fn failed(exit: Exit, why: impl Into<String>) -> Self {
        Outcome {
            exit,
            stdout: None,
            stderr: Some(why.into()),
        }
    }
    fn error(e: &MessagingError) -> Self {
        let why = match e {
            MessagingError::Remote(f) => format!("{}: {} (from {})", f.class, f.message, f.module),
            e => e.to_string(),
        };
        Outcome::failed(Exit::of(e), why)
    }
}

impl From<MessagingError> for Outcome {
    fn from(e: MessagingError) -> Self {
        Outcome::error(&e)
    }
}

impl From<kv::KvError> for Outcome {
    fn from(e: kv::KvError) -> Self {
        Outcome::usage(e.to_string())
    }
}

/// One line on stdout, flushed (a pipe reader sees each notification as it comes).
pub fn print_line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = osier_service::logging::init("warn,lapin=error") {
        let _ = writeln!(std::io::stderr(), "osier: {e}");
        return ExitCode::from(Exit::Failed as u8);
    }
    let outcome = run(&cli);
    if let Some(s) = &outcome.stdout {
        print_line(s);
    }
    if let Some(s) = &outcome.stderr {
        let _ = writeln!(std::io::stderr(), "osier: {s}");
    }
    ExitCode::from(outcome.exit as u8)
}

fn run(cli: &Cli) -> Outcome {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Outcome::failed(Exit::Failed, format!("cannot start the runtime: {e}")),
    };
    let opened = {
        let _in_runtime = rt.enter();
        cli.transport.open()
    };
    let transport = match opened {
        Ok(t) => t,
        Err(e) => return Outcome::error(&e),
    };
    let done = match &cli.command {
        Command::Call(a) => rt.block_on(rpc::call(&transport, a)),
        Command::Cast(a) => rt.block_on(rpc::cast(&transport, a)),
        Command::Notify(a) => rt.block_on(notify::notify(&transport, a)),
        Command::Listen(a) => rt.block_on(listen::listen(&transport, a)),
        Command::Ping(a) => rt.block_on(rpc::ping(&transport, a)),
        Command::Topology(a) => topology::topology(&transport, a),
    };
    drop(transport);
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    done.unwrap_or_else(|failed| failed)
}
