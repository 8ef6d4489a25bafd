//! Fuzzes BYTES tensors, the one datatype with variable-size elements, against simple reference readers.
//! Each input is used three ways:
//! - as binary BYTES data (4-byte little-endian length, then the bytes): a raw request body (header
//!   length 0), and the binary data of a JSON-headed request whose shape claims the element count the
//!   prefixes suggest. Accepted exactly when the reference reader accepts it (complete framing, UTF-8,
//!   the count fits the shape), and then with the same strings;
//! - as the JSON text of an input's `data`: when serde_json reads it as an array of strings, the decoder
//!   must give exactly those strings, flat and nested; otherwise it must answer without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::{DataType, TensorData, TensorSpec};
use switchyard_protocol_fuzz::{
    Model, TEXT, TEXT_PAIRS, bytes_tensor, check_reencodes, claimed_count, decode_checked, reference_bytes_elements,
};

fuzz_target!(|data: &[u8]| {
    let reference = reference_bytes_elements(data);

    // Raw request: the whole body is the one BYTES input; its dynamic dimension is filled in.
    let raw = decode_checked(data, Some(0), &TEXT);
    match (&reference, &raw) {
        (Some(want), Some(r)) => {
            assert_eq!(bytes_tensor(&r.inputs[0]), want.as_slice());
            assert_eq!(r.inputs[0].shape, [want.len()]);
            check_reencodes(r, &TEXT);
        }
        (None, None) => {}
        (want, got) => panic!("raw BYTES: reference {want:?}, decoder {got:?}"),
    }
    let pairs = decode_checked(data, Some(0), &TEXT_PAIRS);
    let pairs_ok = reference.as_ref().is_some_and(|v| v.len() % 2 == 0);
    assert_eq!(pairs.is_some(), pairs_ok, "raw BYTES pairs: reference {reference:?}");
    if let Some(r) = pairs {
        assert_eq!(r.inputs[0].shape, [2, reference.as_ref().map_or(0, Vec::len) / 2]);
    }

    // Binary data after a JSON header, for the element count the prefixes suggest and one more.
    let claimed = claimed_count(data);
    for count in [claimed, claimed + 1] {
        let header = format!(
            r#"{{"inputs":[{{"name":"text","datatype":"BYTES","shape":[{count}],"parameters":{{"binary_data_size":{}}}}}]}}"#,
            data.len()
        );
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(data);
        let got = decode_checked(&body, Some(header.len()), &TEXT);
        match (&reference, got) {
            (Some(want), Some(r)) if want.len() == count => assert_eq!(bytes_tensor(&r.inputs[0]), want.as_slice()),
            (Some(want), None) if want.len() != count => {}
            (None, None) => {}
            (want, got) => panic!("binary BYTES with shape [{count}]: reference {want:?}, decoder {got:?}"),
        }
    }

    // The input as the JSON text of `data`, flat (shape [n]) and nested (shape [1, n]).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let strings: Option<Vec<String>> = serde_json::from_str(text).ok();
    let n = strings.as_ref().map_or(1, Vec::len);
    for (shape, json, spec) in
        [(format!("[{n}]"), text.to_owned(), vec![-1]), (format!("[1,{n}]"), format!("[{text}]"), vec![1, -1])]
    {
        let body = format!(r#"{{"inputs":[{{"name":"text","datatype":"BYTES","shape":{shape},"data":{json}}}]}}"#);
        let model = Model { inputs: vec![TensorSpec::new("text", DataType::Bytes, spec)], outputs: vec![] };
        let got = decode_checked(body.as_bytes(), None, &model);
        if let Some(want) = &strings {
            let Some(r) = got else { panic!("JSON strings {want:?} refused with shape {shape}") };
            assert_eq!(r.inputs[0].data, TensorData::Bytes(want.clone()), "shape {shape}");
        }
    }
});
