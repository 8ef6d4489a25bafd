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
    let mut s = Server::start(&["--drain-delay-secs", "0"]);
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
fn sigterm_under_load_turns_not_ready_drains_and_fails_no_request() {
    let mut s = Server::start(&["--drain-delay-secs", "2"]);
    assert_eq!(s.get("/ready").status, 200);
    let port = s.port;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (served, failed) = std::thread::scope(|scope| {
        // Clients behave as a load balancer does: they stop sending new requests once the pod is not
        // ready (here: once the watcher below says so); every request already sent must be answered.
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn = Conn::open(port);
                    let body = common::mlp_request(1).to_string();
                    let (mut ok, mut bad) = (0u64, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        match conn.request_result("POST", "/v2/models/mlp/infer", &[], body.as_bytes()) {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(r) => bad.push(format!("{} {}", r.status, r.text())),
                            Err(e) => bad.push(e.to_string()),
                        }
                    }
                    (ok, bad)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        s.terminate();
        let begun = Instant::now();
        // Not ready at once, while the listener still serves.
        let deadline = begun + Duration::from_secs(1);
        loop {
            let r = Conn::open(port).request("GET", "/ready", &[], b"");
            if r.status == 503 {
                assert!(r.text().contains("draining"), "{}", r.text());
                break;
            }
            assert!(Instant::now() < deadline, "still ready after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
        let health = Conn::open(port).request("GET", "/health", &[], b"");
        assert_eq!(health.status, 200, "alive while draining");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let served: u64 = results.iter().map(|r| r.0).sum();
        let failed: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
        // The listener stays open for the drain delay.
        assert!(begun.elapsed() < Duration::from_secs(2));
        assert_eq!(Conn::open(port).request("GET", "/health", &[], b"").status, 200, "closed before the drain delay");
        (served, failed)
    });
    assert!(served > 50, "{served} requests served");
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let begun = Instant::now();
    let status = wait_exit(&mut s);
    assert!(status.success(), "exit status {status}: {}", s.log());
    assert!(begun.elapsed() < Duration::from_secs(5), "took {:?} to exit", begun.elapsed());
    assert!(s.log().contains("draining") && s.log().contains("shutting down"), "{}", s.log());
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut s = Server::start(&["--drain-delay-secs", "30"]);
    s.terminate();
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.get("/ready").status != 503 {
        assert!(Instant::now() < deadline, "still ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.terminate();
    let begun = Instant::now();
    let status = wait_exit(&mut s);
    assert!(begun.elapsed() < Duration::from_secs(3), "the second signal did not force the exit");
    assert!(!status.success(), "a forced exit is not a clean one: {status}");
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
