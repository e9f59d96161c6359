//! The receiving end of the peer transport: the `Raft` gRPC service a
//! member serves on its peer URLs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::detcdpb::{
    raft_server::Raft, MembersRequest, MembersResponse, PromoteRequest, PromoteResponse, RaftAck,
    RaftBatch,
};

/// Where received messages go: the raft loop's step queue.
pub type StepSender = mpsc::Sender<Vec<Message>>;

/// What the peer service asks of the member it serves. Owned here and
/// implemented by `server`, so the transport knows nothing of the raft
/// loop (a small trait owned by the consumer, as etcd's
/// `lease.RangeDeleter`).
pub trait PeerRequests: Send + Sync + 'static {
    /// The cluster's id and member registry, for a member that joins.
    fn members(&self) -> MembersResponse;
    /// Promotes learner `id`, forwarded by a follower to this leader.
    /// Answers etcd's error string, empty once the promotion applied.
    fn promote(&self, id: u64) -> Pin<Box<dyn Future<Output = String> + Send + '_>>;
}

pub struct RaftService {
    pub member_id: u64,
    pub cluster_id: u64,
    pub steps: StepSender,
    pub requests: Arc<dyn PeerRequests>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl RaftService {
    fn check(&self, batch: &RaftBatch) -> Result<(), Status> {
        if batch.cluster_id != self.cluster_id {
            tracing::warn!(
                from = format_args!("{:x}", batch.from),
                their_cluster = format_args!("{:x}", batch.cluster_id),
                our_cluster = format_args!("{:x}", self.cluster_id),
                "refused raft messages from a member of another cluster"
            );
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: member {:x} is in cluster {:x}, the sender claims {:x}",
                self.member_id, self.cluster_id, batch.cluster_id
            )));
        }
        if batch.to != self.member_id {
            tracing::warn!(
                to = format_args!("{:x}", batch.to),
                "refused raft messages addressed to another member"
            );
            return Err(Status::failed_precondition(format!(
                "member id mismatch: this is member {:x}, not {:x}",
                self.member_id, batch.to
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftAck>, Status> {
        let mut batches = request.into_inner();
        let mut received: Option<(u64, prometheus::IntCounter)> = None;
        while let Some(batch) = batches.message().await? {
            self.check(&batch)?;
            let counter = match &received {
                Some((from, counter)) if *from == batch.from => counter,
                _ => {
                    let counter = self.metrics.peer_received_bytes(batch.from);
                    &received.insert((batch.from, counter)).1
                }
            };
            counter.inc_by(batch.messages.iter().map(|bytes| bytes.len() as u64).sum());
            let mut messages = Vec::with_capacity(batch.messages.len());
            for bytes in &batch.messages {
                let mut message = Message::default();
                message.merge_from_bytes(bytes).map_err(|error| {
                    Status::invalid_argument(format!("bad raft message: {error}"))
                })?;
                messages.push(message);
            }
            self.steps
                .send(messages)
                .await
                .map_err(|_| Status::unavailable("member is stopping"))?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(self.requests.members()))
    }

    /// A follower forwards a promotion here; only the leader can check it.
    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let error = self.requests.promote(request.into_inner().id).await;
        Ok(Response::new(PromoteResponse { error }))
    }
}
