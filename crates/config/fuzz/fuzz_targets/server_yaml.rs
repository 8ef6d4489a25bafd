//! Arbitrary text as the server's YAML config: `ServerConfig::parse`, then every parsed rollout's plan
//! (`RolloutConfig::plan`), must answer without panicking (see `check_server_yaml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_config_fuzz::check_server_yaml(&String::from_utf8_lossy(data));
});
