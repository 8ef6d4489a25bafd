//! Keeping background work (shadow models) off the capacity clients wait for, in two layers:
//! - its worker threads run at `SCHED_IDLE` on Linux (`nice 19` where that is refused), so the kernel
//!   gives them a core only when nothing else wants it and preempts them as soon as something does;
//! - a background worker starts a model call only while no foreground request (one a client waits for)
//!   is in flight in the process: a call that runs in the gaps between the requests of a busy server
//!   still evicts their caches. Waiting costs nothing (a condition variable, no polling); under steady
//!   load the copies wait and are shed once their slots are full, and they run whenever the server is
//!   idle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Foreground requests in flight in this process, and background workers waiting for none.
static FOREGROUND: AtomicUsize = AtomicUsize::new(0);
static WAITING: AtomicUsize = AtomicUsize::new(0);
static IDLE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// Marks a foreground request in flight for as long as it lives (front ends hold one from the moment a
/// request arrives until its answer is written; the serving core holds one while it runs a request).
pub struct Foreground(());

impl Foreground {
    pub fn enter() -> Self {
        FOREGROUND.fetch_add(1, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // The last one out wakes the waiting background workers; with none waiting, this is one atomic.
        if FOREGROUND.fetch_sub(1, Ordering::SeqCst) == 1 && WAITING.load(Ordering::SeqCst) > 0 {
            let _guard = IDLE.0.lock().unwrap_or_else(PoisonError::into_inner);
            IDLE.1.notify_all();
        }
    }
}

/// Blocks the calling background worker until no foreground request is in flight.
pub(crate) fn wait_until_foreground_is_idle() {
    if FOREGROUND.load(Ordering::SeqCst) == 0 {
        return;
    }
    WAITING.fetch_add(1, Ordering::SeqCst);
    let mut guard = IDLE.0.lock().unwrap_or_else(PoisonError::into_inner);
    while FOREGROUND.load(Ordering::SeqCst) > 0 {
        // The timeout only bounds a wake-up lost to a race the lock does not cover; it is not a poll.
        guard = IDLE.1.wait_timeout(guard, Duration::from_millis(50)).unwrap_or_else(PoisonError::into_inner).0;
    }
    drop(guard);
    WAITING.fetch_sub(1, Ordering::SeqCst);
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
            wait_until_foreground_is_idle();
            tx.send(Instant::now()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(150)).is_err(), "ran while a request was in flight");
        let released = Instant::now();
        drop(request);
        let ran = rx.recv_timeout(Duration::from_secs(2)).expect("never ran once idle");
        assert!(ran.duration_since(released) < Duration::from_millis(40), "woken, not polled");
    }
}
