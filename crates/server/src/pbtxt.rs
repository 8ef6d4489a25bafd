//! Triton's `config.pbtxt` (protobuf text format), so a Triton model repository serves unchanged: the
//! fields Switchyard supports become a `ModelConfig`, and the ones it ignores are named once in the log.

use crate::config::{BatchingConfig, ModelConfig};
use crate::rollout_config::Seconds;
use std::time::Duration;
use switchyard_backend::Device;
use switchyard_core::VersionPolicy;

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
    Ok((cfg, ignored))
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
