//! A green TCP echo server and N concurrent green clients on one hub (eventlet's classic demo).
//!
//! ```text
//! cargo run --release -p osier-green --example echo -- [--clients N] [--rounds M] [--size BYTES]
//! ```
//!
//! Everything runs in green threads of the default single-hub runtime: the accept loop
//! (`net::serve`), one handler per connection, and the clients. Each client connects, sends M
//! messages and checks every echo. At the end it prints what it did and how fast.
#![allow(clippy::print_stdout)] // a demo reports to its user on stdout

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use osier_green::net::{self, Serve};
use osier_green::{GreenPool, Runtime};

struct Args {
    clients: usize,
    rounds: usize,
    size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        clients: 100,
        rounds: 200,
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match flag.as_str() {
            "--clients" => a.clients = num("--clients")?,
            "--rounds" => a.rounds = num("--rounds")?,
            "--size" => a.size = num("--size")?,
            "-h" | "--help" => {
                return Err("usage: echo [--clients N] [--rounds M] [--size BYTES]".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = Runtime::global();
    let outcome = rt.block_on(move || run(args));
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("echo demo failed: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("echo demo's main green thread failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let opts = net::ListenOptions {
        backlog: 1024, // eventlet's default of 50 drops SYNs when many clients connect at once
        ..net::ListenOptions::default()
    };
    let listener = net::listen_with("127.0.0.1:0", opts).map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "osier-green echo: server on {addr}, {} green clients x {} round trips of {} bytes, one hub",
        args.clients, args.rounds, args.size
    );

    let server = osier_green::spawn(move || {
        net::serve(&listener, 10_000, |mut conn, _peer| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(Serve::Continue);
                }
                conn.write_all(&buf[..n])?;
            }
        })
    });

    let started = Instant::now();
    let pool = GreenPool::new(args.clients);
    let (rounds, size) = (args.rounds, args.size);
    let results: Vec<Result<Duration, String>> = pool
        .imap(
            move |id: usize| -> Result<Duration, String> {
                let mut c = net::connect(addr).map_err(|e| format!("client {id}: {e}"))?;
                let msg: Vec<u8> = (0..size).map(|i| (i + id) as u8).collect();
                let mut back = vec![0u8; size];
                let mut worst = Duration::ZERO;
                for _ in 0..rounds {
                    let t = Instant::now();
                    c.write_all(&msg).map_err(|e| format!("client {id}: {e}"))?;
                    c.read_exact(&mut back)
                        .map_err(|e| format!("client {id}: {e}"))?;
                    worst = worst.max(t.elapsed());
                    if back != msg {
                        return Err(format!("client {id}: echo differs"));
                    }
                }
                Ok(worst)
            },
            0..args.clients,
        )
        .map(|r| r.map_err(|e| e.to_string()).and_then(|x| x))
        .collect();
    let elapsed = started.elapsed();
    server.kill();

    let mut worst = Duration::ZERO;
    for r in results {
        worst = worst.max(r?);
    }
    let total = args.clients * args.rounds;
    println!(
        "done: {total} round trips over {} connections in {:.3}s = {:.0} round trips/s, slowest round trip {:.2} ms",
        args.clients,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        worst.as_secs_f64() * 1e3
    );
    Ok(())
}
