//! The contract between the runtime and a model format. A backend is synchronous and owned by one worker
//! thread: the runtime never calls it from the async executor, and never from two threads at once, so an
//! implementation needs no locking of its own.

mod text;

use switchyard_protocol::{Tensor, TensorSpec};
pub use text::{DEFAULT_MAX_BATCH_TOKENS, TextOptions, Truncation};

/// What a loaded model declares: its platform name and its inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The V2 `platform` string, e.g. `onnxruntime_onnx`.
    pub platform: &'static str,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device name that is not `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device '{device}': '{index}' is not a GPU index")]
    Index { device: String, index: String },
    #[error("device '{0}' is not 'cpu' or 'cuda:N'")]
    Unknown(String),
}

impl std::str::FromStr for Device {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        match s.split_once(':') {
            None if s == "cpu" => Ok(Self::Cpu),
            None if s == "cuda" => Ok(Self::Cuda(0)),
            Some(("cuda", n)) => {
                n.parse().map(Self::Cuda).map_err(|_| DeviceError::Index { device: s.to_owned(), index: n.to_owned() })
            }
            _ => Err(DeviceError::Unknown(s.to_owned())),
        }
    }
}

/// Per-instance settings a backend honours when it loads a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: Device,
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, intra_op_threads: 1, inter_op_threads: 1 }
    }
}

/// Why a backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The model could not be loaded; the rest of the repository still serves.
    #[error("{0}")]
    Load(String),
    /// The inputs passed validation but the model refused them (the client's mistake).
    #[error("{0}")]
    InvalidInput(String),
    /// The model failed while computing (the server's problem).
    #[error("{0}")]
    Inference(String),
}

/// A loaded model instance.
pub trait Backend: Send {
    fn signature(&self) -> &Signature;

    /// Runs the model. `inputs` match the signature (names, datatypes, ranks, fixed dims); the result
    /// holds exactly the `outputs` asked for, in that order.
    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[&str]) -> Result<Vec<Tensor>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        assert!("cuda:x".parse::<Device>().is_err());
        assert_eq!("tpu".parse::<Device>().unwrap_err().to_string(), "device 'tpu' is not 'cpu' or 'cuda:N'");
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }
}
