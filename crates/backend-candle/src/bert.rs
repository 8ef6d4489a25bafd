//! BERT-family sentence embeddings: token ids through `candle_transformers`' BertModel, pooled as the
//! model's sentence-transformers config says (mean, CLS or max over real tokens), optionally
//! L2-normalised. Input `text` (BYTES `[-1]`), output `embedding` (FP32 `[-1, hidden]`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use switchyard_backend::{Backend, BackendError, LoadOptions, Signature};
use switchyard_protocol::{DataType, Tensor as V2Tensor, TensorData, TensorSpec};
use switchyard_text::{Encoded, Pooling, SentenceConfig, TextEncoder, TextOptions};

pub struct BertEmbedder {
    model: BertModel,
    encoder: TextEncoder,
    pooling: Pooling,
    normalize: bool,
    device: Device,
    signature: Signature,
}

impl BertEmbedder {
    /// Loads `dir/{config.json, model.safetensors, tokenizer.json}`; an architecture other than BERT is
    /// a load error naming it.
    pub fn load(dir: &Path, opts: &LoadOptions, text: &TextOptions) -> Result<Self, BackendError> {
        let load = BackendError::Load;
        let config_path = dir.join("config.json");
        let json =
            std::fs::read_to_string(&config_path).map_err(|e| load(format!("{}: {e}", config_path.display())))?;
        let raw: serde_json::Value = serde_json::from_str(&json).map_err(|e| load(format!("config.json: {e}")))?;
        let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("(none)");
        if model_type != "bert" {
            return Err(load(format!("config.json model_type '{model_type}' is not supported (supported: bert)")));
        }
        let config: Config = serde_json::from_value(raw).map_err(|e| load(format!("config.json: {e}")))?;
        let device = match opts.device {
            switchyard_backend::Device::Cpu => Device::Cpu,
            switchyard_backend::Device::Cuda(n) => {
                Device::new_cuda(n as usize).map_err(|e| load(format!("device cuda:{n}: {e}")))?
            }
        };
        let weights = dir.join("model.safetensors");
        // Safety: the file is memory-mapped read-only; the repository must not be rewritten while it serves.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| load(format!("{}: {e}", weights.display())))?;
        let model = BertModel::load(vb, &config).map_err(|e| load(format!("{}: {e}", weights.display())))?;
        let sentence = SentenceConfig::read(dir)?;
        let own_limit = sentence.max_seq_length.unwrap_or(config.max_position_embeddings);
        let max_length = text.max_length.unwrap_or(own_limit).min(config.max_position_embeddings);
        let encoder = TextEncoder::load(&dir.join("tokenizer.json"), max_length, text.truncation)?;
        let signature = Signature {
            platform: "candle_safetensors",
            inputs: vec![TensorSpec::new("text", DataType::Bytes, vec![-1])],
            outputs: vec![TensorSpec::new("embedding", DataType::Fp32, vec![-1, config.hidden_size as i64])],
        };
        let normalize = text.normalize.unwrap_or(sentence.normalize);
        Ok(Self { model, encoder, pooling: sentence.pooling, normalize, device, signature })
    }

    /// Runs the model and the pooling on an encoded batch: `[batch, hidden]`, row-major.
    fn embed(&self, enc: Encoded) -> candle_core::Result<Vec<f32>> {
        let shape = (enc.batch, enc.seq);
        let ids = Tensor::from_vec(enc.ids, shape, &self.device)?;
        let types = Tensor::from_vec(enc.type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(enc.mask, shape, &self.device)?;
        let out = self.model.forward(&ids, &types, Some(&mask))?; // [b, t, h]
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, t, 1]
        let pooled = match self.pooling {
            Pooling::Mean => out.broadcast_mul(&m)?.sum(1)?.broadcast_div(&m.sum(1)?.clamp(1e-9, f32::MAX)?)?,
            Pooling::Cls => out.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => {
                let masked = out.broadcast_add(&((m.ones_like()? - &m)? * -1e9)?)?;
                masked.max(1)?
            }
        };
        let pooled = if self.normalize {
            pooled.broadcast_div(&pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?)?
        } else {
            pooled
        };
        pooled.flatten_all()?.to_vec1::<f32>()
    }
}

impl Backend for BertEmbedder {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&mut self, inputs: Vec<V2Tensor>, outputs: &[&str]) -> Result<Vec<V2Tensor>, BackendError> {
        let Some(TensorData::Bytes(texts)) = inputs.into_iter().find(|t| t.name == "text").map(|t| t.data) else {
            return Err(BackendError::InvalidInput("input 'text' (BYTES) is required".into()));
        };
        let hidden = self.signature.outputs[0].shape[1] as usize;
        let data = if texts.is_empty() {
            Vec::new()
        } else {
            let enc = self.encoder.encode(&texts)?;
            self.embed(enc).map_err(|e| BackendError::Inference(e.to_string()))?
        };
        let shape = vec![texts.len(), hidden];
        Ok(outputs
            .iter()
            .filter(|o| **o == "embedding")
            .map(|_| V2Tensor { name: "embedding".into(), shape: shape.clone(), data: TensorData::Fp32(data.clone()) })
            .collect())
    }
}
