//! The gRPC front: etcd's six v3 services over tonic. The only module that
//! knows gRPC; it validates requests, calls `server`, and maps errors to
//! etcd's statuses in `status`.
//!
//! Services not built yet are registered with stubs (`unimplemented.rs`), so
//! every etcd RPC answers — those with gRPC `Unimplemented` naming the RPC.

mod kv;
mod unimplemented;
pub mod status;
pub mod validate;

use std::future::Future;
#[cfg(madsim)]
use std::net::SocketAddr;

use crate::config::GRPC_OVERHEAD_BYTES;
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::server::Server;
use unimplemented::NotYetImplemented;


fn router(server: Server) -> tonic::transport::server::Router {
    let max_message_bytes = server.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    tonic::transport::Server::builder()
        .add_service(KvServer::new(kv::KvService { server }).max_decoding_message_size(max_message_bytes))
        .add_service(WatchServer::new(NotYetImplemented))
        .add_service(LeaseServer::new(NotYetImplemented))
        .add_service(ClusterServer::new(NotYetImplemented))
        .add_service(MaintenanceServer::new(NotYetImplemented))
        .add_service(AuthServer::new(NotYetImplemented))
}

/// Serves client gRPC on an already bound listener until `shutdown` fires.
#[cfg(not(madsim))]
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router(server).serve_with_incoming_shutdown(incoming, shutdown).await
}

/// Serves client gRPC on the simulated network until `shutdown` fires.
#[cfg(madsim)]
pub async fn serve(server: Server, address: SocketAddr, shutdown: impl Future<Output = ()> + Send) -> Result<(), tonic::transport::Error> {
    router(server).serve_with_shutdown(address, shutdown).await
}

#[cfg(not(madsim))]
pub async fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}
