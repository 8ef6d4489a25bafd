//! Turns an inference request body (a JSON header, optionally followed by binary tensor data) into
//! typed tensors checked against the model's signature. The JSON is parsed once; each input's `data`
//! is kept as a borrowed slice of the body until its datatype and shape are known, then read straight
//! into typed storage.

use crate::{DataError, DataType, ProtocolError, Tensor, TensorSpec, binary, element_count, json_data};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// A decoded request, every input checked against the model's signature.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    /// Inputs in the order the client sent them.
    pub inputs: Vec<Tensor>,
    /// The outputs to return, in the order to return them.
    pub outputs: Vec<OutputRequest>,
    /// The V2 `timeout` parameter, in microseconds.
    pub timeout_us: Option<u64>,
    /// The `priority` parameter (Triton's: 1 is the highest level, 0 the model's default).
    pub priority: Option<u64>,
}

/// One output to return and whether it goes back as binary data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRequest {
    pub name: String,
    pub binary: bool,
}

#[derive(Deserialize)]
struct WireRequest<'a> {
    id: Option<String>,
    parameters: Option<RequestParams>,
    #[serde(borrow)]
    inputs: Vec<WireInput<'a>>,
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Deserialize)]
struct RequestParams {
    binary_data_output: Option<bool>,
    timeout: Option<u64>,
    priority: Option<u64>,
}

#[derive(Deserialize)]
struct WireInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    parameters: Option<InputParams>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InputParams {
    binary_data_size: Option<u64>,
    shared_memory_region: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct WireOutput {
    name: String,
    parameters: Option<OutputParams>,
}

#[derive(Deserialize)]
struct OutputParams {
    binary_data: Option<bool>,
    shared_memory_region: Option<IgnoredAny>,
    classification: Option<IgnoredAny>,
}

/// What one request may hold, beyond what its body's size already bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Elements in one input tensor.
    pub max_elements: usize,
    /// Bytes in one BYTES element.
    pub max_bytes_element: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_elements: 1 << 26, max_bytes_element: 1 << 22 }
    }
}

/// Decodes `body` for a model with the given inputs and outputs, within the default [`DecodeLimits`].
/// `header_len` is the value of `Inference-Header-Content-Length` when present; `Some(0)` marks a raw
/// single-input request.
pub fn decode_request(
    body: &[u8],
    header_len: Option<usize>,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<InferRequest, ProtocolError> {
    decode_request_within(body, header_len, inputs, outputs, &DecodeLimits::default())
}

/// [`decode_request`] within `limits`: an input over them is refused, naming it, before its data is read.
pub fn decode_request_within(
    body: &[u8],
    header_len: Option<usize>,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    limits: &DecodeLimits,
) -> Result<InferRequest, ProtocolError> {
    let req = decode_unchecked(body, header_len, inputs, outputs, limits)?;
    check_bytes_elements(&req, limits)?;
    Ok(req)
}

/// No BYTES element is over the limit.
pub(crate) fn check_bytes_elements(req: &InferRequest, limits: &DecodeLimits) -> Result<(), ProtocolError> {
    for t in &req.inputs {
        if let crate::TensorData::Bytes(v) = &t.data
            && let Some((i, e)) = v.iter().enumerate().find(|(_, e)| e.len() > limits.max_bytes_element)
        {
            let (n, max) = (e.len(), limits.max_bytes_element);
            return Err(ProtocolError::input(&t.name, format!("BYTES element {i} has {n} bytes; the limit is {max}")));
        }
    }
    Ok(())
}

fn decode_unchecked(
    body: &[u8],
    header_len: Option<usize>,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    limits: &DecodeLimits,
) -> Result<InferRequest, ProtocolError> {
    let framing = |m: String| ProtocolError::Framing(m);
    let (json, mut bin) = match header_len {
        Some(0) => return decode_raw(body, inputs, outputs, limits),
        Some(n) if n > body.len() => {
            return Err(framing(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let wire = parse_header(json)?;
    let params = wire.parameters.unwrap_or(RequestParams { binary_data_output: None, timeout: None, priority: None });

    let mut decoded: Vec<Tensor> = Vec::with_capacity(wire.inputs.len());
    for input in &wire.inputs {
        let name = input.name.as_str();
        let err = |m: String| ProtocolError::input(name, m);
        let Checked { datatype: dt, count, shape } =
            check_input(name, &input.datatype, &input.shape, inputs, &decoded, limits)?;
        let p = input.parameters.as_ref();
        if p.is_some_and(|p| p.shared_memory_region.is_some()) {
            return Err(err("shared memory is not supported: send the data in the body".into()));
        }
        let data = match (p.and_then(|p| p.binary_data_size), input.data) {
            (Some(_), Some(_)) => {
                return Err(err("has both 'data' and parameters.binary_data_size".into()));
            }
            (None, None) => {
                return Err(err("has no 'data' and no parameters.binary_data_size".into()));
            }
            (None, Some(raw)) => {
                json_data::decode(raw.get(), dt, &shape, count).map_err(|m| err(format!("data: {m}")))?
            }
            (Some(size), None) => {
                let size = usize::try_from(size).ok().filter(|&s| s <= bin.len()).ok_or_else(|| {
                    err(format!("binary_data_size {size} is more than the {} bytes of binary data left", bin.len()))
                })?;
                let (mine, rest) = bin.split_at(size);
                bin = rest;
                binary::decode(mine, dt, count).map_err(|m| err(format!("binary data: {m}")))?
            }
        };
        decoded.push(Tensor { name: input.name.clone(), shape, data });
    }
    if !bin.is_empty() {
        return Err(framing(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            bin.len()
        )));
    }
    check_complete(inputs, &decoded)?;

    let default_binary = params.binary_data_output.unwrap_or(false);
    let outputs = match wire.outputs {
        None => outputs.iter().map(|s| OutputRequest { name: s.name.clone(), binary: default_binary }).collect(),
        Some(wanted) => select_outputs(wanted, outputs, default_binary)?,
    };
    Ok(InferRequest { id: wire.id, inputs: decoded, outputs, timeout_us: params.timeout, priority: params.priority })
}

/// Parses the JSON header. The fast path parses plainly; only a header that fails is parsed again with
/// path tracking, so that the error names the field (`inputs[0].shape: ...`) at no cost to good requests.
fn parse_header(json: &[u8]) -> Result<WireRequest<'_>, ProtocolError> {
    if let Ok(wire) = serde_json::from_slice(json) {
        return Ok(wire);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let wire: WireRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        ProtocolError::Json(if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        })
    })?;
    de.end().map_err(|e| ProtocolError::Json(e.to_string()))?;
    Ok(wire)
}

fn select_outputs(
    wanted: Vec<WireOutput>,
    specs: &[TensorSpec],
    default_binary: bool,
) -> Result<Vec<OutputRequest>, ProtocolError> {
    let wanted = wanted.into_iter().map(|w| {
        let p = w.parameters.as_ref();
        OutputWanted {
            binary: p.and_then(|p| p.binary_data).unwrap_or(default_binary),
            shared_memory: p.is_some_and(|p| p.shared_memory_region.is_some()),
            classification: p.is_some_and(|p| p.classification.is_some()),
            name: w.name,
        }
    });
    check_outputs(wanted, specs)
}

/// One output a request asks for, with what its parameters ask.
pub(crate) struct OutputWanted {
    pub name: String,
    pub binary: bool,
    pub shared_memory: bool,
    pub classification: bool,
}

/// Checks the requested outputs against the model's: known, each once, without the extensions
/// Switchyard does not serve.
pub(crate) fn check_outputs(
    wanted: impl ExactSizeIterator<Item = OutputWanted>,
    specs: &[TensorSpec],
) -> Result<Vec<OutputRequest>, ProtocolError> {
    let mut out: Vec<OutputRequest> = Vec::with_capacity(wanted.len());
    for w in wanted {
        let err = |m: String| ProtocolError::Output { output: w.name.clone(), message: m };
        if !specs.iter().any(|s| s.name == w.name) {
            return Err(err(format!("not an output of this model (outputs: {})", names(specs))));
        }
        if out.iter().any(|o| o.name == w.name) {
            return Err(err("requested more than once".into()));
        }
        if w.shared_memory {
            return Err(err("shared memory is not supported".into()));
        }
        if w.classification {
            return Err(err("the classification extension is not supported: ask for the raw output".into()));
        }
        out.push(OutputRequest { name: w.name, binary: w.binary });
    }
    Ok(out)
}

/// An input's name, datatype and shape checked against the model's signature and the limits.
pub(crate) struct Checked {
    pub datatype: DataType,
    pub count: usize,
    pub shape: Vec<usize>,
}

/// Checks one input's header (before its data is read): a known input, given once, of the model's
/// datatype and a shape that fits, within the element limit.
pub(crate) fn check_input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    specs: &[TensorSpec],
    decoded: &[Tensor],
    limits: &DecodeLimits,
) -> Result<Checked, ProtocolError> {
    let err = |m: String| ProtocolError::input(name, m);
    let spec = specs
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| err(format!("not an input of this model (inputs: {})", names(specs))))?;
    if decoded.iter().any(|t| t.name == name) {
        return Err(err("given more than once".into()));
    }
    let dt = DataType::parse(datatype).ok_or_else(|| err(format!("datatype '{datatype}' is not a V2 datatype")))?;
    if dt != spec.datatype {
        return Err(err(format!("datatype {dt} does not match the model's {}", spec.datatype)));
    }
    let count = check_shape(shape, spec).map_err(|e| err(e.to_string()))?;
    if count > limits.max_elements {
        return Err(err(format!("shape {shape:?} holds {count} elements; the limit is {}", limits.max_elements)));
    }
    Ok(Checked { datatype: dt, count, shape: shape.iter().map(|&d| d as usize).collect() })
}

/// Every input the model requires is there.
pub(crate) fn check_complete(specs: &[TensorSpec], decoded: &[Tensor]) -> Result<(), ProtocolError> {
    match specs.iter().find(|s| !s.optional && !decoded.iter().any(|t| t.name == s.name)) {
        Some(missing) => Err(ProtocolError::input(&missing.name, "is required but missing from the request")),
        None => Ok(()),
    }
}

/// Checks a request shape against the model's and returns its element count.
fn check_shape(shape: &[i64], spec: &TensorSpec) -> Result<usize, DataError> {
    let count = element_count(shape)?;
    let fits = shape.len() == spec.shape.len() && shape.iter().zip(&spec.shape).all(|(&d, &s)| s < 0 || d == s);
    if !fits {
        return Err(DataError::ShapeMismatch { shape: shape.to_vec(), model: spec.shape.clone() });
    }
    Ok(count)
}

/// A raw binary request: the whole body is the one input's data; every output comes back binary.
fn decode_raw(
    body: &[u8],
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    limits: &DecodeLimits,
) -> Result<InferRequest, ProtocolError> {
    let [spec] = inputs else {
        return Err(ProtocolError::Framing(format!(
            "a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input, this one has {}",
            inputs.len()
        )));
    };
    let err = |m: String| ProtocolError::input(&spec.name, m);
    let count = match spec.datatype.element_size() {
        Some(size) if !body.len().is_multiple_of(size) => {
            return Err(err(format!(
                "raw body of {} bytes is not a whole number of {} elements",
                body.len(),
                spec.datatype
            )));
        }
        Some(size) => body.len() / size,
        None => binary::count_bytes_elements(body).map_err(|m| err(format!("raw body: {m}")))?,
    };
    if count > limits.max_elements {
        return Err(err(format!("raw body holds {count} elements; the limit is {}", limits.max_elements)));
    }
    let shape = infer_shape(&spec.shape, count).map_err(|e| err(e.to_string()))?;
    let data = binary::decode(body, spec.datatype, count).map_err(|m| err(format!("raw body: {m}")))?;
    Ok(InferRequest {
        id: None,
        inputs: vec![Tensor { name: spec.name.clone(), shape, data }],
        outputs: outputs.iter().map(|s| OutputRequest { name: s.name.clone(), binary: true }).collect(),
        timeout_us: None,
        priority: None,
    })
}

/// Fills the model shape's one dynamic dimension (if any) so that it holds `count` elements.
fn infer_shape(spec: &[i64], count: usize) -> Result<Vec<usize>, DataError> {
    let dynamic = spec.iter().filter(|&&d| d < 0).count();
    let fixed: usize = spec.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
    let fill = match dynamic {
        0 if fixed == count => 0,
        1 if fixed > 0 && count.is_multiple_of(fixed) => count / fixed,
        0 | 1 => return Err(DataError::RawDoesNotFit { count, shape: spec.to_vec() }),
        _ => return Err(DataError::RawManyDynamic(spec.to_vec())),
    };
    Ok(spec.iter().map(|&d| if d < 0 { fill } else { d as usize }).collect())
}

fn names(specs: &[TensorSpec]) -> String {
    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
