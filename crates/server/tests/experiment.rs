//! Experiments end to end: the real binary serves an A/B rollout, a test client posts outcomes for
//! what it was served, and the experiment reaches the verdict the outcomes support and acts on it;
//! feedback joins after a restart, and bad feedback gets its 4xx.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::rollouts::{TOKEN, admin, restart, serial, start_config, wait_for};
use common::{Server, mlp_request};
use serde_json::{Value, json};
use std::time::Duration;

/// A deterministic random number in [0, 1) for `i` (splitmix64), so a run's outcomes are reproducible.
fn uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// An A/B rollout of `mlp` 1 against 2, assigned by `x-user-id`, with this experiment. These tests are
/// about the experiment's verdict, so the latency test is all but off (1000x at the 75th percentile): on
/// a saturated machine a canary's worker that was idle waits a scheduler slice (~8 ms) to wake, 70 times
/// control's warm 0.1 ms, and the two versions are the same network anyway.
fn config(experiment: &str) -> String {
    format!(
        "feedback: {{ capacity: 10000, retention: 1h }}\nrollouts:\n  - endpoint: scorer\n    control: {{ model: mlp, version: 1 }}\n    canary: {{ model: mlp, version: 2, weight: 50 }}\n    assignment: {{ header: x-user-id }}\n    analysis: {{ latency: {{ quantile: 0.75, max_ratio: 1000.0 }} }}\n    experiment:\n{experiment}"
    )
}

/// A server with this config, once the canary (version 2) has loaded: until then every request goes to
/// control, and the canary's first requests are not measured against control's warm ones.
fn start_experiment(name: &str, yaml: &str) -> (Server, std::path::PathBuf) {
    let (s, dir) = start_config(name, yaml);
    wait_for(Duration::from_secs(30), "the canary to load", || s.get("/v2/models/mlp/versions/2/ready").status == 200);
    (s, dir)
}

/// Serves `n` requests (users `from..from + n`, each with its own request id); returns (id, arm) pairs.
fn serve(s: &Server, from: u64, n: u64) -> Vec<(String, String)> {
    let mut conn = s.conn();
    (from..from + n)
        .map(|u| {
            let mut body = mlp_request(1);
            body["id"] = json!(format!("r-{u}"));
            let user = format!("user-{u}");
            let r =
                conn.request("POST", "/v2/models/scorer/infer", &[("x-user-id", &user)], body.to_string().as_bytes());
            assert_eq!(r.status, 200, "{}", r.text());
            (format!("r-{u}"), r.header("x-switchyard-arm").unwrap().to_owned())
        })
        .collect()
}

fn post_feedback(s: &Server, body: &Value) -> common::Resp {
    s.post_json("/v2/models/scorer/feedback", body)
}

/// Serves users and reports a conversion for each (rate `control` or `canary` by the arm that served),
/// in batches, until the rollout leaves its fixed split or `max` users were served.
fn run(s: &Server, seed: u64, rates: (f64, f64), max: u64) -> Value {
    let mut from = 0;
    while from < max && admin(s, "scorer")["phase"] == "fixed" {
        let served = serve(s, from, 200);
        let reports: Vec<Value> = served
            .iter()
            .enumerate()
            .map(|(i, (id, arm))| {
                let rate = if arm == "canary" { rates.1 } else { rates.0 };
                json!({ "id": id, "values": { "conversion": uniform(seed, from + i as u64) < rate } })
            })
            .collect();
        let r = post_feedback(s, &json!({ "feedback": reports }));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["joined"], 200, "{}", r.text());
        from += 200;
    }
    admin(s, "scorer")
}

#[test]
fn a_better_canary_ships_and_is_promoted() {
    let _serial = serial();
    let (s, dir) = start_experiment(
        "experiment-ship",
        &config("      primary: conversion\n      min_effect: 10%\n      min_outcomes: 100\n      on_ship: promote\n"),
    );
    let status = run(&s, 1, (0.2, 0.4), 4_000);
    assert_eq!(status["phase"], "promoted", "{status:#}");
    assert_eq!(status["reason"]["kind"], "experiment", "{status:#}");
    assert_eq!(status["reason"]["verdict"], "ship", "{status:#}");
    let lift = status["experiment"]["report"]["primary"]["relative_lift"].as_f64().unwrap();
    assert!(lift > 0.3, "{status:#}");
    // The journal writes the audit log on its own thread.
    wait_for(Duration::from_secs(5), "the verdict in the audit log", || {
        let audit = std::fs::read_to_string(dir.join("state/audit.jsonl")).unwrap_or_default();
        audit.contains(r#""event":"experiment_verdict""#) && audit.contains(r#""by":"experiment""#)
    });
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains(r#"switchyard_experiment_verdict{endpoint="scorer"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"switchyard_rollout_promotions_total{endpoint="scorer",reason="experiment"} 1"#));
}

#[test]
fn a_worse_canary_is_killed_and_rolled_back() {
    let _serial = serial();
    let (s, _dir) =
        start_experiment("experiment-kill", &config("      primary: conversion\n      min_outcomes: 100\n"));
    let status = run(&s, 2, (0.4, 0.2), 4_000);
    assert_eq!(status["phase"], "rolled_back", "{status:#}");
    assert_eq!(status["reason"]["kind"], "experiment", "{status:#}");
    assert_eq!(status["reason"]["verdict"], "kill", "{status:#}");
    assert_eq!(status["reason"]["metric"], "conversion", "{status:#}");
    // After the rollback every request goes to control.
    assert!(serve(&s, 10_000, 20).iter().all(|(_, arm)| arm == "control"));
}

#[test]
fn a_canary_breaching_a_guardrail_is_killed_while_the_primary_improves() {
    let _serial = serial();
    let (s, _dir) = start_experiment(
        "experiment-guardrail",
        &config(
            "      primary: conversion\n      min_outcomes: 100\n      guardrails:\n        - { metric: refund, direction: lower, max_degradation: 10% }\n",
        ),
    );
    let mut from = 0;
    while from < 4_000 && admin(&s, "scorer")["phase"] == "fixed" {
        let reports: Vec<Value> = serve(&s, from, 200)
            .iter()
            .enumerate()
            .map(|(i, (id, arm))| {
                let u = uniform(3, from + i as u64);
                let (conversion, refund) = if arm == "canary" { (0.25, 0.5) } else { (0.2, 0.1) };
                json!({ "id": id, "values": { "conversion": u < conversion, "refund": uniform(4, from + i as u64) < refund } })
            })
            .collect();
        assert_eq!(post_feedback(&s, &json!({ "feedback": reports })).json()["joined"], 200);
        from += 200;
    }
    let status = admin(&s, "scorer");
    assert_eq!(status["phase"], "rolled_back", "{status:#}");
    assert_eq!(status["reason"]["metric"], "refund", "{status:#}");
}

#[test]
fn an_equal_canary_keeps_running() {
    let _serial = serial();
    let (s, _dir) = start_experiment(
        "experiment-equal",
        &config("      primary: conversion\n      min_outcomes: 100\n      on_ship: promote\n"),
    );
    let status = run(&s, 5, (0.3, 0.3), 1_600);
    assert_eq!(status["phase"], "fixed", "{status:#}");
    let report = &status["experiment"]["report"];
    assert_eq!(report["verdict"], "keep_running", "{status:#}");
    // Both arms were judged, and the confidence sequence holds 0.
    assert_eq!(report["primary"]["judged"], true, "{status:#}");
    let d = &report["primary"]["difference"];
    assert!(d["low"].as_f64().unwrap() < 0.0 && d["high"].as_f64().unwrap() > 0.0, "{status:#}");
}

#[test]
fn feedback_joins_after_a_restart_once_and_bad_feedback_gets_its_4xx() {
    let _serial = serial();
    let (mut s, dir) = start_experiment(
        "experiment-restart",
        &config(
            "      primary: accuracy\n      accuracy_of: label\n      guardrails: [ { metric: revenue, max_degradation: 10% } ]\n",
        ),
    );
    let served = serve(&s, 0, 20);
    // By the assignment key too.
    let mut body = mlp_request(1);
    body.as_object_mut().unwrap().remove("id");
    let r =
        s.conn().request("POST", "/v2/models/scorer/infer", &[("x-user-id", "user-key")], body.to_string().as_bytes());
    assert_eq!(r.status, 200);
    let key_arm = r.header("x-switchyard-arm").unwrap().to_owned();
    // Outcomes joined before the restart stay in the experiment's evidence.
    let early: Vec<Value> =
        served[10..20].iter().map(|(id, _)| json!({ "id": id, "values": { "revenue": 1.0 } })).collect();
    assert_eq!(post_feedback(&s, &json!({ "feedback": early })).json()["joined"], 10);
    s.terminate();
    let _ = s.child.wait();
    let s = restart(&dir);
    let outcomes = |s: &Server| -> u64 {
        let report = &admin(s, "scorer")["experiment"]["report"];
        report["guardrails"][0]["outcomes"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum()
    };
    assert_eq!(outcomes(&s), 10);

    let (id, arm) = &served[0];
    let r = post_feedback(&s, &json!({ "id": id, "values": { "revenue": 3.5, "label": 7 } }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["joined"]["arm"], arm.as_str());
    let outcomes = &r.json()["joined"]["outcomes"];
    assert_eq!(outcomes.as_array().unwrap().len(), 2, "{outcomes}");
    let r = post_feedback(&s, &json!({ "key": "user-key", "values": { "revenue": 1 } }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["joined"]["arm"], key_arm.as_str());

    // Never joined twice; unknown, malformed and unread values are refused with the field named.
    let again = post_feedback(&s, &json!({ "id": id, "values": { "revenue": 1 } }));
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.error().contains("already has a 'revenue' outcome"), "{}", again.text());
    let unknown = post_feedback(&s, &json!({ "id": "never-served", "values": { "revenue": 1 } }));
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert!(unknown.error().contains("never-served"));
    let typo = post_feedback(&s, &json!({ "id": served[1].0, "values": { "revenu": 1 } }));
    assert_eq!(typo.status, 400);
    assert!(typo.error().contains("values.revenu"), "{}", typo.text());
    let text = post_feedback(&s, &json!({ "id": served[1].0, "values": { "revenue": "lots" } }));
    assert!(text.status == 400 && text.error().contains("values.revenue"), "{}", text.text());
    let shape = post_feedback(
        &s,
        &json!({ "feedback": [ { "id": "a", "values": { "revenue": 1 } }, { "id": 5, "values": {} } ] }),
    );
    assert!(shape.status == 400 && shape.error().contains("feedback[1].id"), "{}", shape.text());
    let none = s.post_json("/v2/models/mlp/feedback", &json!({ "id": "x", "values": { "revenue": 1 } }));
    assert_eq!(none.status, 404);
    // The refused reports left the request joinable.
    let r = post_feedback(&s, &json!({ "id": served[1].0, "values": { "revenue": 2 } }));
    assert_eq!(r.status, 200, "{}", r.text());
    // A batch answers per report.
    let batch = post_feedback(
        &s,
        &json!({ "feedback": [ { "id": served[2].0, "values": { "revenue": 1 } }, { "id": "gone", "values": { "revenue": 1 } } ] }),
    );
    assert_eq!(batch.status, 200);
    let b = batch.json();
    assert_eq!((b["joined"].as_u64(), b["refused"].as_u64()), (Some(1), Some(1)), "{b}");
    assert_eq!(b["results"][1]["status"], 404, "{b}");
    wait_for(Duration::from_secs(5), "the feedback counts in the metrics", || {
        let m = s.get("/metrics").text();
        m.contains(r#"switchyard_feedback_reports_total{result="unknown"} 2"#)
            && m.contains(r#"switchyard_feedback_reports_total{result="duplicate"} 1"#)
            && m.contains(r#"switchyard_feedback_reports_total{result="joined"} 4"#)
    });
    let _ = TOKEN;
}

#[test]
fn the_store_evicts_the_oldest_past_its_capacity_and_refuses_late_feedback() {
    let _serial = serial();
    let yaml =
        config("      primary: conversion\n").replace("capacity: 10000, retention: 1h", "capacity: 5, retention: 2s");
    let (s, _dir) = start_experiment("experiment-bounds", &yaml);
    let served = serve(&s, 0, 8);
    // Each request is remembered by id and by key: the store of 5 holds the last requests' entries.
    let evicted = post_feedback(&s, &json!({ "id": served[0].0, "values": { "conversion": 1 } }));
    assert_eq!(evicted.status, 404, "{}", evicted.text());
    let kept = post_feedback(&s, &json!({ "id": served[7].0, "values": { "conversion": 1 } }));
    assert_eq!(kept.status, 200, "{}", kept.text());
    wait_for(Duration::from_secs(5), "the feedback for the last-but-one request to be late", || {
        let r = post_feedback(&s, &json!({ "key": "user-6", "values": { "conversion": 0 } }));
        // Joined first, then refused as a repeat until it is late.
        assert!([200, 409, 410].contains(&r.status), "{}", r.text());
        r.status == 410 && r.error().contains("past the feedback retention of 2 s")
    });
    wait_for(Duration::from_secs(5), "the store's counts in the metrics", || {
        let m = s.get("/metrics").text();
        m.contains("switchyard_feedback_requests_evicted_total 11")
            && m.contains(r#"switchyard_feedback_reports_total{result="expired"} 1"#)
    });
}
