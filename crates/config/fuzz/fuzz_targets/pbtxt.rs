//! Arbitrary text as a Triton config.pbtxt: `pbtxt::model_config` must answer (never panic), and what it
//! answers must hold together (see `check_pbtxt`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_config_fuzz::check_pbtxt(&String::from_utf8_lossy(data));
});
