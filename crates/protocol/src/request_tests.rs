use super::*;
use crate::TensorData;

fn spec(name: &str, dt: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec::new(name, dt, shape.to_vec())
}

fn mlp() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    (
        vec![spec("input", DataType::Fp32, &[-1, 2])],
        vec![spec("output", DataType::Fp32, &[-1, 3]), spec("aux", DataType::Int64, &[-1])],
    )
}

fn decode(body: &str) -> Result<InferRequest, ProtocolError> {
    let (i, o) = mlp();
    decode_request(body.as_bytes(), None, &i, &o)
}

fn message(body: &str) -> String {
    decode(body).unwrap_err().to_string()
}

#[test]
fn json_request_decodes_with_id_outputs_and_timeout() {
    let r = decode(
        r#"{"id":"7","parameters":{"timeout":500,"binary_data_output":true},
            "inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}],
            "outputs":[{"name":"aux","parameters":{"binary_data":false}},{"name":"output"}]}"#,
    )
    .unwrap();
    assert_eq!(r.id.as_deref(), Some("7"));
    assert_eq!(r.timeout_us, Some(500));
    assert_eq!(r.inputs[0].shape, vec![2, 2]);
    assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1., 2., 3., 4.]));
    assert_eq!(
        r.outputs,
        vec![
            OutputRequest { name: "aux".into(), binary: false },
            OutputRequest { name: "output".into(), binary: true }
        ]
    );
}

#[test]
fn without_outputs_every_output_is_returned() {
    let r = decode(r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#).unwrap();
    assert_eq!(r.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["output", "aux"]);
    assert!(r.outputs.iter().all(|o| !o.binary));
}

#[test]
fn client_mistakes_name_the_field() {
    let cases = [
        (r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}"#, "EOF"),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP64","data":[1,2]}]}"#,
            "input 'input': datatype FP64",
        ),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FLOAT","data":[1,2]}]}"#,
            "'FLOAT' is not a V2 datatype",
        ),
        (
            r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#,
            "does not match the model's",
        ),
        (r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#, "needs 4"),
        (r#"{"inputs":[{"name":"input","shape":[-2,2],"datatype":"FP32","data":[1,2]}]}"#, "negative"),
        (
            r#"{"inputs":[{"name":"input","shape":[9223372036854775807,4],"datatype":"FP32","data":[1,2]}]}"#,
            "more elements",
        ),
        (r#"{"inputs":[]}"#, "input 'input': is required"),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            "input 'x': not an input",
        ),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]},{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#,
            "more than once",
        ),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"nope"}]}"#,
            "output 'nope': not an output",
        ),
        (r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32"}]}"#, "has no 'data'"),
        (r#"{"inputs":[{"name":"input","shape":"x","datatype":"FP32","data":[1,2]}]}"#, "inputs[0].shape"),
        (
            r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2],"parameters":{"binary_data_size":"8"}}]}"#,
            "inputs[0].parameters.binary_data_size",
        ),
        (r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}],"id":5}"#, "id"),
        (r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]} x"#, "trailing"),
    ];
    for (body, want) in cases {
        let got = message(body);
        assert!(got.contains(want), "{body}\n  gave {got:?}, wanted {want:?}");
    }
}

#[test]
fn hostile_json_depth_is_an_error_not_a_crash() {
    let deep = format!(r#"{{"inputs":[],"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode(&deep).is_err());
    let deep_params =
        format!(r#"{{"parameters":{{"a":{}{}}},"inputs":[]}}"#, "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(decode(&deep_params).is_err());
    let deep_data = format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,2],"datatype":"FP32","data":{}{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(message(&deep_data).contains("input 'input'"));
}

fn binary_body(header: &str, data: &[u8]) -> (Vec<u8>, usize) {
    let mut b = header.as_bytes().to_vec();
    b.extend_from_slice(data);
    (b, header.len())
}

#[test]
fn binary_inputs_are_framed_exactly() {
    let (i, o) = mlp();
    let f: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let h = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
    let (body, n) = binary_body(h, &f);
    let r = decode_request(&body, Some(n), &i, &o).unwrap();
    assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1.0, 2.0]));

    let (body, n) = binary_body(h, &f[..7]);
    assert!(decode_request(&body, Some(n), &i, &o).unwrap_err().to_string().contains("more than the 7 bytes"));
    let (mut body, n) = binary_body(h, &f);
    body.push(0);
    assert!(decode_request(&body, Some(n), &i, &o).unwrap_err().to_string().contains("not claimed"));
    assert!(
        decode_request(&body, Some(body.len() + 1), &i, &o)
            .unwrap_err()
            .to_string()
            .contains("Inference-Header-Content-Length")
    );
    let h = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":18446744073709551615}}]}"#;
    let (body, n) = binary_body(h, &f);
    assert!(decode_request(&body, Some(n), &i, &o).is_err());
}

#[test]
fn raw_binary_request_fills_the_dynamic_dimension() {
    let (i, o) = mlp();
    let f: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let r = decode_request(&f, Some(0), &i, &o).unwrap();
    assert_eq!(r.inputs[0].shape, vec![2, 2]);
    assert!(r.outputs.iter().all(|o| o.binary));
    assert!(decode_request(&f[..12], Some(0), &i, &o).is_err());
    assert!(decode_request(&f[..5], Some(0), &i, &o).is_err());
    let two = [i[0].clone(), spec("other", DataType::Fp32, &[1])];
    assert!(decode_request(&f, Some(0), &two, &o).unwrap_err().to_string().contains("one input"));
}

#[test]
fn invalid_utf8_is_refused() {
    let (i, o) = mlp();
    let mut body = br#"{"id":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#"","inputs":[]}"#);
    assert!(decode_request(&body, None, &i, &o).is_err());
}

#[test]
fn optional_inputs_may_be_left_out() {
    let inputs = [spec("text", DataType::Bytes, &[-1]).optional(), spec("ids", DataType::Int64, &[-1, -1]).optional()];
    let r = decode_request(
        br#"{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["hi"]}]}"#,
        None,
        &inputs,
        &[],
    )
    .unwrap();
    assert_eq!(r.inputs.len(), 1);
}

#[test]
fn limits_refuse_large_tensors_and_long_bytes_elements_naming_the_input() {
    let specs = [TensorSpec::new("x", DataType::Fp32, vec![-1])];
    let limits = DecodeLimits { max_elements: 4, max_bytes_element: 3 };
    let body = br#"{"inputs":[{"name":"x","shape":[5],"datatype":"FP32","data":[1,2,3,4,5]}]}"#;
    let e = decode_request_within(body, None, &specs, &specs, &limits).unwrap_err().to_string();
    assert_eq!(e, "input 'x': shape [5] holds 5 elements; the limit is 4");
    let ok = br#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}"#;
    assert!(decode_request_within(ok, None, &specs, &specs, &limits).is_ok());
    let s = [TensorSpec::new("s", DataType::Bytes, vec![-1])];
    let body = br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["abc","abcd"]}]}"#;
    let e = decode_request_within(body, None, &s, &s, &limits).unwrap_err().to_string();
    assert_eq!(e, "input 's': BYTES element 1 has 4 bytes; the limit is 3");
    let raw = [0u8; 20];
    let e = decode_request_within(&raw, Some(0), &specs, &specs, &limits).unwrap_err().to_string();
    assert!(e.contains("raw body holds 5 elements; the limit is 4"), "{e}");
}
