//! The receiving end of the peer transport: the `Raft` gRPC service a
//! member serves on its peer URLs.

use protobuf::Message as _;
use raft::eraftpb::Message;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::detcdpb::{
    raft_server::Raft, MemberInfo, MembersRequest, MembersResponse, PromoteRequest,
    PromoteResponse, RaftAck, RaftBatch,
};
use crate::raft_node::{Command, Shared};

/// Where received messages go: the raft loop's step queue.
pub type StepSender = mpsc::Sender<Vec<Message>>;

pub struct RaftService {
    pub member_id: u64,
    pub cluster_id: u64,
    pub steps: StepSender,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Sender<Command>,
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
        while let Some(batch) = batches.message().await? {
            self.check(&batch)?;
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
        let state = self.shared.state.read().expect("state lock");
        let members = state
            .members()
            .list()
            .map(|member| MemberInfo {
                id: member.id,
                name: member.name.clone(),
                peer_urls: member.peer_urls.clone(),
                is_learner: member.is_learner,
            })
            .collect();
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members,
        }))
    }

    /// A follower forwards a promotion here; only the leader can check it.
    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Promote {
            id: request.into_inner().id,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| Status::unavailable("member is stopping"))?;
        let error = match answer.await {
            Ok(Ok(_)) => String::new(),
            Ok(Err(error)) => error.to_string(),
            Err(_) => crate::error::Error::Stopped.to_string(),
        };
        Ok(Response::new(PromoteResponse { error }))
    }
}
