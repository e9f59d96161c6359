//! The Lease service (etcd `v3rpc/lease.go`). Keepalives go through raft
//! (`crate::lease` says why); a keepalive stream answers its requests in
//! order, one at a time, as etcd's `leaseKeepAlive` loop does.

use std::pin::Pin;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::Server;

/// Keepalive answers queued for a stream's client; a client that stops
/// reading holds its own stream back, nothing else.
pub const KEEPALIVE_RESPONSES_BUFFERED: usize = 16;

pub struct LeaseService {
    pub server: Server,
}

type KeepAliveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let mut response = server.lease_grant(request.into_inner()).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let mut response = server.lease_revoke(request.into_inner().id).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.server.refuse_if_learner()?;
        let (sender, receiver) = mpsc::channel(KEEPALIVE_RESPONSES_BUFFERED);
        tokio::spawn(keep_alive(
            self.server.clone(),
            request.into_inner(),
            sender,
        ));
        Ok(Response::new(super::answer_with_first(receiver).await))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let request = request.into_inner();
        let mut response = server.lease_time_to_live(request.id, request.keys).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.server.refuse_if_learner()?;
        let mut response = self.server.lease_leases().await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }
}

/// One keepalive stream. It ends when the client closes it, the member
/// stops, or a renewal fails for another reason than an unknown lease
/// (etcd then ends the stream with that error, and clients reconnect).
async fn keep_alive(
    server: Server,
    mut inbound: Streaming<LeaseKeepAliveRequest>,
    sender: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) {
    let stopped = server.stopped();
    tokio::pin!(stopped);
    loop {
        let request = tokio::select! {
            biased;
            () = &mut stopped => {
                let _ = sender.send(Err(Status::from(Error::Stopped))).await;
                return;
            }
            // The client went away: nothing of the stream is kept.
            _ = sender.closed() => return,
            message = inbound.message() => match message {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(status) => {
                    let _ = sender.send(Err(super::etcd_decode_status(status))).await;
                    return;
                }
            },
        };
        let answer = match server.lease_renew(request.id).await {
            #[cfg(madsim)]
            Ok(ttl) if crate::sabotage::active(crate::sabotage::Sabotage::KeepAliveTtlShort) => {
                Ok(ttl - 1)
            }
            Ok(ttl) => Ok(ttl),
            // etcd answers an unknown (or revoked, or expired) lease with
            // TTL 0 on the stream, not an error.
            Err(Error::LeaseNotFound) => Ok(0),
            Err(error) => Err(Status::from(error)),
        };
        let response = answer.map(|ttl| {
            let mut response = LeaseKeepAliveResponse {
                header: None,
                id: request.id,
                ttl,
            };
            server.fill_header(&mut response.header);
            response
        });
        let failed = response.is_err();
        if sender.send(response).await.is_err() || failed {
            return;
        }
    }
}
