//! Why a request was refused. Every variant is the client's mistake (a 400 at the HTTP edge); the message
//! names the field so the client can fix it.

/// A request that does not follow the protocol or does not fit the model's signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The JSON header is not valid JSON or not a valid inference request.
    #[error("malformed request JSON: {0}")]
    Json(String),
    /// The binary tensor data framing does not add up.
    #[error("binary tensor data: {0}")]
    Framing(String),
    /// An input is missing, unknown, or its datatype, shape or data is wrong.
    #[error("input '{input}': {message}")]
    Input { input: String, message: String },
    /// A requested output is unknown or its parameters are wrong.
    #[error("output '{output}': {message}")]
    Output { output: String, message: String },
}

impl ProtocolError {
    /// An error about one input, naming it.
    pub fn input(input: &str, message: impl Into<String>) -> Self {
        Self::Input { input: input.to_owned(), message: message.into() }
    }
}
