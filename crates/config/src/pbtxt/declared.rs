//! A config.pbtxt's `input` and `output` entries, and their check against the loaded model as Triton
//! does it: a name the model lacks, or a datatype or dims that differ, fails the load with the field named.

use super::{PbtxtError, read};
use prost_reflect::DynamicMessage;
use switchyard_backend::Signature;
use switchyard_protocol::DataType;

/// An `input` or `output` entry of a config.pbtxt.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// `input` or `output`.
    pub kind: &'static str,
    pub name: String,
    pub datatype: Option<DataType>,
    /// Without the batch dimension when `max_batch_size` > 0, as Triton writes them.
    pub dims: Option<Vec<i64>>,
}

/// Reads one `input` (`kind` "input") or `output` entry.
pub(super) fn declared(kind: &'static str, entry: &DynamicMessage) -> Result<Declared, PbtxtError> {
    let name = read::string(entry, "name")?;
    if name.is_empty() {
        return Err(PbtxtError::invalid(kind, "no name"));
    }
    let at = |field: &str| format!("{kind} '{name}' {field}");
    let datatype = match read::enum_name(entry, "data_type")? {
        None => None,
        Some(t) => {
            let served = match t.strip_prefix("TYPE_") {
                Some("STRING") => Some(DataType::Bytes),
                Some(rest) => DataType::parse(rest),
                None => None,
            };
            Some(served.ok_or_else(|| {
                PbtxtError::invalid(at("data_type"), format!("{t} is not a Triton datatype Switchyard serves"))
            })?)
        }
    };
    let dims = read::i64s(entry, "dims")?;
    let dims = if dims.is_empty() { None } else { Some(dims) };
    Ok(Declared { kind, name, datatype, dims })
}

/// A declared input or output that the loaded model does not match; the message starts `config.pbtxt:`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Mismatch {
    #[error("config.pbtxt: {kind} '{name}' is not an {kind} of the model ({kind}s: {})", .names.join(", "))]
    Missing { kind: &'static str, name: String, names: Vec<String> },
    #[error("config.pbtxt: {kind} '{name}' has data_type {declared} but the model's is {model}")]
    DataType { kind: &'static str, name: String, declared: DataType, model: DataType },
    #[error(
        "config.pbtxt: {kind} '{name}' has dims {declared:?} but the model's are {model:?}{}",
        if *.batched { " (without the batch dimension, as max_batch_size > 0)" } else { "" }
    )]
    Dims { kind: &'static str, name: String, declared: Vec<i64>, model: Vec<i64>, batched: bool },
}

/// Checks the config's declared inputs and outputs against the loaded model. `batched`: the model's
/// first dimension is the batch (max_batch_size > 0), which Triton's `dims` leave out. Tensors the config
/// does not declare are taken from the model, as Triton's auto-complete does.
pub fn check_declared(declared: &[Declared], sig: &Signature, batched: bool) -> Result<(), Mismatch> {
    for d in declared {
        let (kind, name) = (d.kind, d.name.clone());
        let specs = if kind == "input" { &sig.inputs } else { &sig.outputs };
        let spec = specs.iter().find(|s| s.name == d.name).ok_or_else(|| Mismatch::Missing {
            kind,
            name: name.clone(),
            names: specs.iter().map(|s| s.name.clone()).collect(),
        })?;
        if let Some(dt) = d.datatype.filter(|&dt| dt != spec.datatype) {
            return Err(Mismatch::DataType { kind, name, declared: dt, model: spec.datatype });
        }
        let model_dims = if batched { spec.shape.get(1..).unwrap_or_default() } else { &spec.shape[..] };
        if let Some(dims) = &d.dims {
            let fits =
                dims.len() == model_dims.len() && dims.iter().zip(model_dims).all(|(&a, &b)| a == b || a < 0 || b < 0);
            if !fits {
                return Err(Mismatch::Dims { kind, name, declared: dims.clone(), model: model_dims.to_vec(), batched });
            }
        }
    }
    Ok(())
}
