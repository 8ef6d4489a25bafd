//! A real etcd cluster on loopback, started for one test and torn down with it.
//!
//! The fleet code's claims (one leader at a time, leases that lapse when a replica dies, watches that
//! resume after a member restarts) are claims about etcd's behaviour, so they are tested against etcd
//! itself rather than a fake. [`EtcdCluster::start`] runs N member processes of the installed binary
//! (Debian's `etcd-server`, 3.4.x) on free loopback ports, with their data under `/dev/shm` where it
//! exists (no disk fsync cost) and raft timings half etcd's defaults (heartbeat 50 ms, election 500 ms
//! instead of 100 ms and 1 s), so that elections and failovers take about a second or less. Those
//! timings also set etcd's shortest lease: a grant of TTL 1 gets 1 s here (etcd raises any TTL below
//! 1.5 election timeouts, rounded up to whole seconds; with the defaults a TTL 1 grant gets 2 s). A test can then kill,
//! stop, freeze and restart single members and ask which one is raft leader.
//!
//! Members are numbered from 0 in this API; member `i` is named `e{i+1}` in etcd and in its log file.
//! Each member's stderr (zap JSON logs) goes to `<dir>/e{i+1}.log`; errors from this module quote the
//! tail of the logs involved. On drop every member is killed and the directory removed, except when the
//! thread is panicking (a failed test) or the cluster failed to start: then the logs are kept (the
//! members' data is removed) and their directory is printed.
//!
//! Not covered: the processes are not tied to the test process's life, so a test binary killed by a
//! signal leaves its members running (they are ordinary `etcd` processes under the directory above).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http;

mod faults;

/// Environment variable naming the etcd binary to use, ahead of `PATH` and `/usr/bin/etcd`.
pub const ETCD_BINARY_ENV: &str = "SWITCHYARD_TEST_ETCD";
/// How long [`EtcdCluster::start`] and [`EtcdCluster::restart`] wait for members to answer healthy.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(15);
/// Raft heartbeat interval given to every member, in milliseconds.
pub const HEARTBEAT_MS: u64 = 50;
/// Raft election timeout given to every member, in milliseconds.
pub const ELECTION_TIMEOUT_MS: u64 = 500;

const POLL: Duration = Duration::from_millis(25);
const PORT_ATTEMPTS: usize = 5;
const STOP_GRACE: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;

static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Mutex<Option<Child>>,
}

/// A running etcd cluster of N members on 127.0.0.1; see the module documentation.
///
/// All methods take `&self`, so a cluster can be shared between threads (for instance one that kills
/// members while others use the cluster).
pub struct EtcdCluster {
    binary: PathBuf,
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
    keep_logs: bool,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("dir", &self.dir)
            .field("token", &self.token)
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

/// Why a launch failed: a port was taken between picking and binding (start again on other ports), or
/// anything else.
enum LaunchError {
    PortTaken(io::Error),
    Other(io::Error),
}

impl EtcdCluster {
    /// The etcd binary to run: `$SWITCHYARD_TEST_ETCD` if set, else `etcd` on `PATH`, else
    /// `/usr/bin/etcd`; `None` where none is an executable file (tests then skip, saying so).
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(ETCD_BINARY_ENV) {
            let path = PathBuf::from(path);
            return is_executable(&path).then_some(path);
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("etcd"));
        on_path.chain([PathBuf::from("/usr/bin/etcd")]).find(|p| is_executable(p))
    }

    /// Starts `members` etcd processes as one new cluster and waits (at most [`HEALTH_DEADLINE`]) until
    /// every one answers `/health` with `"health":"true"`. Retries on fresh ports (up to 5 times) when a
    /// member reports "address already in use". Errors: `NotFound` without an etcd binary,
    /// `InvalidInput` for zero members, `TimedOut` (with log tails) when the cluster does not come up.
    pub fn start(members: usize) -> io::Result<Self> {
        if members == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an etcd cluster needs at least one member"));
        }
        let binary = Self::find_binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no etcd binary (looked at ${ETCD_BINARY_ENV}, etcd on PATH, /usr/bin/etcd)"),
            )
        })?;
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let unique = format!("{}-{}", std::process::id(), NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed));
            let dir = base.join(format!("switchyard-etcd-{unique}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir)?;
            let ports = crate::free_ports(2 * members)?;
            let mut cluster = EtcdCluster {
                binary: binary.clone(),
                dir,
                token: format!("sy-{unique}"),
                members: (0..members)
                    .map(|i| Member {
                        name: format!("e{}", i + 1),
                        client_port: ports[2 * i],
                        peer_port: ports[2 * i + 1],
                        child: Mutex::new(None),
                    })
                    .collect(),
                keep_logs: false,
            };
            match cluster.launch_all() {
                Ok(()) => return Ok(cluster),
                Err(LaunchError::PortTaken(e)) => last = Some(e), // dropping `cluster` cleans up
                Err(LaunchError::Other(e)) => {
                    cluster.keep_logs = true;
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("etcd cluster did not start")))
    }

    fn launch_all(&self) -> Result<(), LaunchError> {
        for i in 0..self.members.len() {
            self.spawn(i, "new").map_err(LaunchError::Other)?;
        }
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.await_health(&all, HEALTH_DEADLINE)
    }

    fn spawn(&self, i: usize, state: &str) -> io::Result<()> {
        let m = &self.members[i];
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(i))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--grpc-keepalive-min-time", "200ms"])
            .args(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", self.binary.display())))?;
        *self.child(i) = Some(child);
        Ok(())
    }

    /// Waits until every member in `which` is healthy, polling them in parallel; fails early when one
    /// of them exits.
    fn await_health(&self, which: &[usize], within: Duration) -> Result<(), LaunchError> {
        let deadline = Instant::now() + within;
        let abort = AtomicBool::new(false);
        let abort = &abort;
        let failures: Vec<LaunchError> = std::thread::scope(|s| {
            let pollers: Vec<_> =
                which.iter().map(|&i| (i, s.spawn(move || self.await_member(i, deadline, within, abort)))).collect();
            pollers
                .into_iter()
                .filter_map(|(i, poller)| {
                    poller
                        .join()
                        .unwrap_or_else(|_| {
                            Err(LaunchError::Other(io::Error::other(format!(
                                "the health poller of etcd member {} panicked",
                                self.members[i].name
                            ))))
                        })
                        .err()
                })
                .collect()
        });
        if failures.is_empty() {
            return Ok(());
        }
        let port_taken = failures.iter().any(|f| matches!(f, LaunchError::PortTaken(_)));
        let mut kind = None;
        let mut messages = Vec::new();
        for failure in failures {
            let (LaunchError::PortTaken(e) | LaunchError::Other(e)) = failure;
            kind.get_or_insert(e.kind());
            messages.push(e.to_string());
        }
        let e = io::Error::new(kind.unwrap_or(io::ErrorKind::Other), messages.join("\n"));
        Err(if port_taken { LaunchError::PortTaken(e) } else { LaunchError::Other(e) })
    }

    /// One member's part of [`await_health`](Self::await_health): `Ok` once healthy, or when another
    /// member's failure has set `abort`.
    fn await_member(
        &self,
        i: usize,
        deadline: Instant,
        within: Duration,
        abort: &AtomicBool,
    ) -> Result<(), LaunchError> {
        let name = &self.members[i].name;
        // etcd 3.4 listens on its client port well before it serves it (only once it has joined the
        // cluster), and a request made in between hangs until then or until its own timeout. So the
        // member is first asked with a short timeout, doubled (up to 2 s) whenever it runs out, so that
        // a slow machine still gets an answer.
        let mut timeout = Duration::from_millis(100);
        loop {
            let asked = Instant::now();
            if self.health_within(i, timeout.min(left(deadline))) {
                return Ok(());
            }
            if asked.elapsed() >= timeout {
                timeout = (timeout * 2).min(Duration::from_secs(2));
            }
            if abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let exited = {
                let mut child = self.child(i);
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => {
                        *child = None;
                        Some(status.to_string())
                    }
                    Some(Ok(None)) => None,
                    Some(Err(e)) => Some(format!("unknown status ({e})")),
                    None => Some("not running".to_string()),
                }
            };
            if let Some(status) = exited {
                abort.store(true, Ordering::Relaxed);
                let log = self.log_tail(i, LOG_TAIL_LINES);
                let message = format!(
                    "etcd member {name} exited while starting ({status}); log {}:\n{log}",
                    self.log_path(i).display()
                );
                return Err(if log.contains("address already in use") {
                    LaunchError::PortTaken(io::Error::new(io::ErrorKind::AddrInUse, message))
                } else {
                    LaunchError::Other(io::Error::other(message))
                });
            }
            if Instant::now() >= deadline {
                abort.store(true, Ordering::Relaxed);
                return Err(LaunchError::Other(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd member {name} not healthy within {within:?}; log {}:\n{}",
                        self.log_path(i).display(),
                        self.log_tail(i, LOG_TAIL_LINES)
                    ),
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    fn child(&self, i: usize) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the `Option<Child>` intact; keep using it.
        self.members[i].child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of members (running or not).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Client endpoints as `127.0.0.1:port`, member 0 first (the form etcd clients take).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// Client URLs as `http://127.0.0.1:port`, member 0 first.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    /// Member `i`'s client address (for [`Relay::start`](crate::Relay::start) or [`http`] calls).
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[i].client_port))
    }

    /// Member `i`'s peer (raft) address.
    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[i].peer_port))
    }

    /// Member `i`'s etcd name (`e{i+1}`).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// The directory holding every member's data directory and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Member `i`'s log file (its stderr, appended to across restarts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.members[i].name))
    }

    /// The last `lines` lines of member `i`'s log (at most the last 64 KiB of it), for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let read = || -> io::Result<String> {
            let mut file = File::open(self.log_path(i))?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        match read() {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(no log: {e})"),
        }
    }

    /// Member `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        let mut child = self.child(i);
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => child.as_ref().map(Child::id),
            _ => None,
        }
    }

    /// Whether member `i`'s process is alive (it may be frozen by [`pause`](Self::pause)).
    pub fn is_running(&self, i: usize) -> bool {
        self.pid(i).is_some()
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"` within 2 s. In etcd 3.4 that
    /// means it is up, has no alarm, sees a raft leader and gets a read through raft (so it has quorum).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.health_within(i, Duration::from_secs(2))
    }

    fn health_within(&self, i: usize, timeout: Duration) -> bool {
        if timeout.is_zero() {
            return false;
        }
        http::get(self.client_addr(i), "/health", timeout).is_ok_and(|r| {
            let body: String = r.body.chars().filter(|c| !c.is_whitespace()).collect();
            r.status == 200 && body.contains("\"health\":\"true\"")
        })
    }

    /// Waits up to `timeout` until member `i` is healthy.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) -> io::Result<()> {
        self.await_health(&[i], timeout).map_err(|e| match e {
            LaunchError::PortTaken(e) | LaunchError::Other(e) => e,
        })
    }

    /// Member `i`'s raft member id as etcd reports it (decimal), from `/v3/maintenance/status`.
    pub fn member_id(&self, i: usize) -> Option<String> {
        self.status(i).map(|s| s.member_id)
    }

    fn status(&self, i: usize) -> Option<Status> {
        let r = http::post_json(self.client_addr(i), "/v3/maintenance/status", "{}", Duration::from_secs(1)).ok()?;
        if r.status != 200 {
            return None;
        }
        Some(Status {
            member_id: http::json_field(&r.body, "member_id")?.to_string(),
            leader: http::json_field(&r.body, "leader")?.to_string(),
            raft_term: http::json_field(&r.body, "raftTerm").and_then(|t| t.parse().ok()).unwrap_or(0),
        })
    }

    /// The member that is raft leader now: of the members that answer `/v3/maintenance/status`, the one
    /// whose `leader` equals its own `header.member_id` (etcd 3.4 writes both as decimal strings). Where
    /// two claim it (an old leader that has not yet heard of a newer term), the higher raft term wins.
    /// `None` while no reachable member leads (an election is under way, or quorum is lost).
    pub fn raft_leader(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .filter_map(|i| self.status(i).map(|s| (i, s)))
            .filter(|(_, s)| s.leader == s.member_id && s.leader != "0")
            .max_by_key(|(_, s)| s.raft_term)
            .map(|(i, _)| i)
    }

    /// Polls [`raft_leader`](Self::raft_leader) until some member leads, for at most `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.raft_leader() {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no raft leader within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }
}

struct Status {
    member_id: String,
    leader: String,
    raft_term: u64,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i);
        }
        if self.keep_logs || std::thread::panicking() {
            for m in &self.members {
                let _ = fs::remove_dir_all(self.dir.join(&m.name));
            }
            eprintln!("etcd cluster {}: logs kept in {}", self.token, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
