//! Requests that arrive already structured (gRPC's `ModelInferRequest`): each input's name, datatype
//! and shape as fields, its data as raw little-endian bytes (Triton's `raw_input_contents`) or as typed
//! values (`InferTensorContents`). They are checked against the model's signature by the same rules,
//! with the same messages, as an HTTP body.

use crate::request::{Checked, OutputWanted, check_bytes_elements, check_complete, check_input, check_outputs};
use crate::{DecodeLimits, InferRequest, OutputRequest, ProtocolError, Tensor, TensorData, TensorSpec, binary};

/// One input's data as it came.
#[derive(Debug)]
pub enum InputData<'a> {
    /// Little-endian elements, row-major; BYTES elements each with a 4-byte length prefix.
    Raw(&'a [u8]),
    /// Typed values (already converted to the input's datatype by the front end).
    Typed(TensorData),
    /// BYTES elements one by one (they must be UTF-8).
    Elements(Vec<&'a [u8]>),
    /// No data at all.
    Missing,
}

/// One input: its header fields and its data.
#[derive(Debug)]
pub struct StructuredInput<'a> {
    pub name: &'a str,
    pub datatype: &'a str,
    pub shape: &'a [i64],
    pub data: InputData<'a>,
}

/// A structured request.
#[derive(Debug, Default)]
pub struct StructuredRequest<'a> {
    pub id: Option<String>,
    pub inputs: Vec<StructuredInput<'a>>,
    /// The outputs asked for by name (all of the model's when `None`).
    pub outputs: Option<Vec<&'a str>>,
    pub timeout_us: Option<u64>,
    /// The `priority` parameter.
    pub priority: Option<u64>,
}

/// Decodes a structured request for a model with the given inputs and outputs, within `limits`.
/// Outputs are marked binary (a structured front end returns raw bytes).
pub fn decode_structured(
    req: StructuredRequest<'_>,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
    limits: &DecodeLimits,
) -> Result<InferRequest, ProtocolError> {
    let mut decoded: Vec<Tensor> = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let err = |m: String| ProtocolError::input(input.name, m);
        let Checked { datatype, count, shape } =
            check_input(input.name, input.datatype, input.shape, inputs, &decoded, limits)?;
        let data = match input.data {
            InputData::Raw(bytes) => {
                binary::decode(bytes, datatype, count).map_err(|m| err(format!("raw contents: {m}")))?
            }
            InputData::Typed(data) if data.datatype() != datatype => {
                return Err(err(format!("contents hold {} values for a {datatype} input", data.datatype())));
            }
            InputData::Typed(data) if data.len() != count => {
                return Err(err(format!(
                    "contents hold {} values but shape {:?} needs {count}",
                    data.len(),
                    input.shape
                )));
            }
            InputData::Typed(data) => data,
            InputData::Elements(elements) => {
                if elements.len() != count {
                    return Err(err(format!(
                        "contents hold {} BYTES elements but shape {:?} needs {count}",
                        elements.len(),
                        input.shape
                    )));
                }
                let strings = elements
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        std::str::from_utf8(e)
                            .map(str::to_owned)
                            .map_err(|e| err(format!("BYTES element {i} is not valid UTF-8: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                TensorData::Bytes(strings)
            }
            InputData::Missing => return Err(err("has no data: no contents and no raw contents".into())),
        };
        decoded.push(Tensor { name: input.name.to_owned(), shape, data });
    }
    check_complete(inputs, &decoded)?;
    let outputs = match req.outputs {
        None => outputs.iter().map(|s| OutputRequest { name: s.name.clone(), binary: true }).collect(),
        Some(names) => check_outputs(
            names.into_iter().map(|n| OutputWanted {
                name: n.to_owned(),
                binary: true,
                shared_memory: false,
                classification: false,
            }),
            outputs,
        )?,
    };
    let req = InferRequest { id: req.id, inputs: decoded, outputs, timeout_us: req.timeout_us, priority: req.priority };
    check_bytes_elements(&req, limits)?;
    Ok(req)
}

/// The raw little-endian bytes of `data` (BYTES elements length-prefixed), as a structured front end
/// returns an output.
pub fn raw_bytes(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::with_capacity(binary::encoded_len(data));
    binary::encode(data, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn specs() -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        (
            vec![
                TensorSpec::new("x", DataType::Fp32, vec![-1, 2]),
                TensorSpec::new("s", DataType::Bytes, vec![-1]).optional(),
            ],
            vec![TensorSpec::new("y", DataType::Fp32, vec![-1, 2])],
        )
    }

    fn decode(inputs: Vec<StructuredInput<'_>>, outputs: Option<Vec<&str>>) -> Result<InferRequest, ProtocolError> {
        let (i, o) = specs();
        decode_structured(StructuredRequest { inputs, outputs, ..Default::default() }, &i, &o, &DecodeLimits::default())
    }

    fn raw(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn raw_and_typed_inputs_decode_alike() {
        let bytes = raw(&[1.0, 2.0, 3.0, 4.0]);
        let shape = [2, 2];
        let a = decode(
            vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: InputData::Raw(&bytes) }],
            None,
        )
        .expect("raw");
        let typed = InputData::Typed(TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]));
        let b =
            decode(vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: typed }], Some(vec!["y"]))
                .expect("typed");
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.outputs, b.outputs);
        assert_eq!(raw_bytes(&a.inputs[0].data), bytes);
    }

    #[test]
    fn mistakes_name_the_input_or_output() {
        let shape = [2, 2];
        let short = raw(&[1.0]);
        let cases = [
            (
                vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: InputData::Raw(&short) }],
                None,
                "input 'x'",
            ),
            (
                vec![StructuredInput { name: "x", datatype: "INT32", shape: &shape, data: InputData::Missing }],
                None,
                "does not match",
            ),
            (
                vec![StructuredInput { name: "z", datatype: "FP32", shape: &shape, data: InputData::Missing }],
                None,
                "not an input",
            ),
            (
                vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: InputData::Missing }],
                None,
                "has no data",
            ),
            (vec![], None, "input 'x': is required"),
        ];
        for (inputs, outputs, expected) in cases {
            let e = decode(inputs, outputs).expect_err("refused").to_string();
            assert!(e.contains(expected), "{e} (wanted {expected})");
        }
        let typed = InputData::Typed(TensorData::Int32(vec![1, 2, 3, 4]));
        let e = decode(vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: typed }], None)
            .unwrap_err();
        assert!(e.to_string().contains("INT32 values for a FP32 input"), "{e}");
        let bytes = raw(&[1.0, 2.0, 3.0, 4.0]);
        let e = decode(
            vec![StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: InputData::Raw(&bytes) }],
            Some(vec!["q"]),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("output 'q'"), "{e}");
        let s_shape = [1];
        let bad = [0xff_u8, 0xfe];
        let x = StructuredInput { name: "x", datatype: "FP32", shape: &shape, data: InputData::Raw(&bytes) };
        let s =
            StructuredInput { name: "s", datatype: "BYTES", shape: &s_shape, data: InputData::Elements(vec![&bad]) };
        let e = decode(vec![x, s], None).unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
    }
}
