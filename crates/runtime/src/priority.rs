//! Keeping background work (shadow models) off the capacity clients wait for, in two layers:
//! - its worker threads run at `SCHED_IDLE` on Linux (`nice 19` where that is refused), so the kernel
//!   gives them a core only when nothing else wants it and preempts them as soon as something does;
//! - a background worker starts a model call only while no foreground request (one a client waits for)
//!   is in flight in the process, and only when the foreground kept the process busy less than
//!   `MAX_BUSY` of the recent past. A call started in the brief gaps of a saturated server is preempted
//!   at once, but it runs again in every following gap, and its weights stream through the caches the
//!   next requests need: measured, a thousand such calls in 15 s cost control a quarter of its
//!   throughput. Waiting costs nothing on the request path (a condition variable; the busy time is
//!   summed on the transitions between idle and busy only); under steady load the copies wait and are
//!   shed once their slots are full, and they run whenever the server has capacity to spare.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Foreground requests in flight in this process, and background workers waiting for a gap (only
/// while the foreground leaves capacity to spare).
static FOREGROUND: AtomicUsize = AtomicUsize::new(0);
static WAITING: AtomicUsize = AtomicUsize::new(0);
static IDLE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
/// Nanoseconds the foreground has been busy (some request in flight), summed at each busy → idle
/// transition, and when the current busy period began.
static BUSY_NS: AtomicU64 = AtomicU64::new(0);
static BUSY_SINCE: AtomicU64 = AtomicU64::new(0);
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A background call starts only when the foreground was busy less than this share of the recent past.
const MAX_BUSY: f64 = 0.9;
/// How often the busy share is re-measured while a background worker waits.
const WINDOW: Duration = Duration::from_millis(20);

fn now_ns() -> u64 {
    u64::try_from(ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Marks a foreground request in flight for as long as it lives (front ends hold one from the moment a
/// request arrives until its answer is written; the serving core holds one while it runs a request).
pub struct Foreground(());

impl Foreground {
    pub fn enter() -> Self {
        if FOREGROUND.fetch_add(1, Ordering::SeqCst) == 0 {
            BUSY_SINCE.store(now_ns(), Ordering::SeqCst);
        }
        Self(())
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // The last one out closes the busy period (a clock read), and wakes a background worker that
        // waits for a gap; on a busy server none waits, so no system call.
        if FOREGROUND.fetch_sub(1, Ordering::SeqCst) == 1 {
            BUSY_NS.fetch_add(now_ns().saturating_sub(BUSY_SINCE.load(Ordering::SeqCst)), Ordering::SeqCst);
            // A worker waits here only while the server has capacity to spare.
            if WAITING.load(Ordering::SeqCst) > 0 {
                let _guard = IDLE.0.lock().unwrap_or_else(PoisonError::into_inner);
                IDLE.1.notify_all();
            }
        }
    }
}

/// Busy time so far, the current busy period included.
fn busy_ns() -> u64 {
    let done = BUSY_NS.load(Ordering::SeqCst);
    if FOREGROUND.load(Ordering::SeqCst) > 0 {
        done + now_ns().saturating_sub(BUSY_SINCE.load(Ordering::SeqCst))
    } else {
        done
    }
}

/// A background worker's view of the foreground's recent load: the busy share over the last window it
/// watched itself (20 to 120 ms), never an older one.
pub(crate) struct SpareCapacity {
    at: u64,
    busy: u64,
    share: f64,
}

impl SpareCapacity {
    pub(crate) fn new() -> Self {
        Self { at: now_ns(), busy: busy_ns(), share: 1.0 }
    }

    /// Blocks until no foreground request is in flight and the foreground left capacity to spare.
    pub(crate) fn wait(&mut self) {
        loop {
            let (at, busy) = (now_ns(), busy_ns());
            let elapsed = at.saturating_sub(self.at);
            if elapsed > (POLL + WINDOW).as_nanos() as u64 {
                // Stale: what the foreground did long ago says nothing about now. Measure afresh.
                (self.at, self.busy, self.share) = (at, busy, 1.0);
                std::thread::sleep(WINDOW);
                continue;
            }
            if elapsed >= WINDOW.as_nanos() as u64 {
                self.share = busy.saturating_sub(self.busy) as f64 / elapsed as f64;
                (self.at, self.busy) = (at, busy);
            }
            if self.share >= MAX_BUSY {
                // A busy server is looked at rarely: a background thread that wakes often, even only
                // to look, was measured to cost control a quarter of its throughput (every 2 ms).
                std::thread::sleep(POLL);
                continue;
            }
            if FOREGROUND.load(Ordering::SeqCst) == 0 {
                return;
            }
            // Capacity to spare: the next gap between requests wakes this worker (the last request
            // out notifies it), or the time to look at the load again.
            WAITING.fetch_add(1, Ordering::SeqCst);
            let guard = IDLE.0.lock().unwrap_or_else(PoisonError::into_inner);
            let idle = |_: &mut ()| FOREGROUND.load(Ordering::SeqCst) > 0;
            drop(IDLE.1.wait_timeout_while(guard, WINDOW, idle).unwrap_or_else(PoisonError::into_inner));
            WAITING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How often a waiting background worker looks at a busy foreground.
const POLL: Duration = Duration::from_millis(100);

/// Puts the calling thread under the policy every thread that serves clients runs at: `SCHED_BATCH`,
/// the normal time-sharing policy without wakeup preemption. Where the request threads and a model's
/// worker share a core, a thread woken (a worker by a queued request, a request thread by an answer)
/// then waits for the running one to block instead of preempting it: a batch's answers are all sent,
/// then all encoded, with two context switches per batch instead of two per request. Measured, with the
/// server on one core at concurrency 32: 25 µs of server CPU per gRPC request instead of 33 (README,
/// "gRPC"). A thread on a core of its own is unaffected, and no privilege is needed. Also raises a
/// shadow's worker back from the background priority for a client's direct call; false where the system
/// does not allow that (an unprivileged process under the default `RLIMIT_NICE`).
#[allow(unsafe_code)] // one system call on the calling thread; no memory is shared
pub fn foreground_for_this_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread (pid 0 = this thread) with a valid argument.
        let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) } == 0;
        if !ok {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| tracing::info!("a thread could not move to SCHED_BATCH; it keeps its policy"));
        }
        ok
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Lowers the calling thread to the lowest priority the system offers. Logs what it got.
#[allow(unsafe_code)] // two system calls on the calling thread; no memory is shared
pub(crate) fn lowest_for_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system calls on the calling thread (pid 0 = this thread) with a valid argument.
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) } == 0;
        if idle {
            tracing::debug!("worker thread at SCHED_IDLE");
            return;
        }
        // SAFETY: as above; `gettid` names this thread, which `setpriority` treats as a process id.
        let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) } == 0;
        tracing::warn!(niced, "SCHED_IDLE refused for a background worker; fell back to nice 19");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn background_work_waits_for_the_foreground_to_go_idle() {
        let request = Foreground::enter();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            SpareCapacity::new().wait();
            tx.send(Instant::now()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(150)).is_err(), "ran while a request was in flight");
        let released = Instant::now();
        drop(request);
        let ran = rx.recv_timeout(Duration::from_secs(2)).expect("never ran once idle");
        assert!(ran.duration_since(released) < Duration::from_millis(100), "{:?}", ran.duration_since(released));
    }
}
