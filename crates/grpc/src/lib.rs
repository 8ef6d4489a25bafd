//! The KServe V2 gRPC protocol with Triton's extensions (`inference.GRPCInferenceService`), generated
//! from `proto/grpc_service.proto`: message types and the service trait the server implements. Nothing
//! else lives here; the serving is in `switchyard-server`'s `grpc` front end.

#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// The standard gRPC health service (Kubernetes' gRPC probes call `Check`).
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
