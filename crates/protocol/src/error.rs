//! Why a request was refused. Every variant is the client's mistake (a 400 at the HTTP edge); the message
//! names the field so the client can fix it. `DataError` is the detail about one input's shape or data.

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

/// Why a shape or an input's data does not make a tensor of the model's datatype: the detail a
/// `ProtocolError` carries after it names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("shape {0:?} has a negative dimension")]
    NegativeDimension(Vec<i64>),
    #[error("shape {0:?} has more elements than can be addressed")]
    Unaddressable(Vec<i64>),
    #[error("shape {shape:?} does not match the model's {model:?} (-1 is any size)")]
    ShapeMismatch { shape: Vec<i64>, model: Vec<i64> },
    #[error("raw body holds {count} elements, which does not fit shape {shape:?}")]
    RawDoesNotFit { count: usize, shape: Vec<i64> },
    #[error("a raw binary request cannot fill shape {0:?}: more than one dynamic dimension")]
    RawManyDynamic(Vec<i64>),
    #[error("cannot join {0} and {1} data")]
    Mixed(crate::DataType, crate::DataType),
    #[error("element count overflows")]
    CountOverflows,
    #[error("{given} bytes given but {count} {datatype} elements need {need}")]
    ByteCount { given: usize, count: usize, datatype: crate::DataType, need: usize },
    #[error("BOOL element byte {0} is neither 0 nor 1")]
    Bool(u8),
    #[error("{left} bytes left after the {count} BYTES elements the shape holds")]
    BytesLeft { left: usize, count: usize },
    #[error("BYTES element length prefix is cut short")]
    PrefixCut,
    #[error("BYTES element {index} claims {claimed} bytes but only {remain} remain")]
    BytesClaim { index: usize, claimed: usize, remain: usize },
    #[error("BYTES element runs past the end of the body")]
    BytesPastEnd,
    #[error("BYTES element {index} is not valid UTF-8: {error}")]
    Utf8 { index: usize, error: std::str::Utf8Error },
    #[error("{given} BYTES elements given but the shape needs {count}")]
    BytesCount { given: usize, count: usize },
    /// JSON `data` that does not parse or fit, in serde_json's words (with the line and column).
    #[error("{0}")]
    Json(String),
    #[error("data has {given} elements but shape {shape:?} needs {count}")]
    JsonCount { given: usize, shape: Vec<usize>, count: usize },
}
