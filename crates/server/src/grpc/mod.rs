//! The KServe V2 gRPC front end (`inference.GRPCInferenceService`, with Triton's model config,
//! statistics, repository and streaming RPCs) and `grpc.health.v1`, on their own port beside HTTP. It
//! decodes and encodes only: inference goes through the same serving core as HTTP (rollouts, shadows,
//! fallback, rate limits, analysis), metadata through the same catalog, errors through the same
//! `ApiError` with its gRPC code.

mod health;
mod infer;
mod models;
mod observe;
mod tls;

use crate::catalog;
use crate::routes::AppState;
use crate::{ApiError, ApiResult};
use std::pin::Pin;
use switchyard_config::GrpcPort;
use switchyard_grpc::inference as pb;
use switchyard_grpc::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use tokio_stream::{Stream, StreamExt};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

/// What the gRPC service reaches: the same state as the HTTP routes.
#[derive(Clone)]
pub struct GrpcState {
    pub(crate) app: AppState,
}

impl GrpcState {
    pub fn new(app: AppState) -> Self {
        Self { app }
    }

    /// The data-plane token, when one is set (gRPC metadata `authorization: Bearer ...`, as HTTP).
    fn check_token(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), ApiError> {
        if self.app.api_token.is_none() {
            return Ok(()); // the common case: no copy of the metadata
        }
        crate::routes::check_api_token(&self.app, &metadata.clone().into_headers())
    }

    fn check_admin(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), ApiError> {
        if self.app.admin.enabled() && self.app.admin.authorized(&metadata.clone().into_headers()) {
            return Ok(());
        }
        Err(ApiError::Unauthorized("the repository RPCs need the admin bearer token".into()))
    }
}

/// The service with message limits as large as HTTP's body limit, and gzip or deflate requests (which
/// tritonclient and perf_analyzer can send) accepted. Answers go uncompressed, as Triton's do (grpcio
/// clients advertise gzip by default, and compressing tensors costs more CPU than it saves on loopback
/// or in a cluster).
pub fn service(state: GrpcState) -> GrpcInferenceServiceServer<GrpcState> {
    let max = state.app.limits.max_request_bytes;
    GrpcInferenceServiceServer::new(state)
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
}

fn version(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn answer<T>(r: ApiResult<T>) -> GrpcResult<T> {
    r.map(Response::new).map_err(Status::from)
}

/// Runs one RPC and records it in the gRPC metrics.
async fn observed<T>(method: &'static str, f: impl std::future::Future<Output = GrpcResult<T>>) -> GrpcResult<T> {
    let start = std::time::Instant::now();
    let result = f.await;
    observe::record(method, start, &result);
    result
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcState {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> GrpcResult<pb::ServerLiveResponse> {
        observed("ServerLive", async move { Ok(Response::new(pb::ServerLiveResponse { live: true })) }).await
    }

    async fn server_ready(&self, _: Request<pb::ServerReadyRequest>) -> GrpcResult<pb::ServerReadyResponse> {
        observed("ServerReady", async move {
            Ok(Response::new(pb::ServerReadyResponse { ready: crate::routes::is_ready(&self.app).is_ok() }))
        })
        .await
    }

    async fn model_ready(&self, req: Request<pb::ModelReadyRequest>) -> GrpcResult<pb::ModelReadyResponse> {
        observed("ModelReady", async move {
            self.check_token(req.metadata())?;
            let r = req.into_inner();
            // A model that exists but cannot serve yet (loading, failed, unloaded) is `ready: false`, as
            // KServe's ModelReady defines it; an unknown model stays NOT_FOUND.
            answer(match catalog::ready(&self.app.endpoints(), &r.name, version(&r.version)) {
                Ok(_) => Ok(pb::ModelReadyResponse { ready: true }),
                Err(crate::ApiError::Unavailable(_)) => Ok(pb::ModelReadyResponse { ready: false }),
                Err(e) => Err(e),
            })
        })
        .await
    }

    async fn server_metadata(&self, req: Request<pb::ServerMetadataRequest>) -> GrpcResult<pb::ServerMetadataResponse> {
        observed("ServerMetadata", async move {
            self.check_token(req.metadata())?;
            let m = catalog::server_metadata();
            Ok(Response::new(pb::ServerMetadataResponse {
                name: m.name.to_owned(),
                version: m.version.to_owned(),
                extensions: m.extensions.iter().map(|e| (*e).to_owned()).collect(),
            }))
        })
        .await
    }

    async fn model_metadata(&self, req: Request<pb::ModelMetadataRequest>) -> GrpcResult<pb::ModelMetadataResponse> {
        observed("ModelMetadata", async move {
            self.check_token(req.metadata())?;
            let r = req.into_inner();
            answer(catalog::metadata(&self.app.endpoints(), &r.name, version(&r.version)).map(models::metadata))
        })
        .await
    }

    async fn model_infer(&self, req: Request<pb::ModelInferRequest>) -> GrpcResult<pb::ModelInferResponse> {
        observed("ModelInfer", async move {
            self.check_token(req.metadata())?;
            let (metadata, _, message) = req.into_parts();
            let mut resp = answer(infer::infer(self, &metadata, message).await)?;
            infer::tag(&mut resp);
            Ok(resp)
        })
        .await
    }

    type ModelStreamInferStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<pb::ModelInferRequest>>,
    ) -> GrpcResult<Self::ModelStreamInferStream> {
        self.check_token(req.metadata())?;
        let (metadata, _, mut inbound) = req.into_parts();
        let (tx, rx) = tokio::sync::mpsc::channel(infer::STREAM_IN_FLIGHT);
        let state = self.clone();
        // Each request runs as soon as it arrives; its handle queues in arrival order, so answers leave
        // in request order. A full queue stops reading the stream (backpressure).
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let task = tokio::spawn(infer::stream_one(state.clone(), metadata.clone(), message));
                if tx.send(AbortOnDrop(task)).await.is_err() {
                    return; // the client went away
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).then(|mut task| async move {
            (&mut task.0).await.map_err(|e| Status::internal(format!("request task failed: {e}")))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn model_config(&self, req: Request<pb::ModelConfigRequest>) -> GrpcResult<pb::ModelConfigResponse> {
        observed("ModelConfig", async move {
            self.check_token(req.metadata())?;
            let r = req.into_inner();
            let configs = self.app.configs.load();
            answer(catalog::config(&self.app.endpoints(), &configs, &r.name, version(&r.version)).map(models::config))
        })
        .await
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> GrpcResult<pb::ModelStatisticsResponse> {
        observed("ModelStatistics", async move {
            self.check_token(req.metadata())?;
            let r = req.into_inner();
            let model = (!r.name.is_empty()).then_some(r.name.as_str());
            answer(catalog::stats(&self.app.endpoints(), model, version(&r.version)).map(models::stats))
        })
        .await
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> GrpcResult<pb::RepositoryIndexResponse> {
        observed("RepositoryIndex", async move {
            self.check_token(req.metadata())?;
            let ready = req.get_ref().ready;
            Ok(Response::new(models::index(catalog::index(&self.app.endpoints()), ready)))
        })
        .await
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> GrpcResult<pb::RepositoryModelLoadResponse> {
        observed("RepositoryModelLoad", async move {
            self.check_admin(req.metadata())?;
            let name = req.into_inner().model_name;
            answer(crate::routes::load_model(&self.app, name).await.map(|_| pb::RepositoryModelLoadResponse {}))
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> GrpcResult<pb::RepositoryModelUnloadResponse> {
        observed("RepositoryModelUnload", async move {
            self.check_admin(req.metadata())?;
            let name = req.into_inner().model_name;
            answer(crate::routes::unload_model(&self.app, &name).map(|_| pb::RepositoryModelUnloadResponse {}))
        })
        .await
    }
}

/// A request task that is cancelled when its answer is no longer wanted.
struct AbortOnDrop(tokio::task::JoinHandle<pb::ModelStreamInferResponse>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds gRPC's port on `host` (before serving, so a port taken is a start-up error and port 0 can be
/// logged); `None` when gRPC is off.
pub fn bind(host: &str, port: GrpcPort) -> std::io::Result<Option<tonic::transport::server::TcpIncoming>> {
    let GrpcPort::Port(port) = port else { return Ok(None) };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no address for {host}")))?;
    Ok(Some(tonic::transport::server::TcpIncoming::bind(addr)?.with_nodelay(Some(true))))
}

/// Serves the V2 service and `grpc.health.v1` on `incoming` until `stop` turns true, over TLS when
/// given an acceptor (see `tls`).
pub async fn serve(
    state: GrpcState,
    incoming: tonic::transport::server::TcpIncoming,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let router =
        tonic::transport::Server::builder().add_service(health::service(state.app.clone())).add_service(service(state));
    let shutdown = async move {
        let _ = stop.wait_for(|&s| s).await;
    };
    match tls {
        None => router.serve_with_incoming_shutdown(incoming, shutdown).await,
        Some(acceptor) => router.serve_with_incoming_shutdown(tls::incoming(incoming, acceptor), shutdown).await,
    }
}
