//! Dynamic batching with real models: merged calls give every caller exactly its own rows.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, mlp_request};
use serde_json::{Value, json};

fn close(a: &Value, b: &Value) -> bool {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-5)
}

#[test]
fn concurrent_requests_are_merged_and_each_gets_its_own_rows() {
    let s = Server::start(&[]);
    // Unbatched answers from the same weights (mlp version 1) to compare with.
    let expected: Vec<Value> = (1..=4)
        .map(|rows| {
            s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(rows)).json()["outputs"][0]["data"].clone()
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, expected) = (&s, &expected);
            scope.spawn(move || {
                let mut conn = s.conn();
                for i in 0..30 {
                    let rows = (t + i) % 4 + 1;
                    let r = conn.request(
                        "POST",
                        "/v2/models/mlp_batched/infer",
                        &[],
                        mlp_request(rows).to_string().as_bytes(),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    let out = &r.json()["outputs"][0];
                    assert_eq!(out["shape"], json!([rows, 10]));
                    assert!(close(&out["data"], &expected[rows - 1]), "rows {rows}: another caller's rows?");
                }
            });
        }
    });
    let stats = s.get("/v2/models/mlp_batched/stats").json()["model_stats"][0].clone();
    let (inferences, executions) =
        (stats["inference_count"].as_u64().unwrap(), stats["execution_count"].as_u64().unwrap());
    assert_eq!(stats["inference_stats"]["success"]["count"], 240);
    assert!(executions < 240, "no request was merged ({executions} executions)");
    assert_eq!(inferences, (0..8).flat_map(|t| (0..30).map(move |i| ((t + i) % 4 + 1) as u64)).sum::<u64>());
}

#[test]
fn requests_that_cannot_be_merged_are_kept_apart() {
    let s = Server::start(&[]);
    let body = |rows: usize, outputs: &[&str]| {
        json!({
            "inputs": [
                {"name": "a", "shape": [rows, 4], "datatype": "FP32", "data": vec![1.5; rows * 4]},
                {"name": "b", "shape": [rows, 4], "datatype": "INT64", "data": vec![2; rows * 4]},
                {"name": "flag", "shape": [rows, 4], "datatype": "BOOL", "data": vec![true; rows * 4]}],
            "outputs": outputs.iter().map(|o| json!({"name": o})).collect::<Vec<_>>(),
        })
    };
    std::thread::scope(|scope| {
        for t in 0..6 {
            let s = &s;
            scope.spawn(move || {
                let mut conn = s.conn();
                for i in 0..20 {
                    let rows = (t + i) % 3 + 1;
                    let outputs: &[&str] = if t % 2 == 0 { &["sum"] } else { &["doubled", "masked"] };
                    let r = conn.request(
                        "POST",
                        "/v2/models/multi_io_batched/infer",
                        &[],
                        body(rows, outputs).to_string().as_bytes(),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    let outs = r.json()["outputs"].clone();
                    let names: Vec<&str> =
                        outs.as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
                    assert_eq!(names, outputs);
                    for o in outs.as_array().unwrap() {
                        assert_eq!(o["shape"], json!([rows, 4]));
                        let want = match o["name"].as_str().unwrap() {
                            "sum" => 3.5,
                            "doubled" => 4.0,
                            _ => 1.5,
                        };
                        assert!(o["data"].as_array().unwrap().iter().all(|x| x.as_f64() == Some(want)), "{o}");
                    }
                }
            });
        }
    });
}
