//! `grpc.health.v1.Health` for Kubernetes' gRPC probes: SERVING exactly when `/ready` would answer 200
//! (models loaded, not draining, joined to the fleet), read at each call. The whole server (`""`) and
//! the V2 service are known; any other name is NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch), as the
//! health protocol says. Watch sends the status at once and again whenever it changes.

use crate::routes::AppState;
use std::pin::Pin;
use std::time::Duration;
use switchyard_grpc::health::health_check_response::ServingStatus;
use switchyard_grpc::health::health_server::{Health, HealthServer};
use switchyard_grpc::health::{HealthCheckRequest, HealthCheckResponse};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const SERVICES: [&str; 2] = ["", "inference.GRPCInferenceService"];

pub(super) fn service(app: AppState) -> HealthServer<Checker> {
    HealthServer::new(Checker { app })
}

#[derive(Clone)]
pub(super) struct Checker {
    app: AppState,
}

impl Checker {
    fn status(&self) -> ServingStatus {
        if crate::routes::is_ready(&self.app).is_ok() { ServingStatus::Serving } else { ServingStatus::NotServing }
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl Health for Checker {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = req.into_inner().service;
        if !SERVICES.contains(&service.as_str()) {
            return Err(Status::not_found(format!("unknown service '{service}'")));
        }
        Ok(Response::new(response(self.status())))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let known = SERVICES.contains(&req.into_inner().service.as_str());
        let checker = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = if known { checker.status() } else { ServingStatus::ServiceUnknown };
                if last != Some(now) {
                    if tx.send(Ok(response(now))).await.is_err() {
                        return; // the client went away
                    }
                    last = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
