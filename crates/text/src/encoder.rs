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
    max_batch_tokens: usize,
}

/// Bytes of text one token can stand for, at most in practice (WordPiece turns a word of more than 100
/// characters into one unknown token): texts are cut at `max_length` times this before tokenizing, so a
/// megabyte of text costs no more than the part the model can read.
const BYTES_PER_TOKEN: usize = 128;

impl TextEncoder {
    /// Loads `tokenizer.json`, replacing whatever padding and truncation it ships with (MiniLM's pads
    /// every input to 128) by padding to the longest text in a batch.
    pub fn load(
        path: &Path,
        max_length: usize,
        truncation: Truncation,
        max_batch_tokens: usize,
    ) -> Result<Self, BackendError> {
        let load = |m: String| BackendError::Load(format!("{}: {m}", path.display()));
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams { strategy: PaddingStrategy::BatchLongest, ..Default::default() }));
        let truncation_params = match truncation {
            Truncation::Truncate => Some(TruncationParams { max_length, ..Default::default() }),
            Truncation::Reject => None,
        };
        tokenizer.with_truncation(truncation_params).map_err(|e| load(e.to_string()))?;
        if max_batch_tokens < max_length {
            return Err(load(format!(
                "text.max_batch_tokens {max_batch_tokens} is less than the {max_length} tokens of one text"
            )));
        }
        Ok(Self { tokenizer, max_length, truncation, max_batch_tokens })
    }

    pub fn encode(&self, texts: &[String]) -> Result<Encoded, BackendError> {
        if texts.len() > self.max_batch_tokens {
            return Err(self.over_budget(texts.len(), 1));
        }
        let cut = self.max_length.saturating_mul(BYTES_PER_TOKEN);
        let texts: Vec<String> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| match self.truncation {
                _ if t.len() <= cut => Ok(t.clone()),
                Truncation::Truncate => Ok(t[..t.floor_char_boundary(cut)].to_owned()),
                Truncation::Reject => Err(BackendError::InvalidInput(format!(
                    "text {i} is {} bytes long, more than the model's {} tokens can hold (truncation: reject)",
                    t.len(),
                    self.max_length
                ))),
            })
            .collect::<Result<_, _>>()?;
        let encodings =
            self.tokenizer.encode_batch(texts, true).map_err(|e| BackendError::Inference(format!("tokenizer: {e}")))?;
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
        if encodings.len() * seq > self.max_batch_tokens {
            return Err(self.over_budget(encodings.len(), seq));
        }
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

    fn over_budget(&self, texts: usize, seq: usize) -> BackendError {
        BackendError::InvalidInput(format!(
            "{texts} texts of up to {seq} tokens ({} with padding) are over the model's budget of {} tokens per call \
             (text.max_batch_tokens): send fewer texts per request",
            texts * seq,
            self.max_batch_tokens
        ))
    }
}
