//! etcd's v3election service over `server::concurrency`. Observe sends the
//! leader's key-value whenever the leader or its value changes, looking
//! again at every new revision.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status::recipe_error;
use crate::error::Error;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::v3electionpb::{
    election_server::Election, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest,
    LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::{concurrency, Server};

/// Leader changes queued for an Observe client.
pub const OBSERVE_RESPONSES_BUFFERED: usize = 16;

pub struct ElectionService {
    pub server: Server,
}

type ObserveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<LeaderResponse, Status>> + Send>>;

fn leader_key(key: Option<LeaderKey>) -> Result<concurrency::LeaderKey, Status> {
    let key = key.ok_or(Error::MissingLeaderKey)?;
    Ok(concurrency::LeaderKey {
        name: key.name,
        key: key.key,
        rev: key.rev,
        lease: key.lease,
    })
}

impl ElectionService {
    fn header(&self, header: ResponseHeader) -> Option<ResponseHeader> {
        let mut header = Some(header);
        self.server.fill_header(&mut header);
        header
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let request = request.into_inner();
        let (header, leader) = server
            .campaign(&request.name, request.lease, &request.value)
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(CampaignResponse {
            header: self.header(header),
            leader: Some(LeaderKey {
                name: leader.name,
                key: leader.key,
                rev: leader.rev,
                lease: leader.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let request = request.into_inner();
        let leader = leader_key(request.leader)?;
        let header = server
            .proclaim(&leader, &request.value)
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(ProclaimResponse {
            header: self.header(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let (header, kv) = server
            .election_leader(&request.into_inner().name)
            .await
            .map_err(recipe_error)?;
        Ok(Response::new(LeaderResponse {
            header: self.header(header),
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let (sender, receiver) = mpsc::channel(OBSERVE_RESPONSES_BUFFERED);
        tokio::spawn(observe(server, request.into_inner().name, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        self.server.refuse_if_learner()?;
        let server = super::caller(&self.server, &request).await?;
        let leader = leader_key(request.into_inner().leader)?;
        let header = server.resign(&leader).await.map_err(recipe_error)?;
        Ok(Response::new(ResignResponse {
            header: self.header(header),
        }))
    }
}

/// One Observe stream: the leader's key-value each time the leader or its
/// value changes, until the client goes or the member stops.
async fn observe(
    server: Server,
    name: Vec<u8>,
    sender: mpsc::Sender<Result<LeaderResponse, Status>>,
) {
    let mut revisions = server.subscribe_revisions();
    let mut last_sent = None;
    loop {
        match server.election_leader(&name).await {
            Ok((header, kv)) => {
                let seen = (kv.key.clone(), kv.mod_revision);
                if last_sent.as_ref() != Some(&seen) {
                    let mut header = Some(header);
                    server.fill_header(&mut header);
                    let response = LeaderResponse {
                        header,
                        kv: Some(kv),
                    };
                    if sender.send(Ok(response)).await.is_err() {
                        return;
                    }
                    last_sent = Some(seen);
                }
            }
            Err(Error::ElectionNoLeader) => {}
            Err(error) => {
                let _ = sender.send(Err(recipe_error(error))).await;
                return;
            }
        }
        let next = tokio::select! {
            biased;
            _ = sender.closed() => return,
            next = server.next_revision(&mut revisions) => next,
        };
        if let Err(error) = next {
            let _ = sender.send(Err(recipe_error(error))).await;
            return;
        }
    }
}
