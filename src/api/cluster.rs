//! The Cluster service: member list and membership changes, with etcd's
//! rules and errors (checks in `membership`, changes through raft); with
//! auth enabled only root changes the membership.

use tonic::{Request, Response, Status};

use crate::membership::Member;
use crate::proto::etcdserverpb::{
    self as pb, cluster_server::Cluster, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
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

impl ClusterService {
    /// etcd `checkMembershipOperationPermission`: with auth enabled, only
    /// root may change the membership (listing it is open to all).
    async fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        Ok(super::caller(&self.server, request)
            .await?
            .check_admin_now()?)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        self.server.refuse_if_learner()?;
        let members = self.server.members().into_iter().map(to_proto).collect();
        let mut response = MemberListResponse {
            header: None,
            members,
        };
        self.server.fill_cluster_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let request = request.into_inner();
        let (member, members) = self
            .server
            .member_add(request.peer_ur_ls, request.is_learner)
            .await?;
        let members = members.into_iter().map(to_proto).collect();
        let mut response = MemberAddResponse {
            header: None,
            member: Some(to_proto(member)),
            members,
        };
        self.server.fill_cluster_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let members = self.server.member_remove(request.into_inner().id).await?;
        let mut response = MemberRemoveResponse {
            header: None,
            members: members.into_iter().map(to_proto).collect(),
        };
        self.server.fill_cluster_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let request = request.into_inner();
        let members = self
            .server
            .member_update(request.id, request.peer_ur_ls)
            .await?;
        let mut response = MemberUpdateResponse {
            header: None,
            members: members.into_iter().map(to_proto).collect(),
        };
        self.server.fill_cluster_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.check_admin(&request).await?;
        let members = self.server.member_promote(request.into_inner().id).await?;
        let mut response = MemberPromoteResponse {
            header: None,
            members: members.into_iter().map(to_proto).collect(),
        };
        self.server.fill_cluster_header(&mut response.header);
        Ok(Response::new(response))
    }
}
