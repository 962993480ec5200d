//! Green TCP: [`listen`], [`connect`], [`serve`] (GREEN-25..28).
//!
//! A green socket parks only the calling green thread while it waits; its hub polls the socket
//! with the others. From a plain OS thread the same calls block that thread (with `poll(2)`).
//!
//! ```
//! use osier_green::net::{self, Serve};
//! use std::io::{Read, Write};
//!
//! let listener = net::listen("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! let server = osier_green::spawn(move || {
//!     net::serve(&listener, 10, |mut conn, _peer| {
//!         let mut buf = [0u8; 4];
//!         conn.read_exact(&mut buf)?;
//!         conn.write_all(&buf)?;
//!         Ok(Serve::Stop)                       // eventlet's StopServe
//!     })
//! });
//! let client = osier_green::spawn(move || {
//!     let mut c = net::connect(addr).unwrap();
//!     c.write_all(b"ping").unwrap();
//!     let mut buf = [0u8; 4];
//!     c.read_exact(&mut buf).unwrap();
//!     buf
//! });
//! assert_eq!(&client.wait().unwrap(), b"ping");
//! server.join().unwrap().unwrap();
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::hub::{self, lock, HubShared, IoSlot};
use crate::pool::GreenPool;
use crate::waiter::Waiter;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

struct Registration {
    hub: Arc<HubShared>,
    key: usize,
    slot: Arc<IoSlot>,
}

/// A socket's registration with the hub of the green thread using it.
#[derive(Default)]
struct IoReg {
    reg: Mutex<Option<Registration>>,
}

impl IoReg {
    /// The slot on the current hub, registering (or moving) the socket there first.
    fn slot(&self, fd: RawFd) -> io::Result<Arc<IoSlot>> {
        let Some(cur) = hub::with_hub(|h| h.shared.clone()) else {
            return Err(io::Error::other("not on a green hub"));
        };
        let mut reg = lock(&self.reg);
        if let Some(r) = reg.as_ref() {
            if Arc::ptr_eq(&r.hub, &cur) {
                return Ok(r.slot.clone());
            }
        }
        if let Some(old) = reg.take() {
            Self::deregister(fd, old);
        }
        let slot = Arc::new(IoSlot::default());
        let key = lock(&cur.io).insert(slot.clone());
        if let Err(e) = cur.registry.register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            lock(&cur.io).remove(key);
            return Err(e);
        }
        *reg = Some(Registration {
            hub: cur,
            key,
            slot: slot.clone(),
        });
        Ok(slot)
    }

    fn deregister(fd: RawFd, r: Registration) {
        let _ = r.hub.registry.deregister(&mut SourceFd(&fd));
        let mut io = lock(&r.hub.io);
        if io.contains(r.key) {
            io.remove(r.key);
        }
    }

    fn close(&self, fd: RawFd) {
        if let Some(r) = lock(&self.reg).take() {
            Self::deregister(fd, r);
        }
    }

    /// Runs `op` until it does not return `WouldBlock`, parking between tries. `stop` is checked
    /// after every wake-up; when it is set the call fails with `Interrupted`.
    fn io_loop<R>(
        &self,
        fd: RawFd,
        dir: Dir,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        if !hub::in_green_thread() {
            return os_loop(fd, dir, deadline, op);
        }
        let slot = self.slot(fd)?;
        let (seq, waiter_slot) = match dir {
            Dir::Read => (&slot.read_seq, &slot.reader),
            Dir::Write => (&slot.write_seq, &slot.writer),
        };
        let me = Waiter::current();
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let before = seq.load(Ordering::Acquire);
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            {
                let mut w = lock(waiter_slot);
                if w.is_some() {
                    // GREEN-28: eventlet refuses a second simultaneous reader/writer.
                    return Err(io::Error::other(match dir {
                        Dir::Read => "second simultaneous read on a green socket",
                        Dir::Write => "second simultaneous write on a green socket",
                    }));
                }
                if seq.load(Ordering::Acquire) != before {
                    continue; // became ready while we tried
                }
                *w = Some(me.clone());
            }
            struct Clear<'a>(&'a Mutex<Option<Waiter>>);
            impl Drop for Clear<'_> {
                fn drop(&mut self) {
                    lock(self.0).take();
                }
            }
            let _clear = Clear(waiter_slot);
            me.park(deadline);
        }
    }
}

/// Blocking fallback for plain OS threads.
fn os_loop<R>(
    fd: RawFd,
    dir: Dir,
    deadline: Option<Instant>,
    mut op: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: match dir {
                Dir::Read => libc::POLLIN,
                Dir::Write => libc::POLLOUT,
            },
            revents: 0,
        };
        // SAFETY: `pfd` is a valid, initialised pollfd and we pass a count of 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Options for [`listen_with`] (eventlet's `listen(addr, family, backlog, reuse_addr, reuse_port)`).
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Listen backlog (eventlet default 50).
    pub backlog: i32,
    /// SO_REUSEADDR (default on).
    pub reuse_addr: bool,
    /// SO_REUSEPORT; `None` means eventlet's default: on unless the port is 0.
    pub reuse_port: Option<bool>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 50,
            reuse_addr: true,
            reuse_port: None,
        }
    }
}

/// A green listening socket.
pub struct TcpListener {
    inner: mio::net::TcpListener,
    io: IoReg,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.inner.local_addr().ok())
            .finish()
    }
}

fn resolve<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<Vec<SocketAddr>> {
    // Name resolution blocks the OS thread: do it on the tpool (the hub keeps running).
    crate::tpool::execute(move || addr.to_socket_addrs().map(|a| a.collect::<Vec<_>>()))
}

/// Binds and listens with eventlet's defaults (GREEN-25): SO_REUSEADDR on, backlog 50.
pub fn listen<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<TcpListener> {
    listen_with(addr, ListenOptions::default())
}

/// Binds and listens with explicit options.
pub fn listen_with<A: ToSocketAddrs + Send + 'static>(
    addr: A,
    opts: ListenOptions,
) -> io::Result<TcpListener> {
    let addrs = resolve(addr)?;
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for a in addrs {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(a),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_reuse_address(opts.reuse_addr)?;
        let reuse_port = opts.reuse_port.unwrap_or(a.port() != 0);
        if reuse_port && a.port() == 0 {
            tracing::warn!("SO_REUSEPORT with port 0 is of little use (eventlet warns too)");
        }
        sock.set_reuse_port(reuse_port)?;
        sock.set_nonblocking(true)?;
        if let Err(e) = sock.bind(&a.into()) {
            last = e;
            continue;
        }
        sock.listen(opts.backlog)?;
        let std: std::net::TcpListener = sock.into();
        return Ok(TcpListener {
            inner: mio::net::TcpListener::from_std(std),
            io: IoReg::default(),
        });
    }
    Err(last)
}

impl TcpListener {
    /// Accepts a connection, parking the calling green thread until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept_until(None)
    }

    fn accept_until(&self, stop: Option<&AtomicBool>) -> io::Result<(TcpStream, SocketAddr)> {
        let fd = self.inner.as_raw_fd();
        let (s, a) = self
            .io
            .io_loop(fd, Dir::Read, None, stop, || self.inner.accept())?;
        Ok((TcpStream::from_mio(s), a))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.io.close(self.inner.as_raw_fd());
    }
}

/// A green TCP connection. `Read` and `Write` park only the calling green thread.
pub struct TcpStream {
    inner: mio::net::TcpStream,
    io: IoReg,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.inner.peer_addr().ok())
            .finish()
    }
}

/// Connects to `addr` (GREEN-26); name resolution runs on the tpool.
pub fn connect<A: ToSocketAddrs + Send + 'static>(addr: A) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for a in resolve(addr)? {
        match connect_one(a) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn connect_one(a: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::from_mio(mio::net::TcpStream::connect(a)?);
    let fd = s.inner.as_raw_fd();
    s.io.io_loop(fd, Dir::Write, None, None, || {
        if let Some(e) = s.inner.take_error()? {
            return Err(e);
        }
        match s.inner.peer_addr() {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(e),
        }
    })?;
    s.inner.set_nodelay(true)?;
    Ok(s)
}

impl TcpStream {
    fn from_mio(inner: mio::net::TcpStream) -> Self {
        TcpStream {
            inner,
            io: IoReg::default(),
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Read timeout (`None`: wait as long as needed); a timed-out read fails with `TimedOut`.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    /// Write timeout, as for reads.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Shuts down one or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// TCP_NODELAY (on by default for connections made with [`connect`]).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.inner.as_raw_fd();
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let inner = &mut self.inner;
        self.io
            .io_loop(fd, Dir::Read, deadline, None, || inner.read(buf))
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.inner.as_raw_fd();
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        let inner = &mut self.inner;
        self.io
            .io_loop(fd, Dir::Write, deadline, None, || inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.io.close(self.inner.as_raw_fd());
    }
}

/// What a [`serve`] handler tells the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Keep serving.
    Continue,
    /// Stop accepting and make `serve` return `Ok` (eventlet's `StopServe`).
    Stop,
}

/// Why [`serve`] ended with an error.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `accept` failed.
    #[error("accept failed: {0}")]
    Accept(#[from] io::Error),
    /// A handler returned an error: it ends the server, as in eventlet.
    #[error("connection handler failed: {0}")]
    Handler(String),
    /// A handler panicked: it ends the server.
    #[error("connection handler panicked: {0}")]
    Panicked(String),
}

/// The error a handler returns.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the accept loop in the caller and handles each connection with `handler(conn, peer)` in
/// a pool of `concurrency` green threads (GREEN-27). At the limit it stops accepting until a
/// handler finishes. A connection is closed when its handler returns. A handler error or panic
/// ends `serve` with that error; [`Serve::Stop`] makes it return `Ok(())`. Handlers still running
/// when `serve` returns carry on.
pub fn serve<H>(listener: &TcpListener, concurrency: usize, handler: H) -> Result<(), ServeError>
where
    H: Fn(TcpStream, SocketAddr) -> Result<Serve, HandlerError> + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let pool = GreenPool::new(concurrency.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let outcome: Arc<Mutex<Option<ServeError>>> = Arc::new(Mutex::new(None));
    let me = Waiter::current();
    loop {
        let (conn, peer) = match listener.accept_until(Some(&stop)) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && stop.load(Ordering::Acquire) => {
                break;
            }
            Err(e) => return Err(ServeError::Accept(e)),
        };
        let (h, st, out, w) = (handler.clone(), stop.clone(), outcome.clone(), me.clone());
        pool.spawn_n(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(conn, peer)));
            let end = match r {
                Ok(Ok(Serve::Continue)) => return,
                Ok(Ok(Serve::Stop)) => None,
                Ok(Err(e)) => Some(ServeError::Handler(e.to_string())),
                Err(p) if p.is::<crate::GreenletExit>() => std::panic::resume_unwind(p),
                Err(p) => Some(ServeError::Panicked(crate::error::panic_message(&*p))),
            };
            let mut o = lock(&out);
            if o.is_none() && !st.load(Ordering::Acquire) {
                *o = end;
            }
            st.store(true, Ordering::Release);
            drop(o);
            w.wake();
        });
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
    let end = lock(&outcome).take();
    match end {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
