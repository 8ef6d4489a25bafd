//! Bounded work: a full queue answers 429 at once and recovers, timeouts fire, and a request whose
//! client has gone away is never computed.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Conn, Server};
use serde_json::json;
use std::time::{Duration, Instant};

/// These tests time the server under load, so they run one at a time (the overload test would starve the
/// others on a small machine).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn slow_body(rows: usize, timeout_us: Option<u64>) -> Vec<u8> {
    let mut body = json!({"inputs": [{"name": "x", "shape": [rows, 1024], "datatype": "FP32", "data": vec![0.01f32; rows * 1024]}]});
    if let Some(t) = timeout_us {
        body["parameters"] = json!({"timeout": t});
    }
    body.to_string().into_bytes()
}

/// Sends a big request as a raw binary body (cheap to decode, slow to compute) without waiting.
fn send(port: u16, model: &str, rows: usize) -> Conn {
    let body: Vec<u8> = (0..rows * 1024).flat_map(|_| 0.01f32.to_le_bytes()).collect();
    let mut c = Conn::open(port);
    let head = format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: 0\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send(head.as_bytes());
    c.send(&body);
    c
}

/// Sends a request to the slow model with a JSON header carrying `parameters` and the rows as binary
/// data, without waiting.
fn send_with(port: u16, model: &str, rows: usize, parameters: serde_json::Value) -> Conn {
    let data: Vec<u8> = (0..rows * 1024).flat_map(|_| 0.01f32.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "x", "shape": [rows, 1024], "datatype": "FP32", "parameters": {"binary_data_size": data.len()}}],
        "parameters": parameters,
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut c = Conn::open(port);
    let head = format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n",
        header.len(),
        header.len() + data.len()
    );
    c.send(head.as_bytes());
    c.send(header.as_bytes());
    c.send(&data);
    c
}

/// Waits until `n` requests to `model` are in flight.
fn in_flight(s: &Server, model: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(s, &format!(r#"switchyard_requests_in_flight{{model="{model}",version="1"}}"#)) < n {
        assert!(Instant::now() < deadline, "requests never went in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(30));
}

fn counter(s: &Server, needle: &str) -> u64 {
    s.get("/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_full_queue_answers_429_at_once_and_recovers() {
    let _serial = serial();
    let s = Server::start(&[]);
    // One computing, one queued: the queue of one is full. (The second is sent once the worker has
    // taken the first off the queue, or it would find the queue full itself.)
    let mut busy = vec![send(s.port, "slow_queue1", 1024)];
    in_flight(&s, "slow_queue1", 1);
    busy.push(send(s.port, "slow_queue1", 1024));
    in_flight(&s, "slow_queue1", 2);
    let started = Instant::now();
    let r = s.conn().request("POST", "/v2/models/slow_queue1/infer", &[], &slow_body(1, None));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(500), "429 must not wait for the queue");
    for c in &mut busy {
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    assert_eq!(s.conn().request("POST", "/v2/models/slow_queue1/infer", &[], &slow_body(1, None)).status, 200);
    assert!(
        counter(&s, r#"switchyard_requests_total{model="slow_queue1",version="1",outcome="rejected",protocol="http"}"#)
            >= 1
    );
}

#[test]
fn the_timeout_parameter_is_honoured() {
    let _serial = serial();
    let s = Server::start(&[]);
    let mut first = send(s.port, "slow", 1024);
    in_flight(&s, "slow", 1);
    let r = s.conn().request("POST", "/v2/models/slow/infer", &[], &slow_body(1, Some(20_000)));
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.error().contains("timed out after 20ms"), "{}", r.text());
    assert_eq!(first.read_response().unwrap().status, 200);
}

#[test]
fn a_client_cannot_ask_for_more_time_than_the_server_allows() {
    let _serial = serial();
    let s = Server::start(&["--request-timeout-ms", "20"]);
    // 1,024 rows of the slow model take far more than 20 ms; ten seconds asked for, the server's 20 ms win.
    let r = s.conn().request("POST", "/v2/models/slow/infer", &[], &slow_body(1024, Some(10_000_000)));
    assert_eq!(r.status, 504, "{}", &r.text()[..r.text().len().min(200)]);
    assert!(r.error().contains("timed out after 20ms"), "{}", r.text());
}

#[test]
fn requests_whose_clients_left_are_not_computed() {
    let _serial = serial();
    let s = Server::start(&[]);
    let mut first = send(s.port, "slow", 1024);
    in_flight(&s, "slow", 1);
    // Five more wait in the queue behind it; then their clients hang up.
    let waiting: Vec<Conn> = (0..5).map(|_| send(s.port, "slow", 8)).collect();
    in_flight(&s, "slow", 6);
    drop(waiting);
    assert_eq!(first.read_response().unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&s, r#"switchyard_requests_total{model="slow",version="1",outcome="cancelled",protocol="http"}"#) < 5
    {
        assert!(Instant::now() < deadline, "dropped requests were computed: {}", s.get("/metrics").text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = s.get("/v2/models/slow/stats").json()["model_stats"][0].clone();
    // Warm-up aside, only the first request ran.
    assert_eq!(stats["execution_count"], 1, "{stats}");
    assert_eq!(stats["inference_count"], 1024, "{stats}");
    assert_eq!(counter(&s, r#"switchyard_requests_in_flight{model="slow",version="1"}"#), 0);
}

/// The server's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn memory_stays_bounded_under_overload_and_the_server_recovers_at_once() {
    let _serial = serial();
    const CLIENTS: usize = 20; // 10x the two requests `slow_queue1` admits (one computing, one queued)
    const ROWS: usize = 16; // a 64 KiB body and a few ms of compute per request
    let s = Server::start(&[]);
    let pid = s.child.id();
    let port = s.port;
    // Capacity, measured: one client back to back for a second (this also warms the allocator and the
    // connection path, so the baseline is the server at work).
    let begun = Instant::now();
    let mut served = 0u32;
    while begun.elapsed() < Duration::from_secs(1) {
        assert_eq!(send(port, "slow_queue1", ROWS).read_response().unwrap().status, 200);
        served += 1;
    }
    let capacity = f64::from(served) / begun.elapsed().as_secs_f64();
    let service = begun.elapsed() / served;
    let baseline = rss_kib(pid);
    let stop = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut ok, mut busy, mut latencies) = (0u32, 0u32, Vec::new());
                // Closed loop without think time: a 429 is retried at once, so the offered load is far
                // above the model's capacity for the whole window.
                while Instant::now() < stop {
                    let sent = Instant::now();
                    match send(port, "slow_queue1", ROWS).read_response().unwrap().status {
                        200 => {
                            ok += 1;
                            latencies.push(sent.elapsed());
                        }
                        429 => busy += 1,
                        other => panic!("status {other} under overload"),
                    }
                }
                (ok, busy, latencies)
            })
        })
        .collect();
    let mut peak = baseline;
    while Instant::now() < stop {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut ok, mut busy, mut latencies) = (0, 0, Vec::new());
    for c in clients {
        let (o, b, l) = c.join().unwrap();
        (ok, busy) = (ok + o, busy + b);
        latencies.extend(l);
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let offered = f64::from(ok + busy) / 3.0;
    eprintln!(
        "overload: capacity {capacity:.0}/s ({service:?} each), offered {offered:.0}/s; {ok} answered (p99 {p99:?}), \
         {busy} refused with 429; RSS {baseline} KiB before, peak {peak} KiB"
    );
    assert!(offered > 10.0 * capacity, "offered {offered:.0}/s is not 10x the capacity of {capacity:.0}/s");
    assert!(ok > 0 && busy > 10 * ok, "not overloaded: {ok} answered, {busy} refused");
    // An admitted request waits for at most the one ahead of it: its latency stays near two services,
    // however many are refused (bound with slack for a shared 2-core machine running 20 clients; an
    // unbounded queue would show seconds here).
    assert!(p99 < service * 8 + Duration::from_millis(200), "p99 of admitted requests {p99:?}, service {service:?}");
    // Refused requests leave nothing behind: at most 20 bodies of 64 KiB are held at once, and buffers and
    // the allocator's slack stay far below this bound, while keeping the ~15,000 refused bodies (about
    // 900 MiB) would not. (An unbounded queue shows above as the absence of 429s.)
    assert!(peak < baseline + 64 * 1024, "RSS grew from {baseline} KiB to {peak} KiB");
    // Recovery: the first request after the load is served at once, and nothing is left in flight.
    let started = Instant::now();
    assert_eq!(send(port, "slow_queue1", ROWS).read_response().unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_millis(500), "recovery took {:?}", started.elapsed());
    assert_eq!(counter(&s, r#"switchyard_requests_in_flight{model="slow_queue1",version="1"}"#), 0);
}

#[test]
fn a_request_at_priority_one_overtakes_queued_requests_at_the_default_level() {
    let _serial = serial();
    let s = Server::start(&[]);
    // `slow_priority` has two levels (its config.pbtxt), the default being 2, and runs a batch as soon as
    // it holds 1,024 rows: the first request (4,096 rows) keeps the worker busy while the others queue,
    // and each of the others (1,024 rows) runs alone.
    let model = "slow_priority";
    let mut running = send_with(s.port, model, 4096, json!({}));
    in_flight(&s, model, 1);
    // Queued behind it, at the default level: no priority, 0, 2, and one past the last level (as Triton,
    // the default).
    let mut queued: Vec<(String, Conn)> = [json!(null), json!(0), json!(2), json!(3)]
        .into_iter()
        .map(|p| (format!("priority {p}"), send_with(s.port, model, 1024, json!({ "priority": p }))))
        .collect();
    in_flight(&s, model, 5);
    queued.push(("priority 1".into(), send_with(s.port, model, 1024, json!({ "priority": 1 }))));
    in_flight(&s, model, 6);
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let readers: Vec<_> = queued
        .into_iter()
        .map(|(label, mut conn)| {
            let finished = finished.clone();
            std::thread::spawn(move || {
                let r = conn.read_response().unwrap();
                assert_eq!(r.status, 200, "{label}: {}", r.text());
                finished.lock().unwrap().push(label);
            })
        })
        .collect();
    assert_eq!(running.read_response().unwrap().status, 200);
    for r in readers {
        r.join().unwrap();
    }
    let order = finished.lock().unwrap().clone();
    assert_eq!(order[0], "priority 1", "the request at level 1 did not go first: {order:?}");
    // A priority that is not an unsigned integer is the client's mistake, named.
    for bad in [json!(-1), json!("high"), json!(1.5)] {
        let r = send_with(s.port, model, 1, json!({ "priority": bad })).read_response().unwrap();
        assert_eq!(r.status, 400, "priority {bad}: {}", r.text());
        assert!(r.error().contains("parameters.priority"), "priority {bad}: {}", r.text());
    }
}
