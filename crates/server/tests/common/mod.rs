//! Test harness: starts the real `switchyard` binary on a free loopback port over the generated test
//! repository, and talks raw HTTP/1.1 to it (so tests can also send what no well-behaved client would).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod rollouts;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The generated test repository (`make test-models`); generated here if missing.
pub fn test_repo() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHYARD_TEST_REPO") {
        return PathBuf::from(p);
    }
    let repo = workspace().join("target/test-models");
    if !repo.join("triton_wrong_io/config.pbtxt").exists() {
        let status = Command::new(workspace().join(".venv/bin/python"))
            .args(["scripts/make_models.py", "target/test-models", "--test"])
            .current_dir(workspace())
            .status()
            .expect("run scripts/make_models.py (make setup creates .venv)");
        assert!(status.success());
    }
    repo
}

pub struct Server {
    pub port: u16,
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(&test_repo(), extra)
    }

    pub fn start_in(repo: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_with(repo, extra, &[])
    }

    pub fn start_with(repo: &std::path::Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .envs(envs.iter().copied())
            .arg("serve")
            .arg("--model-repository")
            .arg(repo)
            .args(["--port", "0"])
            .args(if extra.contains(&"--strict-readiness") { &[][..] } else { &["--strict-readiness", "false"][..] })
            .args(extra)
            .current_dir(workspace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let port: u16 = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
                    let _ = tx.send(port);
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {}", log.lock().unwrap()));
        let server = Self { port, child, log };
        server.wait_loaded();
        server
    }

    /// Waits until no model is still loading.
    pub fn wait_loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get("/ready");
            if r.status == 200 || !r.text().contains("loading") {
                return;
            }
            assert!(Instant::now() < deadline, "models still loading: {}", r.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.port)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.conn().request("GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        self.conn().request("POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The gRPC port the server logged (it listens before HTTP does).
    pub fn grpc_port(&self) -> u16 {
        let log = self.log();
        let rest = log.split("gRPC listening on 127.0.0.1:").nth(1).expect("a gRPC port in the log");
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The `error` message of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", self.text())).to_owned()
    }
}

impl Conn {
    pub fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        Self { reader: BufReader::new(stream) }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).expect("send");
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.request_result(method, path, headers, body).expect("response")
    }

    /// A request whose failure (a reset or closed connection) is returned, not a panic.
    pub fn request_result(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        self.reader.get_mut().write_all(&raw)?;
        self.read_response()
    }

    pub fn read_response(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let get = |n: &str| {
            headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            body.resize(len.parse().unwrap(), 0);
            self.reader.read_exact(&mut body)?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Ok(Resp { status, headers, body })
    }
}

/// A V2 JSON request for the `mlp` model with `rows` rows of 64 values.
pub fn mlp_request(rows: usize) -> serde_json::Value {
    let data: Vec<f32> = (0..rows * 64).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
    serde_json::json!({ "id": "req-1", "inputs": [{ "name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data }] })
}
