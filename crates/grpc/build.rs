//! Generates the gRPC wire types and the server traits from `proto/grpc_service.proto` (which imports the
//! `model_config.proto` the config.pbtxt parser uses) with protox, a pure-Rust protobuf compiler: no
//! protoc at build time. Also `proto/health.proto` (`grpc.health.v1`). Bytes fields become `bytes::Bytes`, so raw tensor contents decode without a copy.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let includes = [root.join("proto"), root.join("crates/config/proto")];
    for dir in &includes {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let fds = protox::compile(["grpc_service.proto", "health.proto"], &includes)?;
    tonic_prost_build::configure()
        .build_client(std::env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
