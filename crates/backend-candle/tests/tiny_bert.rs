//! The candle backend on the tiny random BERT fixture (`scripts/make_text_models.py tiny`, generated
//! here if missing): no socket, no large package.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use switchyard_backend::{Backend, BackendError, LoadOptions};
use switchyard_backend_candle::BertEmbedder;
use switchyard_protocol::{Tensor, TensorData};
use switchyard_text::{TextOptions, Truncation};

fn fixture() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/test-models/tiny_bert");
    if !dir.join("1/model.safetensors").exists() {
        let ok = std::process::Command::new(root.join(".venv/bin/python"))
            .args(["scripts/make_text_models.py", "tiny", "target/test-models/tiny_bert"])
            .current_dir(&root)
            .status()
            .expect("run scripts/make_text_models.py (make setup creates .venv)");
        assert!(ok.success());
    }
    dir.join("1")
}

fn texts(v: &[&str]) -> Vec<Tensor> {
    vec![Tensor {
        name: "text".into(),
        shape: vec![v.len()],
        data: TensorData::Bytes(v.iter().map(|s| s.to_string()).collect()),
    }]
}

fn embeddings(model: &mut BertEmbedder, v: &[&str]) -> Vec<Vec<f32>> {
    let out = model.infer(texts(v), &["embedding"]).unwrap();
    assert_eq!(out[0].shape, vec![v.len(), 32]);
    let TensorData::Fp32(data) = &out[0].data else { panic!() };
    data.chunks(32).map(<[f32]>::to_vec).collect()
}

#[test]
fn embeds_text_normalised_and_the_same_alone_or_in_a_batch() {
    let mut m = BertEmbedder::load(&fixture(), &LoadOptions::default(), &TextOptions::default()).unwrap();
    assert_eq!(m.signature().inputs[0].name, "text");
    let batch = embeddings(&mut m, &["a man plays guitar", "", "héllo wörld ✓", &"word ".repeat(300)]);
    for e in &batch {
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let alone = embeddings(&mut m, &["a man plays guitar"]);
    let cos: f32 = alone[0].iter().zip(&batch[0]).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99999, "{cos}");
    assert_ne!(batch[0], batch[1]);
    assert!(embeddings(&mut m, &[]).is_empty());
}

#[test]
fn long_texts_are_refused_when_configured_so() {
    let opts = TextOptions { truncation: Truncation::Reject, ..TextOptions::default() };
    let mut m = BertEmbedder::load(&fixture(), &LoadOptions::default(), &opts).unwrap();
    let err = m.infer(texts(&["short", &"word ".repeat(40)]), &["embedding"]).err().unwrap();
    assert!(matches!(&err, BackendError::InvalidInput(m) if m.contains("text 1")), "{err}");
}

#[test]
fn an_unknown_architecture_is_a_load_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("switchyard-gpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2", "n_embd": 32}"#).unwrap();
    let err = BertEmbedder::load(&dir, &LoadOptions::default(), &TextOptions::default()).err().unwrap();
    assert!(err.to_string().contains("model_type 'gpt2' is not supported"), "{err}");
    let gpu = BertEmbedder::load(
        &fixture(),
        &LoadOptions { device: switchyard_backend::Device::Cuda(0), ..Default::default() },
        &TextOptions::default(),
    );
    assert!(gpu.err().unwrap().to_string().contains("cuda:0"));
}
