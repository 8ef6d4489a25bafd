//! Property tests for the wire format, so that a codec change cannot quietly break a datatype the unit
//! tests happen not to cover. For every V2 datatype and random shapes:
//!
//! - a request written the way the protocol (`shared/protocol/v2.md`) says, as JSON `data` (flat or
//!   nested, in the number spellings clients use) or as binary tensor data (`binary_data_size` and
//!   `Inference-Header-Content-Length`), decodes to the very tensors it was written from (floats compared
//!   bit for bit);
//! - `encode_response` output parses back to the tensors it encoded, and is itself a body our own
//!   request decoder accepts;
//! - element count always equals the product of the shape, a shape that does not match the data is an
//!   error naming the input, and random or mutated bodies give an answer, never a panic.
//!
//! The request encoders here are written from the protocol text, independently of the crate's code.
//! JSON has no NaN or infinity: the crate refuses them (and `null`) in request data and writes them as
//! `null` in JSON responses; binary data carries every bit pattern.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use half::{bf16, f16};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use switchyard_protocol::{
    DataType, OutputRequest, ProtocolError, Tensor, TensorData, TensorSpec, decode_request, encode_response,
};

const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------------------
// Strategies

fn datatype() -> impl Strategy<Value = DataType> {
    prop::sample::select(DataType::ALL.to_vec())
}

/// Up to rank 4 with dimensions up to 5 (at most 625 elements), zero-sized dimensions included.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..=5, 0..=4)
}

/// A float's bits (`$exp` masks the exponent); with `finite`, NaN and infinity (exponent all ones) lose
/// the exponent's top bit, the one below the sign, and become ordinary numbers. Zeros, ones and small
/// values are mixed in, since random bits rarely are.
macro_rules! float_bits {
    ($bits:ty, $exp:expr, $from:expr, $finite:expr) => {
        prop_oneof![
            4 => any::<$bits>(),
            1 => prop::sample::select(vec![0.0f64, -0.0, 1.0, -1.0, 0.5, 3.0, -2.5]).prop_map(|x| $from(x)),
        ]
        .prop_map(move |b: $bits| {
            let below_sign: $bits = 1 << (<$bits>::BITS - 2);
            if $finite && b & $exp == $exp { b & !below_sign } else { b }
        })
    };
}

/// `n` elements of `dt`; `finite` keeps floats to what JSON can carry.
fn data(dt: DataType, n: usize, finite: bool) -> BoxedStrategy<TensorData> {
    use prop::collection::vec;
    match dt {
        DataType::Bool => vec(any::<bool>(), n).prop_map(TensorData::Bool).boxed(),
        DataType::Uint8 => vec(any::<u8>(), n).prop_map(TensorData::Uint8).boxed(),
        DataType::Uint16 => vec(any::<u16>(), n).prop_map(TensorData::Uint16).boxed(),
        DataType::Uint32 => vec(any::<u32>(), n).prop_map(TensorData::Uint32).boxed(),
        DataType::Uint64 => vec(any::<u64>(), n).prop_map(TensorData::Uint64).boxed(),
        DataType::Int8 => vec(any::<i8>(), n).prop_map(TensorData::Int8).boxed(),
        DataType::Int16 => vec(any::<i16>(), n).prop_map(TensorData::Int16).boxed(),
        DataType::Int32 => vec(any::<i32>(), n).prop_map(TensorData::Int32).boxed(),
        DataType::Int64 => vec(any::<i64>(), n).prop_map(TensorData::Int64).boxed(),
        DataType::Fp16 => vec(float_bits!(u16, 0x7c00u16, |x| f16::from_f64(x).to_bits(), finite), n)
            .prop_map(|v| TensorData::Fp16(v.into_iter().map(f16::from_bits).collect()))
            .boxed(),
        DataType::Bf16 => vec(float_bits!(u16, 0x7f80u16, |x| bf16::from_f64(x).to_bits(), finite), n)
            .prop_map(|v| TensorData::Bf16(v.into_iter().map(bf16::from_bits).collect()))
            .boxed(),
        DataType::Fp32 => vec(float_bits!(u32, 0x7f80_0000u32, |x: f64| (x as f32).to_bits(), finite), n)
            .prop_map(|v| TensorData::Fp32(v.into_iter().map(f32::from_bits).collect()))
            .boxed(),
        DataType::Fp64 => vec(float_bits!(u64, 0x7ff0_0000_0000_0000u64, f64::to_bits, finite), n)
            .prop_map(|v| TensorData::Fp64(v.into_iter().map(f64::from_bits).collect()))
            .boxed(),
        // Any characters: quotes, backslashes, control characters, astral planes.
        DataType::Bytes => {
            vec(vec(any::<char>(), 0..8).prop_map(String::from_iter), n).prop_map(TensorData::Bytes).boxed()
        }
    }
}

fn tensor(finite: bool) -> impl Strategy<Value = Tensor> {
    (datatype(), shape()).prop_flat_map(move |(dt, shape)| {
        let n = shape.iter().product();
        data(dt, n, finite).prop_map(move |data| Tensor { name: String::new(), shape: shape.clone(), data })
    })
}

/// How one input travels in a request.
#[derive(Debug, Clone, Copy)]
struct Style {
    binary: bool,
    /// JSON data nested to the shape rather than flat.
    nested: bool,
    /// Which spelling numbers get (see `number_text`).
    spelling: u8,
    /// Whitespace around punctuation.
    spaced: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), 0u8..4, any::<bool>()).prop_map(|(binary, nested, spelling, spaced)| Style {
        binary,
        nested,
        spelling,
        spaced,
    })
}

/// One request input: the tensor, how it is sent, and which of its dimensions the model leaves dynamic.
#[derive(Debug, Clone)]
struct Input {
    tensor: Tensor,
    style: Style,
    dynamic: Vec<bool>,
}

fn input(finite: bool) -> impl Strategy<Value = Input> {
    (tensor(finite), style()).prop_flat_map(|(tensor, style)| {
        let rank = tensor.shape.len();
        prop::collection::vec(any::<bool>(), rank).prop_map(move |dynamic| Input {
            tensor: tensor.clone(),
            style,
            dynamic,
        })
    })
}

/// Up to four inputs named `in0..`, and whether the header length is given even without binary data.
fn request() -> impl Strategy<Value = (Vec<Input>, bool)> {
    (prop::collection::vec(input(true), 1..=4), any::<bool>()).prop_map(|(mut inputs, always_len)| {
        for (i, x) in inputs.iter_mut().enumerate() {
            x.tensor.name = format!("in{i}");
        }
        (inputs, always_len)
    })
}

// ---------------------------------------------------------------------------------------------------------
// Writing requests as the protocol describes them

/// The JSON text of one finite number, in one of the spellings clients produce: serde_json's shortest
/// (possibly with an exponent), Rust's shortest without exponent, scientific, and (for FP32, as numpy
/// and Python clients write float32) the value widened to f64.
fn number_text(x: f64, narrow: Option<f32>, spelling: u8) -> String {
    match (spelling, narrow) {
        (0, Some(f)) => serde_json::to_string(&f).unwrap(),
        (0, None) => serde_json::to_string(&x).unwrap(),
        (1, Some(f)) => format!("{f}"),
        (1, None) => format!("{x}"),
        (2, Some(f)) => format!("{f:e}"),
        (2, None) => format!("{x:E}"),
        (_, _) => format!("{x}"),
    }
}

/// Each element's JSON text.
fn element_texts(data: &TensorData, spelling: u8) -> Vec<String> {
    fn each<T>(v: &[T], f: impl Fn(&T) -> String) -> Vec<String> {
        v.iter().map(f).collect()
    }
    match data {
        TensorData::Bool(v) => each(v, |x| x.to_string()),
        TensorData::Uint8(v) => each(v, |x| x.to_string()),
        TensorData::Uint16(v) => each(v, |x| x.to_string()),
        TensorData::Uint32(v) => each(v, |x| x.to_string()),
        TensorData::Uint64(v) => each(v, |x| x.to_string()),
        TensorData::Int8(v) => each(v, |x| x.to_string()),
        TensorData::Int16(v) => each(v, |x| x.to_string()),
        TensorData::Int32(v) => each(v, |x| x.to_string()),
        TensorData::Int64(v) => each(v, |x| x.to_string()),
        TensorData::Fp16(v) => each(v, |x| number_text(x.to_f64(), Some(x.to_f32()), spelling)),
        TensorData::Bf16(v) => each(v, |x| number_text(x.to_f64(), Some(x.to_f32()), spelling)),
        TensorData::Fp32(v) => each(v, |&x| number_text(f64::from(x), Some(x), spelling)),
        TensorData::Fp64(v) => each(v, |&x| number_text(x, None, spelling)),
        TensorData::Bytes(v) => each(v, |s| serde_json::to_string(s).unwrap()),
    }
}

/// `elements` as a JSON array nested to `shape` (row-major), or flat.
fn json_array(elements: &[String], shape: &[usize], nested: bool, sep: &str) -> String {
    if !nested || shape.len() <= 1 {
        return format!("[{}]", elements.join(sep));
    }
    let inner: usize = shape[1..].iter().product();
    let rows: Vec<String> =
        (0..shape[0]).map(|i| json_array(&elements[i * inner..(i + 1) * inner], &shape[1..], true, sep)).collect();
    format!("[{}]", rows.join(sep))
}

/// Binary tensor data: little-endian, row-major; BOOL one byte; BYTES a u32 length and the bytes.
fn binary(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Uint16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Uint32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Uint64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Int8(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Int16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Int32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Int64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        TensorData::Fp16(v) => v.iter().for_each(|x| out.extend(x.to_bits().to_le_bytes())),
        TensorData::Bf16(v) => v.iter().for_each(|x| out.extend(x.to_bits().to_le_bytes())),
        TensorData::Fp32(v) => v.iter().for_each(|x| out.extend(x.to_bits().to_le_bytes())),
        TensorData::Fp64(v) => v.iter().for_each(|x| out.extend(x.to_bits().to_le_bytes())),
        TensorData::Bytes(v) => v.iter().for_each(|s| {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }),
    }
    out
}

/// The whole request body and its `Inference-Header-Content-Length`, with binary inputs' data appended
/// after the JSON header in input order.
fn request_body(inputs: &[Input], always_len: bool) -> (Vec<u8>, Option<usize>) {
    let mut tail = Vec::new();
    let entries: Vec<String> = inputs
        .iter()
        .map(|x| {
            let t = &x.tensor;
            let sep = if x.style.spaced { " ,\n " } else { "," };
            let shape = format!("[{}]", t.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(sep));
            let head = format!(r#"{{"name":"{}","datatype":"{}","shape":{shape},"#, t.name, t.data.datatype());
            if x.style.binary {
                let bytes = binary(&t.data);
                let entry = format!(r#"{head}"parameters":{{"binary_data_size":{}}}}}"#, bytes.len());
                tail.extend(bytes);
                entry
            } else {
                let texts = element_texts(&t.data, x.style.spelling);
                format!(r#"{head}"data":{}}}"#, json_array(&texts, &t.shape, x.style.nested, sep))
            }
        })
        .collect();
    let mut body = format!(r#"{{"id":"r","inputs":[{}]}}"#, entries.join(",")).into_bytes();
    let header_len = body.len();
    let binary_present = !tail.is_empty() || inputs.iter().any(|x| x.style.binary);
    body.extend(tail);
    (body, (binary_present || always_len).then_some(header_len))
}

/// The model signature the inputs are sent to: their shapes with the chosen dimensions left dynamic,
/// listed in reverse so that request order and signature order differ.
fn signature(inputs: &[Input]) -> Vec<TensorSpec> {
    inputs
        .iter()
        .rev()
        .map(|x| {
            let shape = x.tensor.shape.iter().zip(&x.dynamic).map(|(&d, &dy)| if dy { -1 } else { d as i64 }).collect();
            TensorSpec::new(x.tensor.name.clone(), x.tensor.data.datatype(), shape)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Comparing and reading back

/// Tensor data in a comparable form: floats as their bits (so NaN payloads and -0 count), integers
/// widened, strings as they are.
#[derive(Debug, PartialEq)]
enum Canon {
    Numbers(DataType, Vec<u64>),
    Strings(Vec<String>),
}

fn canon(d: &TensorData) -> Canon {
    fn n<T: Copy>(dt: DataType, v: &[T], f: impl Fn(T) -> u64) -> Canon {
        Canon::Numbers(dt, v.iter().map(|&x| f(x)).collect())
    }
    let dt = d.datatype();
    match d {
        TensorData::Bool(v) => n(dt, v, u64::from),
        TensorData::Uint8(v) => n(dt, v, u64::from),
        TensorData::Uint16(v) => n(dt, v, u64::from),
        TensorData::Uint32(v) => n(dt, v, u64::from),
        TensorData::Uint64(v) => n(dt, v, |x| x),
        TensorData::Int8(v) => n(dt, v, |x| x as u64),
        TensorData::Int16(v) => n(dt, v, |x| x as u64),
        TensorData::Int32(v) => n(dt, v, |x| x as u64),
        TensorData::Int64(v) => n(dt, v, |x| x as u64),
        TensorData::Fp16(v) => n(dt, v, |x| u64::from(x.to_bits())),
        TensorData::Bf16(v) => n(dt, v, |x| u64::from(x.to_bits())),
        TensorData::Fp32(v) => n(dt, v, |x| u64::from(x.to_bits())),
        TensorData::Fp64(v) => n(dt, v, f64::to_bits),
        TensorData::Bytes(v) => Canon::Strings(v.clone()),
    }
}

/// Reads binary tensor data back (the test's own reader, not the crate's).
fn from_binary(dt: DataType, bytes: &[u8]) -> TensorData {
    fn le<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        assert_eq!(bytes.len() % N, 0, "binary data is not whole elements");
        bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap())).collect()
    }
    match dt {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Uint16 => TensorData::Uint16(le(bytes, u16::from_le_bytes)),
        DataType::Uint32 => TensorData::Uint32(le(bytes, u32::from_le_bytes)),
        DataType::Uint64 => TensorData::Uint64(le(bytes, u64::from_le_bytes)),
        DataType::Int8 => TensorData::Int8(le(bytes, i8::from_le_bytes)),
        DataType::Int16 => TensorData::Int16(le(bytes, i16::from_le_bytes)),
        DataType::Int32 => TensorData::Int32(le(bytes, i32::from_le_bytes)),
        DataType::Int64 => TensorData::Int64(le(bytes, i64::from_le_bytes)),
        DataType::Fp16 => TensorData::Fp16(le(bytes, |b| f16::from_bits(u16::from_le_bytes(b)))),
        DataType::Bf16 => TensorData::Bf16(le(bytes, |b| bf16::from_bits(u16::from_le_bytes(b)))),
        DataType::Fp32 => TensorData::Fp32(le(bytes, f32::from_le_bytes)),
        DataType::Fp64 => TensorData::Fp64(le(bytes, f64::from_le_bytes)),
        DataType::Bytes => {
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                out.push(String::from_utf8(rest[4..4 + len].to_vec()).unwrap());
                rest = &rest[4 + len..];
            }
            TensorData::Bytes(out)
        }
    }
}

/// Whether a float element is NaN or infinite (what JSON cannot carry); `false` for other datatypes.
fn non_finite(d: &TensorData, i: usize) -> bool {
    match d {
        TensorData::Fp16(v) => !v[i].is_finite(),
        TensorData::Bf16(v) => !v[i].is_finite(),
        TensorData::Fp32(v) => !v[i].is_finite(),
        TensorData::Fp64(v) => !v[i].is_finite(),
        _ => false,
    }
}

/// Checks one JSON response element against the element it was encoded from.
fn json_element_matches(d: &TensorData, i: usize, v: &Value) -> bool {
    if non_finite(d, i) {
        return v.is_null();
    }
    match d {
        TensorData::Bool(x) => v.as_bool() == Some(x[i]),
        TensorData::Uint8(x) => v.as_u64() == Some(u64::from(x[i])),
        TensorData::Uint16(x) => v.as_u64() == Some(u64::from(x[i])),
        TensorData::Uint32(x) => v.as_u64() == Some(u64::from(x[i])),
        TensorData::Uint64(x) => v.as_u64() == Some(x[i]),
        TensorData::Int8(x) => v.as_i64() == Some(i64::from(x[i])),
        TensorData::Int16(x) => v.as_i64() == Some(i64::from(x[i])),
        TensorData::Int32(x) => v.as_i64() == Some(i64::from(x[i])),
        TensorData::Int64(x) => v.as_i64() == Some(x[i]),
        TensorData::Fp16(x) => v.as_f64().map(|f| f16::from_f64(f).to_bits()) == Some(x[i].to_bits()),
        TensorData::Bf16(x) => v.as_f64().map(|f| bf16::from_f64(f).to_bits()) == Some(x[i].to_bits()),
        TensorData::Fp32(x) => v.as_f64().map(|f| (f as f32).to_bits()) == Some(x[i].to_bits()),
        TensorData::Fp64(x) => v.as_f64().map(f64::to_bits) == Some(x[i].to_bits()),
        TensorData::Bytes(x) => v.as_str() == Some(x[i].as_str()),
    }
}

/// What every successful decode promises: known inputs with the model's datatype, a shape that fits the
/// model's, and exactly as many elements as the shape holds.
fn check_decoded(inputs: &[Tensor], specs: &[TensorSpec]) -> Result<(), TestCaseError> {
    for t in inputs {
        let spec = specs.iter().find(|s| s.name == t.name);
        prop_assert!(spec.is_some(), "decoded an input the model does not have: {}", t.name);
        let spec = spec.unwrap();
        prop_assert_eq!(t.data.datatype(), spec.datatype);
        prop_assert_eq!(t.shape.len(), spec.shape.len());
        prop_assert!(t.shape.iter().zip(&spec.shape).all(|(&d, &s)| s < 0 || d as i64 == s));
        prop_assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "element count of {}", t.name);
    }
    Ok(())
}

/// A fixed signature with one input per datatype (mixed fixed and dynamic dimensions), for the tests
/// that throw arbitrary bytes at the decoder.
fn every_datatype() -> Vec<TensorSpec> {
    DataType::ALL
        .iter()
        .enumerate()
        .map(|(i, &dt)| {
            let shape = match i % 3 {
                0 => vec![-1],
                1 => vec![-1, 2],
                _ => vec![2, -1, 1],
            };
            TensorSpec::new(dt.as_str().to_lowercase(), dt, shape).optional()
        })
        .collect()
}

fn config() -> Config {
    Config { cases: CASES, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config())]

    /// JSON and binary inputs, mixed in one request, decode to exactly what was written.
    #[test]
    fn requests_decode_to_the_tensors_they_were_written_from((inputs, always_len) in request()) {
        let (body, header_len) = request_body(&inputs, always_len);
        let specs = signature(&inputs);
        let got = decode_request(&body, header_len, &specs, &[]);
        let got = match got {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\nbody: {}", String::from_utf8_lossy(&body)))),
        };
        prop_assert_eq!(got.id.as_deref(), Some("r"));
        prop_assert_eq!(got.inputs.len(), inputs.len());
        for (t, x) in got.inputs.iter().zip(&inputs) {
            prop_assert_eq!(&t.name, &x.tensor.name);
            prop_assert_eq!(&t.shape, &x.tensor.shape);
            prop_assert_eq!(canon(&t.data), canon(&x.tensor.data), "{:?}", x.style);
        }
        check_decoded(&got.inputs, &specs)?;
    }

    /// Binary data carries every bit pattern, NaN payloads and infinities included.
    #[test]
    fn binary_inputs_carry_every_bit_pattern(mut x in input(false)) {
        x.tensor.name = "x".into();
        x.style.binary = true;
        let (body, header_len) = request_body(std::slice::from_ref(&x), false);
        let got = decode_request(&body, header_len, &signature(std::slice::from_ref(&x)), &[]).unwrap();
        prop_assert_eq!(canon(&got.inputs[0].data), canon(&x.tensor.data));
    }

    /// A raw binary request (header length 0) is the one input's data; its one dynamic dimension is
    /// filled in from the body's length.
    #[test]
    fn raw_binary_requests_fill_the_dynamic_dimension(x in tensor(false), dynamic in any::<prop::sample::Index>()) {
        let mut shape: Vec<i64> = x.shape.iter().map(|&d| d as i64).collect();
        let fixed_without = |i: usize| x.shape.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &d)| d).product::<usize>();
        let dyn_at = (!shape.is_empty()).then(|| dynamic.index(shape.len()));
        if let Some(i) = dyn_at {
            shape[i] = -1;
        }
        let spec = TensorSpec::new("x", x.data.datatype(), shape);
        let outputs = [TensorSpec::new("y", DataType::Fp32, vec![-1])];
        let got = decode_request(&binary(&x.data), Some(0), std::slice::from_ref(&spec), &outputs);
        match dyn_at {
            // With a zero-sized fixed dimension any fill fits; the decoder refuses to guess.
            Some(i) if fixed_without(i) == 0 => prop_assert!(got.is_err()),
            _ => {
                let got = got.unwrap();
                prop_assert_eq!(&got.inputs[0].shape, &x.shape);
                prop_assert_eq!(canon(&got.inputs[0].data), canon(&x.data));
                prop_assert_eq!(got.outputs, vec![OutputRequest { name: "y".into(), binary: true }]);
            }
        }
    }

    /// A response parses back to the tensors it encoded (binary outputs bit for bit, JSON outputs with
    /// NaN and infinity as `null`), and, with its outputs renamed inputs, is a request we accept.
    #[test]
    fn responses_parse_back_and_decode_as_requests(
        tensors in prop::collection::vec((tensor(false), any::<bool>()), 0..=4),
        id in prop::option::of("[a-z0-9\"\\\\]{0,6}"),
    ) {
        let outputs: Vec<Tensor> = tensors
            .iter()
            .enumerate()
            .map(|(i, (t, _))| Tensor { name: format!("out{i}"), ..t.clone() })
            .collect();
        let requested: Vec<OutputRequest> = tensors
            .iter()
            .enumerate()
            .map(|(i, &(_, binary))| OutputRequest { name: format!("out{i}"), binary })
            .collect();
        let enc = encode_response("model", "7", id.as_deref(), &outputs, &requested);
        let any_binary = requested.iter().any(|r| r.binary);
        prop_assert_eq!(enc.json_len.is_some(), any_binary);
        let json_len = enc.json_len.unwrap_or(enc.body.len());
        prop_assert!(json_len <= enc.body.len());
        let head: Value = serde_json::from_slice(&enc.body[..json_len]).unwrap();
        prop_assert_eq!(&head["model_name"], "model");
        prop_assert_eq!(&head["model_version"], "7");
        prop_assert_eq!(head.get("id").and_then(Value::as_str), id.as_deref());
        let wire = head["outputs"].as_array().unwrap();
        prop_assert_eq!(wire.len(), outputs.len());

        let mut tail = &enc.body[json_len..];
        for ((t, r), w) in outputs.iter().zip(&requested).zip(wire) {
            prop_assert_eq!(&w["name"], t.name.as_str());
            prop_assert_eq!(&w["datatype"], t.data.datatype().as_str());
            prop_assert_eq!(w["shape"].as_array().unwrap().len(), t.shape.len());
            for (d, want) in w["shape"].as_array().unwrap().iter().zip(&t.shape) {
                prop_assert_eq!(d.as_u64(), Some(*want as u64));
            }
            if r.binary {
                prop_assert!(w.get("data").is_none());
                let size = w["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
                prop_assert!(size <= tail.len());
                let (mine, rest) = tail.split_at(size);
                tail = rest;
                prop_assert_eq!(canon(&from_binary(t.data.datatype(), mine)), canon(&t.data));
            } else {
                let data = w["data"].as_array().unwrap();
                prop_assert_eq!(data.len(), t.data.len());
                for (i, v) in data.iter().enumerate() {
                    prop_assert!(json_element_matches(&t.data, i, v), "{} element {i}: {v}", t.name);
                }
            }
        }
        prop_assert!(tail.is_empty(), "{} bytes of binary data belong to no output", tail.len());

        // The response as a request: `outputs` become `inputs`, the binary tail stays as it is.
        let mut as_request = head.clone();
        let obj = as_request.as_object_mut().unwrap();
        let outs = obj.remove("outputs").unwrap();
        obj.insert("inputs".into(), outs);
        let mut body = serde_json::to_vec(&as_request).unwrap();
        let header_len = body.len();
        body.extend_from_slice(&enc.body[json_len..]);
        let specs: Vec<TensorSpec> = outputs
            .iter()
            .map(|t| TensorSpec::new(t.name.clone(), t.data.datatype(), t.shape.iter().map(|_| -1).collect()))
            .collect();
        let unrepresentable = outputs
            .iter()
            .zip(&requested)
            .find(|(t, r)| !r.binary && (0..t.data.len()).any(|i| non_finite(&t.data, i)));
        let got = decode_request(&body, any_binary.then_some(header_len), &specs, &[]);
        match unrepresentable {
            Some((t, _)) => match got {
                Err(ProtocolError::Input { input, message }) => {
                    prop_assert_eq!(&input, &t.name);
                    prop_assert!(message.contains("null"), "{}", message);
                }
                other => prop_assert!(false, "a null float was not refused for {}: {other:?}", t.name),
            },
            None => {
                let got = got.unwrap();
                prop_assert_eq!(got.id.as_deref(), id.as_deref());
                for (g, t) in got.inputs.iter().zip(&outputs) {
                    prop_assert_eq!(&g.shape, &t.shape);
                    prop_assert_eq!(canon(&g.data), canon(&t.data));
                }
            }
        }
    }

    /// Data that does not add up to the shape (one element more or fewer, JSON or binary) is an error
    /// naming the input.
    #[test]
    fn shape_and_data_that_disagree_are_an_input_error(mut x in input(true), more in any::<bool>()) {
        x.tensor.name = "x".into();
        let specs = signature(std::slice::from_ref(&x));
        // Flat, so that every element is written whatever the shape says.
        x.style.nested = false;
        let count = x.tensor.data.len();
        if more || count == 0 {
            x.tensor.data.append(TensorData::zeros(x.tensor.data.datatype(), 1)).unwrap();
        } else {
            x.tensor.data.split_off(count - 1);
        }
        let (body, header_len) = request_body(std::slice::from_ref(&x), false);
        match decode_request(&body, header_len, &specs, &[]) {
            Err(ProtocolError::Input { input, .. }) => prop_assert_eq!(input, "x"),
            other => prop_assert!(false, "{} elements for shape {:?} gave {other:?}", x.tensor.data.len(), x.tensor.shape),
        }
    }

    /// A shape that does not fit the model's (another rank, or a fixed dimension changed) is an input
    /// error, whatever the data.
    #[test]
    fn shapes_the_model_does_not_take_are_refused(mut x in input(true), grow in any::<bool>()) {
        x.tensor.name = "x".into();
        let mut specs = signature(std::slice::from_ref(&x));
        match specs[0].shape.iter().position(|&d| d >= 0) {
            Some(i) if !grow => specs[0].shape[i] += 1,
            _ => specs[0].shape.push(-1),
        }
        let (body, header_len) = request_body(std::slice::from_ref(&x), false);
        match decode_request(&body, header_len, &specs, &[]) {
            Err(ProtocolError::Input { input, message }) => {
                prop_assert_eq!(input, "x");
                prop_assert!(message.contains("does not match the model's"), "{}", message);
            }
            other => prop_assert!(false, "shape {:?} against {:?} gave {other:?}", x.tensor.shape, specs[0].shape),
        }
    }

    /// Arbitrary bytes, with or without a header length, get an answer and never a panic.
    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), len in prop::option::of(0usize..260)) {
        let specs = every_datatype();
        if let Ok(r) = decode_request(&body, len, &specs, &specs) {
            check_decoded(&r.inputs, &specs)?;
        }
    }

    /// Valid requests with a few random edits (bytes changed, inserted, removed; the header length
    /// moved) get an answer and never a panic, and whatever decodes keeps the shape invariants.
    #[test]
    fn mutated_requests_never_panic(
        (inputs, always_len) in request(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6),
    ) {
        let (mut body, mut header_len) = request_body(&inputs, always_len);
        let specs = signature(&inputs);
        for (at, kind, byte) in edits {
            let i = if body.is_empty() { 0 } else { at.index(body.len()) };
            match kind {
                0 if !body.is_empty() => body[i] = byte,
                1 => body.insert(i, byte),
                2 if !body.is_empty() => drop(body.drain(i..(i + usize::from(byte % 8)).min(body.len()))),
                _ => header_len = Some(at.index(body.len() + 2)),
            }
        }
        if let Ok(r) = decode_request(&body, header_len, &specs, &specs) {
            check_decoded(&r.inputs, &specs)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// What JSON cannot say

fn fp(dt: DataType, data: &str) -> Result<TensorData, ProtocolError> {
    let body = format!(r#"{{"inputs":[{{"name":"x","shape":[1],"datatype":"{dt}","data":{data}}}]}}"#);
    decode_request(body.as_bytes(), None, &[TensorSpec::new("x", dt, vec![1])], &[])
        .map(|mut r| r.inputs.remove(0).data)
}

#[test]
fn non_finite_and_null_floats_are_refused_in_json_requests() {
    for dt in [DataType::Fp16, DataType::Bf16, DataType::Fp32, DataType::Fp64] {
        for text in ["[NaN]", "[Infinity]", "[-Infinity]", "[nan]", "[inf]", "[null]", r#"["NaN"]"#, "[1e999]"] {
            match fp(dt, text) {
                Err(ProtocolError::Input { input, .. }) | Err(ProtocolError::Json(input)) if !input.is_empty() => {}
                other => panic!("{text} as {dt} gave {other:?}"),
            }
        }
    }
    // Out of the datatype's range but valid JSON: refused, not turned into infinity.
    assert!(matches!(fp(DataType::Fp16, "[65520]"), Err(ProtocolError::Input { .. })));
    assert!(matches!(fp(DataType::Fp32, "[3.5e38]"), Err(ProtocolError::Input { .. })));
    // The largest finite values pass.
    assert_eq!(fp(DataType::Fp16, "[65504]"), Ok(TensorData::Fp16(vec![f16::MAX])));
    assert_eq!(fp(DataType::Fp32, &format!("[{}]", f32::MAX)), Ok(TensorData::Fp32(vec![f32::MAX])));
}

#[test]
fn non_finite_floats_go_out_as_null_in_json_and_as_bits_in_binary() {
    let nan = f32::from_bits(0x7fc0_1234);
    let t = Tensor { name: "y".into(), shape: vec![3], data: TensorData::Fp32(vec![nan, f32::INFINITY, -1.5]) };
    let json =
        encode_response("m", "1", None, std::slice::from_ref(&t), &[OutputRequest { name: "y".into(), binary: false }]);
    let v: Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["outputs"][0]["data"], serde_json::json!([null, null, -1.5]));

    let bin =
        encode_response("m", "1", None, std::slice::from_ref(&t), &[OutputRequest { name: "y".into(), binary: true }]);
    let n = bin.json_len.unwrap();
    assert_eq!(canon(&from_binary(DataType::Fp32, &bin.body[n..])), canon(&t.data));
}

/// serde_json reads `-0` as a float, so integer tensors refuse it like `0.0`; flat and nested data
/// (read by different code) must give the same answer.
#[test]
fn negative_zero_reads_the_same_flat_and_nested() {
    for dt in [DataType::Int8, DataType::Uint8, DataType::Int64, DataType::Uint64] {
        let spec = [TensorSpec::new("x", dt, vec![-1, -1])];
        let body = |shape: &str, data: &str| {
            format!(r#"{{"inputs":[{{"name":"x","shape":{shape},"datatype":"{dt}","data":{data}}}]}}"#)
        };
        let flat = decode_request(body("[1,2]", "[-0,1]").as_bytes(), None, &spec, &[]).map(|r| r.inputs);
        let nested = decode_request(body("[1,2]", "[[-0,1]]").as_bytes(), None, &spec, &[]).map(|r| r.inputs);
        for got in [flat, nested] {
            match got {
                Err(ProtocolError::Input { input, message }) => {
                    assert_eq!(input, "x");
                    assert!(message.contains("-0 is not an integer"), "{message}");
                }
                other => panic!("-0 as {dt} gave {other:?}"),
            }
        }
    }
}
