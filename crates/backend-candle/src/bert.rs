//! BERT-family sentence embeddings: token ids through `candle_transformers`' BertModel, pooled as the
//! model's sentence-transformers config says (mean, CLS or max over real tokens), optionally
//! L2-normalised. Input `text` (BYTES `[-1]`), output `embedding` (FP32 `[-1, hidden]`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, linear};
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use switchyard_backend::{Backend, BackendError, LoadOptions, Signature};
use switchyard_protocol::{DataType, Tensor as V2Tensor, TensorData, TensorSpec};
use switchyard_text::{Encoded, Pooling, SentenceConfig, TextEncoder, TextOptions};

pub struct BertEmbedder {
    model: BertModel,
    /// A sequence-classification head, when the checkpoint has one.
    head: Option<ClassifierHead>,
    encoder: TextEncoder,
    pooling: Pooling,
    normalize: bool,
    device: Device,
    signature: Signature,
}

/// BertForSequenceClassification's pooler (dense + tanh on the first token) and classifier.
struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
    labels: Vec<String>,
}

impl ClassifierHead {
    /// Present when the weights hold `classifier.weight`; labels from `id2label`, else `LABEL_i`.
    fn load(vb: &VarBuilder, raw: &serde_json::Value, hidden: usize) -> Result<Option<Self>, BackendError> {
        if !vb.contains_tensor("classifier.weight") {
            return Ok(None);
        }
        let load = |e: candle_core::Error| BackendError::Load(format!("classifier head: {e}"));
        let n = vb.get_unchecked("classifier.weight").map_err(load)?.dims()[0];
        let pooler_vb = if vb.contains_tensor("bert.pooler.dense.weight") {
            vb.pp("bert.pooler.dense")
        } else {
            vb.pp("pooler.dense")
        };
        let pooler = linear(hidden, hidden, pooler_vb).map_err(load)?;
        let classifier = linear(hidden, n, vb.pp("classifier")).map_err(load)?;
        let labels = (0..n)
            .map(|i| {
                raw.pointer(&format!("/id2label/{i}"))
                    .and_then(|v| v.as_str())
                    .map_or_else(|| format!("LABEL_{i}"), str::to_owned)
            })
            .collect();
        Ok(Some(Self { pooler, classifier, labels }))
    }
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
        let config: Config = serde_json::from_value(raw.clone()).map_err(|e| load(format!("config.json: {e}")))?;
        let raw_config = raw;
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
        let head = ClassifierHead::load(&vb, &raw_config, config.hidden_size)?;
        let model = BertModel::load(vb, &config).map_err(|e| load(format!("{}: {e}", weights.display())))?;
        let sentence = SentenceConfig::read(dir)?;
        let own_limit = sentence.max_seq_length.unwrap_or(config.max_position_embeddings);
        let max_length = text.max_length.unwrap_or(own_limit).min(config.max_position_embeddings);
        let encoder = TextEncoder::load(&dir.join("tokenizer.json"), max_length, text.truncation, text.batch_tokens())?;
        let mut outputs = vec![TensorSpec::new("embedding", DataType::Fp32, vec![-1, config.hidden_size as i64])];
        if let Some(h) = &head {
            outputs.push(TensorSpec::new("logits", DataType::Fp32, vec![-1, h.labels.len() as i64]));
            outputs.push(TensorSpec::new("label", DataType::Bytes, vec![-1]));
        }
        let signature = Signature {
            platform: "candle_safetensors",
            inputs: vec![TensorSpec::new("text", DataType::Bytes, vec![-1])],
            outputs,
        };
        let normalize = text.normalize.unwrap_or(sentence.normalize);
        Ok(Self { model, head, encoder, pooling: sentence.pooling, normalize, device, signature })
    }

    /// Runs the model on an encoded batch: the pooled embeddings `[batch, hidden]` and, with a
    /// classifier head, the logits `[batch, labels]`, both row-major.
    fn run(&self, enc: Encoded) -> candle_core::Result<(Vec<f32>, Option<Vec<f32>>)> {
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
        let logits = match &self.head {
            None => None,
            Some(h) => {
                let cls = out.narrow(1, 0, 1)?.squeeze(1)?;
                let pooled_cls = h.pooler.forward(&cls)?.tanh()?;
                Some(h.classifier.forward(&pooled_cls)?.flatten_all()?.to_vec1::<f32>()?)
            }
        };
        Ok((pooled.flatten_all()?.to_vec1::<f32>()?, logits))
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
        let (data, logits) = if texts.is_empty() {
            (Vec::new(), self.head.as_ref().map(|_| Vec::new()))
        } else {
            let enc = self.encoder.encode(&texts)?;
            self.run(enc).map_err(|e| BackendError::Inference(e.to_string()))?
        };
        let shape = vec![texts.len(), hidden];
        let n = texts.len();
        outputs
            .iter()
            .map(|name| match (*name, &self.head, &logits) {
                ("embedding", _, _) => Ok(V2Tensor {
                    name: "embedding".into(),
                    shape: shape.clone(),
                    data: TensorData::Fp32(data.clone()),
                }),
                ("logits", Some(h), Some(l)) => Ok(V2Tensor {
                    name: "logits".into(),
                    shape: vec![n, h.labels.len()],
                    data: TensorData::Fp32(l.clone()),
                }),
                ("label", Some(h), Some(l)) => {
                    let best =
                        |row: &[f32]| row.iter().enumerate().fold(0, |b, (i, x)| if *x > row[b] { i } else { b });
                    let labels = l.chunks(h.labels.len()).map(|row| h.labels[best(row)].clone()).collect();
                    Ok(V2Tensor { name: "label".into(), shape: vec![n], data: TensorData::Bytes(labels) })
                }
                (other, _, _) => {
                    Err(BackendError::InvalidInput(format!("output '{other}' is not produced by this model")))
                }
            })
            .collect()
    }
}
