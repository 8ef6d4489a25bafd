//! The driver under concurrency: decisions from many threads reach the published weight, the state
//! file and the audit log in the order they were taken.

use super::*;
use std::sync::Arc;
use switchyard_core::rollout::{Analysis, Schedule, Step};

fn spec(endpoint: &str) -> RolloutSpec {
    let steps = (1..=40).map(|i| Step { weight_bp: i * 250, hold_ms: 0 }).collect();
    RolloutSpec {
        endpoint: endpoint.into(),
        control: Target { model: "m".into(), version: Some(1) },
        canary: Target { model: "m".into(), version: Some(2) },
        plan: Plan { schedule: Schedule::Steps(steps), analysis: Analysis { min_requests: 1, ..Analysis::default() } },
        header: None,
        salt: endpoint.into(),
        serve_control_on_canary_error: true,
        shadows: Vec::new(),
        faults: [Fault::default(); 2],
        experiment: None,
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-driver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn racing_decisions_leave_the_weight_the_state_file_and_the_audit_log_agreeing() {
    let dir = scratch("race");
    let state_file = dir.join("rollouts/race.json");
    for round in 0..12u64 {
        let _ = std::fs::remove_file(&state_file);
        let driver = Arc::new(RolloutDriver::start(spec("race"), Some(&dir)).unwrap());
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A reader that must never find a torn or half-written state file.
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(bytes) = std::fs::read(&state_file) {
                        serde_json::from_slice::<Saved>(&bytes).expect("the state file is always whole");
                    }
                }
            });
            let workers: Vec<_> = (0..8u64)
                .map(|t| {
                    let driver = driver.clone();
                    s.spawn(move || {
                        for i in 0..400u64 {
                            if t < 5 {
                                // Analysis: healthy requests walk the steps (hold 0, one request each).
                                let arm = if i % 2 == 0 { Arm::Control } else { Arm::Canary };
                                driver.record(
                                    arm,
                                    crate::Protocol::Http,
                                    Observation::Served(Duration::from_micros(500)),
                                );
                            } else {
                                let action = match (i + t + round) % 23 {
                                    0 => Action::Rollback,
                                    1 => Action::Promote,
                                    n if n % 2 == 0 => Action::Pause,
                                    _ => Action::Resume,
                                };
                                let _ = driver.act_now(action);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            driver.flush().blocking_recv().unwrap();
            done.store(true, Ordering::Relaxed);
        });
        let state = driver.lock().state().clone();
        assert_eq!(driver.weight_bp(), state.weight_bp, "round {round}: the published weight is stale");
        let saved: Saved = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        assert_eq!(saved.state, state, "round {round}: the state file is not the last decision");
        let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        let last = audit
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole audit lines"))
            .rfind(|v| v["event"] == "decision" || v["event"] == "started")
            .unwrap();
        assert_eq!(last["phase"], json!(state.phase), "round {round}: {last}");
        assert_eq!(last["weight_bp"], json!(state.weight_bp), "round {round}: {last}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("rollouts"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn a_saved_state_the_new_plan_cannot_hold_starts_the_new_plan_and_says_why() {
    let dir = scratch("replan");
    let driver = RolloutDriver::start(spec("replan"), Some(&dir)).unwrap();
    for i in 0..8 {
        driver.record(
            if i % 2 == 0 { Arm::Control } else { Arm::Canary },
            crate::Protocol::Grpc,
            Observation::Served(Duration::from_millis(1)),
        );
    }
    driver.flush().blocking_recv().unwrap();
    assert!(matches!(driver.lock().state().phase, Phase::Step(n) if n >= 3));
    drop(driver);
    let mut shorter = spec("replan");
    shorter.plan.schedule = Schedule::Steps(vec![Step { weight_bp: 500, hold_ms: 60_000 }]);
    let driver = RolloutDriver::start(shorter, Some(&dir)).unwrap();
    assert_eq!((driver.lock().state().phase, driver.weight_bp()), (Phase::Step(0), 500));
    let choose = driver.choose(Some(b"user"), 0);
    assert!(matches!(choose, Arm::Control | Arm::Canary));
    driver.flush().blocking_recv().unwrap();
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "restarted", "{last}");
    assert!(last["why"].as_str().unwrap().contains("step"), "{last}");
}

#[tokio::test]
async fn a_corrupt_state_file_is_kept_aside_and_the_rollout_starts_held_on_control() {
    for (i, garbage) in [&b"{\"endpoint\": \"corr"[..], b"", b"\0\0\0", b"[1, 2]"].into_iter().enumerate() {
        let dir = scratch(&format!("corrupt-{i}"));
        std::fs::create_dir_all(dir.join("rollouts")).unwrap();
        std::fs::write(dir.join("rollouts/corrupt.json"), garbage).unwrap();
        let driver = RolloutDriver::start(spec("corrupt"), Some(&dir)).unwrap();
        let status = driver.status();
        assert_eq!((status["paused"].as_bool(), status["canary_weight_percent"].as_f64()), (Some(true), Some(0.0)));
        // Every request goes to control while it is held.
        assert!((0..200u64).all(|r| driver.choose(None, r.wrapping_mul(0x9E37_79B9_7F4A_7C15)) == Arm::Control));
        let kept: Vec<_> = std::fs::read_dir(dir.join("rollouts"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("corrupt.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "the corrupt file is kept aside");
        assert_eq!(std::fs::read(dir.join("rollouts").join(&kept[0])).unwrap(), garbage);
        driver.flush().await.unwrap();
        let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert!(audit.contains(r#""event":"held""#) && audit.contains("kept as"), "{audit}");
    }
}

#[tokio::test]
async fn a_held_rollout_takes_its_first_step_when_resumed() {
    let dir = scratch("held-resume");
    std::fs::create_dir_all(dir.join("rollouts")).unwrap();
    std::fs::write(dir.join("rollouts/held.json"), b"not json").unwrap();
    let driver = RolloutDriver::start(spec("held"), Some(&dir)).unwrap();
    assert_eq!(driver.status()["canary_weight_percent"], 0.0);
    driver.act(Action::Resume).await.unwrap();
    let status = driver.status();
    assert_eq!(status["paused"], false);
    assert!(status["canary_weight_percent"].as_f64().unwrap() > 0.0, "{status}");
    // Its state file is whole again.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rollouts/held.json")).unwrap()).unwrap();
    assert_eq!(saved["state"]["paused"], false);
}
