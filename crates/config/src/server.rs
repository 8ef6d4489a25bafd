//! Configuration files: the server's YAML config (`--config`) and each model's `config.yaml`. Unknown
//! fields are refused with the field named, so a typo is a clear error rather than a silent default.

use crate::ConfigError;
use serde::Deserialize;
use std::path::Path;
use switchyard_backend::Device;
use switchyard_core::VersionPolicy;

/// The server config file. Every field is optional; flags and environment variables win over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub rollouts: Vec<crate::rollout::RolloutConfig>,
    #[serde(default)]
    pub rate_limits: Vec<crate::protect::RateLimitConfig>,
    #[serde(default)]
    pub coordination: crate::coordination::CoordinationConfig,
    #[serde(default)]
    pub feedback: crate::experiment::FeedbackConfig,
}

/// `server:`: what a flag or `SWITCHYARD_*` variable can also set (they win). Read at start only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub max_request_bytes: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub strict_readiness: Option<bool>,
    pub max_header_bytes: Option<usize>,
    pub max_elements: Option<usize>,
    pub max_bytes_element: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    pub header_read_timeout: Option<crate::rollout::Seconds>,
    pub body_read_timeout: Option<crate::rollout::Seconds>,
    pub tls: Option<TlsSection>,
    /// gRPC's port (default 8001; 0 picks a free one; `off`).
    pub grpc_port: Option<GrpcPort>,
}

/// `server.tls:`: serve HTTPS with this certificate chain and private key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = format!("config {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { file: file.clone(), error })?;
        Self::parse(&text).map_err(|e| e.in_file(file))
    }

    /// Parses the config's text; every value is checked by type here and by `rollouts::specs` after.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        parse_yaml(text)
    }
}

/// A model's `config.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Largest first dimension a request may have; `0` means the model has no batch dimension.
    /// Unset: `switchyard_runtime::DEFAULT_MAX_BATCH_SIZE` when every input and output has a dynamic first
    /// dimension, else 0.
    pub max_batch_size: Option<usize>,
    #[serde(default = "one")]
    pub instances: usize,
    #[serde(default = "one")]
    pub intra_op_threads: usize,
    #[serde(default = "one")]
    pub inter_op_threads: usize,
    #[serde(default = "cpu", deserialize_with = "device")]
    pub device: Device,
    #[serde(default)]
    pub versions: VersionPolicy,
    #[serde(default = "yes")]
    pub warmup: bool,
    #[serde(default = "queue")]
    pub queue_capacity: usize,
    /// Merge queued requests into one model call (Triton's `dynamic_batching`); off when absent.
    pub dynamic_batching: Option<BatchingConfig>,
    /// Text models (a tokenizer.json beside the weights): length limit, truncation, normalisation.
    #[serde(default)]
    pub text: switchyard_backend::TextOptions,
    /// Open a circuit breaker on this model's versions when they keep failing; off when absent.
    pub circuit_breaker: Option<crate::protect::BreakerConfig>,
    /// Another model that answers when this one cannot (down, breaker open, overloaded, timed out).
    pub fallback: Option<crate::protect::FallbackConfig>,
    /// A worker busy on one call for longer than this is replaced [120s].
    pub hang_timeout: Option<crate::rollout::Seconds>,
    /// Refuse outputs holding NaN or Inf (a 500, counted as the model's failure).
    #[serde(default)]
    pub reject_non_finite: bool,
    /// Compare served inputs and outputs with a reference distribution (PSI, KL, JS); off when absent.
    pub drift: Option<crate::drift::DriftConfig>,
    /// Inputs and outputs a Triton `config.pbtxt` declares, checked against the model once it loads.
    #[serde(skip)]
    pub declared: Vec<crate::pbtxt::Declared>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            max_batch_size: None,
            instances: 1,
            intra_op_threads: 1,
            inter_op_threads: 1,
            device: Device::Cpu,
            versions: VersionPolicy::default(),
            warmup: true,
            queue_capacity: queue(),
            text: Default::default(),
            dynamic_batching: None,
            circuit_breaker: None,
            fallback: None,
            hang_timeout: None,
            reject_non_finite: false,
            drift: None,
            declared: Vec::new(),
        }
    }
}

/// `dynamic_batching:` in a model's config.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// How long a request may wait for others to join it (`100us`, `2ms`); default 0: take only what is
    /// already queued when an instance frees up.
    pub max_queue_delay: Option<crate::rollout::Seconds>,
    /// Batch sizes to run at as soon as they are reached.
    #[serde(default)]
    pub preferred_batch_size: Vec<usize>,
    /// Client priority levels (Triton's): a request's `priority` parameter picks one, 1 first; the queue
    /// serves a level only when every level before it is empty. 0 (the default) keeps one level.
    #[serde(default)]
    pub priority_levels: u32,
    /// The level of a request without a `priority` (or with 0, or one past the last level); default:
    /// the last level.
    pub default_priority_level: Option<u32>,
}

impl ModelConfig {
    /// Reads `<model dir>/config.yaml`, else Triton's `config.pbtxt` (fields Switchyard does not
    /// support are named in a warning), else every default.
    pub fn load(model_dir: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { file: "config.yaml".into(), message };
        let path = model_dir.join("config.yaml");
        let pbtxt = model_dir.join("config.pbtxt");
        let cfg: Self = match std::fs::read_to_string(&path) {
            Ok(text) => {
                if pbtxt.exists() {
                    tracing::info!(model = %model_dir.display(), "config.yaml wins over config.pbtxt");
                }
                parse_yaml(&text).map_err(|e| e.in_file("config.yaml"))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_to_string(&pbtxt) {
                Ok(text) => {
                    let (cfg, ignored) = crate::pbtxt::model_config(&text)?;
                    if !ignored.is_empty() {
                        tracing::warn!(model = %model_dir.display(), ignored = ?ignored, "config.pbtxt fields Switchyard does not support");
                    }
                    cfg
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
                Err(error) => return Err(ConfigError::Read { file: "config.pbtxt".into(), error }),
            },
            Err(error) => return Err(ConfigError::Read { file: "config.yaml".into(), error }),
        };
        for (field, value) in [
            ("instances", cfg.instances),
            ("intra_op_threads", cfg.intra_op_threads),
            ("queue_capacity", cfg.queue_capacity),
        ] {
            if value == 0 {
                return Err(invalid(format!("{field} must be at least 1")));
            }
        }
        if let Some(b) = &cfg.circuit_breaker {
            b.policy().map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(problem) = cfg.drift.as_ref().and_then(crate::drift::DriftConfig::problem) {
            return Err(invalid(problem));
        }
        Ok(cfg)
    }
}

fn parse_yaml<T: for<'de> Deserialize<'de> + Default>(text: &str) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_norway::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn queue() -> usize {
    1024
}
fn cpu() -> Device {
    Device::Cpu
}
fn device<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_ports_parse_from_flags_and_files() {
        assert_eq!("8001".parse::<GrpcPort>(), Ok(GrpcPort::Port(8001)));
        assert_eq!("off".parse::<GrpcPort>(), Ok(GrpcPort::Off));
        assert_eq!("80a".parse::<GrpcPort>().unwrap_err().to_string(), "'80a' is not a port (0-65535) or 'off'");
        let c: ServerConfig = parse_yaml("server:\n  grpc_port: false\n").unwrap();
        assert_eq!(c.server.grpc_port, Some(GrpcPort::Off));
        assert!(parse_yaml::<ServerConfig>("server:\n  grpc_port: lots\n").unwrap_err().to_string().contains("'lots'"));
    }

    #[test]
    fn model_config_reads_every_field_and_refuses_typos() {
        let c: ModelConfig = parse_yaml(
            "max_batch_size: 8\ninstances: 2\nintra_op_threads: 3\ndevice: cuda:1\nversions: all\nwarmup: false\n",
        )
        .unwrap();
        assert_eq!(
            (c.max_batch_size, c.instances, c.intra_op_threads, c.device, c.warmup),
            (Some(8), 2, 3, Device::Cuda(1), false)
        );
        assert!(parse_yaml::<ModelConfig>("instnces: 2").unwrap_err().to_string().contains("instnces"));
        assert!(parse_yaml::<ModelConfig>("device: tpu").unwrap_err().to_string().contains("tpu"));
        let d: ModelConfig = parse_yaml("").unwrap();
        assert_eq!(d.instances, 1);
    }

    #[test]
    fn server_config_refuses_unknown_fields() {
        let c: ServerConfig = parse_yaml("server:\n  max_request_bytes: 10\n").unwrap();
        assert_eq!(c.server.max_request_bytes, Some(10));
        assert!(
            parse_yaml::<ServerConfig>("server:\n  max_bytes: 10\n").unwrap_err().to_string().contains("max_bytes")
        );
    }
}

/// Where gRPC is served: a port (`0` picks a free one), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcPort {
    Off,
    Port(u16),
}

impl GrpcPort {
    /// Triton's gRPC port.
    pub const DEFAULT: Self = Self::Port(8001);
}

impl std::fmt::Display for GrpcPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Port(p) => write!(f, "{p}"),
        }
    }
}

/// A `--grpc-port` value that is neither a port nor `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a port (0-65535) or 'off'")]
pub struct GrpcPortError(String);

impl std::str::FromStr for GrpcPort {
    type Err = GrpcPortError;
    fn from_str(s: &str) -> Result<Self, GrpcPortError> {
        match s.trim() {
            "off" | "none" | "false" => Ok(Self::Off),
            n => n.parse().map(Self::Port).map_err(|_| GrpcPortError(s.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for GrpcPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(u16),
            Word(String),
            Flag(bool),
        }
        match Raw::deserialize(d)? {
            Raw::Port(p) => Ok(Self::Port(p)),
            Raw::Flag(false) => Ok(Self::Off),
            Raw::Flag(true) => Ok(Self::DEFAULT),
            Raw::Word(w) => w.parse().map_err(serde::de::Error::custom),
        }
    }
}
