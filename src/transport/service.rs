//! The receiving end of the peer transport: the `Raft` gRPC service a
//! member serves on its peer URLs.

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::detcdpb::{raft_server::Raft, RaftAck, RaftBatch};

/// Where received messages go: the raft loop's step queue.
pub type StepSender = mpsc::Sender<Vec<Message>>;

pub struct RaftService {
    pub member_id: u64,
    pub cluster_id: u64,
    pub steps: StepSender,
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
            tracing::warn!(to = format_args!("{:x}", batch.to), "refused raft messages addressed to another member");
            return Err(Status::failed_precondition(format!("member id mismatch: this is member {:x}, not {:x}", self.member_id, batch.to)));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn stream(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<RaftAck>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            self.check(&batch)?;
            let mut messages = Vec::with_capacity(batch.messages.len());
            for bytes in &batch.messages {
                let mut message = Message::default();
                message.merge_from_bytes(bytes).map_err(|error| Status::invalid_argument(format!("bad raft message: {error}")))?;
                messages.push(message);
            }
            self.steps.send(messages).await.map_err(|_| Status::unavailable("member is stopping"))?;
        }
        Ok(Response::new(RaftAck {}))
    }
}
