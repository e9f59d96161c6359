//! The Cluster service: MemberList; membership changes are still to come.

use tonic::{Request, Response, Status};

use super::unimplemented::not_yet;
use crate::membership::Member;
use crate::proto::etcdserverpb::{
    self as pb, cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use crate::server::Server;

pub struct ClusterService {
    pub server: Server,
}

fn to_proto(member: Member) -> pb::Member {
    pb::Member {
        id: member.id,
        name: member.name,
        peer_ur_ls: member.peer_urls,
        client_ur_ls: member.client_urls,
        is_learner: member.is_learner,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let members = self.server.members().into_iter().map(to_proto).collect();
        let mut response = MemberListResponse { header: None, members };
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_add(&self, _: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("Cluster/MemberAdd"))
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("Cluster/MemberRemove"))
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("Cluster/MemberUpdate"))
    }

    async fn member_promote(&self, _: Request<MemberPromoteRequest>) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("Cluster/MemberPromote"))
    }
}
