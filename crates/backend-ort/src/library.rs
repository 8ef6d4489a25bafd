//! Finding and initialising the ONNX Runtime shared library once per process, with an error that says
//! how to fix a missing library instead of ort's panic.

use std::path::{Path, PathBuf};

/// The process-wide ONNX Runtime environment.
#[derive(Clone)]
pub struct OrtEnvironment(ort::environment::Environment);

impl std::fmt::Debug for OrtEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrtEnvironment")
    }
}

impl OrtEnvironment {
    /// Loads the library at `path` and creates the environment. Call once, before any other ort use.
    pub fn init(path: &Path) -> Result<Self, LibraryError> {
        let builder =
            ort::init_from(path).map_err(|e| LibraryError::Load { path: path.to_owned(), message: e.to_string() })?;
        builder.with_name("switchyard").build().map(Self).map_err(|e| LibraryError::Start(e.to_string()))
    }

    pub(crate) fn inner(&self) -> &ort::environment::Environment {
        &self.0
    }
}

/// How to get the library, for the errors that say it is missing.
const FIX: &str = "install it with `make setup` (a project venv with `pip install onnxruntime==1.31.1`) \
                   or point --ort-dylib / ORT_DYLIB_PATH at libonnxruntime.so.1.31.1";

/// Why ONNX Runtime cannot be used (ort's own messages as text: its errors can hold what is not `Send`).
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("ONNX Runtime library {} does not exist: {}", .0.display(), FIX)]
    Missing(PathBuf),
    #[error("ONNX Runtime library not found: {}", FIX)]
    NotFound,
    #[error("cannot load ONNX Runtime from {}: {message}", .path.display())]
    Load { path: PathBuf, message: String },
    #[error("cannot start ONNX Runtime: {0}")]
    Start(String),
}

/// Where the ONNX Runtime library is: `explicit` (a flag or `ORT_DYLIB_PATH`), else the `onnxruntime`
/// wheel in a `.venv` in the working directory or beside the executable's ancestors (the project venv).
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, LibraryError> {
    if let Some(p) = explicit {
        return if p.is_file() { Ok(p.to_owned()) } else { Err(LibraryError::Missing(p.to_owned())) };
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.iter().find_map(|root| in_venv(&root.join(".venv"))).ok_or(LibraryError::NotFound)
}

fn in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten().find_map(|py| {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(capi)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
            .collect();
        libs.sort();
        libs.pop()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_library_says_how_to_fix_it() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH") && err.contains("make setup"), "{err}");
    }
}
