//! Every kind of bad request gets a 4xx with a JSON error naming the field, on a connection that stays
//! usable, and the server keeps answering correctly afterwards.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::{Conn, Server, mlp_request};
use serde_json::json;

fn multi(a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    json!({"inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": a},
        {"name": "b", "shape": [1, 4], "datatype": "INT64", "data": b},
        {"name": "flag", "shape": [1, 4], "datatype": "BOOL", "data": [true, true, false, false]}]})
}

fn input(name: &str, dt: &str, shape: serde_json::Value, data: serde_json::Value) -> serde_json::Value {
    json!({"inputs": [{"name": name, "datatype": dt, "shape": shape, "data": data}]})
}

/// Sends `body` to `path` and checks status and message, then checks the same connection still serves.
fn expect(conn: &mut Conn, path: &str, headers: &[(&str, &str)], body: &[u8], status: u16, needle: &str) {
    let r = conn.request("POST", path, headers, body);
    let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    assert_eq!(r.status, status, "{path} {shown}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{shown}");
    let err = r.error();
    assert!(err.contains(needle), "{path} {shown}\n  error {err:?} does not contain {needle:?}");
    let ok = conn.request("POST", "/v2/models/mlp/infer", &[], mlp_request(1).to_string().as_bytes());
    assert_eq!(ok.status, 200, "connection unusable after {shown}");
}

#[test]
fn client_mistakes_are_400_naming_the_field() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mlp = "/v2/models/mlp/infer";
    let j = |v: serde_json::Value| v.to_string().into_bytes();
    let f64s = json!(vec![0.5; 64]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (mlp, b"{".to_vec(), "malformed request JSON"),
        (mlp, b"".to_vec(), "malformed request JSON"),
        (mlp, b"null".to_vec(), "malformed request JSON"),
        (mlp, b"{\"inputs\": 5}".to_vec(), "inputs"),
        (mlp, j(input("input", "FP64", json!([1, 64]), f64s.clone())), "datatype FP64 does not match the model's FP32"),
        (mlp, j(input("input", "FLOAT32", json!([1, 64]), f64s.clone())), "'FLOAT32' is not a V2 datatype"),
        (mlp, j(input("input", "FP32", json!([1, 64]), json!(vec![0.5; 63]))), "needs 64"),
        (mlp, j(input("input", "FP32", json!([1, 63]), json!(vec![0.5; 63]))), "does not match the model's [-1, 64]"),
        (mlp, j(input("input", "FP32", json!([64]), f64s.clone())), "does not match the model's"),
        (mlp, j(input("input", "FP32", json!([-1, 64]), f64s.clone())), "negative"),
        (
            mlp,
            j(input("input", "FP32", json!([9223372036854775807_i64, 9223372036854775807_i64]), f64s.clone())),
            "input 'input'",
        ),
        (mlp, j(input("input", "FP32", json!([2, 64]), json!([vec![0.5; 64], vec![0.5; 63]]))), "nested data"),
        (
            mlp,
            j(input("input", "FP32", json!([1, 64]), json!([vec![vec![0.5; 64]]]))),
            "nesting of data does not match",
        ),
        (mlp, j(input("input", "FP32", json!([1, 64]), json!(vec!["a"; 64]))), "not a valid FP32"),
        (mlp, j(input("input", "FP32", json!([2000, 64]), json!(vec![0.0; 128000]))), "max_batch_size 1024"),
        (mlp, j(json!({"inputs": []})), "input 'input': is required"),
        (
            mlp,
            j(json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": f64s},
                                  {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})),
            "input 'x': not an input",
        ),
        (
            mlp,
            j(json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5; 64]}],
                       "outputs": [{"name": "nope"}]})),
            "output 'nope': not an output",
        ),
        (
            mlp,
            j(
                json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5; 64]}], "id": 7}),
            ),
            "id",
        ),
        (
            "/v2/models/multi_io/infer",
            j(json!({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})),
            "is required",
        ),
        (
            "/v2/models/multi_io/infer",
            j(multi(json!([1, 2, 3, 4]), json!([1, 2, 3, 9223372036854775808_u64]))),
            "out of range for INT64",
        ),
        ("/v2/models/multi_io/infer", j(multi(json!([1, 2, 3, 4]), json!([1, 2, 3, 1.5]))), "not an integer"),
        ("/v2/models/multi_io/infer", j(multi(json!([1, 2, 3, 1e39]), json!([1, 2, 3, 4]))), "out of range for FP32"),
        (
            "/v2/models/identity_all/infer",
            j(input("in_INT8", "INT8", json!([1, 3]), json!([1, 2, 300]))),
            "out of range for INT8",
        ),
        (
            "/v2/models/identity_all/infer",
            j(input("in_UINT8", "UINT8", json!([1, 3]), json!([1, 2, -1]))),
            "out of range for UINT8",
        ),
        (
            "/v2/models/identity_all/infer",
            j(input("in_BOOL", "BOOL", json!([1, 3]), json!([1, 0, 1]))),
            "not a valid BOOL",
        ),
        ("/v2/models/strings/infer", j(input("text", "BYTES", json!([1]), json!(["a\u{0}b"]))), "NUL"),
    ];
    for (path, body, needle) in cases {
        expect(&mut c, path, &[], &body, 400, needle);
    }
    for (path, status) in [
        ("/v2/models/nope/infer", 404),
        ("/v2/models/mlp/versions/7/infer", 404),
        ("/v2/models/mlp/versions/x/infer", 404),
    ] {
        expect(&mut c, path, &[], &j(mlp_request(1)), status, "");
    }
    let long = format!("/v2/models/{}/infer", "m".repeat(10_000));
    expect(&mut c, &long, &[], b"{}", 404, "unknown model");
    expect(&mut c, "/v2/models/%FF%FE/infer", &[], b"{}", 400, "UTF-8 in `model`");
}

#[test]
fn invalid_utf8_is_400() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut body = br#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":[""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    body.extend_from_slice(br#""]}]}"#);
    expect(&mut c, "/v2/models/strings/infer", &[], &body, 400, "malformed request JSON");
    let head = br#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&[2, 0, 0, 0, 0xc3, 0x28]);
    let n = head.len().to_string();
    expect(
        &mut c,
        "/v2/models/strings/infer",
        &[("Inference-Header-Content-Length", &n)],
        &body,
        400,
        "not valid UTF-8",
    );
}

#[test]
fn binary_framing_that_does_not_add_up_is_400() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let path = "/v2/models/mlp/infer";
    let floats: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let head = |size: u64| {
        format!(
            r#"{{"inputs":[{{"name":"input","shape":[1,64],"datatype":"FP32","parameters":{{"binary_data_size":{size}}}}}]}}"#
        )
    };
    let framed = |size: u64, data: &[u8]| {
        let h = head(size);
        let mut b = h.clone().into_bytes();
        b.extend_from_slice(data);
        (b, h.len().to_string())
    };
    let (b, n) = framed(256, &floats);
    let ok = c.request("POST", path, &[("Inference-Header-Content-Length", &n)], &b);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let (b, n) = framed(256, &floats[..255]);
    expect(&mut c, path, &[("Inference-Header-Content-Length", &n)], &b, 400, "more than the 255 bytes");
    let (b, n) = framed(252, &floats[..252]);
    expect(&mut c, path, &[("Inference-Header-Content-Length", &n)], &b, 400, "need 256");
    let mut extra = floats.clone();
    extra.push(1);
    let (b, n) = framed(256, &extra);
    expect(&mut c, path, &[("Inference-Header-Content-Length", &n)], &b, 400, "not claimed");
    let (b, n) = framed(u64::MAX, &floats);
    expect(&mut c, path, &[("Inference-Header-Content-Length", &n)], &b, 400, "binary_data_size");
    let (b, _) = framed(256, &floats);
    expect(
        &mut c,
        path,
        &[("Inference-Header-Content-Length", "999999")],
        &b,
        400,
        "Inference-Header-Content-Length is 999999",
    );
    expect(&mut c, path, &[("Inference-Header-Content-Length", "lots")], &b, 400, "must be a byte count");
    let (b, n) = framed(256, &floats);
    let both = String::from_utf8_lossy(&b).replace(r#""parameters""#, r#""data":[1],"parameters""#);
    let n2 = (n.parse::<usize>().unwrap() + 11).to_string();
    expect(&mut c, path, &[("Inference-Header-Content-Length", &n2)], both.as_bytes(), 400, "both");
    let bools =
        br#"{"inputs":[{"name":"in_BOOL","shape":[1,3],"datatype":"BOOL","parameters":{"binary_data_size":3}}]}"#;
    let mut b = bools.to_vec();
    b.extend_from_slice(&[0, 1, 2]);
    let n = bools.len().to_string();
    expect(
        &mut c,
        "/v2/models/identity_all/infer",
        &[("Inference-Header-Content-Length", &n)],
        &b,
        400,
        "neither 0 nor 1",
    );
    expect(&mut c, path, &[("Inference-Header-Content-Length", "0")], &floats[..102], 400, "not a whole number");
}

#[test]
fn hostile_requests_never_crash_or_allocate_what_they_claim() {
    let s = Server::start(&["--max-request-bytes", "4000000"]);
    let mut c = s.conn();
    let path = "/v2/models/mlp/infer";
    let deep = |open: &str, close: &str| {
        format!(
            r#"{{"inputs":[{{"name":"input","shape":[1,64],"datatype":"FP32","data":{}{}}}]}}"#,
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    expect(&mut c, path, &[], deep("[", "]").as_bytes(), 400, "input 'input'");
    let deep_top = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    expect(&mut c, path, &[], deep_top.as_bytes(), 400, "malformed request JSON");
    let deep_obj =
        format!(r#"{{"parameters":{{"x":{}1{}}},"inputs":[]}}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    expect(&mut c, path, &[], deep_obj.as_bytes(), 400, "");
    let deep_unknown = format!(r#"{{"zzz":{}{},"inputs":[]}}"#, "[".repeat(100_000), "]".repeat(100_000));
    expect(&mut c, path, &[], deep_unknown.as_bytes(), 400, "");
    // A shape that claims a huge tensor with a tiny body: over the element limit, refused by it; under
    // it, refused for the data the body does not hold (nothing is reserved for the claim either way).
    let claim = r#"{"inputs":[{"name":"input","shape":[1000000000000,64],"datatype":"FP32","data":[1,2]}]}"#;
    expect(&mut c, path, &[], claim.as_bytes(), 400, "holds 64000000000000 elements; the limit is 67108864");
    let claim = r#"{"inputs":[{"name":"input","shape":[1000000,64],"datatype":"FP32","data":[1,2]}]}"#;
    expect(&mut c, path, &[], claim.as_bytes(), 400, "needs 64000000");
    let claim =
        r#"{"inputs":[{"name":"text","shape":[60000000],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}"#;
    let mut b = claim.as_bytes().to_vec();
    b.extend_from_slice(&[255, 255, 255, 255, 1, 2, 3, 4]);
    let n = claim.len().to_string();
    expect(&mut c, "/v2/models/strings/infer", &[("Inference-Header-Content-Length", &n)], &b, 400, "claims");
    // A Content-Length over the limit is refused before the body is read.
    let mut big = Conn::open(s.port);
    big.send(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{");
    let r = big.read_response().unwrap();
    assert_eq!(r.status, 413);
    assert!(r.error().contains("over the limit"), "{}", r.text());
    // A chunked body that grows past the limit.
    let mut chunked = Conn::open(s.port);
    let chunk = vec![b' '; 1 << 20];
    chunked.send(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        chunked.send(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.send(&chunk);
        chunked.send(b"\r\n");
    }
    chunked.send(b"0\r\n\r\n");
    let r = chunked.read_response().unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    // A valid chunked body is fine.
    let mut ok = Conn::open(s.port);
    let body = mlp_request(1).to_string();
    ok.send(format!("POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    assert_eq!(ok.read_response().unwrap().status, 200);
    // Wrong methods and paths get JSON errors.
    let r = s.get("/v2/models/mlp/infer");
    assert_eq!(r.status, 405);
    assert!(r.error().contains("GET"));
    assert_eq!(s.get("/v3/whatever").status, 404);
    // Still healthy and still right.
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.post_json(path, &mlp_request(3)).status, 200);
}

#[test]
fn empty_batches_are_not_server_errors() {
    let s = Server::start(&[]);
    let r = s.post_json("/v2/models/mlp/infer", &input("input", "FP32", json!([0, 64]), json!([])));
    assert!(r.status < 500, "{}", r.text());
}

#[test]
fn compressed_bodies_are_bounded_after_decompression() {
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;
    let s = Server::start(&["--max-request-bytes", "100000"]);
    let mut c = s.conn();
    let path = "/v2/models/mlp/infer";
    let body = mlp_request(2).to_string();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let r = c.request("POST", path, &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut zl = ZlibEncoder::new(Vec::new(), Compression::default());
    zl.write_all(body.as_bytes()).unwrap();
    let r = c.request("POST", path, &[("Content-Encoding", "deflate")], &zl.finish().unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    // 10 MB of spaces compress to about 10 KB: under the limit on the wire, far over it decompressed.
    let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
    bomb.write_all(&vec![b' '; 10 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100_000);
    expect(&mut c, path, &[("Content-Encoding", "gzip")], &bomb, 413, "decompressed");
    expect(&mut c, path, &[("Content-Encoding", "gzip")], b"not gzip at all", 400, "not valid Gzip data");
    expect(&mut c, path, &[("Content-Encoding", "br")], body.as_bytes(), 415, "Content-Encoding");
    // Responses are compressed when the client asks.
    let r = c.request("POST", path, &[("Accept-Encoding", "gzip")], body.as_bytes());
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain).unwrap();
    assert!(plain.contains(r#""model_name":"mlp""#), "{plain}");
}

#[test]
fn every_early_answer_to_a_large_body_leaves_the_connection_usable() {
    let s = Server::start_with(&common::test_repo(), &[], &[("SWITCHYARD_ADMIN_TOKEN", "t0k3n")]);
    // 200 KB: far more than the socket buffers take without the server reading.
    let big = mlp_request(800).to_string();
    assert!(big.len() > 150_000);
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 7] = [
        ("POST", "/v2/models/nope/infer", &[], 404),
        ("POST", "/v2/models/mlp/versions/9/infer", &[], 404),
        ("POST", "/no/such/route", &[], 404),
        ("DELETE", "/v2/models/mlp/infer", &[], 405),
        ("POST", "/v2/models/mlp/infer", &[("Content-Encoding", "br")], 415),
        ("POST", "/v2/models/mlp/infer", &[("Inference-Header-Content-Length", "x")], 400),
        ("POST", "/admin/rollouts/x/pause", &[("Authorization", "Bearer wrong")], 401),
    ];
    for (method, path, headers, status) in cases {
        let mut conn = s.conn();
        let r = conn.request_result(method, path, headers, big.as_bytes());
        let r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let next = conn.request_result("POST", "/v2/models/mlp/infer", &[], mlp_request(1).to_string().as_bytes());
        let next = next.unwrap_or_else(|e| panic!("after {status} on {method} {path} the connection broke: {e}"));
        assert_eq!(next.status, 200, "after {method} {path}");
    }
}
