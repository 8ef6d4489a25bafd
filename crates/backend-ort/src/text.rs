//! ONNX transformer models that take text: a `tokenizer.json` beside `model.onnx` (inputs `input_ids`,
//! `attention_mask`, optionally `token_type_ids`). Clients send either `text` (BYTES strings, tokenized
//! here on the worker thread) or the token ids themselves; the model's own outputs come back, plus
//! `embedding` pooled from `last_hidden_state` as the sentence-transformers files say.

use crate::{OrtBackend, OrtEnvironment};
use std::path::Path;
use switchyard_backend::{Backend, BackendError, LoadOptions, Signature};
use switchyard_protocol::{DataType, Tensor, TensorData, TensorSpec};
use switchyard_text::{SentenceConfig, TextEncoder, TextOptions, pool};

const IDS: &str = "input_ids";
const MASK: &str = "attention_mask";
const TYPES: &str = "token_type_ids";
const HIDDEN: &str = "last_hidden_state";

pub struct OrtTextModel {
    inner: OrtBackend,
    encoder: TextEncoder,
    sentence: SentenceConfig,
    normalize: bool,
    signature: Signature,
}

impl OrtTextModel {
    pub fn load(
        env: &OrtEnvironment,
        dir: &Path,
        opts: &LoadOptions,
        text: &TextOptions,
    ) -> Result<Self, BackendError> {
        let inner = OrtBackend::load(env, &dir.join("model.onnx"), opts)?;
        let sig = inner.signature().clone();
        if !sig.inputs.iter().any(|s| s.name == IDS) {
            return Err(BackendError::Load(format!(
                "{} has a tokenizer.json but the model has no '{IDS}' input",
                dir.display()
            )));
        }
        let sentence = SentenceConfig::read(dir)?;
        let max_length = text.max_length.or(sentence.max_seq_length).unwrap_or(512);
        let encoder = TextEncoder::load(&dir.join("tokenizer.json"), max_length, text.truncation, text.batch_tokens())?;
        let mut inputs = vec![TensorSpec::new("text", DataType::Bytes, vec![-1]).optional()];
        inputs.extend(sig.inputs.iter().cloned().map(TensorSpec::optional));
        let mut outputs = sig.outputs.clone();
        if let Some(h) = sig.outputs.iter().find(|o| o.name == HIDDEN && o.shape.len() == 3) {
            outputs.push(TensorSpec::new("embedding", DataType::Fp32, vec![-1, h.shape[2]]));
        }
        let signature = Signature { platform: sig.platform, inputs, outputs };
        Ok(Self { inner, encoder, sentence, normalize: text.normalize.unwrap_or(sentence.normalize), signature })
    }

    /// Token-id tensors for the model from texts, and the attention mask for pooling.
    fn tokenize(&self, texts: &[String]) -> Result<(Vec<Tensor>, Vec<u32>), BackendError> {
        let enc = self.encoder.encode(texts)?;
        let shape = vec![enc.batch, enc.seq];
        let wide = |v: &[u32]| TensorData::Int64(v.iter().map(|&x| i64::from(x)).collect());
        let has = |n: &str| self.inner.signature().inputs.iter().any(|s| s.name == n);
        let mut tensors = vec![Tensor { name: IDS.into(), shape: shape.clone(), data: wide(&enc.ids) }];
        if has(MASK) {
            tensors.push(Tensor { name: MASK.into(), shape: shape.clone(), data: wide(&enc.mask) });
        }
        if has(TYPES) {
            tensors.push(Tensor { name: TYPES.into(), shape, data: wide(&enc.type_ids) });
        }
        Ok((tensors, enc.mask))
    }
}

impl Backend for OrtTextModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[&str]) -> Result<Vec<Tensor>, BackendError> {
        let (mut text, raw): (Vec<Tensor>, Vec<Tensor>) = inputs.into_iter().partition(|t| t.name == "text");
        let (model_inputs, mask) = match (text.pop(), raw.is_empty()) {
            (Some(_), false) => {
                return Err(BackendError::InvalidInput("give either 'text' or the token ids, not both".into()));
            }
            (Some(Tensor { data: TensorData::Bytes(texts), .. }), true) => {
                if texts.is_empty() {
                    return Err(BackendError::InvalidInput("input 'text' holds no strings".into()));
                }
                self.tokenize(&texts)?
            }
            (Some(_), true) => return Err(BackendError::InvalidInput("input 'text' must be BYTES".into())),
            (None, _) => {
                if let Some(missing) =
                    self.inner.signature().inputs.iter().find(|s| !raw.iter().any(|t| t.name == s.name))
                {
                    return Err(BackendError::InvalidInput(format!(
                        "input '{}' is required when 'text' is not given",
                        missing.name
                    )));
                }
                let mask = match raw.iter().find(|t| t.name == MASK).map(|t| &t.data) {
                    Some(TensorData::Int64(m)) => m.iter().map(|&x| u32::from(x != 0)).collect(),
                    _ => Vec::new(),
                };
                (raw, mask)
            }
        };
        let wants_embedding = outputs.contains(&"embedding");
        let mut needed: Vec<&str> = outputs.iter().copied().filter(|o| *o != "embedding").collect();
        if wants_embedding && !needed.contains(&HIDDEN) {
            needed.push(HIDDEN);
        }
        let mut produced = self.inner.infer(model_inputs, &needed)?;
        let embedding = if wants_embedding {
            let hidden = produced
                .iter()
                .find(|t| t.name == HIDDEN)
                .ok_or_else(|| BackendError::Inference(format!("no '{HIDDEN}' output")))?;
            let (TensorData::Fp32(h), &[b, t, d]) = (&hidden.data, &hidden.shape[..]) else {
                return Err(BackendError::Inference(format!("'{HIDDEN}' is not FP32 [batch, seq, dim]")));
            };
            let mask = if mask.len() == b * t { mask } else { vec![1; b * t] };
            let pooled = pool(h, &mask, b, t, d, self.sentence.pooling, self.normalize);
            Some(Tensor { name: "embedding".into(), shape: vec![b, d], data: TensorData::Fp32(pooled) })
        } else {
            None
        };
        Ok(outputs
            .iter()
            .filter_map(|name| match *name {
                "embedding" => embedding.clone(),
                other => produced.iter().position(|t| t.name == other).map(|i| produced.swap_remove(i)),
            })
            .collect())
    }
}
