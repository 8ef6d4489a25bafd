//! What the protocol fuzz targets share: the model signatures every input is decoded against, and the
//! invariants every answer must keep. A target that only checked "no panic" would miss a decoder that
//! accepts a tensor whose data does not fill its shape; these checks turn such a bug into a crash.

use std::sync::LazyLock;
use switchyard_protocol::{
    DataType, DecodeLimits, InferRequest, OutputRequest, ProtocolError, Tensor, TensorData, TensorSpec, decode_request,
    encode_response,
};

/// A model's signature as the serving core hands it to `decode_request`.
#[derive(Debug)]
pub struct Model {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// One optional input per datatype, named after it in lower case (`bool`, `uint8`, ..., `bytes`), with
/// scalar, fixed, dynamic (-1) and mixed shapes, and a few outputs.
pub static EVERY_DATATYPE: LazyLock<Model> = LazyLock::new(|| {
    let shapes: [&[i64]; 6] = [&[-1], &[-1, 2], &[2, -1, 1], &[], &[-1, -1], &[3]];
    Model {
        inputs: DataType::ALL
            .iter()
            .zip(shapes.iter().cycle())
            .map(|(&dt, shape)| TensorSpec::new(dt.as_str().to_lowercase(), dt, shape.to_vec()).optional())
            .collect(),
        outputs: vec![
            TensorSpec::new("out_fp32", DataType::Fp32, vec![-1, 3]),
            TensorSpec::new("out_bytes", DataType::Bytes, vec![-1]),
            TensorSpec::new("out_bool", DataType::Bool, vec![]),
        ],
    }
});

/// The demo MLP: one required FP32 input with a dynamic batch.
pub static MLP: LazyLock<Model> = LazyLock::new(|| Model {
    inputs: vec![TensorSpec::new("input", DataType::Fp32, vec![-1, 2])],
    outputs: vec![
        TensorSpec::new("output", DataType::Fp32, vec![-1, 3]),
        TensorSpec::new("aux", DataType::Int64, vec![-1]),
    ],
});

/// A text model: one BYTES input (the only input, so raw requests work) and an embedding out.
pub static TEXT: LazyLock<Model> = LazyLock::new(|| Model {
    inputs: vec![TensorSpec::new("text", DataType::Bytes, vec![-1])],
    outputs: vec![TensorSpec::new("embedding", DataType::Fp32, vec![-1, 4])],
});

/// Like `TEXT` but in pairs, so a raw request's element count must divide.
pub static TEXT_PAIRS: LazyLock<Model> = LazyLock::new(|| Model {
    inputs: vec![TensorSpec::new("text", DataType::Bytes, vec![2, -1])],
    outputs: vec![TensorSpec::new("score", DataType::Fp32, vec![-1])],
});

/// A token-id model with two optional inputs, as text models take either.
pub static TOKENS: LazyLock<Model> = LazyLock::new(|| Model {
    inputs: vec![
        TensorSpec::new("text", DataType::Bytes, vec![-1]).optional(),
        TensorSpec::new("ids", DataType::Int64, vec![-1, -1]).optional(),
    ],
    outputs: vec![TensorSpec::new("logits", DataType::Fp16, vec![-1, 2])],
});

/// Every model, for targets that decode each input against all of them.
pub fn models() -> [&'static Model; 5] {
    [&EVERY_DATATYPE, &MLP, &TEXT, &TEXT_PAIRS, &TOKENS]
}

/// Decodes `body` for `model` and checks the answer (see `check`); returns it for further checks.
pub fn decode_checked(body: &[u8], header_len: Option<usize>, model: &Model) -> Option<InferRequest> {
    let got = decode_request(body, header_len, &model.inputs, &model.outputs);
    check(&got, header_len, model);
    got.ok()
}

/// Small limits, so that fuzzed inputs reach them.
pub const SMALL: DecodeLimits = DecodeLimits { max_elements: 8, max_bytes_element: 4 };

/// Decodes `body` within [`SMALL`] limits and checks the answer against `unlimited` (the same body
/// decoded with the defaults): limits only ever add refusals. A request accepted within them holds no
/// tensor over them and equals the unlimited answer; a request refused without them is refused within
/// them; an accepted unlimited request that fits the limits is accepted within them too.
pub fn check_limits(body: &[u8], header_len: Option<usize>, model: &Model, unlimited: Option<&InferRequest>) {
    let got = switchyard_protocol::decode_request_within(body, header_len, &model.inputs, &model.outputs, &SMALL);
    check(&got, header_len, model);
    let fits = |r: &InferRequest| {
        r.inputs.iter().all(|t| {
            t.data.len() <= SMALL.max_elements
                && match &t.data {
                    TensorData::Bytes(v) => v.iter().all(|e| e.len() <= SMALL.max_bytes_element),
                    _ => true,
                }
        })
    };
    match (&got, unlimited) {
        (Ok(r), Some(u)) => {
            assert!(fits(r), "a request over the limits was accepted: {r:?}");
            // Compared as text: NaN is not equal to itself.
            assert_eq!(format!("{r:?}"), format!("{u:?}"), "the limits changed an accepted request");
        }
        (Ok(r), None) => panic!("accepted within the limits, refused without them: {r:?}"),
        (Err(_), Some(u)) => assert!(!fits(u), "a request within the limits was refused: {got:?}"),
        (Err(_), None) => {}
    }
}

/// The invariants of `decode_request`'s answer. A request: only the model's inputs, each once, with the
/// model's datatype, a shape that fits the model's, and exactly as many elements as the shape holds;
/// every required input present; only the model's outputs, each once. An error: says something.
pub fn check(got: &Result<InferRequest, ProtocolError>, header_len: Option<usize>, model: &Model) {
    let r = match got {
        Ok(r) => r,
        Err(e) => {
            let message = match e {
                ProtocolError::Json(m) | ProtocolError::Framing(m) => m,
                ProtocolError::Input { message, .. } | ProtocolError::Output { message, .. } => message,
            };
            assert!(!message.is_empty(), "an error without a message: {e:?}");
            return;
        }
    };
    for (i, t) in r.inputs.iter().enumerate() {
        let Some(spec) = model.inputs.iter().find(|s| s.name == t.name) else {
            panic!("decoded input {:?} that the model does not have", t.name);
        };
        assert!(r.inputs[..i].iter().all(|o| o.name != t.name), "input {:?} decoded twice", t.name);
        assert_eq!(t.data.datatype(), spec.datatype, "datatype of {:?}", t.name);
        assert_eq!(t.shape.len(), spec.shape.len(), "rank of {:?}: {:?} for {:?}", t.name, t.shape, spec.shape);
        for (&d, &s) in t.shape.iter().zip(&spec.shape) {
            assert!(
                s < 0 || i64::try_from(d) == Ok(s),
                "shape {:?} of {:?} does not fit {:?}",
                t.shape,
                t.name,
                spec.shape
            );
        }
        let count = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(
            count,
            Some(t.data.len()),
            "shape {:?} of {:?} does not hold its {} elements",
            t.shape,
            t.name,
            t.data.len()
        );
    }
    for spec in model.inputs.iter().filter(|s| !s.optional) {
        assert!(r.inputs.iter().any(|t| t.name == spec.name), "required input {:?} missing", spec.name);
    }
    for (i, o) in r.outputs.iter().enumerate() {
        assert!(model.outputs.iter().any(|s| s.name == o.name), "output {:?} the model does not have", o.name);
        assert!(r.outputs[..i].iter().all(|p| p.name != o.name), "output {:?} twice", o.name);
    }
    if header_len == Some(0) {
        assert_eq!(r.inputs.len(), 1, "a raw request carries exactly one input");
        assert_eq!(r.outputs.len(), model.outputs.len(), "a raw request returns every output");
        assert!(r.outputs.iter().all(|o| o.binary), "a raw request's outputs all go back binary");
    }
}

/// Writes the decoded inputs back out (with `encode_response`, as binary data and, when JSON can carry
/// them, as JSON data), turns that into a request, and checks it decodes to the very same tensors.
pub fn check_reencodes(r: &InferRequest, model: &Model) {
    for binary in [true, false] {
        if !binary && r.inputs.iter().any(|t| has_non_finite(&t.data)) {
            continue;
        }
        let wanted: Vec<OutputRequest> =
            r.inputs.iter().map(|t| OutputRequest { name: t.name.clone(), binary }).collect();
        let enc = encode_response("m", "1", r.id.as_deref(), &r.inputs, &wanted);
        let json_len = enc.json_len.unwrap_or(enc.body.len());
        assert_eq!(enc.json_len.is_some(), binary && !r.inputs.is_empty(), "json_len of a response");
        let (head, tail) = enc.body.split_at(json_len);
        let mut head: serde_json::Value = serde_json::from_slice(head).expect("a response header is JSON");
        let Some(obj) = head.as_object_mut() else { panic!("a response header is an object") };
        let outputs = obj.remove("outputs").expect("a response has outputs");
        obj.insert("inputs".into(), outputs);
        let mut body = serde_json::to_vec(&head).expect("JSON values serialize");
        let header_len = body.len();
        body.extend_from_slice(tail);
        let again = decode_request(&body, binary.then_some(header_len), &model.inputs, &model.outputs);
        let again = match again {
            Ok(a) => a,
            Err(e) => panic!("re-encoded request (binary: {binary}) refused: {e}\n{}", String::from_utf8_lossy(&body)),
        };
        assert_eq!(again.id, r.id);
        assert_eq!(again.inputs.len(), r.inputs.len());
        for (a, b) in again.inputs.iter().zip(&r.inputs) {
            assert_eq!((&a.name, &a.shape), (&b.name, &b.shape), "re-encoded (binary: {binary})");
            assert!(same_bits(&a.data, &b.data), "{} changed when re-encoded (binary: {binary})", a.name);
        }
    }
}

/// Whether a tensor holds a NaN or an infinity (which JSON cannot carry).
pub fn has_non_finite(d: &TensorData) -> bool {
    match d {
        TensorData::Fp16(v) => v.iter().any(|x| !x.is_finite()),
        TensorData::Bf16(v) => v.iter().any(|x| !x.is_finite()),
        TensorData::Fp32(v) => v.iter().any(|x| !x.is_finite()),
        TensorData::Fp64(v) => v.iter().any(|x| !x.is_finite()),
        _ => false,
    }
}

/// Equality that tells -0 from 0 and compares NaNs by their bits.
pub fn same_bits(a: &TensorData, b: &TensorData) -> bool {
    fn eq<T, U: PartialEq>(a: &[T], b: &[T], f: impl Fn(&T) -> U) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| f(x) == f(y))
    }
    match (a, b) {
        (TensorData::Fp16(a), TensorData::Fp16(b)) => eq(a, b, |x| x.to_bits()),
        (TensorData::Bf16(a), TensorData::Bf16(b)) => eq(a, b, |x| x.to_bits()),
        (TensorData::Fp32(a), TensorData::Fp32(b)) => eq(a, b, |x| x.to_bits()),
        (TensorData::Fp64(a), TensorData::Fp64(b)) => eq(a, b, |x| x.to_bits()),
        (a, b) => a == b,
    }
}

/// The protocol's BYTES framing read by the simplest code that can: each element a u32 little-endian
/// length and that many bytes of UTF-8, nothing left over. `None` for anything else.
pub fn reference_bytes_elements(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (elem, rest) = rest.split_at(len);
        out.push(String::from_utf8(elem.to_vec()).ok()?);
        bytes = rest;
    }
    Some(out)
}

/// How many length prefixes `bytes` holds before it runs out or breaks (a plausible count to claim).
pub fn claimed_count(mut bytes: &[u8]) -> usize {
    let mut n = 0;
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        n += 1;
        let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
        bytes = rest.get(len..).unwrap_or_default();
    }
    n
}

/// A tensor's elements, for assertions that compare against `TensorData`.
pub fn bytes_tensor(t: &Tensor) -> &[String] {
    match &t.data {
        TensorData::Bytes(v) => v,
        other => panic!("{} decoded as {}, not BYTES", t.name, other.datatype()),
    }
}
