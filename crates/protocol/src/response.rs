//! Encodes an inference response: the JSON header and, for outputs asked for as binary, their raw data
//! appended after it (with the header's length reported for `Inference-Header-Content-Length`).

use crate::{DataType, OutputRequest, Tensor, TensorData, binary};
use serde::Serialize;
use serde::ser::SerializeSeq;

/// An encoded response body; `json_len` is set whenever an output went out as binary data (even an
/// empty one), so the client knows where the JSON header ends.
#[derive(Debug)]
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

#[derive(Serialize)]
struct WireResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<WireOutput<'a>>,
}

#[derive(Serialize)]
struct WireOutput<'a> {
    name: &'a str,
    datatype: DataType,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

/// Serializes typed storage as a flat JSON array (FP16/BF16 as numbers).
struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        match self.0 {
            TensorData::Bool(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Uint64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int8(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int16(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Int64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Fp16(v) => v.iter().try_for_each(|x| seq.serialize_element(&x.to_f32()))?,
            TensorData::Bf16(v) => v.iter().try_for_each(|x| seq.serialize_element(&x.to_f32()))?,
            TensorData::Fp32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Fp64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Bytes(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
        }
        seq.end()
    }
}

/// Encodes `outputs` (one per entry of `requested`, same order) for the client.
pub fn encode_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    requested: &[OutputRequest],
) -> EncodedResponse {
    let binary_of = |t: &Tensor| requested.iter().find(|r| r.name == t.name).is_some_and(|r| r.binary);
    let wire = WireResponse {
        model_name,
        model_version,
        id,
        outputs: outputs
            .iter()
            .map(|t| {
                let bin = binary_of(t);
                WireOutput {
                    name: &t.name,
                    datatype: t.data.datatype(),
                    shape: &t.shape,
                    parameters: bin.then(|| BinaryParams { binary_data_size: binary::encoded_len(&t.data) }),
                    data: (!bin).then_some(JsonData(&t.data)),
                }
            })
            .collect(),
    };
    let any_binary = outputs.iter().any(binary_of);
    let binary_len: usize = outputs.iter().filter(|t| binary_of(t)).map(|t| binary::encoded_len(&t.data)).sum();
    let mut body = Vec::with_capacity(256 + binary_len + if any_binary { 0 } else { 16 * total_len(outputs) });
    // Writing plain structs and numbers into a Vec cannot fail.
    serde_json::to_writer(&mut body, &wire).unwrap_or_default();
    // An output announced with `binary_data_size` (even 0) needs the header length, or the client has
    // no binary part to read it from.
    if !any_binary {
        return EncodedResponse { body, json_len: None };
    }
    let json_len = body.len();
    for t in outputs.iter().filter(|t| binary_of(t)) {
        binary::encode(&t.data, &mut body);
    }
    EncodedResponse { body, json_len: Some(json_len) }
}

fn total_len(outputs: &[Tensor]) -> usize {
    outputs.iter().map(|t| t.data.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, data: TensorData) -> Tensor {
        Tensor { name: name.into(), shape: vec![data.len()], data }
    }

    #[test]
    fn json_response_carries_name_version_id_and_data() {
        let outs = [out("y", TensorData::Fp32(vec![1.5, -2.0]))];
        let req = [OutputRequest { name: "y".into(), binary: false }];
        let r = encode_response("m", "3", Some("abc"), &outs, &req);
        assert_eq!(r.json_len, None);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model_name":"m","model_version":"3","id":"abc",
                "outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[1.5,-2.0]}]})
        );
    }

    #[test]
    fn binary_outputs_follow_the_json_header() {
        let outs = [out("a", TensorData::Int32(vec![7])), out("s", TensorData::Bytes(vec!["hi".into()]))];
        let req = [OutputRequest { name: "a".into(), binary: false }, OutputRequest { name: "s".into(), binary: true }];
        let r = encode_response("m", "1", None, &outs, &req);
        let n = r.json_len.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([7]));
        assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 6);
        assert!(v["outputs"][1].get("data").is_none());
        assert_eq!(&r.body[n..], &[2, 0, 0, 0, b'h', b'i']);
    }

    /// Found by the round-trip property test: an empty binary output used to come back without the
    /// header length, so a client saw `binary_data_size` but no binary part.
    #[test]
    fn an_empty_binary_output_still_reports_the_header_length() {
        let outs = [Tensor { name: "e".into(), shape: vec![0, 3], data: TensorData::Fp32(vec![]) }];
        let req = [OutputRequest { name: "e".into(), binary: true }];
        let r = encode_response("m", "1", None, &outs, &req);
        assert_eq!(r.json_len, Some(r.body.len()));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 0);
    }

    #[test]
    fn half_precision_goes_out_as_numbers() {
        let outs = [out("h", TensorData::Fp16(vec![half::f16::from_f32(0.5)]))];
        let req = [OutputRequest { name: "h".into(), binary: false }];
        let r = encode_response("m", "1", None, &outs, &req);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5]));
    }
}
