//! The V2 endpoints, probes and metrics over real HTTP against the real binary.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{Server, mlp_request};
use serde_json::json;

#[test]
fn probes_answer_and_failed_models_report_their_reason() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/v2/health/live").status, 200);
    // Non-strict: loading finished, so ready even though some test models failed.
    assert_eq!(s.get("/ready").status, 200);
    assert_eq!(s.get("/v2/models/mlp/ready").status, 200);
    assert_eq!(s.get("/v2/models/mlp/versions/1/ready").status, 200);
    let broken = s.get("/v2/models/broken/ready");
    assert_eq!(broken.status, 503);
    assert!(broken.error().contains("failed to load"), "{}", broken.text());
    let bad_config = s.get("/v2/models/bad_config/ready");
    assert_eq!(bad_config.status, 503);
    assert!(bad_config.error().contains("instnces"), "{}", bad_config.text());
    assert!(s.get("/v2/models/no_versions/ready").error().contains("no numeric version"));
    if !cfg!(feature = "cuda") {
        let gpu = s.get("/v2/models/on_gpu/ready");
        assert_eq!(gpu.status, 503);
        assert!(gpu.error().contains("cuda:0") && gpu.error().contains("`cuda` feature"), "{}", gpu.text());
    }
    assert_eq!(s.get("/v2/models/nope/ready").status, 404);
    assert_eq!(s.get("/v2/models/mlp/versions/9/ready").status, 404);
    assert!(s.log().contains("model failed to load"));
}

#[test]
fn strict_readiness_waits_for_every_model() {
    let s = Server::start(&["--strict-readiness", "true"]);
    let r = s.get("/ready");
    assert_eq!(r.status, 503);
    assert!(r.error().contains("broken") && r.error().contains("bad_config"), "{}", r.text());
    assert_eq!(s.get("/v2/health/ready").status, 503);
    // The rest of the repository still serves.
    assert_eq!(s.post_json("/v2/models/mlp/infer", &mlp_request(1)).status, 200);
}

#[test]
fn metadata_comes_from_the_model() {
    let s = Server::start(&[]);
    let v2 = s.get("/v2").json();
    assert_eq!(v2["name"], "switchyard");
    assert!(v2["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));
    let m = s.get("/v2/models/multi_io").json();
    assert_eq!(m["platform"], "onnxruntime_onnx");
    assert_eq!(
        m["inputs"],
        json!([
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "INT64", "shape": [-1, 4]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1, 4]}])
    );
    assert_eq!(m["outputs"][2], json!({"name": "doubled", "datatype": "INT64", "shape": [-1, 4]}));
    assert_eq!(s.get("/v2/models/mlp").json()["versions"], json!(["1", "2"]));
    assert_eq!(s.get("/v2/models/mlp/versions/1").json()["versions"], json!(["1"]));
    let cfg = s.get("/v2/models/mlp/config").json();
    assert_eq!(cfg["max_batch_size"], 1024);
    assert_eq!(cfg["input"][0], json!({"name": "input", "data_type": "TYPE_FP32", "dims": [64]}));
    assert_eq!(s.get("/v2/models/strings/config").json()["input"][0]["data_type"], "TYPE_STRING");
    assert_eq!(s.get("/v2/models/nope").status, 404);
}

#[test]
fn unversioned_calls_take_the_latest_and_versioned_calls_pin() {
    let s = Server::start(&[]);
    let latest = s.post_json("/v2/models/mlp/infer", &mlp_request(2));
    assert_eq!(latest.status, 200, "{}", latest.text());
    let latest = latest.json();
    assert_eq!(latest["model_name"], "mlp");
    assert_eq!(latest["model_version"], "2");
    assert_eq!(latest["id"], "req-1");
    assert_eq!(latest["outputs"][0]["shape"], json!([2, 10]));
    assert_eq!(latest["outputs"][0]["data"].as_array().unwrap().len(), 20);
    let v1 = s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(2)).json();
    assert_eq!(v1["model_version"], "1");
    assert_ne!(v1["outputs"][0]["data"], latest["outputs"][0]["data"], "versions 1 and 2 have different weights");
    let v2 = s.post_json("/v2/models/mlp/versions/2/infer", &mlp_request(2)).json();
    assert_eq!(v2["outputs"], latest["outputs"]);
    assert_eq!(s.post_json("/v2/models/mlp/versions/3/infer", &mlp_request(1)).status, 404);
}

#[test]
fn outputs_selection_and_binary_outputs() {
    let s = Server::start(&[]);
    let body = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]},
            {"name": "b", "shape": [1, 4], "datatype": "INT64", "data": [[10, 20, 30, 40]]},
            {"name": "flag", "shape": [1, 4], "datatype": "BOOL", "data": [true, false, true, false]}],
        "outputs": [{"name": "doubled"}, {"name": "masked", "parameters": {"binary_data": false}}]});
    let r = s.post_json("/v2/models/multi_io/infer", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let n: usize = r.header("inference-header-content-length").unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
    let outs = head["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2, "only the asked outputs: {head}");
    assert_eq!(outs[0]["name"], "doubled");
    assert_eq!(outs[0]["parameters"]["binary_data_size"], 32);
    assert_eq!(outs[1]["data"], json!([1.0, 0.0, 3.0, 0.0]));
    let doubled: Vec<i64> = r.body[n..].chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(doubled, [20, 40, 60, 80]);
}

#[test]
fn raw_binary_request_gets_binary_outputs() {
    let s = Server::start(&[]);
    let floats: Vec<u8> = (0..128).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
    let r = s.conn().request(
        "POST",
        "/v2/models/mlp/versions/1/infer",
        &[("Inference-Header-Content-Length", "0")],
        &floats,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let n: usize = r.header("inference-header-content-length").unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
    assert_eq!(head["outputs"][0]["shape"], json!([2, 10]));
    assert_eq!(r.body.len() - n, 80);
    let two =
        s.conn().request("POST", "/v2/models/multi_io/infer", &[("Inference-Header-Content-Length", "0")], &floats);
    assert_eq!(two.status, 400);
    assert!(two.error().contains("one input"), "{}", two.text());
}

#[test]
fn strings_travel_as_bytes() {
    let s = Server::start(&[]);
    let body =
        json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["héllo", "", "wörld 🌍"]}]});
    let r = s.post_json("/v2/models/strings/infer", &body).json();
    assert_eq!(r["outputs"][0]["datatype"], "BYTES");
    assert_eq!(r["outputs"][0]["data"], json!(["héllo", "", "wörld 🌍"]));
}

#[test]
fn concurrent_requests_each_get_their_own_answer() {
    let s = Server::start(&[]);
    let expected: Vec<serde_json::Value> = (1..=4)
        .map(|rows| s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(rows)).json()["outputs"].clone())
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, expected) = (&s, &expected);
            scope.spawn(move || {
                let mut conn = s.conn();
                for i in 0..40 {
                    let rows = (t + i) % 4 + 1;
                    let body = mlp_request(rows).to_string();
                    let r = conn.request("POST", "/v2/models/mlp/versions/1/infer", &[], body.as_bytes());
                    assert_eq!(r.status, 200);
                    assert_eq!(r.json()["outputs"], expected[rows - 1]);
                }
            });
        }
    });
}

#[test]
fn metrics_count_requests_by_model_version_and_outcome() {
    let s = Server::start(&[]);
    assert_eq!(s.post_json("/v2/models/mlp/infer", &mlp_request(1)).status, 200);
    assert_eq!(s.post_json("/v2/models/mlp/infer", &json!({"inputs": []})).status, 400);
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    let text = m.text();
    for want in [
        r#"switchyard_requests_total{model="mlp",version="2",outcome="success",protocol="http"} 1"#,
        r#"switchyard_requests_total{model="mlp",version="2",outcome="client_error",protocol="http"} 1"#,
        r#"switchyard_request_duration_seconds_bucket{model="mlp",version="2",protocol="http",le="0.001"}"#,
        r#"switchyard_compute_duration_seconds_count{model="mlp",version="2"} 1"#,
        r#"switchyard_queue_duration_seconds_count{model="mlp",version="2"} 1"#,
        r#"switchyard_requests_in_flight{model="mlp",version="2"} 0"#,
        r#"switchyard_model_ready{model="mlp",version="1"} 1"#,
        r#"switchyard_model_ready{model="broken",version="1"} 0"#,
        r#"switchyard_model_load_failures_total{model="broken"} 1"#,
        r#"switchyard_http_requests_total{route="/v2/models/{model}/infer",method="POST",status="200"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(!text.contains("route=\"/v2/models/mlp"), "raw paths must not become labels");
}

#[test]
fn a_triton_config_pbtxt_is_honoured() {
    let s = Server::start(&[]);
    let cfg = s.get("/v2/models/triton_style/config").json();
    assert_eq!(cfg["max_batch_size"], 8);
    assert_eq!(cfg["instance_group"][0]["count"], 2);
    assert_eq!(s.post_json("/v2/models/triton_style/infer", &mlp_request(8)).status, 200);
    let r = s.post_json("/v2/models/triton_style/infer", &mlp_request(9));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("max_batch_size 8"), "{}", r.text());
    assert!(
        s.log().contains("config.pbtxt fields Switchyard does not support") && s.log().contains("optimization"),
        "{}",
        s.log()
    );
    // Declared inputs and outputs are checked against the model, as Triton does.
    let wrong = s.get("/v2/models/triton_wrong_io/ready");
    assert_eq!(wrong.status, 503);
    assert!(wrong.error().contains("input 'INPUT0' is not an input of the model (inputs: input)"), "{}", wrong.text());
}
