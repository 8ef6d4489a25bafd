//! Sentence-transformers pooling over a transformer's last hidden state, and the settings that say
//! which pooling and whether to L2-normalise.

use serde::Deserialize;
use std::path::Path;
use switchyard_backend::BackendError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
}

/// What the sentence-transformers files beside the weights say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    /// `max_seq_length`, when the model states one.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, BackendError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).map(Some).map_err(|e| BackendError::Load(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackendError::Load(format!("{}: {e}", path.display()))),
    }
}

impl SentenceConfig {
    /// Mean pooling and no normalisation unless the files say otherwise.
    pub fn read(dir: &Path) -> Result<Self, BackendError> {
        let pooling = match read::<PoolingFile>(&dir.join("1_Pooling/config.json"))? {
            Some(p) if p.pooling_mode_cls_token => Pooling::Cls,
            Some(p) if p.pooling_mode_max_tokens => Pooling::Max,
            _ => Pooling::Mean,
        };
        let modules = read::<Vec<Module>>(&dir.join("modules.json"))?.unwrap_or_default();
        let max_seq_length = read::<serde_json::Value>(&dir.join("sentence_bert_config.json"))?
            .and_then(|v| v.get("max_seq_length").and_then(serde_json::Value::as_u64))
            .map(|n| n as usize);
        Ok(Self { pooling, normalize: modules.iter().any(|m| m.kind.ends_with("Normalize")), max_seq_length })
    }
}

/// Pools `hidden` (`[batch, seq, dim]`, row-major) over the tokens `mask` (`[batch, seq]`) marks.
pub fn pool(
    hidden: &[f32],
    mask: &[u32],
    batch: usize,
    seq: usize,
    dim: usize,
    how: Pooling,
    normalize: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; batch * dim];
    for b in 0..batch {
        let row = &mut out[b * dim..(b + 1) * dim];
        let token = |t: usize| &hidden[(b * seq + t) * dim..(b * seq + t + 1) * dim];
        let real: Vec<usize> = (0..seq).filter(|&t| mask[b * seq + t] != 0).collect();
        match how {
            Pooling::Cls => row.copy_from_slice(token(0)),
            Pooling::Mean => {
                for &t in &real {
                    row.iter_mut().zip(token(t)).for_each(|(r, x)| *r += x);
                }
                let n = real.len().max(1) as f32;
                row.iter_mut().for_each(|r| *r /= n);
            }
            Pooling::Max => {
                row.fill(f32::NEG_INFINITY);
                for &t in &real {
                    row.iter_mut().zip(token(t)).for_each(|(r, x)| *r = r.max(*x));
                }
            }
        }
        if normalize {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|r| *r /= norm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_uses_real_tokens_only() {
        // batch 1, seq 3 (last is padding), dim 2
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        assert_eq!(pool(&hidden, &mask, 1, 3, 2, Pooling::Mean, false), vec![2.0, 3.0]);
        assert_eq!(pool(&hidden, &mask, 1, 3, 2, Pooling::Max, false), vec![3.0, 4.0]);
        assert_eq!(pool(&hidden, &mask, 1, 3, 2, Pooling::Cls, false), vec![1.0, 2.0]);
        let n = pool(&hidden, &mask, 1, 3, 2, Pooling::Mean, true);
        assert!((n[0] * n[0] + n[1] * n[1] - 1.0).abs() < 1e-6);
    }
}
