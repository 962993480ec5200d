//! `osier call`, `osier cast` and `osier ping`: one RPC message to a target, as
//! `oslo_messaging.RPCClient(transport, target).prepare(...).call(ctxt, method, **kwargs)`.

use std::time::{Duration, Instant};

use clap::Args;
use osier_messaging::{RequestContext, RpcClient, Target, Transport, PING_METHOD};
use serde_json::Value;

use crate::exit::Exit;
use crate::kv;
use crate::{Done, Outcome};

/// Where an RPC message goes.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The topic (the service's RPC topic: `compute`, `scheduler`, ...).
    #[arg(long)]
    pub topic: String,
    /// One server of the topic (its host name); any server when absent.
    #[arg(long)]
    pub server: Option<String>,
    /// The endpoint's namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The API version the method needs (`1.2`).
    #[arg(long = "rpc-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// The exchange (the transport's control exchange when absent).
    #[arg(long)]
    pub exchange: Option<String>,
    /// Seconds to wait for the reply (call and ping).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// How many times to retry reaching the broker (oslo's `retry`; -1: forever).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub retry: i32,
}

impl TargetArgs {
    fn target(&self, fanout: bool) -> Target {
        let mut t = Target::topic(&self.topic);
        if let Some(s) = &self.server {
            t = t.with_server(s);
        }
        if let Some(n) = &self.namespace {
            t = t.with_namespace(n);
        }
        if let Some(v) = &self.version {
            t = t.with_version(v);
        }
        if let Some(e) = &self.exchange {
            t = t.with_exchange(e);
        }
        t.fanout = fanout;
        t
    }

    fn client(&self, transport: &Transport, fanout: bool) -> Result<RpcClient, Outcome> {
        if !(self.timeout > 0.0 && self.timeout <= 86_400.0) {
            return Err(Outcome::usage(
                "--timeout must be within (0, 86400] seconds",
            ));
        }
        Ok(RpcClient::new(transport, self.target(fanout))
            .timeout(Duration::from_secs_f64(self.timeout))
            .retry(self.retry))
    }
}

/// `osier call`.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The method.
    pub method: String,
    /// Its arguments, key=value (JSON values; key:=value for a string).
    pub args: Vec<String>,
}

/// `osier cast`.
#[derive(Debug, Clone, Args)]
pub struct CastArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Every server of the topic gets it.
    #[arg(long)]
    pub fanout: bool,
    /// The method.
    pub method: String,
    /// Its arguments, key=value (JSON values; key:=value for a string).
    pub args: Vec<String>,
}

/// `osier ping`.
#[derive(Debug, Clone, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

fn arguments(args: &[String]) -> Result<Value, Outcome> {
    Ok(Value::Object(kv::parse(args)?))
}

/// Calls and prints the result as JSON on stdout.
pub async fn call(transport: &Transport, a: &CallArgs) -> Done {
    let args = arguments(&a.args)?;
    let client = a.target.client(transport, false)?;
    let ctx = RequestContext::with_new_request_id();
    let v = client.call::<Value>(&ctx, &a.method, args).await?;
    Ok(Outcome::output(v.to_string()))
}

/// Casts; succeeds once the broker has the message.
pub async fn cast(transport: &Transport, a: &CastArgs) -> Done {
    let args = arguments(&a.args)?;
    let client = a.target.client(transport, a.fanout)?;
    let ctx = RequestContext::with_new_request_id();
    client.cast(&ctx, &a.method, args).await?;
    transport.flush().await?;
    Ok(Outcome::ok())
}

/// oslo's RPC ping (a server with `rpc_ping_enabled` answers `pong`).
pub async fn ping(transport: &Transport, a: &PingArgs) -> Done {
    let client = a.target.client(transport, false)?;
    let t0 = Instant::now();
    let r = client
        .call::<Value>(
            &RequestContext::new(),
            PING_METHOD,
            Value::Object(Default::default()),
        )
        .await;
    match r {
        Ok(Value::String(s)) if s == "pong" => Ok(Outcome::output(format!(
            "pong from {} in {:.1} ms",
            client.target(),
            t0.elapsed().as_secs_f64() * 1e3
        ))),
        Ok(other) => Err(Outcome::failed(
            Exit::Remote,
            format!("the server answered {other} instead of pong"),
        )),
        // oslo's NoSuchMethod: from a Python server or an osier one.
        Err(e @ osier_messaging::MessagingError::NoSuchMethod { .. }) => Err(Outcome::failed(
            Exit::Remote,
            format!("{e} (the server does not answer pings: its rpc_ping_enabled is off)"),
        )),
        Err(e) => Err(e.into()),
    }
}
