//! etcd's v3lock service: Lock and Unlock over `server::concurrency`.

use tonic::{Request, Response, Status};

use super::status::recipe_error;
use crate::error::Error;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::v3lockpb::{
    lock_server::Lock, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};
use crate::server::Server;

pub struct LockService {
    pub server: Server,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let request = request.into_inner();
        let (header, key) = server
            .lock(&request.name, request.lease)
            .await
            .map_err(recipe_error)?;
        let mut header = Some(header);
        self.server.fill_header(&mut header);
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        self.server.refuse_if_learner()?;
        // etcd's Unlock deletes the key through the KV API, which checks
        // it before anything else (and the error comes back as Unknown).
        if request.get_ref().key.is_empty() {
            return Err(recipe_error(Error::EmptyKey));
        }
        let server = super::caller(&self.server, &request).await?;
        let header: ResponseHeader = server
            .unlock(&request.into_inner().key)
            .await
            .map_err(recipe_error)?;
        let mut header = Some(header);
        self.server.fill_header(&mut header);
        Ok(Response::new(UnlockResponse { header }))
    }
}
