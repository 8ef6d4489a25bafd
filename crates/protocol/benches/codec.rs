//! The request hot path without sockets: decoding V2 requests (JSON and binary) against a signature, and
//! encoding responses, for the benchmark MLP's shapes at batch 1 and 32.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard_protocol::{DataType, OutputRequest, Tensor, TensorData, TensorSpec, decode_request, encode_response};

fn specs() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        vec![TensorSpec::new("input", DataType::Fp32, vec![-1, 64])],
        vec![TensorSpec::new("output", DataType::Fp32, vec![-1, 10])],
    )
}

fn json_body(rows: usize) -> Vec<u8> {
    // As Python clients write float32 data: the shortest text of the value widened to f64 (~17 digits).
    let data: Vec<String> =
        (0..rows * 64).map(|i| format!("{}", f64::from(((i % 97) as f32).mul_add(0.013, -0.6)))).collect();
    format!(r#"{{"inputs":[{{"name":"input","shape":[{rows},64],"datatype":"FP32","data":[{}]}}]}}"#, data.join(","))
        .into_bytes()
}

fn binary_body(rows: usize) -> (Vec<u8>, usize) {
    let head = format!(
        r#"{{"inputs":[{{"name":"input","shape":[{rows},64],"datatype":"FP32","parameters":{{"binary_data_size":{}}}}}]}}"#,
        rows * 256
    );
    let mut body = head.clone().into_bytes();
    body.extend((0..rows * 64).flat_map(|i| (i as f32 * 0.01).to_le_bytes()));
    (body, head.len())
}

fn codec(c: &mut Criterion) {
    let (inputs, outputs) = specs();
    let mut g = c.benchmark_group("decode");
    for rows in [1usize, 32] {
        let body = json_body(rows);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("json", rows), &body, |b, body| {
            b.iter(|| decode_request(black_box(body), None, &inputs, &outputs).expect("decodes"))
        });
        let (body, n) = binary_body(rows);
        g.bench_with_input(BenchmarkId::new("binary", rows), &body, |b, body| {
            b.iter(|| decode_request(black_box(body), Some(n), &inputs, &outputs).expect("decodes"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("encode");
    for rows in [1usize, 32] {
        let out = [Tensor {
            name: "output".into(),
            shape: vec![rows, 10],
            data: TensorData::Fp32((0..rows * 10).map(|i| i as f32 * 0.37).collect()),
        }];
        for binary in [false, true] {
            let req = [OutputRequest { name: "output".into(), binary }];
            let name = if binary { "binary" } else { "json" };
            g.bench_with_input(BenchmarkId::new(name, rows), &out, |b, out| {
                b.iter(|| encode_response("mlp", "1", Some("7"), black_box(out), &req))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
