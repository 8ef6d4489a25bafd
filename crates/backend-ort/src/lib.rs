//! ONNX models through ONNX Runtime, loaded at run time from the library in the PyPI `onnxruntime` wheel
//! (`ort` with `load-dynamic`). Inputs and outputs come from the session's own metadata; request tensors
//! are moved into ONNX Runtime without a copy, and outputs are copied out once.

mod convert;
mod library;
mod text;

pub use library::{LibraryError, OrtEnvironment, find_library};
pub use text::OrtTextModel;

use convert::{extract, spec_of, to_value};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{OutputSelector, RunOptions, Session};
use std::path::Path;
use switchyard_backend::{Backend, BackendError, Device, LoadOptions, Signature};
use switchyard_protocol::Tensor;

/// One ONNX Runtime session, owned by one worker thread.
pub struct OrtBackend {
    session: Session,
    signature: Signature,
}

impl OrtBackend {
    /// Loads `model.onnx` with the given options; a device this build or machine cannot use is an error.
    pub fn load(env: &OrtEnvironment, path: &Path, opts: &LoadOptions) -> Result<Self, BackendError> {
        let session =
            build_session(env, path, opts).map_err(|e| BackendError::Load(format!("{}: {e}", path.display())))?;
        let specs = |outlets: &[ort::value::Outlet]| outlets.iter().map(spec_of).collect::<Result<Vec<_>, _>>();
        let signature = Signature {
            platform: "onnxruntime_onnx",
            inputs: specs(session.inputs()).map_err(|e| BackendError::Load(e.to_string()))?,
            outputs: specs(session.outputs()).map_err(|e| BackendError::Load(e.to_string()))?,
        };
        Ok(Self { session, signature })
    }
}

/// Why a session could not be built (ort's messages as text: its builder errors are not `Send`).
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Ort(String),
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    #[error("cuda:{0} is not a valid GPU index")]
    GpuIndex(u32),
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    #[error("cuda:{device}: {message}")]
    Cuda { device: u32, message: String },
    #[cfg_attr(feature = "cuda", allow(dead_code))]
    #[error("device cuda:{0} needs a build with the `cuda` feature (this one runs ONNX models on the CPU only)")]
    NoCuda(u32),
}

fn build_session(env: &OrtEnvironment, path: &Path, opts: &LoadOptions) -> Result<Session, SessionError> {
    // Builder errors carry the builder (not Send): keep the chain in an ort::Result function.
    fn configure(env: &OrtEnvironment, opts: &LoadOptions) -> ort::Result<SessionBuilder> {
        Ok(Session::builder(env.inner())?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(opts.intra_op_threads)?
            .with_inter_threads(opts.inter_op_threads)?)
    }
    let builder = configure(env, opts).map_err(|e| SessionError::Ort(e.to_string()))?;
    let mut builder = match opts.device {
        Device::Cpu => builder,
        Device::Cuda(n) => with_cuda(builder, n)?,
    };
    builder.commit_from_file(path).map_err(|e| SessionError::Ort(e.to_string()))
}

#[cfg(feature = "cuda")]
fn with_cuda(builder: SessionBuilder, device: u32) -> Result<SessionBuilder, SessionError> {
    let id = i32::try_from(device).map_err(|_| SessionError::GpuIndex(device))?;
    let ep = ort::ep::CUDA::default().with_device_id(id).build().error_on_failure();
    builder.with_execution_providers([ep]).map_err(|e| SessionError::Cuda { device, message: e.to_string() })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_: SessionBuilder, device: u32) -> Result<SessionBuilder, SessionError> {
    Err(SessionError::NoCuda(device))
}

impl Backend for OrtBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[&str]) -> Result<Vec<Tensor>, BackendError> {
        let values = inputs
            .into_iter()
            .map(|t| to_value(t.data, &t.shape).map(|v| (t.name, v)))
            .collect::<Result<Vec<_>, _>>()?;
        // Ask ONNX Runtime for a subset only when the client asked for one, so it can prune the graph.
        let options = match outputs.len() == self.signature.outputs.len() {
            true => None,
            false => {
                let selector = outputs.iter().fold(OutputSelector::no_default(), |s, o| s.with(*o));
                Some(RunOptions::new().map_err(|e| BackendError::Inference(e.to_string()))?.with_outputs(selector))
            }
        };
        let result = match &options {
            None => self.session.run(values),
            Some(options) => self.session.run_with_options(values, options),
        }
        .map_err(run_error)?;
        outputs
            .iter()
            .map(|name| {
                let value = result
                    .get(name)
                    .ok_or_else(|| BackendError::Inference(format!("model produced no output '{name}'")))?;
                extract(name, value)
            })
            .collect()
    }
}

/// ONNX Runtime says InvalidArgument when the inputs are at fault; anything else is the model's failure.
fn run_error(e: ort::Error) -> BackendError {
    match e.code() {
        ort::error::ErrorCode::InvalidArgument => BackendError::InvalidInput(e.to_string()),
        _ => BackendError::Inference(e.to_string()),
    }
}
