//! Drift end to end: the real binary serves models with `drift:` configured; a shifted input stream
//! raises PSI past the critical threshold (metrics, admin API, a log line) while an unshifted one stays
//! below the warning; a reference from a file is used as given.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::Server;
use common::rollouts::{TOKEN, start_over, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// Standard normal draws from a seeded xorshift (Box–Muller), shifted by `shift`.
fn normals(n: usize, seed: u64, shift: f64) -> Vec<f64> {
    let mut s = seed.max(1);
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| shift + (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()).collect()
}

/// Sends `requests` requests of 8 rows of 64 features drawn from N(`shift`, 1) to `model`.
fn send(s: &Server, model: &str, requests: usize, seed: u64, shift: f64) {
    let mut conn = s.conn();
    for i in 0..requests {
        let data = normals(8 * 64, seed * 1_000_003 + i as u64, shift);
        let body = json!({ "inputs": [{ "name": "input", "shape": [8, 64], "datatype": "FP32", "data": data }] });
        let r = conn.request("POST", &format!("/v2/models/{model}/infer"), &[], body.to_string().as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn drift(s: &Server) -> Vec<Value> {
    let r = s.conn().request("GET", "/admin/drift", &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

fn series(s: &Server, model: &str, name: &str) -> Value {
    drift(s).into_iter().find(|m| m["model"] == model).unwrap()["series"][name].clone()
}

#[test]
fn a_shifted_input_stream_raises_psi_past_critical_while_an_unshifted_one_stays_below() {
    let config = "drift: { reference_size: 1000, window: 1000, features: 4 }\n";
    let reference: Value =
        json!({ "input:input[0]": normals(2_000, 99, 0.0), "input:input[1]": normals(2_000, 98, 0.0) });
    let (s, dir) = start_over(
        "drift",
        &[
            ("mlp", "steady", Some(config)),
            ("mlp", "shifted", Some(config)),
            ("mlp", "fromfile", Some("drift: { reference_file: reference.json, window: 500 }\n")),
        ],
        "  []\n",
    );
    drop(s);
    std::fs::write(dir.join("models/fromfile/reference.json"), reference.to_string()).unwrap();
    let s = common::rollouts::restart_over(&dir);
    // The reference: the first 1000 values of each series (125 requests of 8 rows), the same for both.
    for model in ["steady", "shifted"] {
        send(&s, model, 125, 1, 0.0);
    }
    // Then a window of 1000 values: unshifted for one, shifted by one standard deviation for the others.
    send(&s, "steady", 125, 2, 0.0);
    send(&s, "shifted", 125, 3, 1.0);
    send(&s, "fromfile", 125, 4, 1.0);
    // Figures appear once a window is full (at least 900 of its 1000 values).
    wait_for(Duration::from_secs(10), "drift figures for every monitored series", || {
        ["steady", "shifted"].iter().all(|m| series(&s, m, "input:input[3]")["psi"].is_number())
            && series(&s, "fromfile", "input:input[1]")["psi"].is_number()
    });
    for name in ["input:input[0]", "input:input[3]"] {
        let steady = series(&s, "steady", name);
        assert_eq!(steady["level"], "ok", "{steady}");
        assert!(steady["psi"].as_f64().unwrap() < 0.1, "{steady}");
        let shifted = series(&s, "shifted", name);
        assert_eq!(shifted["level"], "critical", "{shifted}");
        assert!(shifted["psi"].as_f64().unwrap() > 0.25 && shifted["kl"].as_f64().unwrap() > 0.1, "{shifted}");
    }
    // The outputs are tracked too (up to 4 columns of the 10 scores).
    assert!(series(&s, "steady", "output:output[0]")["psi"].as_f64().unwrap() < 0.1);
    assert!(series(&s, "steady", "output:output[4]").is_null());
    // From a file: its series only, judged against it.
    let from_file = drift(&s).into_iter().find(|m| m["model"] == "fromfile").unwrap();
    assert_eq!(from_file["reference"], "file");
    assert_eq!(from_file["series"].as_object().unwrap().len(), 2, "{from_file}");
    assert_eq!(from_file["series"]["input:input[0]"]["level"], "critical", "{from_file}");
    let metrics = s.get("/metrics").text();
    assert!(
        metrics.contains(r#"switchyard_drift_level{model="shifted",version="2",series="input:input[0]"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"switchyard_drift_level{model="steady",version="2",series="input:input[0]"} 0"#));
    let log = s.log();
    assert!(log.contains("drift threshold crossed") && log.contains("shifted"), "{log}");
    assert!(!log.lines().any(|l| l.contains("drift threshold crossed") && l.contains("steady")), "{log}");
}

#[test]
fn a_reference_file_that_cannot_be_used_fails_the_version_naming_it() {
    let (s, dir) =
        start_over("drift-bad", &[("mlp", "m", Some("drift: { reference_file: missing.json }\n"))], "  []\n");
    let index = s.post_json("/v2/repository/index", &json!({})).json();
    let text = index.to_string();
    assert!(text.contains("drift.reference_file") && text.contains("missing.json"), "{text}");
    let _ = dir;
}

#[test]
fn each_arm_of_a_rollout_has_its_drift_and_a_promoted_canary_captures_its_reference_again() {
    let config = "versions: all\ndrift: { reference_size: 200, window: 200, features: 2 }\n";
    let (s, _dir) = start_over(
        "drift-arms",
        &[("mlp", "m", Some(config))],
        // The latency test all but off: this test is about drift (see experiment.rs's `config`).
        "  - endpoint: scorer\n    control: { model: m, version: 1 }\n    canary: { model: m, version: 2, weight: 50 }\n    analysis: { latency: { quantile: 0.75, max_ratio: 1000.0 } }\n",
    );
    wait_for(Duration::from_secs(30), "the canary to load", || s.get("/v2/models/m/versions/2/ready").status == 200);
    send(&s, "scorer", 120, 7, 0.0);
    // The drift thread takes the samples every 20 ms.
    wait_for(Duration::from_secs(5), "both arms' references", || {
        let status = common::rollouts::admin(&s, "scorer");
        ["control", "canary"].iter().all(|arm| status["drift"][arm]["series"]["input:input[0]"]["window"].is_u64())
    });
    let status = common::rollouts::admin(&s, "scorer");
    assert_eq!(
        (status["drift"]["control"]["version"].as_u64(), status["drift"]["canary"]["version"].as_u64()),
        (Some(1), Some(2))
    );
    let r = s.conn().request(
        "POST",
        "/admin/rollouts/scorer/promote",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    send(&s, "scorer", 1, 8, 0.0);
    wait_for(Duration::from_secs(5), "the promoted canary to capture its reference again", || {
        let d = &common::rollouts::admin(&s, "scorer")["drift"]["canary"]["series"]["input:input[0]"];
        d["capturing"].as_u64().is_some_and(|n| n < 200)
    });
    assert!(s.log().contains("capturing the reference again after promotion"));
}
