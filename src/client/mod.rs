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

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, request_op,
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthenticateRequest, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, HashKvRequest, HashKvResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MoveLeaderRequest, MoveLeaderResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    StatusRequest, StatusResponse, TxnRequest, TxnResponse,
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
    /// User and password to log in with (`with_credentials`).
    credentials: Option<(String, String)>,
    /// The token of the latest login, sent with every request.
    token: Token,
    /// The servers said auth is off: requests go without a token until
    /// one is refused for having no user.
    auth_off: bool,
}

/// The login token a request carries in its `token` metadata, as etcd's
/// clients send it.
#[derive(Clone, Default)]
struct Token(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("token", token.clone());
        }
        Ok(request)
    }
}

/// A connection and the token its requests carry.
struct Link {
    channel: Channel,
    token: Token,
}

/// The errors after which etcd's clients log in again and retry once: the
/// token expired or was voided, or auth changed since it was checked.
/// Neither was applied.
fn needs_new_token(status: &Status) -> bool {
    matches!(
        status.message(),
        "etcdserver: invalid auth token" | "etcdserver: revision of auth store is old"
    )
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

/// An Auth service call that changes something: tried where it was not
/// sent yet, never repeated once it may have applied.
macro_rules! auth_call {
    ($method:ident, $request:ty, $response:ty) => {
        pub async fn $method(&mut self, request: $request) -> Result<$response, ClientError> {
            self.call(Retry::OnlyIfUnsent, move |channel| {
                let request = request.clone();
                async move {
                    AuthClient::with_interceptor(channel.channel, channel.token)
                        .$method(request)
                        .await
                }
            })
            .await
        }
    };
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
            credentials: None,
            token: Token::default(),
            auth_off: false,
        }
    }

    /// Logs in as `user` before its first request, and again whenever the
    /// server says the token is no longer good.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Client {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// Logs in on `channel` with the client's credentials.
    async fn log_in(&mut self, channel: Channel) -> Result<(), ClientError> {
        let Some((name, password)) = self.credentials.clone() else {
            return Ok(());
        };
        let mut auth = AuthClient::new(channel);
        let login = auth.authenticate(AuthenticateRequest { name, password });
        let answer = match tokio::time::timeout(self.request_timeout, login).await {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) if is_transport_failure(&status) => return Err(ClientError::Lost),
            // As etcd's clientv3: with auth off, go on without a token.
            Ok(Err(status)) if status.message() == "etcdserver: authentication is not enabled" => {
                self.auth_off = true;
                return Ok(());
            }
            Ok(Err(status)) => return Err(ClientError::Server(status)),
            Err(_) => return Err(ClientError::Lost),
        };
        let token = answer.token.parse().map_err(|_| {
            ClientError::Server(Status::unauthenticated("etcdserver: invalid auth token"))
        })?;
        self.token = Token(Some(token));
        Ok(())
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
            async move {
                KvClient::with_interceptor(channel.channel, channel.token)
                    .range(request)
                    .await
            }
        })
        .await
    }

    pub async fn put(&mut self, request: PutRequest) -> Result<PutResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move {
                KvClient::with_interceptor(channel.channel, channel.token)
                    .put(request)
                    .await
            }
        })
        .await
    }

    pub async fn delete_range(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move {
                KvClient::with_interceptor(channel.channel, channel.token)
                    .delete_range(request)
                    .await
            }
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
            KvClient::with_interceptor(channel.channel, channel.token)
                .compact(request)
                .await
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
            async move {
                KvClient::with_interceptor(channel.channel, channel.token)
                    .txn(request)
                    .await
            }
        })
        .await
    }

    /// The status of whichever endpoint answers first.
    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        self.call(Retry::Idempotent, |channel| async move {
            MaintenanceClient::with_interceptor(channel.channel, channel.token)
                .status(StatusRequest {})
                .await
        })
        .await
    }

    /// The hash of the key-value store up to `revision` (0: all of it) on
    /// whichever endpoint answers first: give the client one endpoint to
    /// ask one member.
    pub async fn hash_kv(&mut self, revision: i64) -> Result<HashKvResponse, ClientError> {
        self.call(Retry::Idempotent, move |channel| async move {
            MaintenanceClient::with_interceptor(channel.channel, channel.token)
                .hash_kv(HashKvRequest { revision })
                .await
        })
        .await
    }

    /// Asks the leader to hand leadership to member `target`. Only the
    /// leader accepts it; not repeated once sent.
    pub async fn move_leader(&mut self, target: u64) -> Result<MoveLeaderResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            MaintenanceClient::with_interceptor(channel.channel, channel.token)
                .move_leader(MoveLeaderRequest { target_id: target })
                .await
        })
        .await
    }

    pub async fn member_list(&mut self) -> Result<MemberListResponse, ClientError> {
        self.call(Retry::Idempotent, |channel| async move {
            ClusterClient::with_interceptor(channel.channel, channel.token)
                .member_list(MemberListRequest {})
                .await
        })
        .await
    }

    /// Adds a member (a learner when `learner`) at `peer_urls`. Not
    /// repeated once sent: a second add would be a second member.
    pub async fn member_add(
        &mut self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<MemberAddResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = MemberAddRequest {
                peer_ur_ls: peer_urls.clone(),
                is_learner: learner,
            };
            async move {
                ClusterClient::with_interceptor(channel.channel, channel.token)
                    .member_add(request)
                    .await
            }
        })
        .await
    }

    pub async fn member_remove(&mut self, id: u64) -> Result<MemberRemoveResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            ClusterClient::with_interceptor(channel.channel, channel.token)
                .member_remove(MemberRemoveRequest { id })
                .await
        })
        .await
    }

    /// Promotes learner `id`; the leader refuses while it lags.
    pub async fn member_promote(&mut self, id: u64) -> Result<MemberPromoteResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            ClusterClient::with_interceptor(channel.channel, channel.token)
                .member_promote(MemberPromoteRequest { id })
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
            LeaseClient::with_interceptor(channel.channel, channel.token)
                .lease_grant(LeaseGrantRequest { ttl, id })
                .await
        })
        .await
    }

    pub async fn lease_revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            LeaseClient::with_interceptor(channel.channel, channel.token)
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
            let mut answers = LeaseClient::with_interceptor(channel.channel, channel.token)
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
            LeaseClient::with_interceptor(channel.channel, channel.token)
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await
        })
        .await
    }

    /// Every lease the cluster holds (etcd's `LeaseLeases`).
    pub async fn lease_leases(&mut self) -> Result<LeaseLeasesResponse, ClientError> {
        self.call(Retry::Idempotent, move |channel| async move {
            LeaseClient::with_interceptor(channel.channel, channel.token)
                .lease_leases(LeaseLeasesRequest {})
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
            async move {
                LockClient::with_interceptor(channel.channel, channel.token)
                    .lock(request)
                    .await
            }
        })
        .await
    }

    pub async fn unlock(&mut self, key: &[u8]) -> Result<UnlockResponse, ClientError> {
        let request = UnlockRequest { key: key.to_vec() };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move {
                LockClient::with_interceptor(channel.channel, channel.token)
                    .unlock(request)
                    .await
            }
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
            async move {
                ElectionClient::with_interceptor(channel.channel, channel.token)
                    .campaign(request)
                    .await
            }
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
            async move {
                ElectionClient::with_interceptor(channel.channel, channel.token)
                    .proclaim(request)
                    .await
            }
        })
        .await
    }

    pub async fn election_leader(&mut self, name: &[u8]) -> Result<LeaderResponse, ClientError> {
        let request = LeaderRequest {
            name: name.to_vec(),
        };
        self.call(Retry::Idempotent, move |channel| {
            let request = request.clone();
            async move {
                ElectionClient::with_interceptor(channel.channel, channel.token)
                    .leader(request)
                    .await
            }
        })
        .await
    }

    pub async fn resign(&mut self, leader: LeaderKey) -> Result<ResignResponse, ClientError> {
        let request = ResignRequest {
            leader: Some(leader),
        };
        self.call(Retry::OnlyIfUnsent, move |channel| {
            let request = request.clone();
            async move {
                ElectionClient::with_interceptor(channel.channel, channel.token)
                    .resign(request)
                    .await
            }
        })
        .await
    }

    pub async fn auth_enable(&mut self) -> Result<AuthEnableResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            AuthClient::with_interceptor(channel.channel, channel.token)
                .auth_enable(AuthEnableRequest {})
                .await
        })
        .await
    }

    pub async fn auth_disable(&mut self) -> Result<AuthDisableResponse, ClientError> {
        self.call(Retry::OnlyIfUnsent, move |channel| async move {
            AuthClient::with_interceptor(channel.channel, channel.token)
                .auth_disable(AuthDisableRequest {})
                .await
        })
        .await
    }

    auth_call!(user_add, AuthUserAddRequest, AuthUserAddResponse);
    auth_call!(
        user_grant_role,
        AuthUserGrantRoleRequest,
        AuthUserGrantRoleResponse
    );
    auth_call!(
        user_change_password,
        AuthUserChangePasswordRequest,
        AuthUserChangePasswordResponse
    );
    auth_call!(user_delete, AuthUserDeleteRequest, AuthUserDeleteResponse);
    auth_call!(role_add, AuthRoleAddRequest, AuthRoleAddResponse);
    auth_call!(
        role_grant_permission,
        AuthRoleGrantPermissionRequest,
        AuthRoleGrantPermissionResponse
    );
    auth_call!(
        role_revoke_permission,
        AuthRoleRevokePermissionRequest,
        AuthRoleRevokePermissionResponse
    );

    /// Tries the preferred endpoint, then each other one, as `retry` allows.
    async fn call<T, F, Fut>(&mut self, retry: Retry, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(Link) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut last_error = ClientError::Unreachable;
        let mut logged_in_again = false;
        let mut tries = 0;
        while tries < self.endpoints.len() {
            tries += 1;
            let Some(channel) = self.connected().await else {
                self.fail_over();
                continue;
            };
            if self.credentials.is_some() && self.token.0.is_none() && !self.auth_off {
                if let Err(error) = self.log_in(channel.clone()).await {
                    let retryable = is_member_trouble(&error);
                    last_error = error;
                    if !retryable {
                        return Err(last_error);
                    }
                    self.fail_over();
                    continue;
                }
            }
            let link = Link {
                channel,
                token: self.token.clone(),
            };
            let error = match tokio::time::timeout(self.request_timeout, attempt(link)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if is_transport_failure(&status) => ClientError::Lost,
                Ok(Err(status)) => ClientError::Server(status),
                Err(_) => ClientError::Lost,
            };
            if let ClientError::Server(status) = &error {
                let no_user = status.message() == "etcdserver: user name is empty";
                if self.credentials.is_some()
                    && (needs_new_token(status) || no_user)
                    && !logged_in_again
                {
                    // Refused before it could apply: log in again, retry here.
                    logged_in_again = true;
                    self.token = Token::default();
                    self.auth_off = false;
                    tries -= 1;
                    continue;
                }
            }
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
