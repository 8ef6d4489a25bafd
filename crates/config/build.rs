//! Compiles Triton's model configuration schema (`proto/model_config.proto`) with protox, a protobuf
//! compiler in pure Rust, so building needs no system `protoc`. The encoded descriptor set lands in
//! `OUT_DIR/model_config.bin`, which `src/pbtxt` embeds and parses `config.pbtxt` files against.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/model_config.proto");
    let descriptors = protox::Compiler::new(["proto"])?.open_file("model_config.proto")?.encode_file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("model_config.bin");
    std::fs::write(out, descriptors)?;
    Ok(())
}
