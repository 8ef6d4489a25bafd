//! Faulty models are contained, through the real binary: a version that keeps failing trips its
//! circuit breaker (refused at once while open, 503 with Retry-After), its fallback answers meanwhile
//! (`x-switchyard-fallback`), a probe after `open_for` closes it again once the model succeeds; and
//! NaN outputs are refused where the config says so.

#![allow(clippy::unwrap_used)]

mod common;

use common::rollouts::{TOKEN, wait_for};
use common::{Server, mlp_request};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A request the flaky models fail on (a real input) or serve (all zeros).
fn request(failing: bool) -> Value {
    if failing {
        mlp_request(1)
    } else {
        json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]})
    }
}

fn breaker(s: &Server, model: &str) -> Value {
    let r = s.conn().request("GET", "/admin/breakers", &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().iter().find(|b| b["model"] == model).cloned().unwrap_or(Value::Null)
}

fn metric(s: &Server, needle: &str) -> Option<f64> {
    s.get("/metrics").text().lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_failing_version_trips_its_breaker_the_fallback_answers_and_a_probe_closes_it() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let s = Server::start_with(&common::test_repo(), &[], &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    // Failures are answered by the fallback (mlp version 1), and count for the breaker.
    for i in 0..3 {
        let r = s.post_json("/v2/models/flaky/infer", &request(true));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-switchyard-fallback"), Some("mlp/1"));
        assert_eq!(r.json()["model_name"], "flaky");
    }
    assert_eq!(breaker(&s, "flaky")["state"], "open", "{}", breaker(&s, "flaky"));
    assert_eq!(breaker(&s, "flaky")["last_trip"], "consecutive_failures");
    assert_eq!(metric(&s, r#"switchyard_circuit_state{model="flaky",version="1"}"#), Some(2.0));
    // Open: even a request the model would serve goes to the fallback at once.
    let r = s.post_json("/v2/models/flaky/infer", &request(false));
    assert_eq!(r.header("x-switchyard-fallback"), Some("mlp/1"));
    assert_eq!(metric(&s, r#"switchyard_fallback_total{model="flaky",reason="circuit_open"}"#), Some(1.0));
    assert_eq!(metric(&s, r#"switchyard_fallback_total{model="flaky",reason="failed"}"#), Some(3.0));
    // After open_for (1 s) one probe goes to the model; it succeeds and the breaker closes.
    let opened = Instant::now();
    wait_for(Duration::from_secs(5), "the breaker to let a probe through", || {
        s.post_json("/v2/models/flaky/infer", &request(false)).header("x-switchyard-fallback").is_none()
    });
    assert!(opened.elapsed() >= Duration::from_millis(800), "probed after {:?}", opened.elapsed());
    assert_eq!(breaker(&s, "flaky")["state"], "closed");
    assert_eq!(metric(&s, r#"switchyard_circuit_state{model="flaky",version="1"}"#), Some(0.0));
    let r = s.post_json("/v2/models/flaky/infer", &request(false));
    assert_eq!((r.status, r.header("x-switchyard-fallback")), (200, None));
}

#[test]
fn without_a_fallback_an_open_breaker_answers_503_with_retry_after_at_once() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let s = Server::start_with(&common::test_repo(), &[], &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    for _ in 0..3 {
        assert_eq!(s.post_json("/v2/models/flaky_alone/infer", &request(true)).status, 500);
    }
    let r = s.post_json("/v2/models/flaky_alone/infer", &request(false));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("circuit breaker of flaky_alone/1 is open"), "{}", r.error());
    // A failed probe opens it again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.post_json("/v2/models/flaky_alone/infer", &request(true)).status, 500);
    assert_eq!(s.post_json("/v2/models/flaky_alone/infer", &request(false)).status, 503);
    assert_eq!(breaker(&s, "flaky_alone")["last_trip"], "probe_failed");
    // Other models are untouched.
    assert_eq!(s.post_json("/v2/models/mlp/infer", &mlp_request(1)).status, 200);
}

#[test]
fn nan_outputs_are_refused_where_the_config_says_so() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let s = Server::start(&[]);
    let negative = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![-0.5; 64]}]});
    let positive = json!({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![0.5; 64]}]});
    let r = s.post_json("/v2/models/mlp_nan/infer", &negative);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.error().contains("output 'output' holds NaN or Inf"), "{}", r.error());
    assert_eq!(s.post_json("/v2/models/mlp_nan/infer", &positive).status, 200);
    // The same graph without the setting answers (JSON has no NaN: the encoder's choice shows here).
    assert_eq!(s.post_json("/v2/models/mlp_nan/infer", &positive).json()["outputs"][0]["shape"], json!([1, 10]));
}

#[test]
fn a_hanging_model_call_times_out_and_its_worker_is_replaced() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let s = Server::start_with(&common::test_repo(), &["--request-timeout-ms", "1500"], &[]);
    let begun = Instant::now();
    let r = s.post_json("/v2/models/mlp_hang/infer", &request(true));
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(begun.elapsed() < Duration::from_secs(5), "took {:?}", begun.elapsed());
    // The only worker is still stuck in that call; a replacement serves the next request.
    wait_for(Duration::from_secs(10), "a replacement worker", || {
        s.post_json("/v2/models/mlp_hang/infer", &request(false)).status == 200
    });
    assert_eq!(
        metric(&s, r#"switchyard_worker_replacements_total{model="mlp_hang",version="1",reason="hung"}"#),
        Some(1.0)
    );
    assert_eq!(s.get("/v2/models/mlp_hang/ready").status, 200);
    assert!(s.log().contains("stuck in a model call"), "{}", s.log());
}

/// A rollout whose canary (mlp version 2, half the traffic) has `fault` injected into every call, under
/// traffic until it is rolled back: it must be rolled back on its error rate with no client error
/// (control answers), readiness must hold, and the canary's worker must serve afterwards. Returns the
/// server for the fault's own checks.
fn rehearse(name: &str, fault: &str) -> (Server, std::path::PathBuf) {
    let (s, dir) = common::rollouts::start(
        name,
        &format!(
            "  - endpoint: scorer\n    control: {{ model: mlp, version: 1 }}\n    canary: {{ model: mlp, version: 2, weight: 50 }}\n    \
             faults: {{ canary: {{ {fault}: 100% }} }}\n"
        ),
    );
    let rolled_back = || common::rollouts::admin(&s, "scorer")["phase"] == "rolled_back";
    let (n, bad, _) = common::rollouts::traffic(&s, 4, Duration::from_secs(20), rolled_back);
    let status = common::rollouts::admin(&s, "scorer");
    assert_eq!(
        (status["phase"].as_str(), status["reason"]["kind"].as_str()),
        (Some("rolled_back"), Some("error_rate")),
        "{status:#}"
    );
    assert_eq!(bad, 0, "clients saw errors in {n} requests: control answers for the failing canary");
    assert_eq!(s.get("/ready").status, 200);
    assert_eq!(s.post_json("/v2/models/mlp/versions/2/infer", &mlp_request(1)).status, 200);
    (s, dir)
}

#[test]
fn a_canary_whose_model_panics_is_contained_answered_by_control_and_rolled_back() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let (s, _dir) = rehearse("panicking", "panic");
    assert!(s.log().contains("the model panicked"), "{}", s.log());
}

#[test]
fn a_canary_whose_worker_crashes_is_restarted_answered_by_control_and_rolled_back() {
    let _serial = common::rollouts::serial(); // one server at a time: the hang test keeps a core busy
    let (s, _dir) = rehearse("crashing", "crash");
    assert!(s.log().contains("a worker panicked outside a model call"), "{}", s.log());
    let restarts = metric(&s, r#"switchyard_worker_replacements_total{model="mlp",version="2",reason="panic"}"#);
    assert!(restarts.is_some_and(|r| r >= 1.0), "{restarts:?}");
}
