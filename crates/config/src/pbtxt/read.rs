//! Typed reads of a parsed config's fields. The schema fixes each field's type, so a mismatch here
//! would be a mistake in this crate's copy of the schema: it is reported as `PbtxtError::Schema`, never
//! a panic. Numbers Switchyard needs as counts are checked to fit, with the field named.

use super::PbtxtError;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use std::borrow::Cow;

fn get<'m>(m: &'m DynamicMessage, name: &str) -> Result<Cow<'m, Value>, PbtxtError> {
    m.get_field_by_name(name)
        .ok_or_else(|| PbtxtError::Schema(format!("{} has no field {name}", m.descriptor().full_name())))
}

fn mismatch(m: &DynamicMessage, name: &str, want: &str) -> PbtxtError {
    PbtxtError::Schema(format!("{}.{name} is not {want}", m.descriptor().full_name()))
}

/// Whether the field is set: present, non-empty, or (without presence) not its default.
pub(super) fn has(m: &DynamicMessage, name: &str) -> bool {
    m.has_field_by_name(name)
}

pub(super) fn string(m: &DynamicMessage, name: &str) -> Result<String, PbtxtError> {
    get(m, name)?.as_str().map(str::to_owned).ok_or_else(|| mismatch(m, name, "a string"))
}

fn integer(m: &DynamicMessage, name: &str, v: &Value) -> Result<i128, PbtxtError> {
    match v {
        Value::I32(n) => Ok((*n).into()),
        Value::I64(n) => Ok((*n).into()),
        Value::U32(n) => Ok((*n).into()),
        Value::U64(n) => Ok((*n).into()),
        _ => Err(mismatch(m, name, "an integer")),
    }
}

/// An integer field's value, as `T`; `field` names it in the error when it does not fit.
pub(super) fn int<T: TryFrom<i128>>(m: &DynamicMessage, name: &str, field: &str) -> Result<T, PbtxtError> {
    let n = integer(m, name, &*get(m, name)?)?;
    fit(n, field)
}

/// A repeated integer field's values, each as `T`.
pub(super) fn ints<T: TryFrom<i128>>(m: &DynamicMessage, name: &str, field: &str) -> Result<Vec<T>, PbtxtError> {
    let v = get(m, name)?;
    let list = v.as_list().ok_or_else(|| mismatch(m, name, "a list"))?;
    list.iter().map(|v| fit(integer(m, name, v)?, field)).collect()
}

pub(super) fn i64s(m: &DynamicMessage, name: &str) -> Result<Vec<i64>, PbtxtError> {
    ints(m, name, name)
}

fn fit<T: TryFrom<i128>>(n: i128, field: &str) -> Result<T, PbtxtError> {
    T::try_from(n).map_err(|_| {
        let why = if n < 0 { format!("must not be negative, found {n}") } else { format!("{n} is too large") };
        PbtxtError::invalid(field, why)
    })
}

/// An enum field's value name (`KIND_GPU`); `None` for the zero value, which is also what an unset
/// field reads as. A number outside the enum is returned as the number.
pub(super) fn enum_name(m: &DynamicMessage, name: &str) -> Result<Option<String>, PbtxtError> {
    let n = get(m, name)?.as_enum_number().ok_or_else(|| mismatch(m, name, "an enum"))?;
    if n == 0 {
        return Ok(None);
    }
    let field = m.descriptor().get_field_by_name(name).ok_or_else(|| mismatch(m, name, "a field"))?;
    let named = field.kind().as_enum().and_then(|e| e.get_value(n)).map(|v| v.name().to_owned());
    Ok(Some(named.unwrap_or_else(|| n.to_string())))
}

/// A singular message field, if set.
pub(super) fn message(m: &DynamicMessage, name: &str) -> Result<Option<DynamicMessage>, PbtxtError> {
    if !has(m, name) {
        return Ok(None);
    }
    get(m, name)?.as_message().cloned().map(Some).ok_or_else(|| mismatch(m, name, "a message"))
}

/// A repeated message field's entries.
pub(super) fn messages(m: &DynamicMessage, name: &str) -> Result<Vec<DynamicMessage>, PbtxtError> {
    let v = get(m, name)?;
    let list = v.as_list().ok_or_else(|| mismatch(m, name, "a list"))?;
    list.iter().map(|v| v.as_message().cloned().ok_or_else(|| mismatch(m, name, "a list of messages"))).collect()
}

/// The messages a field holds, whether it is repeated or singular (none for other kinds of field).
pub(super) fn entries(m: &DynamicMessage, name: &str) -> Result<Vec<DynamicMessage>, PbtxtError> {
    match &*get(m, name)? {
        Value::List(list) => Ok(list.iter().filter_map(Value::as_message).cloned().collect()),
        Value::Message(one) => Ok(vec![one.clone()]),
        _ => Ok(Vec::new()),
    }
}

/// The names of the fields that are set, in field-number order.
pub(super) fn set_fields(m: &DynamicMessage) -> Vec<String> {
    m.descriptor().fields().filter(|f| m.has_field(f)).map(|f| f.name().to_owned()).collect()
}
