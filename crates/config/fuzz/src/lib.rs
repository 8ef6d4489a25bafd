//! What the configuration fuzz targets check. Beyond "no panic", each answer must keep what its API
//! promises: a config.pbtxt error points at a line and column that exist, an accepted model config has at
//! least one instance, a rollout plan that was accepted validates again, every error says something.

use std::path::PathBuf;
use std::sync::LazyLock;
use switchyard_backend::Signature;
use switchyard_config::pbtxt::{self, PbtxtError};
use switchyard_config::{ModelConfig, ServerConfig};
use switchyard_protocol::{DataType, TensorSpec};

/// A model to check declared inputs and outputs against: the names Triton's examples use.
static SIGNATURE: LazyLock<Signature> = LazyLock::new(|| Signature {
    platform: "onnxruntime_onnx",
    inputs: vec![
        TensorSpec::new("INPUT0", DataType::Fp32, vec![-1, 16]),
        TensorSpec::new("input", DataType::Bytes, vec![-1]),
    ],
    outputs: vec![TensorSpec::new("OUTPUT0", DataType::Int64, vec![-1, 3, 224, 224])],
});

/// `pbtxt::model_config` on `text`, and the declared tensors of an accepted config checked against
/// `SIGNATURE` both ways (batched or not).
pub fn check_pbtxt(text: &str) {
    let (cfg, ignored) = match pbtxt::model_config(text) {
        Ok(ok) => ok,
        Err(e) => return check_pbtxt_error(text, &e),
    };
    assert!(cfg.instances >= 1, "an accepted config.pbtxt with {} instances", cfg.instances);
    for (i, name) in ignored.iter().enumerate() {
        assert!(!name.is_empty(), "an empty ignored field name in {ignored:?}");
        assert!(!ignored[..i].contains(name), "{name} reported as ignored twice: {ignored:?}");
    }
    for d in &cfg.declared {
        assert!(d.kind == "input" || d.kind == "output", "declared kind {:?}", d.kind);
        assert!(!d.name.is_empty(), "a declared {} without a name was accepted", d.kind);
        assert!(d.dims.as_ref().is_none_or(|dims| !dims.is_empty()), "empty dims are reported as none");
    }
    for batched in [false, true] {
        if let Err(e) = pbtxt::check_declared(&cfg.declared, &SIGNATURE, batched) {
            assert!(e.to_string().starts_with("config.pbtxt: "), "check_declared error {e:?}");
        }
    }
}

fn check_pbtxt_error(text: &str, e: &PbtxtError) {
    let message = e.to_string();
    assert!(message.starts_with("config.pbtxt"), "error without the file named: {message}");
    match e {
        PbtxtError::Syntax { line, column, message, near } => {
            assert!(!message.is_empty(), "a syntax error without a message");
            let lines: Vec<&str> = text.split('\n').collect();
            assert!((1..=lines.len()).contains(line), "line {line} of {} lines: {message}", lines.len());
            let width = lines[line - 1].chars().count();
            assert!((1..=width + 1).contains(column), "column {column} of a {width}-character line: {message}");
            assert!(near.chars().count() <= 80, "near is longer than 80 characters: {near:?}");
        }
        PbtxtError::Invalid { field, message } => {
            assert!(!field.is_empty() && !message.is_empty(), "an invalid value without field or message: {e:?}")
        }
        PbtxtError::Schema(m) => panic!("the built-in schema failed on user input: {m}"),
    }
}

/// `ServerConfig::parse` on `text`, and `plan()` of every rollout it accepts.
pub fn check_server_yaml(text: &str) {
    let cfg = match ServerConfig::parse(text) {
        Ok(cfg) => cfg,
        Err(e) => return assert!(!e.to_string().is_empty(), "an empty error for {text:?}"),
    };
    for r in &cfg.rollouts {
        match r.plan() {
            Ok(plan) => {
                if let Err(e) = plan.validate() {
                    panic!("rollouts[{}]: an accepted plan fails validation: {e}", r.endpoint);
                }
            }
            Err(e) => {
                let (e, prefix) = (e.to_string(), format!("rollouts[{}]: ", r.endpoint));
                assert!(e.starts_with(&prefix) && e.len() > prefix.len(), "plan error {e:?}");
            }
        }
    }
}

/// A model directory of this process's own, so parallel fuzz jobs do not share one.
static MODEL_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("switchyard-fuzz-model-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch model directory");
    dir
});

/// `data` written as `config.yaml` in a scratch model directory and read with `ModelConfig::load`.
pub fn check_model_yaml(data: &[u8]) {
    std::fs::write(MODEL_DIR.join("config.yaml"), data).expect("write the scratch config.yaml");
    match ModelConfig::load(&MODEL_DIR) {
        Ok(cfg) => {
            assert!(cfg.instances >= 1 && cfg.intra_op_threads >= 1 && cfg.queue_capacity >= 1, "{cfg:?}");
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.starts_with("config.yaml: ") && e.len() > 13, "load error {e:?}");
        }
    }
}
