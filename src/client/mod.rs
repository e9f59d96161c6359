//! A Rust etcd v3 client with endpoint failover, used by the simulator's
//! workloads (and meant for the jepsen-style and bench tools).
//!
//! Failover follows one rule (etcd #18424): a request moves on to the next
//! endpoint only when repeating it cannot apply it twice. Reads (range,
//! read-only txn, status) retry on any endpoint. A write retries only when
//! it was never sent — its endpoint could not be reached; once sent, an
//! error is the caller's to interpret ([`ClientError::may_have_applied`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, StatusRequest, StatusResponse,
    TxnRequest, TxnResponse,
};
use crate::proto::v3electionpb::{
    election_client::ElectionClient, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest,
    LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::proto::v3lockpb::{
    lock_client::LockClient, LockRequest, LockResponse, UnlockRequest, UnlockResponse,
};

/// How long one attempt at one endpoint may take, connection included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request failed.
#[derive(Debug)]
pub enum ClientError {
    /// No endpoint could be reached: the request was never sent.
    Unreachable,
    /// A server answered with an error status (etcd's code and message).
    Server(Status),
    /// Sent, but no answer came before the deadline or the connection broke.
    Lost,
}

impl ClientError {
    /// Could the request have taken effect? False only when it was never
    /// sent, or a server refused it before proposing it.
    pub fn may_have_applied(&self) -> bool {
        match self {
            ClientError::Unreachable => false,
            ClientError::Server(status) => !matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::Unimplemented
            ),
            ClientError::Lost => true,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable => write!(formatter, "no endpoint reachable"),
            ClientError::Server(status) => write!(formatter, "{}", status.message()),
            ClientError::Lost => write!(formatter, "no answer (the request may have been applied)"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client of one cluster. Cheap to clone; not shared between tasks.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    /// The endpoint tried first: the last one that answered.
    preferred: usize,
    /// A channel to `preferred`, once connected.
    channel: Option<Channel>,
    request_timeout: Duration,
}

/// A lease kept alive in the background (`Client::keep_alive`); dropping
/// it stops the keepalives, and the lease then runs out.
pub struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
    alive: Arc<AtomicBool>,
}

impl KeepAlive {
    /// False once a keepalive found the lease gone (expired or revoked).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether a request may be repeated on another endpoint after it was sent.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    Idempotent,
    OnlyIfUnsent,
}

impl Client {
    /// A client of the cluster behind `endpoints` (URLs such as
    /// `http://127.0.0.1:2379`), trying them in the order given.
    pub fn new(endpoints: Vec<String>) -> Client {
        assert!(
            !endpoints.is_empty(),
            "a client needs at least one endpoint"
        );
        Client {
            endpoints,
            preferred: 0,
            channel: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The endpoint the next request goes to first.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.preferred]
    }

    pub async fn range(&mut self, request: RangeRequest) -> Result<RangeResponse, ClientError> {
        self.call(Retry::Idempotent, move |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).range(request).await }
        })
        .await
    }

    pub async fn put(&mut self, request: PutRequest) -> Result<PutResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).put(request).await }
        })
        .await
    }

    pub async fn delete_range(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).delete_range(request).await }
        })
        .await
    }

    /// Compaction is not repeated once sent: a second one at the same
    /// revision would fail with "required revision has been compacted".
    pub async fn compact(
        &mut self,
        request: CompactionRequest,
    ) -> Result<CompactionResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            KvClient::new(channel).compact(request).await
        })
        .await
    }

    /// A txn whose branches only read is retried like a range.
    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, ClientError> {
        let read_only = request
            .success
            .iter()
            .chain(&request.failure)
            .all(|op| matches!(op.request, Some(request_op::Request::RequestRange(_))));
        let retry = if read_only {
            Retry::Idempotent
        } else {
            Retry::OnlyIfUnsent
        };
        self.call(retry, move |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).txn(request).await }
        })
        .await
    }

    /// The status of whichever endpoint answers first.
    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        self.call(Retry::Idempotent, |channel| async move {
            MaintenanceClient::new(channel)
                .status(StatusRequest {})
                .await
        })
        .await
    }

    /// Grants a lease (`id` 0: the server picks one). Not repeated once
    /// sent: a second grant would be a second lease.
    pub async fn lease_grant(
        &mut self,
        ttl: i64,
        id: i64,
    ) -> Result<LeaseGrantResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            LeaseClient::new(channel)
                .lease_grant(LeaseGrantRequest { ttl, id })
                .await
        })
        .await
    }

    pub async fn lease_revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            LeaseClient::new(channel)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
        })
        .await
    }

    /// One keepalive on a stream of its own (etcd's `KeepAliveOnce`): TTL
    /// 0 in the answer means the lease is gone. Renewing twice does no
    /// harm, so it is retried like a read.
    pub async fn lease_keep_alive_once(
        &mut self,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, ClientError> {
        self.call(Retry::Idempotent, move |channel| async move {
            let requests = tokio_stream::once(LeaseKeepAliveRequest { id });
            let mut answers = LeaseClient::new(channel)
                .lease_keep_alive(requests)
                .await?
                .into_inner();
            match answers.message().await? {
                Some(answer) => Ok(tonic::Response::new(answer)),
                None => Err(Status::unavailable(
                    "keepalive stream ended without an answer",
                )),
            }
        })
        .await
    }

    /// Keeps lease `id` (granted with `ttl`) alive in the background, a
    /// keepalive every third of the TTL as etcd's clientv3 does, until the
    /// returned handle is dropped or the lease is gone. A failed keepalive
    /// is retried at the next beat, on whichever endpoint answers.
    pub fn keep_alive(&self, id: i64, ttl: Duration) -> KeepAlive {
        let alive = Arc::new(AtomicBool::new(true));
        let mut client = self.clone();
        let beat = (ttl / 3).max(Duration::from_millis(100));
        let flag = alive.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(beat).await;
                if let Ok(answer) = client.lease_keep_alive_once(id).await {
                    if answer.ttl <= 0 {
                        flag.store(false, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        KeepAlive { task, alive }
    }

    pub async fn lease_time_to_live(
        &mut self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, ClientError> {
        self.call(Retry::Idempotent, move |channel| async move {
            LeaseClient::new(channel)
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
        })
        .await
    }

    /// v3lock's Lock: waits until `name` is held for `lease`; the key
    /// that holds it. Set a request timeout that covers the wait.
    pub async fn lock(&mut self, name: &[u8], lease: i64) -> Result<LockResponse, ClientError> {
        let request = LockRequest {
            name: name.to_vec(),
            lease,
        };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { LockClient::new(channel).lock(request).await }
        })
        .await
    }

    pub async fn unlock(&mut self, key: &[u8]) -> Result<UnlockResponse, ClientError> {
        let request = UnlockRequest { key: key.to_vec() };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { LockClient::new(channel).unlock(request).await }
        })
        .await
    }

    /// v3election's Campaign: waits until `lease` leads `name`.
    pub async fn campaign(
        &mut self,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<CampaignResponse, ClientError> {
        let request = CampaignRequest {
            name: name.to_vec(),
            lease,
            value: value.to_vec(),
        };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { ElectionClient::new(channel).campaign(request).await }
        })
        .await
    }

    pub async fn proclaim(
        &mut self,
        leader: LeaderKey,
        value: &[u8],
    ) -> Result<ProclaimResponse, ClientError> {
        let request = ProclaimRequest {
            leader: Some(leader),
            value: value.to_vec(),
        };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { ElectionClient::new(channel).proclaim(request).await }
        })
        .await
    }

    pub async fn election_leader(&mut self, name: &[u8]) -> Result<LeaderResponse, ClientError> {
        let request = LeaderRequest {
            name: name.to_vec(),
        };
        self.call(Retry::Idempotent, move |channel| {
            let request = request.clone();
            async move { ElectionClient::new(channel).leader(request).await }
        })
        .await
    }

    pub async fn resign(&mut self, leader: LeaderKey) -> Result<ResignResponse, ClientError> {
        let request = ResignRequest {
            leader: Some(leader),
        };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move { ElectionClient::new(channel).resign(request).await }
        })
        .await
    }

    /// Tries the preferred endpoint, then each other one, as `retry` allows.
    async fn call<T, F, Fut>(&mut self, retry: Retry, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut last_error = ClientError::Unreachable;
        for _ in 0..self.endpoints.len() {
            let Some(channel) = self.connected().await else {
                self.fail_over();
                continue;
            };
            let error = match tokio::time::timeout(self.request_timeout, attempt(channel)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if is_transport_failure(&status) => ClientError::Lost,
                Ok(Err(status)) => ClientError::Server(status),
                Err(_) => ClientError::Lost,
            };
            let retryable = retry == Retry::Idempotent && is_member_trouble(&error);
            last_error = error;
            if !retryable {
                // Keep the connection unless it is what failed.
                if matches!(last_error, ClientError::Lost) {
                    self.channel = None;
                }
                return Err(last_error);
            }
            self.fail_over();
        }
        Err(last_error)
    }

    /// A channel to the preferred endpoint, connecting if need be; `None`
    /// if it cannot be reached (nothing was sent).
    async fn connected(&mut self) -> Option<Channel> {
        if self.channel.is_none() {
            let endpoint = Endpoint::from_shared(self.endpoints[self.preferred].clone())
                .ok()?
                .connect_timeout(self.request_timeout);
            self.channel = tokio::time::timeout(self.request_timeout, endpoint.connect())
                .await
                .ok()?
                .ok();
        }
        self.channel.clone()
    }

    fn fail_over(&mut self) {
        self.channel = None;
        self.preferred = (self.preferred + 1) % self.endpoints.len();
    }
}

/// The call never produced a gRPC answer: the connection broke or refused.
fn is_transport_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable && !status.message().starts_with("etcdserver:")
}

/// An error that says something about the member rather than the request,
/// so another member may do better: lost, no leader, leader changed,
/// timed out, learner, stopping.
fn is_member_trouble(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable | ClientError::Lost => true,
        ClientError::Server(status) => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        ),
    }
}
