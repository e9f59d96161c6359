//! The gRPC front: etcd's v3 services (and gRPC's health service, as etcd
//! registers it) over tonic, and the serving of
//! the peer service `transport` defines. With `transport`, the only code
//! that knows gRPC; it validates requests, calls `server`, and maps errors to
//! etcd's statuses in `status`.
//!
//! Every request runs as the user its token names (`caller`), as etcd's
//! `AuthInfoFromCtx` does.

mod auth;
mod cluster;
mod election;
#[cfg(not(madsim))]
mod gateway;
#[cfg(not(madsim))]
mod grpc_limits;
mod health;
#[cfg(not(madsim))]
mod http;
#[cfg(not(madsim))]
mod jsonpb;
#[cfg(not(madsim))]
pub use http::set_log_level_handler;
mod kv;
mod lease;
mod lock;
mod maintenance;
pub mod status;
pub mod validate;
mod watch;

use std::future::Future;
#[cfg(madsim)]
use std::net::SocketAddr;

use crate::config::GRPC_OVERHEAD_BYTES;
use crate::proto::detcdpb::raft_server::RaftServer;
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::grpc_health_v1::health_server::HealthServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::server::Server;
use crate::transport::{
    RaftService, PEER_KEEPALIVE_INTERVAL, PEER_KEEPALIVE_TIMEOUT, PEER_MESSAGE_BYTES_MAX,
};

/// The gRPC metadata keys of a login token: etcd's `TokenFieldNameGRPC`,
/// and `TokenFieldNameSwagger` (what its gateway sends).
pub const TOKEN_METADATA_KEYS: [&str; 2] = ["token", "authorization"];

/// The login token a request carries, if any.
pub(crate) fn token_of<T>(
    request: &tonic::Request<T>,
) -> Result<Option<&str>, crate::error::Error> {
    let Some(value) = TOKEN_METADATA_KEYS
        .iter()
        .find_map(|key| request.metadata().get(*key))
    else {
        return Ok(None);
    };
    value
        .to_str()
        .map(Some)
        .map_err(|_| crate::error::Error::InvalidAuthToken)
}

/// The server acting for the user a request's token names (etcd
/// `AuthInfoFromCtx`): an invalid token is refused here; no token is no
/// user, which auth, once enabled, refuses wherever it checks.
pub(crate) async fn caller<T>(
    server: &Server,
    request: &tonic::Request<T>,
) -> Result<Server, tonic::Status> {
    let token = token_of(request)?;
    // etcd: with no token, a client certificate's common name is the user
    // (only clients of --client-cert-auth listeners present one).
    #[cfg(not(madsim))]
    if token.is_none() {
        let common_name = request
            .extensions()
            .get::<crate::tls::PeerInfo>()
            .and_then(|info| info.common_name.clone());
        if let Some(name) = common_name {
            return Ok(server.acting_for(server.auth_info_of_user(name)));
        }
    }
    Ok(server.acting_for(server.auth_info(token).await?))
}

/// etcd's answer to an oversized message (see `grpc_limits`); the
/// simulator's gRPC has no message limits.
#[cfg(not(madsim))]
fn etcd_limits<S>(service: S) -> grpc_limits::EtcdMessageLimits<S> {
    grpc_limits::EtcdMessageLimits::new(service)
}

#[cfg(madsim)]
fn etcd_limits<S>(service: S) -> S {
    service
}

/// A streaming call's responses, answered once the first is ready.
/// grpc-go, and so etcd, sends a stream's response headers with its first
/// message, not when the call opens; a client, or the proxy in a client's
/// tests, that is handed headers for a stream before any message can lose
/// them and then refuse the message (the Node etcd3 client's keepalive
/// test does). The simulator's gRPC has no headers to time.
#[cfg(not(madsim))]
async fn answer_with_first<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> std::pin::Pin<Box<dyn tokio_stream::Stream<Item = T> + Send>> {
    use tokio_stream::StreamExt;
    let mut rest = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let first = rest.next().await;
    Box::pin(tokio_stream::iter(first).chain(rest))
}

#[cfg(madsim)]
async fn answer_with_first<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> std::pin::Pin<Box<dyn tokio_stream::Stream<Item = T> + Send>> {
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// A streaming request's decode error as etcd reports it (see
/// `grpc_limits`).
#[cfg(not(madsim))]
fn etcd_decode_status(status: tonic::Status) -> tonic::Status {
    grpc_limits::etcd_decode_status(status)
}

#[cfg(madsim)]
fn etcd_decode_status(status: tonic::Status) -> tonic::Status {
    status
}

fn router<L: Clone>(
    builder: tonic::transport::Server<L>,
    server: Server,
) -> tonic::transport::server::Router<L> {
    // etcd limits every client service's messages alike (MaxRecvMsgSize).
    let max = server.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = kv::KvService {
        server: server.clone(),
    };
    let watch = watch::WatchService {
        server: server.clone(),
    };
    let cluster = cluster::ClusterService {
        server: server.clone(),
    };
    let maintenance = maintenance::MaintenanceService {
        server: server.clone(),
    };
    let lease = lease::LeaseService {
        server: server.clone(),
    };
    let lock = lock::LockService {
        server: server.clone(),
    };
    let election = election::ElectionService {
        server: server.clone(),
    };
    let auth = auth::AuthService {
        server: server.clone(),
    };
    let mut builder = builder;
    builder
        .add_service(etcd_limits(
            KvServer::new(kv).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            WatchServer::new(watch).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            LeaseServer::new(lease).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            ClusterServer::new(cluster).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            MaintenanceServer::new(maintenance).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            AuthServer::new(auth).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            LockServer::new(lock).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            ElectionServer::new(election).max_decoding_message_size(max),
        ))
        .add_service(etcd_limits(
            HealthServer::new(health::HealthService {
                server: server.clone(),
            })
            .max_decoding_message_size(max),
        ))
}

/// Serves client gRPC on an already bound listener until `shutdown` fires;
/// over TLS when `tls` is given (an https client URL).
#[cfg(not(madsim))]
pub async fn serve(
    server: Server,
    listener: crate::tls::Listener,
    tls: Option<crate::tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    use futures::StreamExt;
    // etcdctl sends some RPCs with a URL as `:authority`, which h2 refuses:
    // the shim rewrites it (crate detcd-authority-shim). Plain HTTP (/health,
    // /metrics, ...) is answered by the layer in front (see http.rs).
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(server.limits.max_concurrent_streams))
        .http2_keepalive_interval(server.limits.grpc_keepalive_interval)
        .http2_keepalive_timeout(Some(server.limits.grpc_keepalive_timeout))
        .accept_http1(true)
        .layer(http::HttpLayer {
            server: server.clone(),
            metrics_only: false,
        });
    let incoming = crate::tls::accept(listener, tls)
        .map(|accepted| accepted.map(detcd_authority_shim::AuthorityShim::new));
    router(builder, server)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Serves /metrics, /health and the other plain HTTP endpoints, and no
/// gRPC, on a `--listen-metrics-urls` listener (https with the client
/// side's TLS).
#[cfg(not(madsim))]
pub async fn serve_metrics(
    server: Server,
    listener: crate::tls::Listener,
    tls: Option<crate::tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(http::HttpLayer {
            server,
            metrics_only: true,
        })
        .add_routes(tonic::service::Routes::default())
        .serve_with_incoming_shutdown(crate::tls::accept(listener, tls), shutdown)
        .await
}

/// Serves client gRPC on the simulated network until `shutdown` fires.
#[cfg(madsim)]
pub async fn serve(
    server: Server,
    address: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    router(tonic::transport::Server::builder(), server)
        .serve_with_shutdown(address, shutdown)
        .await
}

/// The peer service pings a silent peer as the peer's link pings it, so a
/// stream (or a snapshot being received) from a peer that vanished ends.
fn peer_router(service: RaftService) -> tonic::transport::server::Router {
    let raft = RaftServer::new(service).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(PEER_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(PEER_KEEPALIVE_TIMEOUT))
        .add_service(raft)
}

/// Serves the peer (raft) service on an already bound listener; over TLS
/// when `tls` is given (an https peer URL).
#[cfg(not(madsim))]
pub async fn serve_peers(
    service: RaftService,
    listener: crate::tls::Listener,
    tls: Option<crate::tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    peer_router(service)
        .serve_with_incoming_shutdown(crate::tls::accept(listener, tls), shutdown)
        .await
}

/// Serves the peer (raft) service on the simulated network.
#[cfg(madsim)]
pub async fn serve_peers(
    service: RaftService,
    address: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    peer_router(service)
        .serve_with_shutdown(address, shutdown)
        .await
}

#[cfg(not(madsim))]
pub async fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}
