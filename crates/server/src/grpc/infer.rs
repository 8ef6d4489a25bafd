//! `ModelInfer` and `ModelStreamInfer`: a `ModelInferRequest` handed to the serving core as a decodable
//! request (raw contents, as tritonclient and perf_analyzer send, or typed `InferTensorContents`),
//! and the reply encoded with one `raw_output_contents` entry per output (what tritonclient reads).
//! The serving core decides everything else, exactly as for HTTP. On a stream, responses leave in
//! request order while up to `STREAM_IN_FLIGHT` requests run at once; a failed request answers with
//! `error_message` (and its id) and the stream goes on, as Triton does.

use super::GrpcState;
use crate::ApiError;
use bytes::Bytes;
use std::sync::Arc;
use switchyard_grpc::inference::infer_parameter::ParameterChoice;
use switchyard_grpc::inference::model_infer_response::InferOutputTensor;
use switchyard_grpc::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse,
};
use switchyard_protocol::{
    DataType, DecodeLimits, InferRequest, InputData, ProtocolError, StructuredInput, StructuredRequest, TensorData,
    TensorSpec, decode_structured, raw_bytes,
};
use switchyard_runtime::{Call, Decode, Metadata, Reply};
use tonic::metadata::MetadataMap;

/// Requests of one stream running at once (more wait, in order).
pub(super) const STREAM_IN_FLIGHT: usize = 64;

/// Serves one request through the serving core.
pub(super) async fn infer(
    state: &GrpcState,
    metadata: &MetadataMap,
    req: ModelInferRequest,
) -> Result<ModelInferResponse, ApiError> {
    let _permit = crate::routes::admission(&state.app).inspect_err(|_| {
        metrics::counter!("switchyard_grpc_requests_shed_total").increment(1);
    })?;
    let endpoints = state.app.endpoints();
    let version = (!req.model_version.is_empty()).then_some(req.model_version.clone());
    if version.is_some() || endpoints.rollout(&req.model_name).is_none() {
        endpoints.lookup(&req.model_name, version.as_deref())?;
    }
    // Forcing an arm is rare (tests, with the admin token): only then is the metadata copied.
    let forced = match metadata.contains_key(crate::routes::FORCE_ARM_HEADER) {
        true => crate::routes::forced_arm(&state.app, &metadata.clone().into_headers())?,
        false => None,
    };
    let model = req.model_name.clone();
    let call = Call {
        model: &model,
        version: version.as_deref(),
        request: Arc::new(GrpcRequest { req, limits: state.app.limits.decode }),
        metadata: &GrpcMetadata(metadata),
        forced,
    };
    Ok(respond(endpoints.infer(call).await?))
}

/// A stream request's answer: the response, or its error with the request's id.
pub(super) async fn stream_one(
    state: GrpcState,
    metadata: MetadataMap,
    req: ModelInferRequest,
) -> ModelStreamInferResponse {
    let id = req.id.clone();
    let start = std::time::Instant::now();
    let result = infer(&state, &metadata, req).await;
    let status = result.as_ref().map(|_| ()).map_err(|e| tonic::Status::new(e.grpc_code(), ""));
    super::observe::record("ModelStreamInfer", start, &status);
    match result {
        Ok(r) => ModelStreamInferResponse { error_message: String::new(), infer_response: Some(r) },
        Err(e) => ModelStreamInferResponse {
            error_message: e.to_string(),
            infer_response: Some(ModelInferResponse { id, ..Default::default() }),
        },
    }
}

struct GrpcRequest {
    req: ModelInferRequest,
    limits: DecodeLimits,
}

impl Decode for GrpcRequest {
    fn decode(&self, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<InferRequest, ProtocolError> {
        let r = &self.req;
        let raw = !r.raw_input_contents.is_empty();
        if raw && r.raw_input_contents.len() != r.inputs.len() {
            return Err(ProtocolError::Framing(format!(
                "{} raw_input_contents for {} inputs: send one per input, in order",
                r.raw_input_contents.len(),
                r.inputs.len()
            )));
        }
        let mut structured = Vec::with_capacity(r.inputs.len());
        for (i, input) in r.inputs.iter().enumerate() {
            let data = match (raw, &input.contents) {
                (true, Some(_)) => {
                    return Err(ProtocolError::input(
                        &input.name,
                        "has contents and raw_input_contents: send one or the other",
                    ));
                }
                (true, None) => InputData::Raw(&r.raw_input_contents[i]),
                (false, Some(c)) => typed(&input.name, &input.datatype, c)?,
                (false, None) => InputData::Missing,
            };
            structured.push(StructuredInput {
                name: &input.name,
                datatype: &input.datatype,
                shape: &input.shape,
                data,
            });
        }
        let outputs_asked = (!r.outputs.is_empty()).then(|| r.outputs.iter().map(|o| o.name.as_str()).collect());
        let request = StructuredRequest {
            id: (!r.id.is_empty()).then(|| r.id.clone()),
            inputs: structured,
            outputs: outputs_asked,
            timeout_us: unsigned(r, "timeout", "microseconds")?,
            priority: unsigned(r, "priority", "1 is the highest level")?,
        };
        decode_structured(request, inputs, outputs, &self.limits)
    }

    fn protocol(&self) -> switchyard_runtime::Protocol {
        switchyard_runtime::Protocol::Grpc
    }
}

/// An unsigned request parameter: `timeout` (microseconds) or `priority`, as Triton takes them (uint64,
/// or int64 as some clients send).
fn unsigned(r: &ModelInferRequest, name: &str, meaning: &str) -> Result<Option<u64>, ProtocolError> {
    match r.parameters.get(name).and_then(|p| p.parameter_choice.as_ref()) {
        None => Ok(None),
        Some(ParameterChoice::Int64Param(v)) if *v >= 0 => Ok(Some(*v as u64)),
        Some(ParameterChoice::Uint64Param(v)) => Ok(Some(*v)),
        Some(_) => Err(ProtocolError::Json(format!(
            "parameters.{name} must be a non-negative uint64_param or int64_param ({meaning})"
        ))),
    }
}

/// Typed contents: the field for the input's datatype (Triton's rules), converted to its elements.
fn typed<'a>(name: &str, datatype: &str, c: &'a InferTensorContents) -> Result<InputData<'a>, ProtocolError> {
    let Some(dt) = DataType::parse(datatype) else {
        return Err(ProtocolError::input(name, format!("datatype '{datatype}' is not a V2 datatype")));
    };
    let narrow = |bits: u32| {
        move |v: &i32| i64::from(*v).clamp(-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) == i64::from(*v)
    };
    let out_of_range =
        |what: &str| ProtocolError::input(name, format!("contents.{what} holds a value out of {dt}'s range"));
    let data = match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::Int8 if c.int_contents.iter().all(narrow(8)) => {
            TensorData::Int8(c.int_contents.iter().map(|&v| v as i8).collect())
        }
        DataType::Int16 if c.int_contents.iter().all(narrow(16)) => {
            TensorData::Int16(c.int_contents.iter().map(|&v| v as i16).collect())
        }
        DataType::Int8 | DataType::Int16 => return Err(out_of_range("int_contents")),
        DataType::Int32 => TensorData::Int32(c.int_contents.clone()),
        DataType::Int64 => TensorData::Int64(c.int64_contents.clone()),
        DataType::Uint8 if c.uint_contents.iter().all(|&v| v <= u32::from(u8::MAX)) => {
            TensorData::Uint8(c.uint_contents.iter().map(|&v| v as u8).collect())
        }
        DataType::Uint16 if c.uint_contents.iter().all(|&v| v <= u32::from(u16::MAX)) => {
            TensorData::Uint16(c.uint_contents.iter().map(|&v| v as u16).collect())
        }
        DataType::Uint8 | DataType::Uint16 => return Err(out_of_range("uint_contents")),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents.clone()),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents.clone()),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents.clone()),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents.clone()),
        DataType::Bytes => return Ok(InputData::Elements(c.bytes_contents.iter().map(Bytes::as_ref).collect())),
        DataType::Fp16 | DataType::Bf16 => {
            return Err(ProtocolError::input(name, format!("{dt} travels only as raw_input_contents")));
        }
    };
    Ok(InputData::Typed(data))
}

/// The reply as a `ModelInferResponse`: every output's bytes in `raw_output_contents`, in order; the arm
/// (through a rollout) and a fallback in `parameters`, as they are in HTTP headers.
fn respond(reply: Reply) -> ModelInferResponse {
    let Reply { request, outputs, name, version, arm, served_by, fallback } = reply;
    let mut parameters = std::collections::HashMap::new();
    let text = |s: String| InferParameter { parameter_choice: Some(ParameterChoice::StringParam(s)) };
    if let Some(arm) = arm {
        parameters.insert("x-switchyard-arm".to_owned(), text(arm.name().to_owned()));
    }
    if let Some(s) = served_by {
        parameters.insert("x-switchyard-model".to_owned(), text(s));
    }
    if let Some(f) = fallback {
        parameters.insert(crate::routes::FALLBACK_HEADER.to_owned(), text(f));
    }
    let mut tensors = Vec::with_capacity(outputs.len());
    let mut raw = Vec::with_capacity(outputs.len());
    for t in request.outputs.iter().filter_map(|o| outputs.iter().find(|t| t.name == o.name)) {
        tensors.push(InferOutputTensor {
            name: t.name.clone(),
            datatype: t.data.datatype().as_str().to_owned(),
            shape: t.shape.iter().map(|&d| d as i64).collect(),
            parameters: Default::default(),
            contents: None,
        });
        raw.push(Bytes::from(raw_bytes(&t.data)));
    }
    ModelInferResponse {
        model_name: name,
        model_version: version.to_string(),
        id: request.id.unwrap_or_default(),
        parameters,
        outputs: tensors,
        raw_output_contents: raw,
    }
}

/// The arm, the model behind it and a fallback, from the response's parameters into its metadata too
/// (as HTTP's headers; a stream's metadata is sent once, so there they are in the parameters only).
pub(super) fn tag(resp: &mut tonic::Response<ModelInferResponse>) {
    let tags: Vec<(&'static str, String)> = ["x-switchyard-arm", "x-switchyard-model", crate::routes::FALLBACK_HEADER]
        .into_iter()
        .filter_map(|key| match resp.get_ref().parameters.get(key)?.parameter_choice.as_ref()? {
            ParameterChoice::StringParam(v) => Some((key, v.clone())),
            _ => None,
        })
        .collect();
    for (key, value) in tags {
        if let Ok(v) = value.parse() {
            resp.metadata_mut().insert(key, v);
        }
    }
}

/// gRPC metadata (the same names as HTTP headers, lower case) for the rollout's assignment key.
struct GrpcMetadata<'a>(&'a MetadataMap);

impl Metadata for GrpcMetadata<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|v| v.as_bytes())
    }
}
