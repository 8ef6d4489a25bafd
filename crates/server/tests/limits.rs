//! The limits a client meets before its request reaches a model, through the real binary: request head
//! size (431), head and body read deadlines (408), open connections (503), requests in progress (503
//! with Retry-After, probes exempt), the data-plane token, and the connection staying usable after each
//! answer that allows it.

#![allow(clippy::unwrap_used)]

mod common;

use common::rollouts::{copy_dir, scratch};
use common::{Conn, Server, mlp_request, test_repo};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A repository with only `mlp`, so the server starts in a moment.
fn mlp_repo(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    copy_dir(&test_repo().join("mlp"), &dir.join("repo/mlp"));
    dir.join("repo")
}

/// Reads until the peer closes (or `limit` passes); returns what arrived.
fn read_to_close(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_oversized_head_gets_431() {
    let s = Server::start_in(&mlp_repo("head-size"), &["--max-header-bytes", "4096"]);
    let big = "x".repeat(8000);
    let mut conn = s.conn();
    let r = conn.request("GET", "/v2/models/mlp", &[("x-padding", &big)], b"");
    assert_eq!(r.status, 431, "{}", r.text());
    // Under the limit is fine.
    let r = s.conn().request("GET", "/v2/models/mlp", &[("x-padding", &big[..3000])], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn a_stalled_head_gets_408_and_an_idle_connection_closes_quietly() {
    let s = Server::start_in(&mlp_repo("head-deadline"), &["--header-read-timeout-secs", "1"]);
    let mut partial = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    partial.write_all(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut idle = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let begun = Instant::now();
    let answer = read_to_close(&mut partial, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("did not arrive"), "{answer:?}");
    assert!(begun.elapsed() < Duration::from_secs(5), "took {:?}", begun.elapsed());
    // An idle keep-alive connection (no byte of a next request) is closed without an answer.
    assert_eq!(read_to_close(&mut idle, Duration::from_secs(10)), "");
    // A connection that keeps working within the deadline is unaffected.
    let mut conn = s.conn();
    for _ in 0..3 {
        assert_eq!(conn.request("GET", "/v2/models/mlp", &[], b"").status, 200);
        std::thread::sleep(Duration::from_millis(400));
    }
}

#[test]
fn a_stalled_body_gets_408() {
    let s = Server::start_in(&mlp_repo("body-deadline"), &["--body-read-timeout-secs", "1"]);
    let mut stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .write_all(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
        .unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(answer.contains("request body did not arrive"), "{answer:?}");
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("switchyard_http_body_timeouts_total 1"), "{metrics}");
}

/// A connection that got a slot: retried while earlier connections' slots are still being freed.
fn working_conn(s: &Server) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = s.conn();
        if c.request_result("GET", "/v2/health/live", &[], b"").is_ok_and(|r| r.status == 200) {
            return c;
        }
        assert!(Instant::now() < deadline, "no connection slot came free");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_over_the_limit_get_503_and_the_limit_frees_up() {
    let s = Server::start_in(&mlp_repo("connections"), &["--max-connections", "3"]);
    let mut held: Vec<Conn> = (0..3).map(|_| working_conn(&s)).collect();
    // A client that sends its request at once still reads the answer (no reset).
    let mut extra = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let _ = extra.write_all(
        format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n{}", "x".repeat(3000))
            .as_bytes(),
    );
    let answer = read_to_close(&mut extra, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer:?}");
    // The held connections still work, and a closed one frees its slot.
    assert_eq!(held[0].request("GET", "/v2/health/live", &[], b"").status, 200);
    held.pop();
    working_conn(&s);
}

#[test]
fn requests_over_the_concurrency_cap_get_503_with_retry_after_and_probes_still_answer() {
    let s = Server::start_in(&mlp_repo("concurrency"), &["--max-concurrent-requests", "1"]);
    // One request in progress: its body arrives slowly.
    let body = mlp_request(1).to_string();
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let head = format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut conn = s.conn();
    let r = conn.request("POST", "/v2/models/mlp/infer", &[], body.as_bytes());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("limit of 1 requests in progress"), "{}", r.error());
    // The refused request's body was read: the connection carries the next request.
    assert_eq!(conn.request("GET", "/ready", &[], b"").status, 200, "probes are never shed");
    assert_eq!(conn.request("GET", "/metrics", &[], b"").status, 200);
    // The slow request completes, and the cap frees up.
    slow.write_all(&body.as_bytes()[10..]).unwrap();
    let mut reader = std::io::BufReader::new(slow);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(conn.request("POST", "/v2/models/mlp/infer", &[], body.as_bytes()).status, 200);
}

#[test]
fn the_data_plane_token_guards_inference_but_not_probes() {
    let envs = [("SWITCHYARD_API_TOKEN", "data-secret"), ("SWITCHYARD_ADMIN_TOKEN", "admin-secret")];
    let s = Server::start_with(&mlp_repo("api-token"), &["--log", "debug"], &envs);
    let body = mlp_request(1).to_string();
    let mut conn = s.conn();
    for headers in [vec![], vec![("Authorization", "Bearer wrong")], vec![("Authorization", "Basic data-secret")]] {
        let r = conn.request("POST", "/v2/models/mlp/infer", &headers, body.as_bytes());
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(conn.request("GET", "/v2/models/mlp", &headers, b"").status, 401);
    }
    for scheme in ["Bearer", "bearer"] {
        let auth = format!("{scheme} data-secret");
        let r = conn.request("POST", "/v2/models/mlp/infer", &[("Authorization", &auth)], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for probe in ["/health", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"] {
        assert_eq!(conn.request("GET", probe, &[], b"").status, 200, "{probe}");
    }
    // The admin token passes too; a wrong one is refused without echoing anything.
    let r = conn.request("POST", "/v2/models/mlp/infer", &[("Authorization", "Bearer admin-secret")], body.as_bytes());
    assert_eq!(r.status, 200);
    let r = conn.request("GET", "/v2/models/mlp", &[("Authorization", "Bearer data-secreT")], b"");
    assert!(!r.text().contains("secre"), "{}", r.text());
    for secret in ["data-secret", "admin-secret"] {
        assert!(!s.log().contains(secret), "a token is in the debug log");
        assert!(!s.get("/metrics").text().contains(secret));
    }
}

#[test]
fn rate_limits_per_endpoint_and_per_client_key_answer_429_with_retry_after() {
    let repo = mlp_repo("rate-limits");
    copy_dir(&test_repo().join("mlp_batched"), &repo.join("mlp_batched"));
    let cfg = repo.parent().unwrap().join("switchyard.yaml");
    std::fs::write(
        &cfg,
        "rate_limits:\n  - { endpoint: mlp, requests_per_second: 1, burst: 2, key: { header: x-api-key } }\n  \
         - { endpoint: \"*\", requests_per_second: 1, burst: 3 }\n",
    )
    .unwrap();
    let s = Server::start_in(&repo, &["--config", cfg.to_str().unwrap()]);
    let body = mlp_request(1).to_string();
    let mut conn = s.conn();
    let mut call = |path: &str, key: &str| conn.request("POST", path, &[("x-api-key", key)], body.as_bytes());
    // Per key: alice spends her burst; bob, and callers without the header, have their own buckets.
    assert_eq!(call("/v2/models/mlp/infer", "alice").status, 200);
    assert_eq!(call("/v2/models/mlp/infer", "alice").status, 200);
    let r = call("/v2/models/mlp/infer", "alice");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("rate limit of mlp"), "{}", r.error());
    assert_eq!(call("/v2/models/mlp/infer", "bob").status, 200);
    // A versioned call is the model's traffic too.
    let statuses: Vec<u16> = (0..3).map(|_| call("/v2/models/mlp/versions/1/infer", "carol").status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    // Another model falls under `*`: one bucket for every caller, three in a burst.
    let statuses: Vec<u16> = (0..4).map(|i| call("/v2/models/mlp_batched/infer", &format!("k{i}")).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Tokens come back at the configured rate (one a second).
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call("/v2/models/mlp/infer", "alice").status, 200);
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains(r#"switchyard_rate_limited_total{limit="mlp"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"switchyard_rate_limited_total{limit="*"} 1"#), "{metrics}");
}

#[test]
fn a_bad_rate_limit_stops_the_start_naming_the_field() {
    let repo = mlp_repo("rate-limits-bad");
    let cfg = repo.parent().unwrap().join("switchyard.yaml");
    std::fs::write(&cfg, "rate_limits:\n  - { endpoint: mlp, requests_per_second: 0 }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--port", "0", "--model-repository", repo.to_str().unwrap(), "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate_limits[mlp].requests_per_second: must be more than 0"), "{err}");
}

#[test]
fn a_tensor_over_the_element_limit_is_a_400_naming_the_input() {
    let s = Server::start_in(&mlp_repo("elements"), &["--max-elements", "100"]);
    assert_eq!(s.post_json("/v2/models/mlp/infer", &mlp_request(1)).status, 200);
    let r = s.post_json("/v2/models/mlp/infer", &mlp_request(2));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error(), "input 'input': shape [2, 64] holds 128 elements; the limit is 100");
}

#[test]
fn model_and_version_directories_that_lead_outside_the_repository_are_refused() {
    let repo = mlp_repo("symlinks");
    let outside = repo.parent().unwrap().join("outside");
    copy_dir(&test_repo().join("mlp"), &outside.join("mlp"));
    std::os::unix::fs::symlink(outside.join("mlp"), repo.join("escaped")).unwrap();
    copy_dir(&test_repo().join("mlp"), &repo.join("versioned"));
    std::os::unix::fs::symlink(outside.join("mlp/1"), repo.join("versioned/7")).unwrap();
    // A symlink that stays inside the repository is fine.
    std::os::unix::fs::symlink(repo.join("mlp"), repo.join("alias")).unwrap();
    let s = Server::start_in(&repo, &[]);
    for model in ["escaped", "versioned"] {
        let r = s.get(&format!("/v2/models/{model}/ready"));
        assert_eq!(r.status, 503, "{model}: {}", r.text());
        assert!(r.error().contains("leads outside the model repository"), "{model}: {}", r.error());
    }
    assert_eq!(s.get("/v2/models/alias/ready").status, 200);
    assert_eq!(s.post_json("/v2/models/mlp/infer", &mlp_request(1)).status, 200);
}
