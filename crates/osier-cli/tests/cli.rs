//! `osier` against a running osier server on the local RabbitMQ: each command, its output and
//! its exit status, and no password in any output. (Against Python oslo.messaging services:
//! `cargo xtask interop`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use osier_messaging::{Endpoint, EndpointError, RpcServer, Target, Transport, TransportOptions};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_osier");

fn broker() -> String {
    let uri = std::env::var("OSIER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rest = uri
        .strip_prefix("amqp://")
        .expect("OSIER_AMQP_URL is an amqp:// URI");
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let vhost = if vhost.eq_ignore_ascii_case("%2f") {
        ""
    } else {
        vhost
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if std::net::TcpStream::connect(host).is_err() {
        panic!("RabbitMQ is not reachable at {host}: start it (`rabbitmq-server -detached`) or point OSIER_AMQP_URL at one");
    }
    format!("rabbit://{authority}/{vhost}")
}

fn topic(name: &str) -> String {
    format!("cli-{name}-{}", uuid::Uuid::new_v4().simple())
}

fn osier(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("OSIER_URL", broker())
        .output()
        .expect("osier runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `osier listen ...`, once it says it is listening (stdout piped).
fn listening(args: &[&str]) -> std::process::Child {
    listening_after(args).0
}

/// [`listening`], with what it said on stderr before it listened.
fn listening_after(args: &[&str]) -> (std::process::Child, String) {
    let mut listen = Command::new(BIN)
        .args(args)
        .env("OSIER_URL", broker())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(listen.stderr.take().unwrap());
    let (mut line, mut said) = (String::new(), String::new());
    while !line.contains("listening on") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "osier listen ended before listening"
        );
        said.push_str(&line);
    }
    (listen, said)
}

/// A server on `topic` (host `h1`): `add(a, b)`, `fail()`, and rpc_ping_enabled.
struct Server {
    rt: tokio::runtime::Runtime,
    server: RpcServer,
}

impl Server {
    fn start(topic: &str) -> Server {
        Server::start_with(topic, true)
    }

    fn start_with(topic: &str, ping: bool) -> Server {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let opts = TransportOptions {
            rpc_ping_enabled: ping,
            ..TransportOptions::default()
        };
        let server = rt.block_on(async {
            let t = Transport::with_options(&broker(), opts).unwrap();
            let ep = Endpoint::new("calc")
                .method_async("add", |_ctx, a: Value| async move {
                    let n = a["a"].as_i64().unwrap_or(0) + a["b"].as_i64().unwrap_or(0);
                    Ok::<_, EndpointError>(json!(n))
                })
                .method_async("fail", |_ctx, _a: Value| async move {
                    Err::<Value, _>(EndpointError::new("ValueError", "no such instance"))
                });
            let s = RpcServer::builder(&t, Target::topic(topic).with_server("h1"))
                .endpoint(ep)
                .build()
                .unwrap();
            s.start().await.unwrap();
            s
        });
        Server { rt, server }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.rt.block_on(async {
            let _ = self.server.stop().await;
            let _ = self.server.wait().await;
        });
    }
}

#[test]
fn call_prints_the_result_as_json_and_exits_0() {
    let t = topic("call");
    let _s = Server::start(&t);
    let o = osier(&[
        "call", "--topic", &t, "--server", "h1", "add", "a=2", "b=40",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "42");
}

#[test]
fn a_remote_failure_exits_1_naming_the_exception() {
    let t = topic("fail");
    let _s = Server::start(&t);
    let o = osier(&["call", "--topic", &t, "fail"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("ValueError: no such instance"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_method_the_server_lacks_exits_1() {
    let t = topic("nomethod");
    let _s = Server::start(&t);
    let o = osier(&["call", "--topic", &t, "reboot"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("reboot"), "{}", stderr(&o));
}

#[test]
fn a_call_nobody_answers_exits_3() {
    let t = topic("nobody");
    let _s = Server::start(&t);
    // The topic's queue exists but this server is not there.
    let o = osier(&[
        "call",
        "--topic",
        &t,
        "--server",
        "h2",
        "--timeout",
        "1",
        "add",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn an_unreachable_broker_exits_4() {
    let o = Command::new(BIN)
        .args(["call", "--topic", "x", "--timeout", "5", "m"])
        .env("OSIER_URL", "rabbit://guest:guest@127.0.0.1:1/")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    let o = osier(&["call", "--topic", "x", "m", "not-key-value"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = Command::new(BIN)
        .args(["call", "--topic", "x", "m"])
        .env_remove("OSIER_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--url"), "{}", stderr(&o));
}

#[test]
fn ping_answers_pong() {
    let t = topic("ping");
    let _s = Server::start(&t);
    let o = osier(&["ping", "--topic", &t, "--server", "h1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("pong from"), "{}", stdout(&o));
}

#[test]
fn ping_of_a_server_without_rpc_ping_enabled_exits_1_saying_so() {
    let t = topic("noping");
    let _s = Server::start_with(&t, false);
    let o = osier(&["ping", "--topic", &t, "--server", "h1", "--timeout", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rpc_ping_enabled is off"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cast_exits_0_once_the_broker_has_it() {
    let t = topic("cast");
    let _s = Server::start(&t);
    let o = osier(&["cast", "--topic", &t, "add", "a=1", "b=1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = osier(&["cast", "--topic", &t, "--fanout", "add"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn notify_and_listen_round_trip_with_secrets_masked() {
    let t = topic("notif");
    let listen = listening(&["listen", "--topic", &t, "--json", "--count", "1"]);
    let o = osier(&[
        "notify",
        "--topic",
        &t,
        "--event-type",
        "compute.instance.create.end",
        "--publisher-id",
        "compute.h1",
        "instance_id=i-1",
        r#"auth={"password":"hunter2-cli"}"#,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = listen.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let got: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(got["event_type"], "compute.instance.create.end");
    assert_eq!(got["publisher_id"], "compute.h1");
    assert_eq!(got["priority"], "info");
    assert_eq!(got["payload"]["instance_id"], "i-1");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2-cli"));
}

#[test]
fn listen_without_a_pool_warns_that_it_shares_the_queues() {
    let t = topic("nopool");
    let (mut listen, said) = listening_after(&["listen", "--topic", &t]);
    listen.kill().unwrap();
    let _ = listen.wait();
    assert!(said.contains("no --pool"), "{said}");
    let (mut listen, said) = listening_after(&["listen", "--topic", &t, "--pool", &t]);
    listen.kill().unwrap();
    let _ = listen.wait();
    assert!(!said.contains("no --pool"), "{said}");
}

#[test]
fn ctrl_c_stops_listen_cleanly() {
    let t = topic("sigint");
    let mut listen = listening(&["listen", "--topic", &t]);
    // SAFETY: kill(2) with a pid of our own child and a valid signal number.
    assert_eq!(unsafe { libc::kill(listen.id() as i32, libc::SIGINT) }, 0);
    let status = listen.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn topology_without_the_management_api_says_how_to_enable_it() {
    let o = osier(&[
        "topology",
        "--topic",
        "x",
        "--management-url",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rabbitmq-plugins enable rabbitmq_management"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn no_password_in_any_output() {
    let secret = "s3cr3t-not-guest";
    let url = broker().replacen("guest:guest@", &format!("guest:{secret}@"), 1);
    for args in [
        vec!["call", "--topic", "x", "--timeout", "3", "m"],
        vec!["notify", "--event-type", "e"],
        vec![
            "topology",
            "--topic",
            "x",
            "--management-url",
            "http://127.0.0.1:1",
        ],
        vec!["call", "--topic", "x", "m", "bad"],
    ] {
        let o = Command::new(BIN)
            .args(&args)
            .env("OSIER_URL", &url)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        for out in [&o.stdout, &o.stderr] {
            assert!(
                !String::from_utf8_lossy(out).contains(secret),
                "{args:?} printed the password"
            );
        }
    }
}
