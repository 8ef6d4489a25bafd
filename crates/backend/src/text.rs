//! Settings of text models (`text:` in a model's config.yaml), here so that configuration can be read
//! without building the tokenizer.

use serde::Deserialize;

/// What to do with a text longer than the model takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Keep the first `max_length` tokens (what sentence-transformers does).
    #[default]
    Truncate,
    /// Refuse the request with a 400 naming the text.
    Reject,
}

/// Per-model text settings (`text:` in the model's config.yaml).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOptions {
    /// Tokens per text, special tokens included; default: the model's own limit.
    pub max_length: Option<usize>,
    #[serde(default)]
    pub truncation: Truncation,
    /// L2-normalise embeddings; default: as the model's modules.json says.
    pub normalize: Option<bool>,
    /// Tokens one model call may hold, padding included (texts × the longest text's tokens): a call
    /// over it is refused with a 400 naming the budget, so no request can ask for unbounded attention
    /// buffers [16384, as text-embeddings-inference's `max_batch_tokens`].
    pub max_batch_tokens: Option<usize>,
}

/// Tokens one call of a text model may hold unless its config says.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 16_384;

impl TextOptions {
    pub fn batch_tokens(&self) -> usize {
        self.max_batch_tokens.unwrap_or(DEFAULT_MAX_BATCH_TOKENS)
    }
}
