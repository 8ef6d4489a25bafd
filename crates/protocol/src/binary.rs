//! Binary tensor data (Triton's extension): little-endian, row-major elements; BOOL as one byte; each
//! BYTES element a 4-byte little-endian length and that many bytes. Decoding copies each element once into
//! aligned typed storage; nothing is reserved beyond what the given bytes can hold.

use crate::{DataError, DataType, TensorData};
use half::{bf16, f16};

/// Decodes exactly `count` elements of `dt` from `bytes`, which must be consumed completely.
pub(crate) fn decode(bytes: &[u8], dt: DataType, count: usize) -> Result<TensorData, DataError> {
    let Some(size) = dt.element_size() else {
        return decode_bytes(bytes, count).map(TensorData::Bytes);
    };
    // From here on `dt` has a fixed element size.
    let need = count.checked_mul(size).ok_or(DataError::CountOverflows)?;
    if bytes.len() != need {
        return Err(DataError::ByteCount { given: bytes.len(), count, datatype: dt, need });
    }
    macro_rules! le {
        ($variant:ident, $t:ty, $n:literal) => {
            TensorData::$variant(
                bytes.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect(),
            )
        };
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(
            bytes
                .iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    b => Err(DataError::Bool(b)),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::Uint16 => le!(Uint16, u16, 2),
        DataType::Int16 => le!(Int16, i16, 2),
        DataType::Fp16 => le!(Fp16, f16, 2),
        DataType::Bf16 => le!(Bf16, bf16, 2),
        DataType::Uint32 => le!(Uint32, u32, 4),
        DataType::Int32 => le!(Int32, i32, 4),
        DataType::Fp32 => le!(Fp32, f32, 4),
        DataType::Uint64 => le!(Uint64, u64, 8),
        DataType::Int64 => le!(Int64, i64, 8),
        DataType::Fp64 => le!(Fp64, f64, 8),
        DataType::Bytes => return decode_bytes(bytes, count).map(TensorData::Bytes),
    })
}

/// Splits length-prefixed BYTES elements; each must be valid UTF-8 (ONNX string tensors are).
fn decode_bytes(mut bytes: &[u8], count: usize) -> Result<Vec<String>, DataError> {
    let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
    while !bytes.is_empty() {
        if out.len() == count {
            return Err(DataError::BytesLeft { left: bytes.len(), count });
        }
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or(DataError::PrefixCut)?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(DataError::BytesClaim { index: out.len(), claimed: len, remain: rest.len() });
        }
        let (elem, rest) = rest.split_at(len);
        let s = std::str::from_utf8(elem).map_err(|error| DataError::Utf8 { index: out.len(), error })?;
        out.push(s.to_owned());
        bytes = rest;
    }
    if out.len() != count {
        return Err(DataError::BytesCount { given: out.len(), count });
    }
    Ok(out)
}

/// Counts the length-prefixed BYTES elements in `bytes` (for raw single-input requests).
pub(crate) fn count_bytes_elements(mut bytes: &[u8]) -> Result<usize, DataError> {
    let mut n = 0usize;
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        bytes = rest.get(len..).ok_or(DataError::BytesPastEnd)?;
        n += 1;
    }
    if !bytes.is_empty() {
        return Err(DataError::PrefixCut);
    }
    Ok(n)
}

/// Appends the binary encoding of `data` to `out`.
pub(crate) fn encode(data: &TensorData, out: &mut Vec<u8>) {
    macro_rules! le {
        ($v:expr) => {{
            out.reserve(std::mem::size_of_val(&$v[..]));
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }};
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => le!(v),
        TensorData::Uint16(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Fp16(v) => le!(v),
        TensorData::Bf16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// Size in bytes of `data`'s binary encoding.
pub(crate) fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|s| 4 + s.len()).sum(),
        other => other.len() * other.datatype().element_size().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_round_trips() {
        for dt in DataType::ALL {
            let mut data = TensorData::zeros(dt, 3);
            if let TensorData::Bytes(v) = &mut data {
                v[1] = "héllo".into();
            }
            let mut buf = Vec::new();
            encode(&data, &mut buf);
            assert_eq!(buf.len(), encoded_len(&data));
            assert_eq!(decode(&buf, dt, 3).unwrap(), data, "{dt}");
        }
        let mut buf = Vec::new();
        encode(&TensorData::Fp32(vec![1.5, -2.0]), &mut buf);
        assert_eq!(buf, [0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn sizes_that_do_not_add_up_are_refused() {
        assert!(decode(&[0; 7], DataType::Fp32, 2).unwrap_err().to_string().contains("need 8"));
        assert!(decode(&[0; 9], DataType::Fp32, 2).is_err());
        assert!(decode(&[2], DataType::Bool, 1).unwrap_err().to_string().contains("neither"));
        assert!(decode(&[0; 8], DataType::Fp32, usize::MAX).unwrap_err().to_string().contains("overflow"));
    }

    #[test]
    fn bytes_framing_is_checked() {
        let ok = [1, 0, 0, 0, b'a', 0, 0, 0, 0];
        assert_eq!(decode(&ok, DataType::Bytes, 2).unwrap(), TensorData::Bytes(vec!["a".into(), String::new()]));
        assert_eq!(count_bytes_elements(&ok), Ok(2));
        assert!(decode(&ok, DataType::Bytes, 1).unwrap_err().to_string().contains("left after"));
        assert!(decode(&ok, DataType::Bytes, 3).unwrap_err().to_string().contains("needs 3"));
        assert!(decode(&[255, 255, 255, 255, b'a'], DataType::Bytes, 1).unwrap_err().to_string().contains("claims"));
        assert!(decode(&[1, 0], DataType::Bytes, 1).unwrap_err().to_string().contains("cut short"));
        assert!(decode(&[2, 0, 0, 0, 0xc3, 0x28], DataType::Bytes, 1).unwrap_err().to_string().contains("UTF-8"));
        assert!(count_bytes_elements(&[9, 0, 0, 0, 1]).is_err());
    }
}
