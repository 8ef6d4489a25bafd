//! Server-side tokenization: strings in, padded token ids, type ids and attention mask out, with the
//! model's maximum length either truncating or refusing long texts (never a crash).

use std::path::Path;
use switchyard_backend::{BackendError, Truncation};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// A batch of texts as the model takes them: row-major `[batch, seq]`.
#[derive(Debug)]
pub struct Encoded {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub mask: Vec<u32>,
}

pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
    truncation: Truncation,
}

impl TextEncoder {
    /// Loads `tokenizer.json`, replacing whatever padding and truncation it ships with (MiniLM's pads
    /// every input to 128) by padding to the longest text in a batch.
    pub fn load(path: &Path, max_length: usize, truncation: Truncation) -> Result<Self, BackendError> {
        let load = |m: String| BackendError::Load(format!("{}: {m}", path.display()));
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        let truncation_params = match truncation {
            Truncation::Truncate => Some(TruncationParams { max_length, ..Default::default() }),
            Truncation::Reject => None,
        };
        tokenizer.with_truncation(truncation_params).map_err(|e| load(e.to_string()))?;
        Ok(Self { tokenizer, max_length, truncation })
    }

    pub fn encode(&self, texts: &[String]) -> Result<Encoded, BackendError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| BackendError::Inference(format!("tokenizer: {e}")))?;
        if self.truncation == Truncation::Reject
            && let Some((i, e)) = encodings
                .iter()
                .enumerate()
                .find(|(_, e)| e.get_attention_mask().iter().sum::<u32>() as usize > self.max_length)
        {
            let n: u32 = e.get_attention_mask().iter().sum();
            return Err(BackendError::InvalidInput(format!(
                "text {i} is {n} tokens long, over the model's {} (truncation: reject)",
                self.max_length
            )));
        }
        let seq = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| {
            encodings.iter().flat_map(|e| f(e).iter().copied()).collect::<Vec<u32>>()
        };
        Ok(Encoded {
            batch: encodings.len(),
            seq,
            ids: flat(tokenizers::Encoding::get_ids),
            type_ids: flat(tokenizers::Encoding::get_type_ids),
            mask: flat(tokenizers::Encoding::get_attention_mask),
        })
    }
}
