//! CPU priority for worker threads that must never compete with the traffic clients wait for (shadow
//! models): `SCHED_IDLE` on Linux, so the scheduler runs them only when nothing else wants the core and
//! preempts them as soon as something does; `nice 19` where that is refused; nothing elsewhere.

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
