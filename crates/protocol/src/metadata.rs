//! Server and model metadata documents (`GET /v2`, `GET /v2/models/{m}`).

use crate::{DataType, TensorSpec};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: &'static [&'static str],
}

#[derive(Debug, Serialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl From<&TensorSpec> for TensorMetadata {
    fn from(s: &TensorSpec) -> Self {
        Self { name: s.name.clone(), datatype: s.datatype, shape: s.shape.clone(), optional: s.optional }
    }
}

#[derive(Debug, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}
