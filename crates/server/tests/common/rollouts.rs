//! Helpers for the rollout tests: a server with a rollout config and a state directory, the admin API,
//! and steady traffic from several clients.
#![allow(dead_code, clippy::unwrap_used)]

use super::{Server, mlp_request, test_repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token";

/// These tests drive steady traffic and judge latency: one at a time, so they do not slow each other down.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn start(name: &str, rollout_yaml: &str) -> (Server, PathBuf) {
    start_config(name, &format!("rollouts:\n{rollout_yaml}"))
}

/// A server with this whole config file and a state directory, in a fresh scratch directory.
pub fn start_config(name: &str, config_yaml: &str) -> (Server, PathBuf) {
    let dir = scratch(name);
    std::fs::write(dir.join("switchyard.yaml"), config_yaml).unwrap();
    (restart(&dir), dir)
}

/// A server on the config and state directory `start_config` left in `dir` (again, after a stop).
pub fn restart(dir: &Path) -> Server {
    let cfg = dir.join("switchyard.yaml");
    let state = dir.join("state");
    Server::start_with(
        &test_repo(),
        &["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    )
}

pub fn admin(s: &Server, endpoint: &str) -> Value {
    let r = s.conn().request(
        "GET",
        &format!("/admin/rollouts/{endpoint}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Sends traffic to `scorer` from `threads` clients until `done` says so or `limit` passes; returns
/// (responses, non-200 responses, arms seen).
pub fn traffic(s: &Server, threads: usize, limit: Duration, done: impl Fn() -> bool + Sync) -> (u64, u64, Vec<String>) {
    traffic_to(s, "scorer", threads, Duration::from_millis(15), limit, done)
}

/// Traffic to `endpoint`, each client pausing `pause` between requests.
pub fn traffic_to(
    s: &Server,
    endpoint: &str,
    threads: usize,
    pause: Duration,
    limit: Duration,
    done: impl Fn() -> bool + Sync,
) -> (u64, u64, Vec<String>) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let path = format!("/v2/models/{endpoint}/infer");
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = s.conn();
                    let (mut n, mut bad, mut arms) = (0, 0, Vec::new());
                    let body = mlp_request(1).to_string();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = conn.request("POST", &path, &[], body.as_bytes());
                        n += 1;
                        bad += u64::from(r.status != 200);
                        arms.push(r.header("x-switchyard-arm").unwrap_or("none").to_owned());
                        std::thread::sleep(pause);
                    }
                    (n, bad, arms)
                })
            })
            .collect();
        let start = Instant::now();
        while start.elapsed() < limit && !done() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
    });
    results.into_iter().fold((0, 0, Vec::new()), |(n, b, mut a), (n2, b2, a2)| {
        a.extend(a2);
        (n + n2, b + b2, a)
    })
}

/// A server over a scratch repository holding copies of `models` (with extra `config.yaml` text for
/// some), with a rollout config; returns it with the scratch directory.
pub fn start_over(name: &str, models: &[(&str, &str, Option<&str>)], rollout_yaml: &str) -> (Server, PathBuf) {
    let dir = scratch(name);
    let repo = dir.join("models");
    for (from, to, config) in models {
        copy_dir(&test_repo().join(from), &repo.join(to));
        if let Some(c) = config {
            std::fs::write(repo.join(to).join("config.yaml"), c).unwrap();
        }
    }
    std::fs::write(dir.join("switchyard.yaml"), format!("rollouts:\n{rollout_yaml}")).unwrap();
    (restart_over(&dir), dir)
}

/// A server on the repository, config and state directory `start_over` left in `dir` (again).
pub fn restart_over(dir: &Path) -> Server {
    let cfg = dir.join("switchyard.yaml");
    let state = dir.join("state");
    Server::start_with(
        &dir.join("models"),
        &["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    )
}

/// Waits until `cond` holds, at most `limit`.
pub fn wait_for(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
