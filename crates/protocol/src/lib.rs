//! The KServe V2 / Open Inference Protocol as Switchyard speaks it over HTTP and gRPC: wire types, datatypes,
//! request decoding (JSON and binary tensor data) validated against a model's signature, and response
//! encoding. Pure data in, data out: no sockets and no runtime, so every rule here is unit-tested.

mod binary;
mod datatype;
mod error;
mod json_data;
mod metadata;
mod request;
mod response;
mod structured;
mod tensor;

pub use datatype::DataType;
pub use error::{DataError, ProtocolError};
pub use metadata::{ModelMetadata, ServerMetadata, TensorMetadata};
pub use request::{DecodeLimits, InferRequest, OutputRequest, decode_request, decode_request_within};
pub use response::{EncodedResponse, encode_response};
pub use structured::{InputData, StructuredInput, StructuredRequest, decode_structured, raw_bytes};
pub use tensor::{Tensor, TensorData, TensorSpec, element_count};

/// Header that carries the length of the JSON part of a body with binary tensor data.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";
