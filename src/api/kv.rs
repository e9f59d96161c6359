//! The KV service: validate, run through the server, fill the header.

use tonic::{Request, Response, Status};

use super::{caller, validate};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::Server;

pub struct KvService {
    pub server: Server,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        if !request.get_ref().serializable {
            self.server.refuse_if_learner()?;
        }
        validate::range(request.get_ref())?;
        let server = caller(&self.server, &request).await?;
        let request = request.into_inner();
        let mut response = server.range(request).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.server.refuse_if_learner()?;
        validate::put(request.get_ref())?;
        let server = caller(&self.server, &request).await?;
        let request = request.into_inner();
        let mut response = server.put(request).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.server.refuse_if_learner()?;
        validate::delete_range(request.get_ref())?;
        let server = caller(&self.server, &request).await?;
        let request = request.into_inner();
        let mut response = server.delete_range(request).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.server.refuse_if_learner()?;
        validate::txn(request.get_ref(), self.server.limits.max_txn_ops)?;
        let server = caller(&self.server, &request).await?;
        let request = request.into_inner();
        let mut response = server.txn(request).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = caller(&self.server, &request).await?;
        let mut response = server.compact(request.into_inner()).await?;
        self.server.fill_header(&mut response.header);
        Ok(Response::new(response))
    }
}
