//! The loop's `Command`s: dispatch and the proposals the member makes itself.

use prost::Message as _;
use raft::StateRole;

use crate::apply::Response;
use crate::error::Error;
use crate::proto::detcdpb::{internal_request::Request, InternalRequest, RequestAuth};

use super::{Command, RaftNode, Reply};

impl RaftNode {
    pub(super) fn handle(&mut self, command: Command) {
        match command {
            Command::Propose {
                request,
                auth,
                reply,
            } => {
                if self.raw.raft.leader_id == raft::INVALID_ID {
                    self.proposals.queue((request, auth), reply);
                } else {
                    self.propose_as(request, auth, reply);
                }
            }
            Command::Snapshot { reply } => self.snapshot_policy.request(reply),
            Command::ReadIndex { reply } => {
                if !self.reads.has_room() {
                    let _ = reply.send(Err(Error::TooManyRequests));
                    return;
                }
                let id = self.proposals.next_id();
                self.raw.read_index(id.to_le_bytes().to_vec());
                self.reads.start(id, reply);
            }
            Command::TransferLeader { transferee, reply } => {
                let result = if self.raw.raft.state != StateRole::Leader {
                    Err(Error::NotLeader)
                } else if !self.raw.raft.prs().conf().voters().contains(transferee) {
                    Err(Error::BadLeaderTransferee)
                } else {
                    self.raw.transfer_leader(transferee);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::ChangeConf { change, reply } => self.propose_conf_change(change, reply),
            Command::Promote { id, reply } => self.promote(id, reply),
            Command::StepDown { reply } => {
                let _ = reply.send(Ok(self.step_down()));
            }
            Command::Status { reply } => {
                let _ = reply.send(Ok(self.raft_status()));
            }
        }
        self.election.fix(&mut self.raw);
    }

    /// Proposes a request the member makes itself.
    pub(super) fn propose(&mut self, request: Request, reply: Reply<Response>) {
        self.propose_as(request, None, reply);
    }

    pub(super) fn propose_as(
        &mut self,
        request: Request,
        auth: Option<RequestAuth>,
        reply: Reply<Response>,
    ) {
        if !self.proposals.has_room() {
            let _ = reply.send(Err(Error::TooManyRequests));
            return;
        }
        let id = self.proposals.next_id();
        let data = InternalRequest {
            id,
            request: Some(request),
            auth,
        }
        .encode_to_vec();
        if data.len() > self.max_request_bytes {
            let _ = reply.send(Err(Error::RequestTooLarge));
            return;
        }
        match self.raw.propose(vec![], data) {
            Ok(()) => self.proposals.wait(id, reply),
            Err(_) => {
                let _ = reply.send(Err(Error::NoLeader));
            }
        }
    }
}
