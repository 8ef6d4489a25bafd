//! A TCP relay that a test can switch between forwarding, cutting and silencing connections.
//!
//! A replica that loses etcd while etcd stays healthy for everyone else (a partition of one) cannot be
//! staged by killing etcd members, and network namespaces or iptables need root. So the replica under
//! test is pointed at a [`Relay`] in front of an etcd member instead of at the member itself, and the
//! test flips the relay's [`RelayMode`]:
//!
//! - [`Forward`](RelayMode::Forward) (the start): each accepted connection gets its own upstream
//!   connection and bytes are copied both ways, half-closes included.
//! - [`Reset`](RelayMode::Reset): every open connection is shut down both ways at once (the client reads
//!   end-of-stream, later writes fail; std cannot send a bare TCP RST), and new connections are accepted
//!   and closed immediately. Clients fail fast: a crash-like cut.
//! - [`Blackhole`](RelayMode::Blackhole): connections stay open and new ones are accepted, but nothing
//!   is delivered either way, end-of-stream included: a silent partition, only noticed by timeouts and
//!   keepalives. (Unlike a real partition, `connect` itself still succeeds.)
//!
//! [`heal`](Relay::heal) returns to `Forward`. New connections work at once. Blackholed connections
//! still open resume where they stopped: bytes held during the blackhole are delivered (nothing is
//! dropped), as TCP would after a short partition. A client that gave up on its connection meanwhile
//! has closed it, and that close reaches the upstream only after the heal. Connections cut by `Reset`
//! stay dead.
//!
//! Dropping the relay closes its listener (later connects are refused) and shuts down every connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the accept loop sleeps when no connection is waiting.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long a relayed connection waits for its upstream to accept.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long dropping the relay waits for its connection threads to finish.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// What the relay does with connections; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Copy bytes both ways.
    #[default]
    Forward,
    /// Shut down every connection now, and new ones as they come.
    Reset,
    /// Keep connections open, deliver nothing.
    Blackhole,
}

struct State {
    mode: RelayMode,
    stopped: bool,
}

/// Duplicates of a relayed connection's sockets, kept so that `Reset` and drop can shut them down while
/// the copying threads are blocked reading.
#[derive(Default)]
struct Tracked {
    client: Option<TcpStream>,
    upstream: Option<TcpStream>,
}

impl Tracked {
    fn shutdown(&self) {
        for s in [&self.client, &self.upstream].into_iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    conns: Mutex<HashMap<u64, Tracked>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
}

/// A TCP relay on 127.0.0.1 in front of one upstream address; see the module documentation.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and relays every connection to `upstream`, in
    /// [`RelayMode::Forward`].
    pub fn start(upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State { mode: RelayMode::Forward, stopped: false }),
            changed: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("relay-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &for_thread))?;
        Ok(Relay { addr, shared, acceptor: Some(acceptor) })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`addr`](Self::addr) as `127.0.0.1:port`, the form etcd clients take as an endpoint.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The address connections are relayed to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> RelayMode {
        self.shared.state().mode
    }

    /// Switches mode; switching to [`RelayMode::Reset`] shuts down every open connection before it
    /// returns.
    pub fn set_mode(&self, mode: RelayMode) {
        self.shared.state().mode = mode;
        self.shared.changed.notify_all();
        if mode == RelayMode::Reset {
            self.shared.shutdown_all();
        }
    }

    /// `set_mode(RelayMode::Reset)`.
    pub fn reset(&self) {
        self.set_mode(RelayMode::Reset);
    }

    /// `set_mode(RelayMode::Blackhole)`.
    pub fn blackhole(&self) {
        self.set_mode(RelayMode::Blackhole);
    }

    /// `set_mode(RelayMode::Forward)`: new connections are relayed again and blackholed ones resume.
    pub fn heal(&self) {
        self.set_mode(RelayMode::Forward);
    }

    /// Relayed connections open now (including blackholed ones, excluding ones closed at accept).
    pub fn connections(&self) -> usize {
        self.shared.conns().len()
    }

    /// Connections accepted since the start, whatever became of them.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.state().stopped = true;
        self.shared.changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join(); // closes the listener
        }
        self.shared.shutdown_all();
        let deadline = Instant::now() + DROP_WAIT;
        while !self.shared.conns().is_empty() && Instant::now() < deadline {
            thread::sleep(ACCEPT_POLL);
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Tracked>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shutdown_all(&self) {
        for tracked in self.conns().values() {
            tracked.shutdown();
        }
    }

    /// Blocks while the relay is blackholed; true when bytes may flow, false when the connection must
    /// end (reset or relay dropped).
    fn wait_forwarding(&self) -> bool {
        let mut state = self.state();
        loop {
            if state.stopped {
                return false;
            }
            match state.mode {
                RelayMode::Forward => return true,
                RelayMode::Reset => return false,
                RelayMode::Blackhole => state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Whether a connection registered now must be shut down at once.
    fn cutting(&self) -> bool {
        let state = self.state();
        state.stopped || state.mode == RelayMode::Reset
    }

    fn close(&self, id: u64) {
        if let Some(tracked) = self.conns().remove(&id) {
            tracked.shutdown();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        if shared.state().stopped {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                admit(shared, stream);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock (nothing waiting) or a transient failure such as EMFILE: poll again shortly.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

fn admit(shared: &Arc<Shared>, client: TcpStream) {
    if shared.cutting() || client.set_nonblocking(false).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let _ = client.set_nodelay(true);
    let Ok(tracked_client) = client.try_clone() else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.conns().insert(id, Tracked { client: Some(tracked_client), upstream: None });
    // Registered before the check, so a reset either sees it in the map or is seen here.
    if shared.cutting() {
        shared.close(id);
        return;
    }
    let for_thread = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("relay-conn-{id}"))
        .spawn(move || relay_connection(&for_thread, id, client));
    if spawned.is_err() {
        shared.close(id);
    }
}

fn relay_connection(shared: &Arc<Shared>, id: u64, client: TcpStream) {
    // A connection accepted while blackholed reaches upstream only once the relay forwards again.
    if !shared.wait_forwarding() {
        shared.close(id);
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT_TIMEOUT) else {
        shared.close(id);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (Ok(tracked_upstream), Ok(client_w), Ok(upstream_r)) =
        (upstream.try_clone(), client.try_clone(), upstream.try_clone())
    else {
        let _ = upstream.shutdown(Shutdown::Both);
        shared.close(id);
        return;
    };
    match shared.conns().get_mut(&id) {
        Some(tracked) => tracked.upstream = Some(tracked_upstream),
        None => {
            // closed meanwhile (reset or drop)
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
    }
    if shared.cutting() {
        shared.close(id);
        return;
    }
    let back_shared = Arc::clone(shared);
    let back =
        thread::Builder::new().name(format!("relay-back-{id}")).spawn(move || pump(&back_shared, upstream_r, client_w));
    if let Ok(back) = back {
        pump(shared, client, upstream);
        let _ = back.join();
    }
    shared.close(id);
}

/// Copies `src` to `dst` until end-of-stream, an error, a reset or the relay's drop, holding bytes (and
/// the end-of-stream) while blackholed.
fn pump(shared: &Shared, mut src: TcpStream, mut dst: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => {
                if shared.wait_forwarding() {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                if shared.wait_forwarding() {
                    let _ = dst.shutdown(Shutdown::Both);
                    let _ = src.shutdown(Shutdown::Both);
                }
                return;
            }
        };
        if !shared.wait_forwarding() {
            return; // the reset or drop has shut the sockets down
        }
        if dst.write_all(&buf[..n]).is_err() {
            let _ = dst.shutdown(Shutdown::Both);
            let _ = src.shutdown(Shutdown::Both);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// An upstream that answers every line with the same line, upper-cased, until end-of-stream.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                thread::spawn(move || {
                    let mut out = stream.try_clone().expect("clone");
                    for line in io::BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(out, "{}", line.to_uppercase()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn connect(relay: &Relay) -> (TcpStream, io::BufReader<TcpStream>) {
        let stream = TcpStream::connect(relay.addr()).expect("connect to relay");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let reader = io::BufReader::new(stream.try_clone().expect("clone"));
        (stream, reader)
    }

    fn ask(stream: &mut TcpStream, reader: &mut io::BufReader<TcpStream>, line: &str) -> io::Result<String> {
        writeln!(stream, "{line}")?;
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(answer.trim_end().to_string())
    }

    #[test]
    fn forwards_and_reset_cuts_open_and_new_connections() {
        let relay = Relay::start(echo_server()).expect("relay");
        let (mut s, mut r) = connect(&relay);
        assert_eq!(ask(&mut s, &mut r, "hello").expect("answer"), "HELLO");
        assert_eq!(relay.connections(), 1);

        let t = Instant::now();
        relay.reset();
        let mut rest = String::new();
        let n = r.read_line(&mut rest).unwrap_or(0);
        assert_eq!(n, 0, "an open connection reads end-of-stream after a reset");
        assert!(t.elapsed() < Duration::from_secs(1), "reset took {:?}", t.elapsed());

        let (mut s2, mut r2) = connect(&relay);
        let t = Instant::now();
        assert!(ask(&mut s2, &mut r2, "again").is_err(), "a new connection is closed while reset");
        assert!(t.elapsed() < Duration::from_secs(1));

        relay.heal();
        let (mut s3, mut r3) = connect(&relay);
        assert_eq!(ask(&mut s3, &mut r3, "healed").expect("answer"), "HEALED");
        assert!(ask(&mut s, &mut r, "old").is_err(), "a reset connection stays dead");
    }

    #[test]
    fn blackhole_holds_bytes_and_heal_delivers_them() {
        let relay = Relay::start(echo_server()).expect("relay");
        let (mut open, mut open_r) = connect(&relay);
        assert_eq!(ask(&mut open, &mut open_r, "one").expect("answer"), "ONE");

        relay.blackhole();
        open.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let err = ask(&mut open, &mut open_r, "two").expect_err("silence while blackholed");
        assert!(matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{err:?}");
        // A connection made during the blackhole is accepted but not answered either.
        let (mut late, mut late_r) = connect(&relay);
        late.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        assert!(ask(&mut late, &mut late_r, "three").is_err());
        assert_eq!(relay.connections(), 2);

        relay.heal();
        open.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        late.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut held = String::new();
        open_r.read_line(&mut held).expect("held answer after heal");
        assert_eq!(held.trim_end(), "TWO");
        let mut held = String::new();
        late_r.read_line(&mut held).expect("late answer after heal");
        assert_eq!(held.trim_end(), "THREE");
        assert_eq!(ask(&mut open, &mut open_r, "four").expect("answer"), "FOUR");
    }

    #[test]
    fn drop_closes_the_listener_and_the_connections() {
        let relay = Relay::start(echo_server()).expect("relay");
        let addr = relay.addr();
        let (mut s, mut r) = connect(&relay);
        assert_eq!(ask(&mut s, &mut r, "x").expect("answer"), "X");
        relay.blackhole(); // a blackholed connection must not keep the drop waiting
        let t = Instant::now();
        drop(relay);
        assert!(t.elapsed() < Duration::from_millis(500), "drop took {:?}", t.elapsed());
        let mut rest = String::new();
        assert_eq!(r.read_line(&mut rest).unwrap_or(0), 0);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "listener still open");
    }

    #[test]
    fn unreachable_upstream_closes_the_client() {
        let relay = Relay::start(SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port()))).expect("relay");
        let (mut s, mut r) = connect(&relay);
        assert!(ask(&mut s, &mut r, "anyone").is_err());
    }
}
