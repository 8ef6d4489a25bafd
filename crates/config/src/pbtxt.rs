//! Triton's `config.pbtxt` (protobuf text format), so a Triton model repository serves unchanged: the
//! fields Switchyard supports become a `ModelConfig`, and the ones it ignores are named once in the log.
//! Declared inputs and outputs are checked against the loaded model as Triton does: a name the model
//! lacks, or a datatype or dims that differ, fails the load with the field named.

use crate::server::{BatchingConfig, ModelConfig};
use crate::rollout::Seconds;
use std::time::Duration;
use switchyard_backend::{Device, Signature};
use switchyard_core::VersionPolicy;
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

/// A parsed text-format value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Scalar(String),
    List(Vec<Value>),
    Message(Vec<(String, Value)>),
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
}

fn tokenize(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let len = match c {
            c if c.is_whitespace() => {
                rest = &rest[c.len_utf8()..];
                continue;
            }
            '#' => {
                rest = rest.find('\n').map_or("", |i| &rest[i..]);
                continue;
            }
            '{' | '}' | '[' | ']' | ':' | ',' | ';' => 1,
            '"' | '\'' => 1 + rest[1..].find(c).ok_or("unterminated string")? + 1,
            _ => rest.find(|ch: char| ch.is_whitespace() || "{}[]:,;#\"'".contains(ch)).unwrap_or(rest.len()),
        };
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(out)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }
    fn next(&mut self) -> Result<&'a str, String> {
        let t = self.peek().ok_or("unexpected end of file")?;
        self.at += 1;
        Ok(t)
    }
    fn expect(&mut self, want: &str) -> Result<(), String> {
        let got = self.next()?;
        if got == want { Ok(()) } else { Err(format!("expected '{want}', found '{got}'")) }
    }

    /// Fields until `end` (a closing brace, or the end of the file).
    fn message(&mut self, end: Option<&str>) -> Result<Vec<(String, Value)>, String> {
        let mut fields = Vec::new();
        while self.peek() != end {
            let name = self.next()?.to_owned();
            if self.peek() == Some(":") {
                self.at += 1;
            }
            fields.push((name, self.value()?));
            if matches!(self.peek(), Some("," | ";")) {
                self.at += 1;
            }
        }
        if end.is_some() {
            self.at += 1;
        }
        Ok(fields)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.next()? {
            "{" => Ok(Value::Message(self.message(Some("}"))?)),
            "[" => {
                let mut items = Vec::new();
                while self.peek() != Some("]") {
                    items.push(self.value()?);
                    if self.peek() == Some(",") {
                        self.at += 1;
                    }
                }
                self.expect("]")?;
                Ok(Value::List(items))
            }
            t => Ok(Value::Scalar(t.trim_matches(|c| c == '"' || c == '\'').to_owned())),
        }
    }
}

fn parse(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut p = Parser { tokens: tokenize(text)?, at: 0 };
    p.message(None)
}

/// Values of repeated fields and lists alike, flattened.
fn all<'v>(fields: &'v [(String, Value)], name: &str) -> Vec<&'v Value> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| match v {
            Value::List(items) => items.iter().collect(),
            other => vec![other],
        })
        .collect()
}

fn scalar<T: std::str::FromStr>(v: &Value, field: &str) -> Result<T, String> {
    match v {
        Value::Scalar(s) => s.parse().map_err(|_| format!("{field}: '{s}' is not a valid value")),
        _ => Err(format!("{field}: expected a value")),
    }
}

fn message(v: &Value) -> &[(String, Value)] {
    match v {
        Value::Message(f) => f,
        _ => &[],
    }
}

/// Reads a `config.pbtxt`; returns the config and the top-level fields it ignored.
pub fn model_config(text: &str) -> Result<(ModelConfig, Vec<String>), String> {
    let fields = parse(text).map_err(|e| format!("config.pbtxt: {e}"))?;
    let mut cfg = ModelConfig::default();
    let mut ignored = Vec::new();
    for (name, value) in &fields {
        match name.as_str() {
            // `input` and `output` are read after this loop, once every field is known.
            "name" | "platform" | "backend" | "input" | "output" => {}
            "max_batch_size" => cfg.max_batch_size = Some(scalar(value, "max_batch_size")?),
            "dynamic_batching" => {
                let d = message(value);
                let delay_us: u64 = all(d, "max_queue_delay_microseconds")
                    .first()
                    .map_or(Ok(0), |v| scalar(v, "max_queue_delay_microseconds"))?;
                let preferred = all(d, "preferred_batch_size")
                    .into_iter()
                    .map(|v| scalar(v, "preferred_batch_size"))
                    .collect::<Result<_, _>>()?;
                cfg.dynamic_batching = Some(BatchingConfig {
                    max_queue_delay: Some(Seconds(Duration::from_micros(delay_us))),
                    preferred_batch_size: preferred,
                });
            }
            "instance_group" => {
                let groups = all(&fields, "instance_group");
                cfg.instances = groups
                    .iter()
                    .map(|g| {
                        all(message(g), "count").first().map_or(Ok(1), |v| scalar::<usize>(v, "instance_group.count"))
                    })
                    .sum::<Result<usize, _>>()?
                    .max(1);
                if let Some(g) = groups
                    .iter()
                    .find(|g| all(message(g), "kind").first().is_some_and(|k| **k == Value::Scalar("KIND_GPU".into())))
                {
                    let gpu = all(message(g), "gpus").first().map_or(Ok(0), |v| scalar(v, "instance_group.gpus"))?;
                    cfg.device = Device::Cuda(gpu);
                }
            }
            "version_policy" => {
                let p = message(value);
                cfg.versions = match p.first() {
                    Some((kind, v)) if kind == "latest" => {
                        let n = all(message(v), "num_versions")
                            .first()
                            .map_or(Ok(1), |v| scalar(v, "version_policy.latest.num_versions"))?;
                        VersionPolicy::Latest { latest: n }
                    }
                    Some((kind, v)) if kind == "specific" => VersionPolicy::Specific(
                        all(message(v), "versions")
                            .into_iter()
                            .map(|v| scalar(v, "version_policy.specific.versions"))
                            .collect::<Result<_, _>>()?,
                    ),
                    Some((kind, _)) if kind == "all" => serde_norway::from_str("all").map_err(|e| e.to_string())?,
                    _ => VersionPolicy::default(),
                };
            }
            other => {
                if !ignored.iter().any(|i| i == other) {
                    ignored.push(other.to_owned());
                }
            }
        }
    }
    for kind in ["input", "output"] {
        for entry in all(&fields, kind) {
            cfg.declared.push(declared(kind, message(entry))?);
        }
    }
    Ok((cfg, ignored))
}

fn declared(kind: &'static str, fields: &[(String, Value)]) -> Result<Declared, String> {
    let name: String =
        all(fields, "name").first().map(|v| scalar(v, &format!("{kind}.name"))).ok_or(format!("{kind}: no name"))??;
    let datatype = match all(fields, "data_type").first() {
        None => None,
        Some(v) => {
            let t: String = scalar(v, &format!("{kind} '{name}' data_type"))?;
            let v2 = match t.strip_prefix("TYPE_") {
                Some("STRING") => Some(DataType::Bytes),
                Some(rest) => DataType::parse(rest),
                None => None,
            };
            Some(
                v2.ok_or_else(|| format!("{kind} '{name}': data_type {t} is not a Triton datatype Switchyard serves"))?,
            )
        }
    };
    let dims = all(fields, "dims");
    let dims = if dims.is_empty() {
        None
    } else {
        Some(dims.into_iter().map(|v| scalar(v, &format!("{kind} '{name}' dims"))).collect::<Result<_, _>>()?)
    };
    Ok(Declared { kind, name, datatype, dims })
}

/// Checks the config's declared inputs and outputs against the loaded model. `batched`: the model's
/// first dimension is the batch (max_batch_size > 0), which Triton's `dims` leave out. Tensors the config
/// does not declare are taken from the model, as Triton's auto-complete does.
pub fn check_declared(declared: &[Declared], sig: &Signature, batched: bool) -> Result<(), String> {
    for d in declared {
        let specs = if d.kind == "input" { &sig.inputs } else { &sig.outputs };
        let names = || specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
        let spec = specs.iter().find(|s| s.name == d.name).ok_or_else(|| {
            format!(
                "config.pbtxt: {} '{}' is not an {} of the model ({}s: {})",
                d.kind,
                d.name,
                d.kind,
                d.kind,
                names()
            )
        })?;
        if let Some(dt) = d.datatype.filter(|&dt| dt != spec.datatype) {
            return Err(format!(
                "config.pbtxt: {} '{}' has data_type {dt} but the model's is {}",
                d.kind, d.name, spec.datatype
            ));
        }
        let model_dims = if batched { spec.shape.get(1..).unwrap_or_default() } else { &spec.shape[..] };
        if let Some(dims) = &d.dims {
            let fits =
                dims.len() == model_dims.len() && dims.iter().zip(model_dims).all(|(&a, &b)| a == b || a < 0 || b < 0);
            if !fits {
                return Err(format!(
                    "config.pbtxt: {} '{}' has dims {dims:?} but the model's are {model_dims:?}{}",
                    d.kind,
                    d.name,
                    if batched { " (without the batch dimension, as max_batch_size > 0)" } else { "" }
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_harness_config_reads() {
        let (c, ignored) = model_config(
            "name: \"mlp_small\"\nbackend: \"onnxruntime\"\nmax_batch_size: 64\ninput [ { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] } ]\n\
             output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 10 ] } ]\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n",
        )
        .unwrap();
        assert_eq!((c.max_batch_size, c.instances, c.device), (Some(64), 2, Device::Cpu));
        assert!(ignored.is_empty());
        assert_eq!(c.declared.len(), 2);
        assert_eq!(
            c.declared[0],
            Declared { kind: "input", name: "input".into(), datatype: Some(DataType::Fp32), dims: Some(vec![64]) }
        );
    }

    #[test]
    fn declared_tensors_are_checked_against_the_model() {
        use switchyard_protocol::TensorSpec;
        let sig = Signature {
            platform: "onnxruntime_onnx",
            inputs: vec![TensorSpec::new("input", DataType::Fp32, vec![-1, 64])],
            outputs: vec![TensorSpec::new("output", DataType::Fp32, vec![-1, 10])],
        };
        let check =
            |pbtxt: &str, batched: bool| check_declared(&model_config(pbtxt).unwrap().0.declared, &sig, batched);
        check("input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] } ]", true).unwrap();
        check("input [ { name: \"input\" dims: [ -1, 64 ] } ]", false).unwrap();
        check("output { name: \"output\" data_type: TYPE_FP32 dims: [ -1 ] }", true).unwrap();
        let err = check("input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 64 ] } ]", true).unwrap_err();
        assert!(err.contains("input 'x' is not an input of the model (inputs: input)"), "{err}");
        let err = check("input [ { name: \"input\" data_type: TYPE_INT64 dims: [ 64 ] } ]", true).unwrap_err();
        assert!(err.contains("data_type INT64 but the model's is FP32"), "{err}");
        let err = check("output [ { name: \"output\" dims: [ 12 ] } ]", true).unwrap_err();
        assert!(err.contains("dims [12] but the model's are [10]"), "{err}");
        let err = check("input [ { name: \"input\" dims: [ 64 ] } ]", false).unwrap_err();
        assert!(err.contains("dims [64] but the model's are [-1, 64]"), "{err}");
        assert!(model_config("input [ { data_type: TYPE_FP32 } ]").unwrap_err().contains("input: no name"));
        assert!(model_config("input [ { name: \"a\" data_type: TYPE_QUAT } ]").unwrap_err().contains("TYPE_QUAT"));
        let (s, _) = model_config("input [ { name: \"t\" data_type: TYPE_STRING dims: [ 1 ] } ]").unwrap();
        assert_eq!(s.declared[0].datatype, Some(DataType::Bytes));
    }

    #[test]
    fn batching_versions_gpus_and_ignored_fields() {
        let (c, ignored) = model_config(
            "# a comment\nmax_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }\n\
             version_policy: { latest: { num_versions: 2 } }\ninstance_group [ { count: 1, kind: KIND_GPU, gpus: [ 1 ] } ]\n\
             optimization { cuda { graphs: true } }\nsequence_batching { }\n",
        )
        .unwrap();
        let b = c.dynamic_batching.unwrap();
        assert_eq!((b.max_queue_delay.unwrap().0, b.preferred_batch_size), (Duration::from_micros(100), vec![4, 8]));
        assert_eq!(c.versions, VersionPolicy::Latest { latest: 2 });
        assert_eq!(c.device, Device::Cuda(1));
        assert_eq!(ignored, ["optimization", "sequence_batching"]);
        let (s, _) = model_config("version_policy: { specific: { versions: [1, 3] } }").unwrap();
        assert_eq!(s.versions, VersionPolicy::Specific(vec![1, 3]));
        assert!(model_config("max_batch_size: lots").unwrap_err().contains("max_batch_size"));
        assert!(model_config("input [ { name: \"x\"").is_err());
    }
}
