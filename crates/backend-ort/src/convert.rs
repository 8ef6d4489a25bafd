//! Conversions between V2 tensors and ONNX Runtime values: element types, signatures, and data.

use ort::value::{DynValue, Outlet, Tensor as OrtTensor, TensorElementType as Ort, ValueType};
use switchyard_backend::BackendError;
use switchyard_protocol::{DataType, Tensor, TensorData, TensorSpec};

fn datatype_of(ty: Ort) -> Option<DataType> {
    Some(match ty {
        Ort::Bool => DataType::Bool,
        Ort::Uint8 => DataType::Uint8,
        Ort::Uint16 => DataType::Uint16,
        Ort::Uint32 => DataType::Uint32,
        Ort::Uint64 => DataType::Uint64,
        Ort::Int8 => DataType::Int8,
        Ort::Int16 => DataType::Int16,
        Ort::Int32 => DataType::Int32,
        Ort::Int64 => DataType::Int64,
        Ort::Float16 => DataType::Fp16,
        Ort::Bfloat16 => DataType::Bf16,
        Ort::Float32 => DataType::Fp32,
        Ort::Float64 => DataType::Fp64,
        Ort::String => DataType::Bytes,
        _ => return None,
    })
}

/// An input or output V2 cannot describe.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpecError {
    #[error("'{name}' has element type {element}, which V2 cannot carry")]
    Element { name: String, element: String },
    #[error("'{name}' is a {kind}, not a tensor; only tensor inputs and outputs are served")]
    NotTensor { name: String, kind: String },
}

/// The V2 description of a session input or output; types V2 cannot carry are a load error.
pub(crate) fn spec_of(outlet: &Outlet) -> Result<TensorSpec, SpecError> {
    let name = outlet.name();
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let datatype = datatype_of(*ty)
                .ok_or_else(|| SpecError::Element { name: name.to_owned(), element: format!("{ty:?}") })?;
            Ok(TensorSpec::new(name, datatype, shape.iter().map(|&d| d.max(-1)).collect()))
        }
        other => Err(SpecError::NotTensor { name: name.to_owned(), kind: format!("{other:?}") }),
    }
}

/// Moves request data into an ONNX Runtime value (no copy for numeric data).
pub(crate) fn to_value(data: TensorData, shape: &[usize]) -> Result<DynValue, BackendError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    macro_rules! owned {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v)).map(|t| t.into_dyn())
        };
    }
    let value = match data {
        TensorData::Bool(v) => owned!(v),
        TensorData::Uint8(v) => owned!(v),
        TensorData::Uint16(v) => owned!(v),
        TensorData::Uint32(v) => owned!(v),
        TensorData::Uint64(v) => owned!(v),
        TensorData::Int8(v) => owned!(v),
        TensorData::Int16(v) => owned!(v),
        TensorData::Int32(v) => owned!(v),
        TensorData::Int64(v) => owned!(v),
        TensorData::Fp16(v) => owned!(v),
        TensorData::Bf16(v) => owned!(v),
        TensorData::Fp32(v) => owned!(v),
        TensorData::Fp64(v) => owned!(v),
        TensorData::Bytes(v) => {
            if let Some(i) = v.iter().position(|s| s.contains('\0')) {
                return Err(BackendError::InvalidInput(format!(
                    "BYTES element {i} contains a NUL byte, which ONNX strings cannot hold"
                )));
            }
            OrtTensor::from_string_array((shape, &v[..])).map(|t| t.into_dyn())
        }
    };
    value.map_err(|e| BackendError::InvalidInput(e.to_string()))
}

/// Copies an output value out of ONNX Runtime.
pub(crate) fn extract(name: &str, value: &DynValue) -> Result<Tensor, BackendError> {
    let fail = |e: ort::Error| BackendError::Inference(format!("output '{name}': {e}"));
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(BackendError::Inference(format!("output '{name}' is not a tensor")));
    };
    macro_rules! copy {
        ($variant:ident, $t:ty) => {{
            let (shape, v) = value.try_extract_tensor::<$t>().map_err(fail)?;
            (shape.to_vec(), TensorData::$variant(v.to_vec()))
        }};
    }
    let (shape, data) = match ty {
        Ort::Bool => copy!(Bool, bool),
        Ort::Uint8 => copy!(Uint8, u8),
        Ort::Uint16 => copy!(Uint16, u16),
        Ort::Uint32 => copy!(Uint32, u32),
        Ort::Uint64 => copy!(Uint64, u64),
        Ort::Int8 => copy!(Int8, i8),
        Ort::Int16 => copy!(Int16, i16),
        Ort::Int32 => copy!(Int32, i32),
        Ort::Int64 => copy!(Int64, i64),
        Ort::Float16 => copy!(Fp16, half::f16),
        Ort::Bfloat16 => copy!(Bf16, half::bf16),
        Ort::Float32 => copy!(Fp32, f32),
        Ort::Float64 => copy!(Fp64, f64),
        Ort::String => {
            let (shape, v) = value.try_extract_strings().map_err(fail)?;
            (shape.to_vec(), TensorData::Bytes(v))
        }
        other => {
            return Err(BackendError::Inference(format!(
                "output '{name}' has element type {other:?}, which V2 cannot carry"
            )));
        }
    };
    Ok(Tensor { name: name.to_owned(), shape: shape.iter().map(|&d| d.max(0) as usize).collect(), data })
}
