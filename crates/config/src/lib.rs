//! Switchyard's configuration files, parsed and checked apart from the server so they can be fuzzed
//! and validated without building the serving stack: the server YAML (`server:` and `rollouts:`), a
//! model's `config.yaml`, and Triton's `config.pbtxt`.

pub mod coordination;
pub mod drift;
mod error;
pub mod experiment;
pub mod pbtxt;
pub mod protect;
pub mod rollout;
pub mod server;

pub use coordination::{CoordinationConfig, EtcdSection};
pub use drift::DriftConfig;
pub use error::ConfigError;
pub use experiment::{ExperimentConfig, FeedbackConfig};
pub use protect::InvalidField;
pub use server::{BatchingConfig, GrpcPort, GrpcPortError, ModelConfig, ServerConfig, ServerSection, TlsSection};
