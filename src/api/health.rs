//! gRPC's standard health service (`grpc.health.v1.Health`), as etcd 3.4
//! registers it on its client port: the whole server (service "") is
//! SERVING for as long as it serves, and any other service name is
//! unknown, in grpc-go's words. Load balancers and gRPC health probes
//! (Kubernetes' `grpc` probes, grpc_health_probe) ask it.
//!
//! Not the `tonic-health` crate: it is built on upstream tonic, not the
//! madsim build of it, so the simulated members would lack the service,
//! and it words an unknown service differently from grpc-go. What is left
//! to write is a fixed answer.

use std::pin::Pin;

use futures::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::proto::grpc_health_v1::{
    health_check_response::ServingStatus, health_server::Health, HealthCheckRequest,
    HealthCheckResponse,
};
use crate::server::Server;

/// The one service name etcd reports on: the server as a whole.
const WHOLE_SERVER: &str = "";

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

pub struct HealthService {
    pub server: Server,
}

/// What grpc-go's health server knows of `service`.
fn status_of(service: &str) -> Option<ServingStatus> {
    (service == WHOLE_SERVER).then_some(ServingStatus::Serving)
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match status_of(&request.get_ref().service) {
            Some(status) => Ok(Response::new(answer(status))),
            None => Err(Status::not_found("unknown service")),
        }
    }

    type WatchStream = WatchStream;

    /// The status at once (SERVICE_UNKNOWN for a name it does not know,
    /// which grpc-go keeps the stream open for too), then nothing until
    /// the server stops, which ends the stream.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let status = status_of(&request.get_ref().service).unwrap_or(ServingStatus::ServiceUnknown);
        let now = futures::stream::once(std::future::ready(Ok(answer(status))));
        let until_stopped =
            futures::stream::once(self.server.stopped()).filter_map(|()| std::future::ready(None));
        Ok(Response::new(Box::pin(now.chain(until_stopped))))
    }
}
