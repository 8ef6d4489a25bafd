//! Decoded tensors: a name, a datatype, a shape and typed, aligned element storage ready to hand to a
//! backend without another copy.

use crate::DataType;
use half::{bf16, f16};

/// Typed element storage, one variant per datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Bf16(Vec<bf16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    /// BYTES elements that travel to ONNX Runtime as strings, so they are valid UTF-8.
    Bytes(Vec<String>),
}

/// Expands `$body` once per variant with `$v` bound to the inner Vec.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Bf16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp16(_) => DataType::Fp16,
            Self::Bf16(_) => DataType::Bf16,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a number (None for BYTES or past the end): for statistics over outputs.
    pub fn number(&self, i: usize) -> Option<f64> {
        Some(match self {
            Self::Bool(v) => f64::from(u8::from(*v.get(i)?)),
            Self::Uint8(v) => f64::from(*v.get(i)?),
            Self::Uint16(v) => f64::from(*v.get(i)?),
            Self::Uint32(v) => f64::from(*v.get(i)?),
            Self::Uint64(v) => *v.get(i)? as f64,
            Self::Int8(v) => f64::from(*v.get(i)?),
            Self::Int16(v) => f64::from(*v.get(i)?),
            Self::Int32(v) => f64::from(*v.get(i)?),
            Self::Int64(v) => *v.get(i)? as f64,
            Self::Fp16(v) => f64::from(*v.get(i)?),
            Self::Bf16(v) => f64::from(*v.get(i)?),
            Self::Fp32(v) => f64::from(*v.get(i)?),
            Self::Fp64(v) => *v.get(i)?,
            Self::Bytes(_) => return None,
        })
    }

    /// Appends `other`'s elements; `other` must hold the same datatype.
    pub fn append(&mut self, other: TensorData) -> Result<(), crate::DataError> {
        macro_rules! cat {
            ($($v:ident),*) => {
                match (self, other) {
                    $((Self::$v(a), Self::$v(b)) => a.extend(b),)*
                    (a, b) => return Err(crate::DataError::Mixed(a.datatype(), b.datatype())),
                }
            };
        }
        cat!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64, Bytes);
        Ok(())
    }

    /// Splits off everything from element `at` on, leaving the first `at` elements here.
    pub fn split_off(&mut self, at: usize) -> TensorData {
        macro_rules! split {
            ($($v:ident),*) => {
                match self {
                    $(Self::$v(a) => Self::$v(a.split_off(at.min(a.len()))),)*
                }
            };
        }
        split!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64, Bytes)
    }

    /// `len` zero (or empty-string) elements of `dt`: used for warm-up inputs.
    pub fn zeros(dt: DataType, len: usize) -> Self {
        match dt {
            DataType::Bool => Self::Bool(vec![false; len]),
            DataType::Uint8 => Self::Uint8(vec![0; len]),
            DataType::Uint16 => Self::Uint16(vec![0; len]),
            DataType::Uint32 => Self::Uint32(vec![0; len]),
            DataType::Uint64 => Self::Uint64(vec![0; len]),
            DataType::Int8 => Self::Int8(vec![0; len]),
            DataType::Int16 => Self::Int16(vec![0; len]),
            DataType::Int32 => Self::Int32(vec![0; len]),
            DataType::Int64 => Self::Int64(vec![0; len]),
            DataType::Fp16 => Self::Fp16(vec![f16::ZERO; len]),
            DataType::Bf16 => Self::Bf16(vec![bf16::ZERO; len]),
            DataType::Fp32 => Self::Fp32(vec![0.0; len]),
            DataType::Fp64 => Self::Fp64(vec![0.0; len]),
            DataType::Bytes => Self::Bytes(vec![String::new(); len]),
        }
    }
}

/// A named tensor with its shape; `data.len()` always equals the product of `shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// What a model declares for one input or output: `-1` marks a dynamic dimension. An optional input
/// may be left out (a text model takes either `text` or the token ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub optional: bool,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>) -> Self {
        Self { name: name.into(), datatype, shape, optional: false }
    }

    pub fn optional(self) -> Self {
        Self { optional: true, ..self }
    }
}

/// Product of a shape's dimensions, refusing negative dimensions and overflow.
pub fn element_count(shape: &[i64]) -> Result<usize, crate::DataError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| crate::DataError::NegativeDimension(shape.to_vec()))?;
        acc.checked_mul(d).ok_or_else(|| crate::DataError::Unaddressable(shape.to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_refuses_negative_and_overflow() {
        assert_eq!(element_count(&[]), Ok(1));
        assert_eq!(element_count(&[2, 3, 0]), Ok(0));
        assert_eq!(element_count(&[4, 64]), Ok(256));
        assert!(element_count(&[-1, 4]).unwrap_err().to_string().contains("negative"));
        let err = element_count(&[i64::MAX, i64::MAX, 4]).unwrap_err().to_string();
        assert!(err.contains("more elements"), "{err}");
    }

    #[test]
    fn append_and_split_off_are_inverse() {
        let mut a = TensorData::Fp32(vec![1.0, 2.0]);
        a.append(TensorData::Fp32(vec![3.0])).unwrap();
        assert!(a.append(TensorData::Int8(vec![1])).is_err());
        let rest = a.split_off(1);
        assert_eq!((a, rest), (TensorData::Fp32(vec![1.0]), TensorData::Fp32(vec![2.0, 3.0])));
    }

    #[test]
    fn zeros_has_the_asked_datatype_and_length() {
        for dt in DataType::ALL {
            let z = TensorData::zeros(dt, 3);
            assert_eq!(z.datatype(), dt);
            assert_eq!(z.len(), 3);
        }
    }
}
