//! Why a configuration file cannot be used: it could not be read, it is not valid YAML for its schema, a
//! value cannot work, or Triton's `config.pbtxt` is wrong. Every message names the file and the field.

use crate::pbtxt::PbtxtError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the I/O error is part of the message, not a separate cause, so
    /// `{:#}` chains do not say it twice).
    #[error("{file}: {error}")]
    Read { file: String, error: std::io::Error },
    /// YAML that does not fit the schema (serde's message names the field), not yet tied to a file.
    #[error("{0}")]
    Yaml(String),
    /// In `file`: YAML that does not fit the schema, or a value that cannot work.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error(transparent)]
    Pbtxt(#[from] PbtxtError),
}

impl ConfigError {
    /// The same error, said of `file` (YAML errors only; the others name their file already).
    pub(crate) fn in_file(self, file: impl Into<String>) -> Self {
        match self {
            Self::Yaml(message) => Self::Invalid { file: file.into(), message },
            other => other,
        }
    }
}
