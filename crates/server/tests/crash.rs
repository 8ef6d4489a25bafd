//! Crash safety of rollouts, through the real binary: killed with SIGKILL at 50 random moments of a
//! rollout under traffic and admin actions, the server restarts each time with the rollout exactly as
//! last committed (the state file always whole, the status equal to it), leaves no temporary files
//! behind, and keeps the audit log readable line by line.

#![allow(clippy::unwrap_used)]

mod common;

use common::rollouts::{TOKEN, admin, copy_dir, scratch};
use common::{Server, mlp_request, test_repo};
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KILLS: usize = 50;

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn start(repo: &std::path::Path, dir: &std::path::Path) -> Server {
    let (cfg, state) = (dir.join("switchyard.yaml"), dir.join("state"));
    Server::start_with(
        repo,
        &["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    )
}

#[test]
fn sigkill_at_fifty_random_moments_never_loses_or_tears_the_rollout_state() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    let dir = scratch("crash");
    copy_dir(&test_repo().join("mlp"), &dir.join("repo/mlp"));
    // Steps short enough that decisions are taken while the kills land; pauses and resumes add more.
    std::fs::write(
        dir.join("switchyard.yaml"),
        "rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, \
         steps: [ { weight: 10, hold: 300ms }, { weight: 30, hold: 300ms }, { weight: 50, hold: 300ms }, { weight: 70, hold: 300ms } ] }\n    \
         analysis: { min_requests: 400, latency: { quantile: 0.75, max_ratio: 50.0 } }\n",
    )
    .unwrap();
    let state_file = dir.join("state/rollouts/scorer.json");
    let auth = format!("Bearer {TOKEN}");
    let mut phases = std::collections::BTreeSet::new();
    for kill in 0..KILLS {
        let committed: Option<Value> =
            std::fs::read(&state_file).ok().map(|b| serde_json::from_slice(&b).expect("a whole state file"));
        let mut s = start(&dir.join("repo"), &dir);
        let status = admin(&s, "scorer");
        if let Some(saved) = &committed {
            let st = &saved["state"];
            assert_eq!(status["paused"], st["paused"], "kill {kill}: {status:#} vs {saved:#}");
            assert_eq!(status["started_ms"], st["started_ms"], "kill {kill}");
            let weight = st["weight_bp"].as_f64().unwrap() / 100.0;
            assert_eq!(status["canary_weight_percent"].as_f64(), Some(weight), "kill {kill}: {status:#} vs {saved:#}");
        }
        phases.insert(status["phase"].to_string());
        // Temporary files of killed processes are gone (the running one may be writing its own).
        let own = format!(".{}.", s.child.id());
        let leftovers = std::fs::read_dir(dir.join("state/rollouts"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".tmp") && !n.contains(&own))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(leftovers, 0, "kill {kill}: temporary files left behind");
        // Traffic, and admin actions, until a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let port = s.port;
        let traffic = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let body = mlp_request(1).to_string();
                let raw = format!(
                    "POST /v2/models/scorer/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut answer = [0u8; 4096];
                // Once the server is killed, connecting fails until the loop is told to stop.
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        let _ = c.write_all(raw.as_bytes());
                        let _ = c.read(&mut answer);
                    }
                }
            })
        };
        let until = Instant::now() + Duration::from_millis(20 + rng.below(400));
        while Instant::now() < until {
            let action = if rng.below(2) == 0 { "pause" } else { "resume" };
            let _ = s.conn().request_result(
                "POST",
                &format!("/admin/rollouts/scorer/{action}"),
                &[("Authorization", &auth)],
                b"",
            );
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        }
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        traffic.join().unwrap();
        if let Ok(bytes) = std::fs::read(&state_file) {
            serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| panic!("kill {kill}: torn state file: {e}"));
        }
    }
    // The audit log: every line whole JSON except, at most, a line torn by a kill, which never runs into
    // the next one.
    let audit = std::fs::read_to_string(dir.join("state/audit.jsonl")).unwrap();
    let torn = audit.lines().filter(|l| !l.is_empty() && serde_json::from_str::<Value>(l).is_err()).count();
    assert!(torn <= KILLS, "{torn} torn audit lines");
    assert!(audit.lines().filter(|l| l.contains(r#""event":"resumed""#)).count() >= KILLS - 1);
    eprintln!("{KILLS} kills; phases seen at restart: {phases:?}; {torn} torn audit lines");
}
