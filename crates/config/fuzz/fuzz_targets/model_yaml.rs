//! Arbitrary bytes as a model's config.yaml, read by `ModelConfig::load` from a scratch model directory,
//! as the server reads it: never a panic, and a config it accepts is usable (see `check_model_yaml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_config_fuzz::check_model_yaml(data);
});
