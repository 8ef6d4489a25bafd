//! Start-up, shutdown and responsiveness of the real binary.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{Conn, Server, test_repo, workspace};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn slow_request(rows: usize) -> Vec<u8> {
    json!({"inputs": [{"name": "x", "shape": [rows, 1024], "datatype": "FP32", "data": vec![0.01f32; rows * 1024]}]})
        .to_string()
        .into_bytes()
}

fn wait_exit(s: &mut Server) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = s.child.try_wait().expect("wait for the server") {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not exit: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let mut s = Server::start(&[]);
    let mut conn = Conn::open(s.port);
    let body = slow_request(768);
    conn.send(
        format!("POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
    );
    conn.send(&body);
    // Let the request reach the model before the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.get("/metrics").text().contains(r#"switchyard_requests_in_flight{model="slow",version="1"} 1"#) {
        assert!(Instant::now() < deadline, "request never went in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.terminate();
    let r = conn.read_response().expect("the in-flight request is answered");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["outputs"][0]["shape"], json!([768, 1024]));
    let status = wait_exit(&mut s);
    assert!(status.success(), "exit status {status}: {}", s.log());
    assert!(s.log().contains("shutting down"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err(), "still accepting after shutdown");
}

#[test]
fn the_http_side_answers_while_a_model_computes() {
    let s = Server::start(&[]);
    let body = slow_request(1024);
    let port = s.port;
    let slow = std::thread::spawn(move || {
        let r = Conn::open(port).request("POST", "/v2/models/slow/infer", &[], &body);
        (r.status, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.get("/metrics").text().contains(r#"switchyard_requests_in_flight{model="slow",version="1"} 1"#) {
        assert!(Instant::now() < deadline, "request never went in flight");
    }
    // While the slow model computes, probes and other models answer.
    let probes_done = {
        assert_eq!(s.get("/health").status, 200);
        assert_eq!(s.get("/v2/models/slow/ready").status, 200);
        assert_eq!(s.post_json("/v2/models/mlp/infer", &common::mlp_request(1)).status, 200);
        Instant::now()
    };
    let (status, slow_done) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert!(probes_done < slow_done, "probes waited for the model");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let s = Server::start(&["--log-format", "json"]);
    assert_eq!(s.get("/health").status, 200);
    let log = s.log();
    let json_lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(json_lines.iter().any(|l| l["message"] == "model ready" && l["model"] == "mlp"), "{log}");
    assert!(json_lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()));
}

#[test]
fn settings_come_from_the_environment_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "SWITCHYARD_MODEL_REPOSITORY",
        "SWITCHYARD_HOST",
        "SWITCHYARD_PORT",
        "SWITCHYARD_CONFIG",
        "ORT_DYLIB_PATH",
        "SWITCHYARD_LOG_FORMAT",
    ] {
        assert!(help.contains(env), "--help does not mention {env}");
    }
    // A config file supplies the body limit; the flag-less server refuses a larger body.
    let dir = std::env::temp_dir().join(format!("switchyard-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("switchyard.yaml");
    std::fs::write(&cfg, "server:\n  max_request_bytes: 100\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let r = s.post_json("/v2/models/mlp/infer", &common::mlp_request(1));
    assert_eq!(r.status, 413);
    // A body far over the limit but of a plausible size is read to its end first, so the client
    // finishes sending and reads the 413 (not a reset) on a connection that stays usable.
    let mut c = s.conn();
    let big = vec![b' '; 8 << 20];
    let r = c.request("POST", "/v2/models/mlp/infer", &[], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.error().contains("8388608 bytes is over the limit of 100"), "{}", r.text());
    assert_eq!(c.request("GET", "/v2/health/live", &[], b"").status, 200);
    std::fs::write(&cfg, "server:\n  max_body: 100\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--port", "0", "--model-repository"])
        .arg(test_repo())
        .env("SWITCHYARD_CONFIG", &cfg)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_body"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_missing_onnx_runtime_or_repository_is_a_clear_start_error() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .args(args)
            .current_dir(workspace())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = run(&["--port", "0", "--ort-dylib", "/nonexistent/libonnxruntime.so"]);
    assert!(!ok);
    assert!(err.contains("ORT_DYLIB_PATH") && err.contains("make setup"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (ok, err) = run(&["--port", "0", "--model-repository", "/nonexistent/models"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/models"), "{err}");
}
