//! Failure injection for [`EtcdCluster`]: kill, stop, freeze, resume and restart single members, the
//! way a test crashes or partitions one etcd member while the fleet keeps serving.

use super::{EtcdCluster, HEALTH_DEADLINE, POLL, STOP_GRACE};
use std::fs;
use std::io;
use std::time::{Duration, Instant};

impl EtcdCluster {
    /// Kills member `i` with SIGKILL (a crash: no clean shutdown) and reaps it. Does nothing if it is
    /// not running.
    pub fn kill(&self, i: usize) -> io::Result<()> {
        let mut child = self.child(i);
        if let Some(mut c) = child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops member `i` with SIGTERM (a clean shutdown; a leader hands over leadership first) and waits
    /// for it to exit, sending SIGKILL after 10 s. Does nothing if it is not running.
    pub fn stop(&self, i: usize) -> io::Result<()> {
        let mut child = self.child(i);
        let Some(c) = child.as_mut() else { return Ok(()) };
        if c.try_wait()?.is_none() {
            signal(c.id(), libc::SIGCONT)?; // a paused member cannot act on SIGTERM
            signal(c.id(), libc::SIGTERM)?;
            let deadline = Instant::now() + STOP_GRACE;
            while c.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    c.kill()?;
                    c.wait()?;
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        *child = None;
        Ok(())
    }

    /// Freezes member `i` with SIGSTOP: its sockets stay open but it answers nothing (a hung process,
    /// unlike [`kill`](Self::kill) whose peers see connections refused). Returns once every thread of
    /// the process is stopped (read from `/proc`; a signal is delivered asynchronously, and a thread
    /// running on another core could otherwise still answer a request). Undo with
    /// [`resume`](Self::resume).
    pub fn pause(&self, i: usize) -> io::Result<()> {
        self.signal_running(i, libc::SIGSTOP)?;
        let Some(pid) = self.pid(i) else { return Err(not_running(&self.members[i].name)) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd member {} not stopped 5 s after SIGSTOP", self.members[i].name),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Lets a member frozen by [`pause`](Self::pause) run again (SIGCONT).
    pub fn resume(&self, i: usize) -> io::Result<()> {
        self.signal_running(i, libc::SIGCONT)
    }

    fn signal_running(&self, i: usize, sig: libc::c_int) -> io::Result<()> {
        let mut child = self.child(i);
        let Some(c) = child.as_mut() else { return Err(not_running(&self.members[i].name)) };
        if c.try_wait()?.is_some() {
            return Err(not_running(&self.members[i].name));
        }
        signal(c.id(), sig)
    }

    /// Starts member `i` again after [`kill`](Self::kill) or [`stop`](Self::stop), on the same ports and
    /// data directory (`--initial-cluster-state existing`), and waits up to [`HEALTH_DEADLINE`] for it to
    /// answer healthy. Fails with `InvalidInput` if it is running; on failure it is left stopped and the
    /// error quotes its log.
    pub fn restart(&self, i: usize) -> io::Result<()> {
        if self.is_running(i) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("etcd member {} is running; kill or stop it first", self.members[i].name),
            ));
        }
        self.spawn(i, "existing")?;
        let result = self.wait_healthy(i, HEALTH_DEADLINE);
        if result.is_err() {
            let _ = self.kill(i);
        }
        result
    }
}

/// Whether every thread of `pid` is in state `T` (stopped) or `t` (traced), from `/proc/<pid>/task`.
/// Where `/proc` cannot be read, true: the caller cannot wait any better.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("stat")).map_or(true, |stat| {
            // "tid (comm) S ...": the state follows the last ')', as comm may contain one.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some(Some('T' | 't')))
        })
    })
}

fn not_running(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("etcd member {name} is not running"))
}

#[allow(unsafe_code)] // one kill(2) on a child this process spawned and has not reaped
fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of this process. The pid is a child
    // that has not been reaped (callers hold its `Child` under the lock), so it cannot have been reused.
    if unsafe { libc::kill(pid, sig) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
