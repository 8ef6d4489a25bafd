//! Stopping the way Kubernetes expects: on SIGTERM `/ready` turns 503 at once, the listener keeps
//! accepting for the drain delay (so the endpoints controller and load balancers stop sending traffic
//! before the port closes), then it stops accepting and every request in flight finishes; a second
//! SIGTERM (or Ctrl-C) exits at once. Ctrl-C alone skips the drain delay: a person at a terminal is not
//! a load balancer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Why the server was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Terminate,
    Interrupt,
}

/// Waits for the next SIGTERM or Ctrl-C.
async fn next_stop() -> Stop {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Interrupt,
        () = term => Stop::Terminate,
    }
}

/// Starts watching for a stop. `draining` turns true at the first signal (readiness reads it); the
/// returned receiver turns true when the listener must stop accepting.
pub fn watch(draining: Arc<AtomicBool>, drain_delay: Duration) -> watch::Receiver<bool> {
    let (stop_accepting, rx) = watch::channel(false);
    tokio::spawn(async move {
        let first = next_stop().await;
        draining.store(true, Ordering::SeqCst);
        let delay = if first == Stop::Interrupt { Duration::ZERO } else { drain_delay };
        tracing::info!(signal = ?first, drain_delay_secs = delay.as_secs_f64(), "draining: /ready answers 503, still serving");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = next_stop() => force(),
        }
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop_accepting.send(true);
        next_stop().await;
        force();
    });
    rx
}

fn force() -> ! {
    tracing::warn!("second stop signal: exiting now, without waiting for requests in flight");
    std::process::exit(1)
}
