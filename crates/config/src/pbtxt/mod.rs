//! Triton's `config.pbtxt` (protobuf text format), so a Triton model repository serves unchanged: the
//! fields Switchyard supports become a `ModelConfig`, and the ones it ignores are named once in the log.
//! The text is read by a real protobuf text-format parser against Triton's own schema
//! (`proto/model_config.proto`), so what Triton reads reads the same here, and a field Triton does not
//! know is refused with its name and position, as Triton refuses it. Declared inputs and outputs are
//! checked against the loaded model as Triton does (see `declared`).

mod declared;
mod read;
#[cfg(test)]
mod tests;
mod text;

pub use declared::{Declared, Mismatch, check_declared};

use crate::rollout::Seconds;
use crate::server::{BatchingConfig, ModelConfig};
use prost_reflect::DynamicMessage;
use std::time::Duration;
use switchyard_backend::Device;
use switchyard_core::VersionPolicy;

/// Why a config.pbtxt cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PbtxtError {
    /// Not text format, or not Triton's `ModelConfig`: a field Triton does not know, a value of the
    /// wrong type, two members of one `oneof`. `near` is the line (or 80 characters of it).
    #[error("config.pbtxt line {line}, column {column}: {message}{}", quoted(near))]
    Syntax { line: usize, column: usize, message: String, near: String },
    /// A value Triton's schema takes but Switchyard cannot use; `field` is its path (`max_batch_size`,
    /// `input 'x' data_type`).
    #[error("config.pbtxt: {field}: {message}")]
    Invalid { field: String, message: String },
    /// The copy of Triton's schema built into Switchyard is unusable (a build problem, not the file's).
    #[error("config.pbtxt: Switchyard's built-in model_config.proto is unusable: {0}")]
    Schema(String),
}

fn quoted(near: &str) -> String {
    if near.is_empty() { String::new() } else { format!(" (in `{near}`)") }
}

impl PbtxtError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

/// The fields Switchyard acts on, each with the sub-fields it reads. Any other field that is set is
/// returned as ignored: a top-level one by name (`optimization`), a sub-field by path (`input.reshape`).
const USED: &[(&str, &[&str])] = &[
    ("name", &[]),
    ("platform", &[]),
    ("backend", &[]),
    ("max_batch_size", &[]),
    ("input", &["name", "data_type", "dims"]),
    ("output", &["name", "data_type", "dims"]),
    (
        "dynamic_batching",
        &["max_queue_delay_microseconds", "preferred_batch_size", "priority_levels", "default_priority_level"],
    ),
    ("instance_group", &["name", "kind", "count", "gpus"]),
    ("version_policy", &["latest", "all", "specific"]),
];

/// Reads a `config.pbtxt`; returns the config and the fields it ignored.
pub fn model_config(text: &str) -> Result<(ModelConfig, Vec<String>), PbtxtError> {
    let m = text::parse(text)?;
    let mut cfg = ModelConfig::default();
    if read::has(&m, "max_batch_size") {
        cfg.max_batch_size = Some(read::int(&m, "max_batch_size", "max_batch_size")?);
    }
    if let Some(d) = read::message(&m, "dynamic_batching")? {
        let delay_us = read::int(&d, "max_queue_delay_microseconds", "dynamic_batching.max_queue_delay_microseconds")?;
        cfg.dynamic_batching = Some(BatchingConfig {
            max_queue_delay: Some(Seconds(Duration::from_micros(delay_us))),
            preferred_batch_size: read::ints(&d, "preferred_batch_size", "dynamic_batching.preferred_batch_size")?,
            priority_levels: read::int(&d, "priority_levels", "dynamic_batching.priority_levels")?,
            default_priority_level: match read::int(
                &d,
                "default_priority_level",
                "dynamic_batching.default_priority_level",
            )? {
                0 => None,
                n => Some(n),
            },
        });
    }
    let groups = read::messages(&m, "instance_group")?;
    if !groups.is_empty() {
        (cfg.instances, cfg.device) = instances(&groups)?;
    }
    if let Some(p) = read::message(&m, "version_policy")? {
        cfg.versions = versions(&p)?;
    }
    for kind in ["input", "output"] {
        for entry in read::messages(&m, kind)? {
            cfg.declared.push(declared::declared(kind, &entry)?);
        }
    }
    Ok((cfg, ignored(&m)?))
}

/// Instances in all groups (a group's `count` defaults to 1, as in Triton), and the first GPU group's
/// device (its first `gpus` entry, else GPU 0).
fn instances(groups: &[DynamicMessage]) -> Result<(usize, Device), PbtxtError> {
    let mut total = 0usize;
    let mut device = Device::Cpu;
    for g in groups {
        let count: usize = read::int(g, "count", "instance_group.count")?;
        total = total.saturating_add(count.max(1));
        if device == Device::Cpu && read::enum_name(g, "kind")?.as_deref() == Some("KIND_GPU") {
            let gpus: Vec<u32> = read::ints(g, "gpus", "instance_group.gpus")?;
            device = Device::Cuda(gpus.first().copied().unwrap_or(0));
        }
    }
    Ok((total.max(1), device))
}

/// `version_policy`: `latest { num_versions }`, `all {}` or `specific { versions }`.
fn versions(p: &DynamicMessage) -> Result<VersionPolicy, PbtxtError> {
    if let Some(latest) = read::message(p, "latest")? {
        let field = "version_policy.latest.num_versions";
        let n: usize = read::int(&latest, "num_versions", field)?;
        if n == 0 {
            return Err(PbtxtError::invalid(field, "must be at least 1 (Triton would load no version)"));
        }
        return Ok(VersionPolicy::Latest { latest: n });
    }
    if read::has(p, "all") {
        return serde_norway::from_str("all").map_err(|e| PbtxtError::Schema(format!("version policy all: {e}")));
    }
    if let Some(specific) = read::message(p, "specific")? {
        return Ok(VersionPolicy::Specific(read::ints(&specific, "versions", "version_policy.specific.versions")?));
    }
    Ok(VersionPolicy::default())
}

/// The set fields Switchyard does not act on (see `USED`), in field-number order.
fn ignored(m: &DynamicMessage) -> Result<Vec<String>, PbtxtError> {
    let mut out: Vec<String> = Vec::new();
    for name in read::set_fields(m) {
        let Some((_, used)) = USED.iter().find(|(n, _)| *n == name) else {
            out.push(name);
            continue;
        };
        for entry in read::entries(m, &name)? {
            for sub in read::set_fields(&entry).into_iter().filter(|s| !used.contains(&s.as_str())) {
                let path = format!("{name}.{sub}");
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    Ok(out)
}
