//! Rollouts end to end: the real binary, real ONNX models, real HTTP.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::rollouts::{TOKEN, admin, copy_dir, scratch, serial, start, traffic, wait_for};
use common::{Conn, Server, mlp_request, test_repo};
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn a_canary_failing_on_real_requests_is_rolled_back_fast_and_clients_see_no_errors() {
    let _serial = serial();
    let (s, dir) = start(
        "buggy",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp_buggy, version: 1, steps: [ { weight: 20, hold: 60s } ] }\n",
    );
    let begun = Instant::now();
    let rolled_back = || admin(&s, "scorer")["phase"] == "rolled_back";
    let (n, bad, arms) = traffic(&s, 4, Duration::from_secs(5), rolled_back);
    let took = begun.elapsed();
    let status = admin(&s, "scorer");
    assert_eq!(status["phase"], "rolled_back", "{status:#}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(status["reason"]["kind"], "error_rate", "{status:#}");
    assert_eq!(bad, 0, "clients saw errors in {n} requests");
    assert!(arms.iter().all(|a| a == "control"), "failed canary answers are replaced by control's");
    assert_eq!(status["canary_weight_percent"], 0.0);
    // After the rollback every request goes to control.
    let r = s.post_json("/v2/models/scorer/infer", &mlp_request(1));
    assert_eq!(r.header("x-switchyard-arm"), Some("control"));
    // The decision is in the audit log and the metrics.
    let audit = std::fs::read_to_string(dir.join("state/audit.jsonl")).unwrap();
    assert!(audit.contains(r#""decision":"rolled_back""#), "{audit}");
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains(r#"switchyard_rollout_rollbacks_total{endpoint="scorer",reason="error_rate"} 1"#),
        "{metrics}"
    );
}

#[test]
fn a_slower_canary_is_rolled_back_on_latency() {
    let _serial = serial();
    let (s, _dir) = start(
        "heavy",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp_heavy, version: 1, weight: 30 }\n    analysis: { latency: { quantile: 0.9, max_ratio: 2.0 } }\n",
    );
    let rolled_back = || admin(&s, "scorer")["phase"] == "rolled_back";
    traffic(&s, 4, Duration::from_secs(30), rolled_back);
    let status = admin(&s, "scorer");
    assert_eq!(status["phase"], "rolled_back", "{status:#}");
    assert_eq!(status["reason"]["kind"], "latency", "{status:#}");
}

#[test]
fn a_healthy_canary_walks_its_steps_keys_stay_sticky_and_it_is_promoted() {
    let _serial = serial();
    let (s, _dir) = start(
        "healthy",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 3s }, { weight: 60, hold: 1s } ] }\n    assignment: { header: x-user-id }\n    analysis: { min_requests: 30, latency: { quantile: 0.75, max_ratio: 5.0 } }\n",
    );
    // The canary is the same network as control: judged on the 75th percentile, which noise on a shared CI
    // machine does not move five-fold (tail latency is what the latency-rollback test exercises).
    // Readiness never waits for a canary; until it has loaded, every request goes to control.
    wait_for(Duration::from_secs(30), "the canary to load", || s.get("/v2/models/mlp/versions/2/ready").status == 200);
    let body = mlp_request(1).to_string();
    let arm_of = |conn: &mut Conn, user: usize| {
        let r =
            conn.request("POST", "/v2/models/scorer/infer", &[("x-user-id", &format!("user-{user}"))], body.as_bytes());
        assert_eq!(r.status, 200);
        let arm = r.header("x-switchyard-arm").unwrap().to_owned();
        let version = r.json()["model_version"].as_str().unwrap().to_owned();
        assert_eq!(version, if arm == "canary" { "2" } else { "1" });
        arm
    };
    let mut conn = s.conn();
    let first: Vec<String> = (0..200).map(|u| arm_of(&mut conn, u)).collect();
    let canary_share = first.iter().filter(|a| *a == "canary").count();
    assert!((20..=70).contains(&canary_share), "{canary_share} of 200 keys on the canary at 20 %");
    // The same key lands on the same arm while the weight holds.
    let again: Vec<String> = (0..200).map(|u| arm_of(&mut conn, u)).collect();
    if admin(&s, "scorer")["step"] == 0 {
        assert_eq!(again, first);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_step_1 = false;
    while admin(&s, "scorer")["phase"] != "promoted" {
        assert!(Instant::now() < deadline, "not promoted: {:#}", admin(&s, "scorer"));
        let now: Vec<String> = (0..200).map(|u| arm_of(&mut conn, u)).collect();
        for (u, (before, after)) in first.iter().zip(&now).enumerate() {
            assert!(
                !(before == "canary" && after == "control"),
                "user-{u} moved back to control: {:#}",
                admin(&s, "scorer")
            );
        }
        seen_step_1 |= admin(&s, "scorer")["step"] == 1;
    }
    assert!(seen_step_1, "the middle step was skipped");
    let status = admin(&s, "scorer");
    assert_eq!(
        (status["reason"]["kind"].as_str(), status["canary_weight_percent"].as_f64()),
        (Some("steps_passed"), Some(100.0))
    );
    assert!((0..50).all(|u| arm_of(&mut conn, u) == "canary"));
    // A versioned call still pins that version and bypasses the split.
    let pinned = s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(1));
    assert_eq!(pinned.json()["model_version"], "1");
}

#[test]
fn state_survives_kill_9_and_admin_actions_need_the_token() {
    let _serial = serial();
    let yaml = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 10, hold: 1h } ] }\n";
    let (mut s, dir) = start("restart", yaml);
    for (headers, status) in [(vec![], 401), (vec![("Authorization", "Bearer wrong")], 401)] {
        let r = s.conn().request("POST", "/admin/rollouts/scorer/pause", &headers, b"");
        assert_eq!(r.status, status);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(s.conn().request("GET", "/admin/rollouts", &headers, b"").status, 401);
    }
    let forced = s.conn().request(
        "POST",
        "/v2/models/scorer/infer",
        &[("x-switchyard-force-arm", "canary")],
        mlp_request(1).to_string().as_bytes(),
    );
    assert_eq!(forced.status, 401, "forcing an arm needs the token");
    let auth = format!("Bearer {TOKEN}");
    let forced = s.conn().request(
        "POST",
        "/v2/models/scorer/infer",
        &[("x-switchyard-force-arm", "canary"), ("Authorization", &auth)],
        mlp_request(1).to_string().as_bytes(),
    );
    assert_eq!(forced.header("x-switchyard-arm"), Some("canary"));
    let r = s.conn().request("POST", "/admin/rollouts/scorer/pause", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.conn().request("POST", "/admin/rollouts/scorer/pause", &[("Authorization", &auth)], b"").status, 409);
    let before = admin(&s, "scorer");
    s.child.kill().unwrap(); // SIGKILL: no chance to save anything on the way out
    s.child.wait().unwrap();
    let cfg = dir.join("switchyard.yaml");
    let state = dir.join("state");
    let s2 = Server::start_with(
        &test_repo(),
        &["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    );
    let after = admin(&s2, "scorer");
    for field in ["phase", "paused", "canary_weight_percent", "started_ms", "step_started_ms"] {
        assert_eq!(after[field], before[field], "{field} changed across the restart");
    }
    assert_eq!(after["paused"], true);
    let r = s2.conn().request("POST", "/admin/rollouts/scorer/rollback", &[("Authorization", &auth)], b"");
    assert_eq!(r.status, 200);
    drop(s2);
    // Rolled back stays rolled back across a restart with the same config.
    let s3 = Server::start_with(
        &test_repo(),
        &["--config", cfg.to_str().unwrap(), "--state-dir", state.to_str().unwrap()],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    );
    let again = admin(&s3, "scorer");
    assert_eq!((again["phase"].as_str(), again["reason"]["kind"].as_str()), (Some("rolled_back"), Some("admin")));
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(audit.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(audit.contains(r#""action":"pause""#) && audit.contains(r#""event":"resumed""#), "{audit}");
}

#[test]
fn a_shadow_reports_its_agreement_without_touching_the_clients_answer() {
    let _serial = serial();
    let (s, _dir) = start(
        "shadow",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: 0 }\n    shadows: [ { model: mlp_heavy, version: 1, sample: 100% } ]\n",
    );
    // Shadows do not hold up readiness: wait for this one before counting its answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get("/v2/models/mlp_heavy/ready").status != 200 {
        assert!(Instant::now() < deadline, "shadow never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let direct = s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(2)).json();
    let mut conn = s.conn();
    for _ in 0..50 {
        let r = conn.request("POST", "/v2/models/scorer/infer", &[], mlp_request(2).to_string().as_bytes());
        assert_eq!(r.header("x-switchyard-arm"), Some("control"));
        assert_eq!(r.json()["outputs"], direct["outputs"], "the shadow must not change the answer");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let agreement = loop {
        let a = admin(&s, "scorer")["shadows"][0]["agreement"].clone();
        if a["compared"].as_u64() == Some(50) || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(agreement["compared"], 50, "{agreement:#}");
    assert_eq!(agreement["exact"], 0, "a different model does not agree exactly");
    assert!(agreement["cosine_sum"].as_f64().unwrap() < 50.0);
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains(r#"switchyard_shadow_exact_agreement_ratio{endpoint="scorer",shadow="mlp_heavy/1"} 0"#),
        "{metrics}"
    );
    // Traffic faster than the shadow can follow: copies beyond its slots are shed (counted), never queued
    // without end, and every client still gets control's answer.
    let shed = || admin(&s, "scorer")["shadows"][0]["agreement"]["shed"].as_u64().unwrap_or(0);
    let (n, bad, arms) = traffic(&s, 16, Duration::from_secs(15), || shed() > 0);
    assert_eq!(bad, 0, "clients saw errors while the shadow shed");
    assert!(arms.iter().all(|a| a == "control"));
    assert!(shed() > 0, "no shadow copy was shed in {n} requests: {:#}", admin(&s, "scorer")["shadows"]);
    assert!(
        s.get("/metrics").text().contains(r#"switchyard_shadow_shed_total{endpoint="scorer",shadow="mlp_heavy/1"}"#)
    );
}

#[test]
fn nonsense_rollout_configs_are_refused_at_start() {
    let _serial = serial();
    let dir = scratch("bad-config");
    for (yaml, needle) in [
        (
            "  - endpoint: s\n    control: { model: nope, version: 1 }\n    canary: { model: mlp, version: 2, weight: 5 }\n",
            "control.model 'nope'",
        ),
        (
            "  - endpoint: s\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 1, weight: 5 }\n",
            "canary must differ",
        ),
        (
            "  - endpoint: s\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 9, weight: 5 }\n",
            "canary.version 9",
        ),
        (
            "  - endpoint: s\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: 500 }\n",
            "500",
        ),
    ] {
        let cfg = dir.join("c.yaml");
        std::fs::write(&cfg, format!("rollouts:\n{yaml}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--port", "0", "--config", cfg.to_str().unwrap(), "--model-repository"])
            .arg(test_repo())
            .current_dir(common::workspace())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn a_canary_that_cannot_load_is_rolled_back_and_never_makes_the_server_unready() {
    let _serial = serial();
    let dir = scratch("unloadable");
    let repo = dir.join("models");
    for m in ["mlp", "broken"] {
        copy_dir(&test_repo().join(m), &repo.join(m));
    }
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        "rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: broken, version: 1, weight: 50 }\n    faults: { control: { delay: 1ms } }\n",
    )
    .unwrap();
    let s = Server::start_with(
        &repo,
        &["--config", cfg.to_str().unwrap(), "--strict-readiness", "true"],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(s.get("/ready").status, 200, "{}", s.get("/ready").text());
    let deadline = Instant::now() + Duration::from_secs(5);
    while admin(&s, "scorer")["phase"] != "rolled_back" {
        assert!(Instant::now() < deadline, "{:#}", admin(&s, "scorer"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(admin(&s, "scorer")["reason"]["kind"], "canary_unavailable");
    let r = s.post_json("/v2/models/scorer/infer", &mlp_request(1));
    assert_eq!((r.status, r.header("x-switchyard-arm")), (200, Some("control")));
}

#[test]
fn injected_canary_faults_rehearse_a_rollback() {
    let _serial = serial();
    let (s, _dir) = start(
        "faults",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: 25 }\n    faults: { canary: { error: 50% } }\n    on_canary_error: return_error\n",
    );
    let rolled_back = || admin(&s, "scorer")["phase"] == "rolled_back";
    let (n, bad, _) = traffic(&s, 4, Duration::from_secs(10), rolled_back);
    let status = admin(&s, "scorer");
    assert_eq!(status["reason"]["kind"], "error_rate", "{status:#}");
    assert!(bad > 0 && bad < n, "with return_error the injected failures reach clients ({bad} of {n})");
}
