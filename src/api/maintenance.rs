//! The Maintenance service: Status, MoveLeader, HashKV, Alarm and
//! Defragment; still to come: the bbolt-level Hash and snapshot download.

use futures::stream::Empty;
use tonic::{Request, Response, Status};

use super::unimplemented::not_yet;
use crate::proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::Server;

pub struct MaintenanceService {
    pub server: Server,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = Empty<Result<SnapshotResponse, Status>>;

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut response = self.server.status();
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.server
            .move_leader(request.into_inner().target_id)
            .await?;
        // etcd 3.4.23 answers MoveLeader and Defragment without a header.
        Ok(Response::new(MoveLeaderResponse::default()))
    }

    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        self.server.refuse_if_learner()?;
        Ok(Response::new(
            self.server.alarm(request.into_inner()).await?,
        ))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.server.refuse_if_learner()?;
        self.server.defragment().await?;
        Ok(Response::new(DefragmentResponse::default()))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("Maintenance/Hash"))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.server.refuse_if_learner()?;
        let mut response = self.server.hash_kv(request.into_inner().revision)?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Maintenance/Snapshot"))
    }
}
