//! Green TCP (GREEN-25..28, TEST-GREEN-15).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osier_green::net::{self, ListenOptions, Serve, ServeError};
use osier_green::{sleep, spawn, Runtime};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

fn echo_once(addr: std::net::SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut c = net::connect(addr).unwrap();
    c.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    c.read_exact(&mut buf).unwrap();
    buf
}

/// GREEN-25: listen sets SO_REUSEADDR, and SO_REUSEPORT by default except on port 0.
#[test]
fn listen_sets_reuse_options() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_ne!(port, 0);
        drop(l);
        let opts = ListenOptions {
            reuse_port: Some(true),
            ..ListenOptions::default()
        };
        let a = net::listen_with(("127.0.0.1", 0), opts.clone()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = net::listen_with(addr, opts).expect("SO_REUSEPORT lets a second socket bind");
        drop((a, b));
    });
}

/// GREEN-26/28: a green client and server exchange data; many connections are served
/// concurrently by one hub.
#[test]
fn many_green_clients_echo_through_one_hub() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = spawn(move || {
            net::serve(&l, 100, |mut c, _| {
                let mut buf = [0u8; 64];
                loop {
                    let n = c.read(&mut buf)?;
                    if n == 0 {
                        return Ok(Serve::Continue);
                    }
                    c.write_all(&buf[..n])?;
                }
            })
        });
        let clients: Vec<_> = (0..50u8)
            .map(|i| spawn(move || echo_once(addr, &[i; 16])))
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.wait().unwrap(), vec![i as u8; 16]);
        }
        server.kill();
    });
}

/// TEST-GREEN-15: a handler error ends serve with that error.
#[test]
fn handler_error_ends_serve() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = spawn(move || net::serve(&l, 10, |_c, _| Err("handler broke".into())));
        let _c = net::connect(addr).unwrap();
        match server.join().unwrap() {
            Err(ServeError::Handler(m)) => assert_eq!(m, "handler broke"),
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// TEST-GREEN-15: a handler panic ends serve too; Serve::Stop makes it return Ok.
#[test]
fn handler_panic_ends_serve_and_stop_returns_ok() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = spawn(move || net::serve(&l, 10, |_c, _| panic!("handler panicked")));
        let _c = net::connect(addr).unwrap();
        assert!(matches!(
            server.join().unwrap(),
            Err(ServeError::Panicked(_))
        ));

        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = spawn(move || net::serve(&l, 10, |_c, _| Ok(Serve::Stop)));
        let _c = net::connect(addr).unwrap();
        assert!(server.join().unwrap().is_ok());
    });
}

/// TEST-GREEN-15: concurrency=1 makes a second client wait for the first; the handler runs once
/// per connection and the connection is closed when it returns.
#[test]
fn concurrency_one_serialises_clients_and_closes_connections() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let server = spawn(move || {
            net::serve(&l, 1, move |mut c, _| {
                c2.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(30));
                c.write_all(b"x")?;
                Ok(Serve::Continue)
            })
        });
        let t0 = Instant::now();
        let clients: Vec<_> = (0..2)
            .map(|_| {
                spawn(move || {
                    let mut c = net::connect(addr).unwrap();
                    let mut buf = Vec::new();
                    c.read_to_end(&mut buf).unwrap(); // EOF: closed after the handler
                    (buf, Instant::now())
                })
            })
            .collect();
        let mut ends = Vec::new();
        for c in clients {
            let (buf, end) = c.wait().unwrap();
            assert_eq!(buf, b"x");
            ends.push(end.duration_since(t0));
        }
        ends.sort();
        assert!(
            ends[1] >= Duration::from_millis(55),
            "second waited: {ends:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        server.kill();
    });
}

/// A read timeout makes a green read fail with TimedOut.
#[test]
fn read_timeout_fails_with_timed_out() {
    green(|| {
        let l = net::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let keep = spawn(move || {
            let (c, _) = l.accept().unwrap();
            sleep(Duration::from_millis(100));
            drop(c);
        });
        let mut c = net::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(10)));
        let mut b = [0u8; 1];
        assert_eq!(
            c.read(&mut b).unwrap_err().kind(),
            std::io::ErrorKind::TimedOut
        );
        keep.wait().unwrap();
    });
}

/// Connecting to a closed port is an error, not a hang.
#[test]
fn connect_refused_is_an_error() {
    green(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(net::connect(addr).is_err());
    });
}

/// Green sockets also work from a plain OS thread (blocking with poll(2)).
#[test]
fn green_socket_from_os_thread() {
    let l = net::listen("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 3];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
    });
    assert_eq!(echo_once(addr, b"abc"), b"abc");
    server.wait().unwrap();
}
