//! Reads an input's JSON `data` (flat or nested, row-major) straight into typed storage, checking the
//! nesting against the shape and every value against the datatype's range as it goes. Nesting is bounded
//! by the shape's rank, so hostile depth cannot grow the stack, and storage is reserved from what the
//! body can hold, never from what the shape claims.

use crate::{DataError, DataType, TensorData};
use half::{bf16, f16};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use std::fmt;

/// Decodes `raw` (the text of a JSON `data` value) into `count` elements of `dt` laid out as `shape`.
pub(crate) fn decode(raw: &str, dt: DataType, shape: &[usize], count: usize) -> Result<TensorData, DataError> {
    // Each element takes at least two bytes of JSON ("1,"), which bounds what a lying shape can reserve.
    let cap = count.min(raw.len() / 2 + 1);
    macro_rules! go {
        ($variant:ident) => {{
            let mut out = Vec::with_capacity(cap);
            read(raw, shape, count, &mut out)?;
            TensorData::$variant(out)
        }};
    }
    Ok(match dt {
        DataType::Bool => go!(Bool),
        DataType::Uint8 => go!(Uint8),
        DataType::Uint16 => go!(Uint16),
        DataType::Uint32 => go!(Uint32),
        DataType::Uint64 => go!(Uint64),
        DataType::Int8 => go!(Int8),
        DataType::Int16 => go!(Int16),
        DataType::Int32 => go!(Int32),
        DataType::Int64 => go!(Int64),
        DataType::Fp16 => go!(Fp16),
        DataType::Bf16 => go!(Bf16),
        DataType::Fp32 => go!(Fp32),
        DataType::Fp64 => go!(Fp64),
        DataType::Bytes => go!(Bytes),
    })
}

fn read<T: JsonElement>(raw: &str, shape: &[usize], count: usize, out: &mut Vec<T>) -> Result<(), DataError> {
    if read_flat(raw.as_bytes(), count, out).is_some() {
        return Ok(());
    }
    out.clear();
    let mut de = serde_json::Deserializer::from_str(raw);
    let mut state = State { out, shape, count, layout: Layout::Unknown };
    let json = |e: serde_json::Error| DataError::Json(e.to_string());
    Level { state: &mut state, depth: 0 }.deserialize(&mut de).map_err(json)?;
    de.end().map_err(json)?;
    if state.out.len() != count {
        return Err(DataError::JsonCount { given: state.out.len(), shape: shape.to_vec(), count });
    }
    Ok(())
}

/// The common case, a flat array of plain numbers, read in one pass: each number is scanned and parsed
/// at once (correctly rounded, by `fast-float2`), about twice as fast as serde's visitor path. `raw` is
/// already known to be valid JSON. Anything else (nesting, strings, a value out of range, a wrong count)
/// answers `None`, and the serde path reads it again to give its precise error.
fn read_flat<T: JsonElement>(raw: &[u8], count: usize, out: &mut Vec<T>) -> Option<()> {
    let skip_ws = |mut i: usize| {
        while raw.get(i).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    if raw.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(i + 1);
    if raw.get(i) == Some(&b']') {
        return (count == 0).then_some(());
    }
    loop {
        if out.len() == count {
            return None;
        }
        let (value, used) = T::from_prefix(&raw[i..])?;
        out.push(value);
        i += used;
        i = skip_ws(i);
        match raw.get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b']') => break,
            _ => return None,
        }
    }
    (out.len() == count).then_some(())
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Unknown,
    Flat,
    Nested,
}

struct State<'s, T> {
    out: &'s mut Vec<T>,
    shape: &'s [usize],
    count: usize,
    layout: Layout,
}

struct Level<'a, 's, T> {
    state: &'a mut State<'s, T>,
    depth: usize,
}

impl<'de, T: JsonElement> DeserializeSeed<'de> for Level<'_, '_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<T: JsonElement> Level<'_, '_, T> {
    fn push<E: de::Error>(self, v: Result<T, ElementError>) -> Result<(), E> {
        let st = self.state;
        let rank = st.shape.len();
        if self.depth == 0 {
            return Err(E::custom("data must be an array"));
        }
        let flat_ok = self.depth == 1 && st.layout != Layout::Nested;
        if self.depth != rank && !flat_ok {
            return Err(E::custom(format!("nesting of data does not match shape {:?}", st.shape)));
        }
        if self.depth == 1 && rank != 1 {
            st.layout = Layout::Flat;
        }
        if st.out.len() >= st.count {
            return Err(E::custom(format!("data has more elements than shape {:?} holds", st.shape)));
        }
        st.out.push(v.map_err(E::custom)?);
        Ok(())
    }
}

impl<'de, T: JsonElement> Visitor<'de> for Level<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", T::NAME)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let st = self.state;
        let depth = self.depth;
        if depth > 0 {
            if st.layout == Layout::Flat || depth >= st.shape.len() {
                return Err(de::Error::custom(format!("nesting of data does not match shape {:?}", st.shape)));
            }
            st.layout = Layout::Nested;
        }
        let mut n = 0usize;
        while seq.next_element_seed(Level { state: &mut *st, depth: depth + 1 })?.is_some() {
            n += 1;
            if depth > 0 && n > st.shape[depth] {
                return Err(de::Error::custom(format!(
                    "nested data is longer than dimension {depth} of shape {:?}",
                    st.shape
                )));
            }
        }
        let want = st.shape.get(depth).copied();
        let nested_level = depth > 0 || st.layout == Layout::Nested || st.shape.len() == 1;
        if nested_level && want.is_some_and(|w| w != n) {
            return Err(de::Error::custom(format!(
                "nested data has {n} entries at dimension {depth} of shape {:?}",
                st.shape
            )));
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(Err(ElementError::Null { datatype: T::NAME }))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(format!("an object is not a {} value", T::NAME)))
    }
}

/// Why a JSON scalar is not an element of the datatype (told to serde, which adds where it was).
#[derive(Debug, thiserror::Error)]
enum ElementError {
    #[error("{what} is not a valid {datatype} value")]
    Wrong { what: String, datatype: &'static str },
    #[error("null is not a {datatype} value")]
    Null { datatype: &'static str },
    #[error("{value} is out of range for {datatype}")]
    OutOfRange { value: String, datatype: &'static str },
    #[error("{value} is not an integer (datatype {datatype})")]
    NotInteger { value: f64, datatype: &'static str },
}

/// How one JSON scalar becomes an element of a datatype; anything out of range is refused, never wrapped.
trait JsonElement: Sized {
    const NAME: &'static str;
    /// The number at the start of `text` and the bytes it took; `None` (always, for BOOL and BYTES) sends
    /// the whole array down the serde path.
    fn from_prefix(_text: &[u8]) -> Option<(Self, usize)> {
        None
    }
    fn wrong(what: impl fmt::Display) -> Result<Self, ElementError> {
        Err(ElementError::Wrong { what: what.to_string(), datatype: Self::NAME })
    }
    fn from_bool(v: bool) -> Result<Self, ElementError> {
        Self::wrong(v)
    }
    fn from_u64(v: u64) -> Result<Self, ElementError> {
        Self::wrong(v)
    }
    fn from_i64(v: i64) -> Result<Self, ElementError> {
        Self::wrong(v)
    }
    fn from_f64(v: f64) -> Result<Self, ElementError> {
        Self::wrong(v)
    }
    fn from_str(v: &str) -> Result<Self, ElementError> {
        Self::wrong(format_args!("string {v:?}"))
    }
}

impl JsonElement for bool {
    const NAME: &'static str = "BOOL";
    fn from_bool(v: bool) -> Result<Self, ElementError> {
        Ok(v)
    }
}

impl JsonElement for String {
    const NAME: &'static str = "BYTES";
    fn from_str(v: &str) -> Result<Self, ElementError> {
        Ok(v.to_owned())
    }
}

macro_rules! int_element {
    ($t:ty, $name:literal) => {
        impl JsonElement for $t {
            const NAME: &'static str = $name;
            fn from_prefix(text: &[u8]) -> Option<(Self, usize)> {
                let (value, used) = read_integer(text)?;
                Some((<$t>::try_from(value).ok()?, used))
            }
            fn from_u64(v: u64) -> Result<Self, ElementError> {
                <$t>::try_from(v).map_err(|_| ElementError::OutOfRange { value: v.to_string(), datatype: $name })
            }
            fn from_i64(v: i64) -> Result<Self, ElementError> {
                <$t>::try_from(v).map_err(|_| ElementError::OutOfRange { value: v.to_string(), datatype: $name })
            }
            fn from_f64(v: f64) -> Result<Self, ElementError> {
                Err(ElementError::NotInteger { value: v, datatype: $name })
            }
        }
    };
}
/// A JSON integer at the start of `text` (valid JSON), widened to i128; `None` for a fraction or exponent,
/// and for `-0`, which serde_json reads as the float -0.0: the serde path then refuses it as it refuses
/// `0.0`, so flat and nested data give the same answer.
fn read_integer(text: &[u8]) -> Option<(i128, usize)> {
    let negative = text.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let mut value: i128 = 0;
    while let Some(&d @ b'0'..=b'9') = text.get(i) {
        value = value.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
        i += 1;
    }
    if i == usize::from(negative) || matches!(text.get(i), Some(b'.' | b'e' | b'E')) || (negative && value == 0) {
        return None;
    }
    Some((if negative { -value } else { value }, i))
}

int_element!(u8, "UINT8");
int_element!(u16, "UINT16");
int_element!(u32, "UINT32");
int_element!(u64, "UINT64");
int_element!(i8, "INT8");
int_element!(i16, "INT16");
int_element!(i32, "INT32");
int_element!(i64, "INT64");

macro_rules! float_element {
    ($t:ty, $name:literal, $from:expr, $token:expr) => {
        impl JsonElement for $t {
            const NAME: &'static str = $name;
            fn from_prefix(text: &[u8]) -> Option<(Self, usize)> {
                let (x, used): ($t, usize) = $token(text)?;
                f64::from(x).is_finite().then_some((x, used))
            }
            fn from_u64(v: u64) -> Result<Self, ElementError> {
                <Self as JsonElement>::from_f64(v as f64)
            }
            fn from_i64(v: i64) -> Result<Self, ElementError> {
                <Self as JsonElement>::from_f64(v as f64)
            }
            fn from_f64(v: f64) -> Result<Self, ElementError> {
                let x: $t = $from(v);
                if f64::from(x).is_infinite() {
                    return Err(ElementError::OutOfRange { value: v.to_string(), datatype: $name });
                }
                Ok(x)
            }
        }
    };
}
float_element!(f32, "FP32", |v| v as f32, number::<f32>);
float_element!(f64, "FP64", |v| v, number::<f64>);
float_element!(f16, "FP16", f16::from_f64, |t| number::<f64>(t).map(|(x, n)| (f16::from_f64(x), n)));
float_element!(bf16, "BF16", bf16::from_f64, |t| number::<f64>(t).map(|(x, n)| (bf16::from_f64(x), n)));

/// A JSON number at the start of `text`, correctly rounded to `F`. Only a sign or digit may start one
/// (fast-float2 would also take `inf` and `nan`, which JSON has not).
fn number<F: fast_float2::FastFloat>(text: &[u8]) -> Option<(F, usize)> {
    match text.first() {
        Some(b'-' | b'0'..=b'9') => fast_float2::parse_partial(text).ok(),
        _ => None,
    }
}

#[cfg(test)]
#[path = "json_data_tests.rs"]
mod tests;
