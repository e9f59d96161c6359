//! The server: wires storage, the raft driver and the state machine
//! together, and offers the request path the gRPC layer calls — proposals
//! for writes, read-index waits for linearizable reads, local reads for
//! serializable ones.

mod auth;
pub use auth::AuthAnswer;
pub mod compactor;
pub mod concurrency;
mod corrupt;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::apply::Response;
use crate::clock::Clock;
use crate::config::{parse_listen_address, split_urls, Config};
use crate::error::Error;
use crate::membership::InitialCluster;
use crate::membership::{Member, MembershipChange};
use crate::proto::detcdpb::internal_request::Request;
use crate::proto::detcdpb::{MemberInfo, MemberUpdate};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, HashKvResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
    StatusResponse, TxnRequest, TxnResponse,
};
use crate::raft_node::{
    Bootstrap, Command, FatalError, NodeConfig, RaftNode, RecoveryError, Shared, STEP_QUEUE_LEN,
};
use crate::rng::NodeRng;
use crate::storage::Disk;
use crate::transport::{MessageFilter, RaftService};
use raft::eraftpb::ConfChangeType;

/// How long a stopping leader waits for its chosen voter to take over.
/// A healthy transfer takes a round trip or two; the bound keeps SIGTERM
/// prompt when the voters are gone.
pub const STOP_LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(1);
pub use crate::ETCD_API_VERSION;
/// How long every voter must have been reachable before strict
/// reconfiguration allows a change (etcd `HealthInterval`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How often MoveLeader checks whether the transfer is done.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Requests waiting for the raft loop. Senders wait when it is full: the
/// back-pressure that keeps a burst of clients from growing memory.
pub const COMMAND_QUEUE_LEN: usize = 4096;

/// Limits and identity the request path needs.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `--initial-cluster-token`, hashed into the ids of added members.
    pub cluster_token: String,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    /// Shorter lease TTLs are raised to this, in seconds.
    pub min_lease_ttl: i64,
    /// `--strict-reconfig-check`: refuse membership changes that could
    /// cost the quorum (etcd `mayAddMember`, `mayRemoveMember`).
    pub strict_reconfig_check: bool,
    /// `--max-concurrent-streams`: gRPC streams per client connection.
    pub max_concurrent_streams: u32,
    /// `--experimental-watch-progress-notify-interval`, as etcd bounds it.
    pub watch_progress_interval: Duration,
    /// `--grpc-keepalive-interval`: a silent client connection is pinged
    /// after this long; `None` for 0 (never).
    pub grpc_keepalive_interval: Option<Duration>,
    /// `--grpc-keepalive-timeout`: an unanswered ping closes the
    /// connection after this long.
    pub grpc_keepalive_timeout: Duration,
    /// `--experimental-warning-apply-duration`: a read-only range or
    /// transaction slower than this is logged and counted, as a slow
    /// apply is.
    pub slow_apply: Duration,
}

#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    clock: Clock,
    /// Shared: a `Server` is cloned for every request (`acting_for`).
    pub limits: Arc<Limits>,
    /// bcrypt off the raft loop, bounded (`crate::auth::password`).
    hasher: crate::auth::password::Hasher,
    /// Salts and token prefixes (seam 3: seeded in the simulator).
    rng: Arc<std::sync::Mutex<NodeRng>>,
    /// `--auth-token jwt`: tokens are signed and checked with these keys.
    jwt: Option<Arc<crate::auth::JwtProvider>>,
    /// Backups begun by this member: each scratch file's number (per
    /// member, not per process: the simulator runs several in one).
    backups_made: Arc<std::sync::atomic::AtomicU64>,
    /// Whom requests run as: a client's user (`acting_for`), or `None` for
    /// the member's own requests (auto-compaction, health probes), which
    /// no permission limits.
    caller: Option<Arc<crate::auth::AuthInfo>>,
}

/// A started member: the request path, its raft loop, its peer service.
pub struct Started {
    pub server: Server,
    pub raft_loop: tokio::task::JoinHandle<Result<(), FatalError>>,
    pub peer_service: RaftService,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

impl Server {
    /// Opens (or bootstraps) the member's storage and starts its raft loop.
    /// `raft_loop` finishes when the loop stops: `Ok` after every `Server`
    /// clone is dropped, `Err` on a fatal storage error. The caller serves
    /// `peer_service` on the peer URLs and the client API on the client URLs.
    pub async fn start(
        config: &Config,
        disk: Arc<dyn Disk>,
        clock: Clock,
        mut rng: NodeRng,
        filter: Arc<dyn MessageFilter>,
    ) -> Result<Started, StartError> {
        let cluster =
            InitialCluster::parse(&config.initial_cluster(), &config.initial_cluster_token)
                .map_err(|error| StartError::Config(error.to_string()))?;
        let member = cluster.member(&config.name);
        let bootstrap = if RaftNode::has_data(&*disk, &config.data_dir(), &config.wal_dir())? {
            // Recovery reads who we are from the WAL and who the others are
            // from the log; the flags only seed the transport. As in etcd,
            // --initial-cluster no longer has to name us: a member may be
            // renamed, and publishes its new name once it runs.
            Bootstrap::NewCluster {
                member_id: member.map(|member| member.id).unwrap_or(raft::INVALID_ID),
                cluster_id: cluster.cluster_id,
                members: cluster.members.clone(),
            }
        } else if config.initial_cluster_state == "existing" {
            let member = member.map_err(|error| StartError::Config(error.to_string()))?;
            join_bootstrap(&cluster, member, &clock).await?
        } else {
            let member = member.map_err(|error| StartError::Config(error.to_string()))?;
            check_advertised_peer_urls(config, &member.peer_urls)?;
            Bootstrap::NewCluster {
                member_id: member.id,
                cluster_id: cluster.cluster_id,
                members: cluster.members.clone(),
            }
        };
        let node_config = NodeConfig {
            data_dir: config.data_dir(),
            wal_dir: config.wal_dir(),
            bootstrap,
            election_ticks: config.election_ticks(),
            snapshot_count: config.snapshot_count,
            quota_bytes: config.quota_backend_bytes,
            max_request_bytes: config.max_request_bytes as usize,
            seed: rng.next_u64(),
            start_unix_millis: clock.wall_unix_millis(),
            name: config.name.clone(),
            client_urls: split_urls(&config.advertise_client_urls),
            auth_token_ttl: Duration::from_secs(config.auth_token_ttl),
            strict_reconfig_check: config.strict_reconfig_check,
            force_new_cluster: config.force_new_cluster,
            backend_batch: config.backend_batch(),
            slow_apply: config.experimental_warning_apply_duration,
            initial_election_tick_advance: config.initial_election_tick_advance,
            compaction_batch_limit: config.compaction_batch_limit(),
        };
        let jwt = match crate::auth::tokens::parse_auth_token(&config.auth_token)
            .map_err(StartError::Config)?
        {
            crate::auth::tokens::TokenOption::Simple => None,
            #[cfg(not(madsim))]
            crate::auth::tokens::TokenOption::Jwt(options) => Some(Arc::new(
                crate::auth::JwtProvider::load(&options, &*disk)
                    .map_err(|error| StartError::Config(format!("--auth-token: {error}")))?,
            )),
            #[cfg(madsim)]
            crate::auth::tokens::TokenOption::Jwt(_) => {
                return Err(StartError::Config(
                    "--auth-token jwt is not available in the simulator".into(),
                ))
            }
        };
        let node = RaftNode::open(&node_config, disk, clock.clone(), filter)?;
        let shared = node.shared();
        let snapshot_dir = node.snapshot_dir();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (steps, step_receiver) = mpsc::channel(STEP_QUEUE_LEN);
        let loop_clock = clock.clone();
        let tick_interval = config.tick_interval();
        let raft_loop = tokio::spawn(async move {
            node.run(loop_clock, tick_interval, receiver, step_receiver)
                .await
        });
        let asked = config.experimental_watch_progress_notify_interval;
        if !asked.is_zero() && asked < crate::config::WATCH_PROGRESS_INTERVAL_MIN {
            tracing::warn!(
                min_watch_progress_notify_interval = ?crate::config::WATCH_PROGRESS_INTERVAL_MIN,
                "adjusting watch progress notify interval to minimum period"
            );
        }
        let limits = Limits {
            cluster_token: config.initial_cluster_token.clone(),
            max_txn_ops: config.max_txn_ops as usize,
            max_request_bytes: config.max_request_bytes as usize,
            request_timeout: config.request_timeout(),
            min_lease_ttl: config.min_lease_ttl(),
            strict_reconfig_check: config.strict_reconfig_check,
            max_concurrent_streams: config.max_concurrent_streams,
            watch_progress_interval: config.watch_progress_interval(),
            grpc_keepalive_interval: Some(config.grpc_keepalive_interval)
                .filter(|interval| !interval.is_zero()),
            grpc_keepalive_timeout: config.grpc_keepalive_timeout,
            slow_apply: config.experimental_warning_apply_duration,
        };
        let server = Server {
            shared,
            commands,
            clock,
            limits: Arc::new(limits),
            hasher: crate::auth::password::Hasher::new(config.bcrypt_cost),
            rng: Arc::new(std::sync::Mutex::new(NodeRng::from_seed(rng.next_u64()))),
            jwt,
            backups_made: Arc::default(),
            caller: None,
        };
        let auto_compaction = crate::config::parse_auto_compaction(
            &config.auto_compaction_mode,
            &config.auto_compaction_retention,
        )
        .map_err(StartError::Config)?;
        tokio::spawn(compactor::run(server.clone(), auto_compaction));
        tokio::spawn(corrupt::monitor(
            server.clone(),
            config.experimental_corrupt_check_time,
        ));
        let peer_service = RaftService {
            member_id: server.shared.member_id,
            cluster_id: server.shared.cluster_id,
            steps,
            requests: Arc::new(server.clone()),
            metrics: server.shared.metrics.clone(),
            snapshots: snapshot_dir,
            receiving: Arc::default(),
        };
        Ok(Started {
            server,
            raft_loop,
            peer_service,
        })
    }

    /// What `/metrics` serves: the member's metrics in Prometheus's text
    /// format.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }

    /// The member's Prometheus metrics.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.shared.metrics.clone()
    }

    /// Whether this member knows a leader now.
    pub fn has_leader(&self) -> bool {
        self.shared.leader_id() != raft::INVALID_ID
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    /// The cluster version the leader set; etcd's "not_decided" before.
    pub fn cluster_version(&self) -> String {
        let state = self.shared.state.read().expect("state lock");
        match state.cluster_version() {
            "" => "not_decided".to_string(),
            version => version.to_string(),
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// etcd: a learner serves only Status and serializable reads; every
    /// other request gets "rpc not supported for learner".
    pub fn refuse_if_learner(&self) -> Result<(), Error> {
        let state = self.shared.state.read().expect("state lock");
        if state
            .members()
            .get(self.shared.member_id)
            .is_some_and(|member| member.is_learner)
        {
            return Err(Error::NotSupportedForLearner);
        }
        Ok(())
    }

    /// Completes a response header as etcd's `header.fill` does.
    /// Wakes whenever applying changed the store's revision (watchers).
    pub fn subscribe_revisions(&self) -> crate::published::Subscriber<i64> {
        self.shared.subscribe_revisions()
    }

    /// Runs `read` on the applied key-value store (watchers read its log).
    pub fn with_store<T>(&self, read: impl FnOnce(&crate::mvcc::Store) -> T) -> T {
        read(self.shared.state.read().expect("state lock").store())
    }

    /// The member's clock (timers of long-lived streams).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// One watch stream's progress notification interval: the configured
    /// one and up to a tenth more at random, so that streams opened
    /// together do not all notify at once (etcd's
    /// `GetProgressReportInterval`).
    pub fn watch_progress_interval(&self) -> Duration {
        let interval = self.limits.watch_progress_interval;
        let tenth = (interval / 10).as_nanos() as u64;
        let draw = self.rng.lock().expect("rng lock").next_u64();
        interval + Duration::from_nanos(draw.checked_rem(tenth).unwrap_or(0))
    }

    /// The Cluster service's header: etcd's `ClusterServer.header()` has
    /// ids and term but no revision.
    pub fn fill_cluster_header(&self, header: &mut Option<ResponseHeader>) {
        let header = self.fill_ids(header);
        header.revision = 0;
    }

    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let header = self.fill_ids(header);
        if header.revision == 0 {
            header.revision = self
                .shared
                .state
                .read()
                .expect("state lock")
                .store()
                .current_revision();
        }
    }

    /// The cluster, this member and its term.
    fn fill_ids<'h>(&self, header: &'h mut Option<ResponseHeader>) -> &'h mut ResponseHeader {
        let header = header.get_or_insert_with(ResponseHeader::default);
        header.cluster_id = self.shared.cluster_id;
        header.member_id = self.shared.member_id;
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::HeaderNamesTheLeader)
            && self.shared.leader_id() != raft::INVALID_ID
        {
            header.member_id = self.shared.leader_id();
        }
        header.raft_term = self.shared.term();
        header
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        self.shared.metrics.range_total.inc();
        let started = self.clock.elapsed();
        let response = self.range_now(&request).await;
        let count = response.as_ref().map_or(0, |response| response.kvs.len());
        self.warn_if_slow_read(started, count);
        response
    }

    async fn range_now(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        if !request.serializable && !sabotaged_stale_read() {
            self.read_index().await?;
        }
        let state = self.shared.state.read().expect("state lock");
        if let Some(caller) = &self.caller {
            state.auth().check(
                caller,
                &request.key,
                &request.range_end,
                crate::auth::Access::Read,
            )?;
        }
        state.range(request)
    }

    /// etcd logs a read-only range or transaction slower than
    /// `--experimental-warning-apply-duration` as it logs a slow apply,
    /// and counts it in the same metric.
    fn warn_if_slow_read(&self, started: Duration, response_count: usize) {
        let took = self.clock.elapsed().saturating_sub(started);
        if took > self.limits.slow_apply {
            self.shared.metrics.slow_apply.inc();
            tracing::warn!(
                took = ?took,
                expected = ?self.limits.slow_apply,
                prefix = "read-only range ",
                response_count,
                "apply request took too long"
            );
        }
    }

    /// A read applied as a raft entry (etcd's v2 QGET, which its /health
    /// makes): answered once the entry commits, so only with a quorum.
    pub async fn range_through_raft(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        match self.propose(Request::Range(request)).await? {
            Response::Range(response) => Ok(response),
            other => unreachable!("a range answered with {other:?}"),
        }
    }

    /// etcd's HashKV: the hash of this member's key-value history up to
    /// `revision` (0: now), read locally as etcd does, so members can be
    /// compared with each other (and with etcd).
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse, Error> {
        let hash = self
            .shared
            .state
            .read()
            .expect("state lock")
            .store()
            .hash_kv(revision)?;
        Ok(HashKvResponse {
            header: Some(ResponseHeader {
                revision: hash.current_revision,
                ..ResponseHeader::default()
            }),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
        })
    }

    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, Error> {
        self.check_quota(crate::apply::put_cost(&request)).await?;
        match self.propose(Request::Put(request)).await? {
            Response::Put(response) => Ok(response),
            other => unreachable!("put answered with {other:?}"),
        }
    }

    pub async fn delete_range(
        &self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, Error> {
        match self.propose(Request::DeleteRange(request)).await? {
            Response::DeleteRange(response) => Ok(response),
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    /// A transaction with only ranges is a read (linearizable unless every
    /// range is serializable, as in etcd); anything else goes through raft.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Error> {
        if crate::apply::is_read_only_txn(&request) {
            let started = self.clock.elapsed();
            let response = self.txn_read_only(&request).await;
            let count = response
                .as_ref()
                .map_or(0, |response| response.responses.len());
            self.warn_if_slow_read(started, count);
            return response;
        }
        self.check_quota(crate::apply::txn_cost(&request)).await?;
        match self.propose(Request::Txn(request)).await? {
            Response::Txn(response) => Ok(response),
            other => unreachable!("txn answered with {other:?}"),
        }
    }

    async fn txn_read_only(&self, request: &TxnRequest) -> Result<TxnResponse, Error> {
        if !crate::apply::is_serializable_txn(request) && !sabotaged_stale_read() {
            self.read_index().await?;
        }
        let state = self.shared.state.read().expect("state lock");
        if let Some(caller) = &self.caller {
            state.auth().check_txn(caller, request)?;
        }
        let response = state.txn_read_only(request)?;
        self.shared.metrics.count_txn(&response.responses);
        Ok(response)
    }

    /// etcd `LeaseGrant`: a TTL over the maximum is refused before it
    /// reaches raft; one under the minimum is raised to it here, where the
    /// election timeout is known (apply must not depend on flags).
    pub async fn lease_grant(
        &self,
        mut request: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, Error> {
        if request.ttl > crate::lease::MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        #[cfg(madsim)]
        let raised = !crate::sabotage::active(crate::sabotage::Sabotage::LeaseMinTtlIgnored);
        #[cfg(not(madsim))]
        let raised = true;
        if raised {
            request.ttl = request.ttl.max(self.limits.min_lease_ttl);
        }
        match self.propose(Request::LeaseGrant(request)).await? {
            Response::LeaseGrant(response) => Ok(response),
            other => unreachable!("lease grant answered with {other:?}"),
        }
    }

    /// etcd `LeaseRevoke`: the lease's keys go in one revision.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        let request = crate::proto::etcdserverpb::LeaseRevokeRequest { id };
        match self.propose(Request::LeaseRevoke(request)).await? {
            Response::LeaseRevoke(response) => Ok(response),
            other => unreachable!("lease revoke answered with {other:?}"),
        }
    }

    /// A keepalive. It commits through raft before it is answered, so a
    /// new leader always knows of it (`crate::lease`). The lease's TTL.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, Error> {
        let request = crate::proto::detcdpb::LeaseRenew { id };
        match self.propose(Request::LeaseRenew(request)).await? {
            Response::LeaseRenewed { ttl, .. } => Ok(ttl),
            other => unreachable!("lease renew answered with {other:?}"),
        }
    }

    /// etcd `LeaseTimeToLive`, answered after a read index from this
    /// member's own deadline. An unknown lease has TTL -1, as in etcd.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        self.read_index().await?;
        let state = self.shared.state.read().expect("state lock");
        let Some(lease) = state.leases().get(id) else {
            #[cfg(madsim)]
            let ttl = -i64::from(!crate::sabotage::active(
                crate::sabotage::Sabotage::TimeToLiveOfUnknownIsZero,
            ));
            #[cfg(not(madsim))]
            let ttl = -1;
            return Ok(LeaseTimeToLiveResponse {
                header: None,
                id,
                ttl,
                granted_ttl: 0,
                keys: Vec::new(),
            });
        };
        // etcd 3.4.26 (CVE-2023-32082): the keys are shown only to a user
        // who may read every one of them.
        if let (true, Some(caller)) = (keys, &self.caller) {
            for key in &lease.keys {
                state
                    .auth()
                    .check(caller, key, &[], crate::auth::Access::Read)?;
            }
        }
        let remaining = self
            .shared
            .lease_timers
            .lock()
            .expect("lease timers lock")
            .remaining(id, self.clock.elapsed())
            .unwrap_or_else(|| lease.resume_from());
        Ok(LeaseTimeToLiveResponse {
            header: Some(ResponseHeader {
                revision: state.store().current_revision(),
                ..ResponseHeader::default()
            }),
            id,
            // Whole seconds, cut as etcd's int64(Remaining().Seconds()).
            ttl: remaining.as_secs() as i64,
            granted_ttl: lease.ttl,
            keys: if keys {
                #[allow(unused_mut)]
                let mut listed: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
                #[cfg(madsim)]
                if crate::sabotage::active(crate::sabotage::Sabotage::TimeToLiveDropsAKey) {
                    listed.pop();
                }
                listed
            } else {
                Vec::new()
            },
        })
    }

    /// etcd `LeaseLeases`: every lease, soonest deadline first.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, Error> {
        self.read_index().await?;
        let state = self.shared.state.read().expect("state lock");
        let ids = self
            .shared
            .lease_timers
            .lock()
            .expect("lease timers lock")
            .by_deadline(state.leases());
        Ok(LeaseLeasesResponse {
            header: Some(ResponseHeader {
                revision: state.store().current_revision(),
                ..ResponseHeader::default()
            }),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        })
    }

    pub async fn compact(&self, request: CompactionRequest) -> Result<CompactionResponse, Error> {
        match self.propose(Request::Compaction(request)).await? {
            Response::Compaction(response) => Ok(response),
            other => unreachable!("compaction answered with {other:?}"),
        }
    }

    /// etcd's quota check before proposing a write that adds `cost_bytes`:
    /// if it would not fit, raise the NOSPACE alarm for this member (through
    /// raft, so every member caps its store) and refuse the write.
    async fn check_quota(&self, cost_bytes: u64) -> Result<(), Error> {
        if cost_bytes == 0 {
            return Ok(());
        }
        let refused = self
            .shared
            .state
            .read()
            .expect("state lock")
            .check_quota(cost_bytes);
        if let Err(error) = refused {
            let raise = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.shared.member_id,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(alarm_error) = self.propose(Request::Alarm(raise)).await {
                tracing::warn!(%alarm_error, "could not raise the NOSPACE alarm");
            }
            return Err(error);
        }
        Ok(())
    }

    /// etcd's Maintenance.Alarm: GET lists the active alarms (of one type,
    /// or all for NONE) from local state; ACTIVATE and DEACTIVATE go
    /// through raft and answer the alarms they changed. etcd sets no header.
    pub async fn alarm(&self, request: AlarmRequest) -> Result<AlarmResponse, Error> {
        if request.action() == AlarmAction::Get {
            let alarms = self
                .shared
                .state
                .read()
                .expect("state lock")
                .alarms(request.alarm);
            return Ok(AlarmResponse {
                header: None,
                alarms,
            });
        }
        match self.propose(Request::Alarm(request)).await? {
            Response::Alarms(alarms) => Ok(AlarmResponse {
                header: None,
                alarms,
            }),
            other => unreachable!("alarm answered with {other:?}"),
        }
    }

    /// etcd's Maintenance.Defragment: disk space back after a
    /// compaction. The backend's durable point is marked in the WAL now
    /// (older segments are released), then the backend file is compacted
    /// in place by its writer. Requests go on meanwhile: the raft loop
    /// only hands the writer its changes, which wait for the next commit.
    pub async fn defragment(&self) -> Result<(), Error> {
        self.call(|reply| Command::Snapshot { reply }).await?;
        // A failed compaction stops the writer (it logs why), and with it
        // the member; one refused while a backup or hash is being taken
        // changed nothing and may be asked again.
        self.shared
            .backend
            .compact()
            .await
            .map_err(|error| match error {
                crate::backend::Error::Busy => Error::TooManyRequests,
                _ => Error::Stopped,
            })
    }

    /// Maintenance.Hash's hash: the CRC-32C of the snapshot stream of the
    /// state the backend holds once everything applied is committed
    /// (equal on every member at the same applied index), computed a piece
    /// at a time, and the revision it holds.
    pub async fn state_hash(&self) -> Result<(u32, i64), Error> {
        let view = self.shared.backend.view().await.map_err(|error| {
            tracing::error!(%error, "the backend cannot be read for a view");
            Error::Corrupt
        })?;
        crate::storage::blocking::run(move || {
            let corrupt = |error: String| {
                tracing::error!(%error, "the backend's view cannot be read");
                Error::Corrupt
            };
            let mut header = crate::raft_node::view_header(&view).map_err(corrupt)?;
            let revision = header.current_revision;
            // What every member at this index holds alike: the parts as of
            // the index (each member stores them as of its own last change
            // to them), and neither raft's term nor its configuration.
            let mut parts = crate::apply::StateMachine::from_stored(
                &header.parts,
                crate::mvcc::Store::new(),
                0,
            )
            .map_err(corrupt)?;
            parts.skip(header.index);
            header.parts = parts.encode_parts();
            header.term = 0;
            header.conf_state = Vec::new();
            struct Crc(u32);
            impl crate::storage::snapshot::PieceSink for Crc {
                fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
                    self.0 = crc32c::crc32c_append(self.0, bytes);
                    Ok(())
                }
            }
            let io = |error: std::io::Error| corrupt(error.to_string());
            let mut writer =
                crate::storage::snapshot::SnapshotWriter::new(Crc(0), header).map_err(io)?;
            let mut cursor = Some(crate::mvcc::Revision::new(0, 0));
            while cursor.is_some() {
                let records =
                    (view.next_piece(&mut cursor)).map_err(|error| corrupt(error.to_string()))?;
                for (revision, record) in &records {
                    writer.push(*revision, record).map_err(io)?;
                }
            }
            Ok((writer.finish().map_err(io)?.0, revision))
        })
        .await
    }

    /// The backup file of the applied state (`crate::backup`): what
    /// Maintenance.Snapshot streams. Written beside the backend from a
    /// view of it, a piece of revisions at a time, then read back for its
    /// checksum, so no copy of the state is held in memory; the file goes
    /// when the returned handle is dropped.
    pub async fn backup_file(&self) -> Result<BackupFile, Error> {
        let view = self.shared.backend.view().await.map_err(|error| {
            tracing::error!(%error, "the backend cannot be read for a view");
            Error::Corrupt
        })?;
        let disk = self.shared.backend.disk().clone();
        let number = (self.backups_made).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .shared
            .backend
            .scratch_path(&format!("backup-{number}"));
        let file = BackupFile {
            disk: disk.clone(),
            path: path.clone(),
            bytes: 0,
            revision: 0,
        };
        crate::storage::blocking::run(move || write_backup(file, &view)).await
    }

    /// Raft's view of itself, from the loop (etcd's `raft.status` in
    /// `/debug/vars`).
    pub async fn raft_status(&self) -> Result<crate::raft_node::RaftStatus, Error> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// What etcd's Maintenance.Status reports.
    pub fn status(&self) -> StatusResponse {
        let (revision, applied, is_learner, alarms) = {
            let state = self.shared.state.read().expect("state lock");
            let is_learner = state
                .members()
                .get(self.shared.member_id)
                .is_some_and(|member| member.is_learner);
            let alarms = state.alarms(AlarmType::None as i32);
            (
                state.store().current_revision(),
                state.applied_index(),
                is_learner,
                alarms,
            )
        };
        let (term, leader) = self.shared.term_and_leader();
        let db = self.shared.db_sizes();
        StatusResponse {
            header: Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            }),
            version: ETCD_API_VERSION.to_string(),
            db_size: db.file as i64,
            leader,
            raft_index: self.shared.commit_index(),
            raft_term: term,
            raft_applied_index: applied,
            errors: (leader == raft::INVALID_ID)
                .then(|| Error::NoLeader.to_string())
                .into_iter()
                .chain(alarms.iter().map(crate::apply::describe_alarm))
                .collect(),
            db_size_in_use: db.in_use as i64,
            is_learner,
        }
    }

    pub fn members(&self) -> Vec<Member> {
        self.shared
            .state
            .read()
            .expect("state lock")
            .members()
            .list()
            .cloned()
            .collect()
    }

    /// etcd `MemberAdd`: a voter only if a quorum would still have started
    /// (strict reconfiguration, etcd 3.4's default); returns the new member
    /// and the members after the change.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), Error> {
        if peer_urls.is_empty()
            || peer_urls
                .iter()
                .any(|url| parse_listen_address(url).is_err())
        {
            return Err(Error::MemberBadUrls);
        }
        let token = self.limits.cluster_token.clone();
        // etcd hashes in the time, so re-adding the same peer URLs after a
        // removal (a wiped member coming back) gives a new id.
        let seconds = Some(self.clock.wall_unix_millis() / 1000);
        #[cfg(madsim)]
        let seconds =
            seconds.filter(|_| !crate::sabotage::active(crate::sabotage::Sabotage::MemberIdReused));
        let id = crate::membership::added_member_id(&peer_urls, &token, seconds);
        let member = Member {
            id,
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner,
        };
        {
            let state = self.shared.state.read().expect("state lock");
            state.members().check_add(&member)?;
            if self.limits.strict_reconfig_check {
                if !is_learner && !state.members().ready_to_add_voter() {
                    return Err(Error::MemberNotEnoughStarted);
                }
                self.check_connected_fully(state.members())?;
            }
        }
        let change_type = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let info = MemberInfo {
            id,
            name: String::new(),
            peer_urls: member.peer_urls.clone(),
            is_learner,
        };
        let members = self.change_conf(change_type, id, info).await?;
        Ok((member, members))
    }

    /// etcd `MemberRemove`.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, Error> {
        {
            // etcd's order: the strict reconfiguration checks first (an
            // unknown id counts as a voter), then whether it exists.
            let state = self.shared.state.read().expect("state lock");
            let member = state.members().get(id);
            if self.limits.strict_reconfig_check && !member.is_some_and(|member| member.is_learner)
            {
                if !state.members().ready_to_remove_voter(id) {
                    return Err(Error::MemberNotEnoughStarted);
                }
                self.check_quorum_stays_connected(state.members(), id)?;
            }
            state.members().check_exists(id)?;
        }
        self.change_conf(
            ConfChangeType::RemoveNode,
            id,
            MemberInfo {
                id,
                ..MemberInfo::default()
            },
        )
        .await
    }

    /// etcd `MemberUpdate`: new peer URLs, replicated as a command.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, Error> {
        if peer_urls.is_empty()
            || peer_urls
                .iter()
                .any(|url| parse_listen_address(url).is_err())
        {
            return Err(Error::MemberBadUrls);
        }
        self.shared
            .state
            .read()
            .expect("state lock")
            .members()
            .check(&MembershipChange::UpdatePeerUrls(id, peer_urls.clone()))?;
        match self
            .propose(Request::MemberUpdate(MemberUpdate { id, peer_urls }))
            .await?
        {
            Response::Members(members) => Ok(members),
            other => unreachable!("member update answered with {other:?}"),
        }
    }

    /// etcd `MemberPromote`: only the leader knows whether the learner has
    /// caught up, so a follower forwards the request to it.
    /// All checks happen on the leader, in etcd's order (`mayPromoteMember`
    /// then apply): readiness first, then enough started members, then
    /// whether the member exists and is a learner.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, Error> {
        let leader = self.shared.leader_id();
        if leader == self.shared.member_id {
            return match self.call(|reply| Command::Promote { id, reply }).await? {
                Response::Members(members) => Ok(members),
                other => unreachable!("promote answered with {other:?}"),
            };
        }
        if leader == raft::INVALID_ID {
            return Err(Error::NoLeader);
        }
        let leader_url = self
            .shared
            .state
            .read()
            .expect("state lock")
            .members()
            .get(leader)
            .and_then(|m| crate::transport::peer_target(&m.peer_urls));
        let leader_url = leader_url.ok_or(Error::NoLeader)?;
        let forwarded = async {
            use crate::transport::peer_call::{forward_promote, PeerCallError};
            forward_promote(&leader_url, id)
                .await
                .map_err(|error| match error {
                    PeerCallError::Unreachable(_) => Error::NoLeader,
                    PeerCallError::Failed(_) => Error::LeaderChanged,
                })
        };
        let error = tokio::select! {
            biased;
            error = forwarded => error?,
            _ = self.clock.sleep(self.limits.request_timeout) => return Err(Error::Timeout),
        };
        if !error.is_empty() {
            return Err(Error::from_etcd_string(&error));
        }
        // The leader answered once the promotion applied there; wait until
        // it has applied here too, so our member list shows it.
        self.read_index().await?;
        Ok(self.members())
    }

    /// Voting peers whose streams have been up for the last
    /// `HEALTH_INTERVAL` (etcd `numConnectedSince`); this member counts.
    fn connected_voters(&self, members: &crate::membership::Members) -> (usize, usize) {
        let now = self.clock.elapsed();
        let activity = self.shared.peer_activity.lock().expect("activity lock");
        let healthy = |id: u64| {
            id == self.shared.member_id
                || activity
                    .get(&id)
                    .is_some_and(|since| now.saturating_sub(*since) >= HEALTH_INTERVAL)
        };
        let voters: Vec<u64> = members.voters().map(|member| member.id).collect();
        (
            voters.iter().filter(|id| healthy(**id)).count(),
            voters.len(),
        )
    }

    /// etcd `isConnectedFullySince`: strict reconfiguration adds a member
    /// only while every voter has been reachable for a while (etcd 3.4
    /// does not ask this of a promotion).
    fn check_connected_fully(&self, members: &crate::membership::Members) -> Result<(), Error> {
        let (connected, voters) = self.connected_voters(members);
        if connected < voters {
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    /// etcd `mayRemoveMember`: removing a voter must leave a connected
    /// quorum; a member that is down anyway is always safe to remove.
    fn check_quorum_stays_connected(
        &self,
        members: &crate::membership::Members,
        id: u64,
    ) -> Result<(), Error> {
        let down = id != self.shared.member_id
            && !self
                .shared
                .peer_activity
                .lock()
                .expect("activity lock")
                .contains_key(&id);
        if down {
            return Ok(());
        }
        let (connected, voters) = self.connected_voters(members);
        if connected.saturating_sub(1) < 1 + (voters - 1) / 2 {
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    async fn change_conf(
        &self,
        change_type: ConfChangeType,
        id: u64,
        info: MemberInfo,
    ) -> Result<Vec<Member>, Error> {
        let change = crate::raft_node::single_change(change_type, id, info);
        match self
            .call(|reply| Command::ChangeConf { change, reply })
            .await?
        {
            Response::Members(members) => Ok(members),
            other => unreachable!("configuration change answered with {other:?}"),
        }
    }

    /// Stops the member as etcd does on SIGTERM: a leader first hands
    /// leadership to its most caught-up voter, waiting at most
    /// `STOP_LEADER_TRANSFER_TIMEOUT` for it to lead; then the raft loop
    /// stops (the member no longer votes) and client streams end.
    pub async fn stop(&self) {
        let handed_over = async {
            let Ok(Some(transferee)) = self.call(|reply| Command::StepDown { reply }).await else {
                return;
            };
            tracing::info!(
                transferee = format_args!("{transferee:x}"),
                "handing leadership over before stopping"
            );
            while self.shared.leader_id() != transferee {
                self.clock.sleep(LEADER_POLL_INTERVAL).await;
            }
        };
        tokio::select! {
            biased;
            () = handed_over => {}
            _ = self.clock.sleep(STOP_LEADER_TRANSFER_TIMEOUT) => {
                tracing::warn!("leadership was not handed over in time; stopping anyway");
            }
        }
        self.shared.stop();
    }

    /// Resolves once the member is stopping.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.stopped()
    }

    /// Waits `interval` on the member's clock, then says whether this
    /// member leads; `None` once it is stopping. The leader's periodic
    /// duties (auto-compaction, corruption checks) run on it.
    pub(crate) async fn leads_after(&self, interval: Duration) -> Option<bool> {
        tokio::select! {
            biased;
            () = self.stopped() => None,
            _ = self.clock.sleep(interval) => Some(self.shared.leader_id() == self.member_id()),
        }
    }

    /// Hands leadership to `transferee` and waits until it has it (etcd
    /// `MoveLeader`: only the leader may be asked).
    pub async fn move_leader(&self, transferee: u64) -> Result<(), Error> {
        self.call(|reply| Command::TransferLeader { transferee, reply })
            .await?;
        let waited = async {
            while self.shared.leader_id() != transferee {
                self.clock.sleep(LEADER_POLL_INTERVAL).await;
            }
        };
        tokio::select! {
            biased;
            _ = waited => Ok(()),
            _ = self.clock.sleep(self.limits.request_timeout) => Err(Error::LeaderTransferTimeout),
        }
    }

    /// Proposes `request` as the caller (see `StateMachine::apply_as`).
    async fn propose(&self, request: Request) -> Result<Response, Error> {
        let auth = self.caller.as_ref().map(|caller| caller.to_proto());
        let result = self
            .call(|reply| Command::Propose {
                request,
                auth,
                reply,
            })
            .await;
        if result.is_err() {
            self.shared.metrics.proposals_failed.inc();
        }
        result
    }

    async fn read_index(&self) -> Result<(), Error> {
        self.call(|reply| Command::ReadIndex { reply }).await
    }

    /// Sends a command to the raft loop and waits for its answer, at most
    /// the request timeout.
    async fn call<T>(
        &self,
        command: impl FnOnce(crate::raft_node::Reply<T>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.commands
                .send(command(reply))
                .await
                .map_err(|_| Error::Stopped)?;
            answer.await.map_err(|_| Error::Stopped)?
        };
        tokio::select! {
            biased;
            result = wait => result,
            _ = self.clock.sleep(self.limits.request_timeout) => {
                // etcd: a request that waited in vain for a leader says so.
                if self.shared.leader_id() == raft::INVALID_ID { Err(Error::NoLeader) } else { Err(Error::Timeout) }
            }
        }
    }
}

/// How long a joining member keeps asking the cluster who it is.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A member started with `--initial-cluster-state existing` on an empty
/// data dir: ask the other members listed in `--initial-cluster` for the
/// cluster, and find ourselves in it by our peer URLs (the id was made by
/// MemberAdd, so it cannot be derived from the flags).
async fn join_bootstrap(
    cluster: &InitialCluster,
    me: &Member,
    clock: &Clock,
) -> Result<Bootstrap, StartError> {
    let mut my_urls = me.peer_urls.clone();
    my_urls.sort();
    let others: Vec<String> = cluster
        .members
        .iter()
        .filter(|member| member.name != me.name)
        .flat_map(|member| member.peer_urls.clone())
        .collect();
    if others.is_empty() {
        return Err(StartError::Config(
            "--initial-cluster-state existing needs the other members in --initial-cluster".into(),
        ));
    }
    let lists_me = |response: &crate::proto::detcdpb::MembersResponse| {
        response
            .members
            .iter()
            .find(|member| {
                let mut urls = member.peer_urls.clone();
                urls.sort();
                urls == my_urls
            })
            .cloned()
    };
    // Ask every peer each round and trust the freshest answer: one that
    // has not applied the latest MemberAdd does not list us yet, or lists
    // the removed member we replace under our URLs. Until the freshest
    // answer lists us, ask again: the add may still be applying.
    let answered = std::sync::atomic::AtomicBool::new(false);
    let ask = async {
        loop {
            let mut freshest: Option<crate::proto::detcdpb::MembersResponse> = None;
            for url in &others {
                match crate::transport::peer_call::fetch_members(std::slice::from_ref(url), clock)
                    .await
                {
                    Ok(response) => {
                        if freshest
                            .as_ref()
                            .is_none_or(|best| response.applied_index > best.applied_index)
                        {
                            freshest = Some(response);
                        }
                    }
                    Err(error) => {
                        tracing::info!(peer = %url, %error, "asking a peer for the cluster")
                    }
                }
            }
            if let Some(response) = freshest {
                if let Some(me) = lists_me(&response) {
                    return (response, me);
                }
                answered.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            clock.sleep(crate::transport::RECONNECT_BACKOFF).await;
        }
    };
    let (response, found) = tokio::select! {
        biased;
        answer = ask => answer,
        _ = clock.sleep(JOIN_TIMEOUT) => {
            return Err(StartError::Config(if answered.load(std::sync::atomic::Ordering::Relaxed) {
                format!(
                    "the cluster has no member with peer URLs {my_urls:?}: add it first with `etcdctl member add`"
                )
            } else {
                format!("no member of the cluster answered at {others:?}")
            }));
        }
    };
    tracing::info!(
        member = format_args!("{:x}", found.id),
        cluster = format_args!("{:x}", response.cluster_id),
        "joining a running cluster"
    );
    let peers = response
        .members
        .iter()
        .filter_map(|member| Some((member.id, crate::transport::peer_target(&member.peer_urls)?)))
        .collect();
    Ok(Bootstrap::Join {
        member_id: found.id,
        cluster_id: response.cluster_id,
        peers,
    })
}

impl crate::transport::PeerRequests for Server {
    fn members(&self) -> crate::proto::detcdpb::MembersResponse {
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
        crate::proto::detcdpb::MembersResponse {
            cluster_id: self.shared.cluster_id,
            members,
            applied_index: state.applied_index(),
            removed: state.members().removed().collect(),
        }
    }

    fn hash_kv(&self, revision: i64) -> crate::proto::detcdpb::PeerHashKvResponse {
        match Server::hash_kv(self, revision) {
            Ok(answer) => crate::proto::detcdpb::PeerHashKvResponse {
                hash: answer.hash,
                compact_revision: answer.compact_revision,
                revision: answer.header.map_or(0, |header| header.revision),
                error: String::new(),
            },
            Err(error) => crate::proto::detcdpb::PeerHashKvResponse {
                error: error.to_string(),
                ..Default::default()
            },
        }
    }

    fn promote(&self, id: u64) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(async move {
            match self.call(|reply| Command::Promote { id, reply }).await {
                Ok(_) => String::new(),
                Err(error) => error.to_string(),
            }
        })
    }
}

/// etcd's `advertiseMatchesCluster`: a new member's
/// `--initial-advertise-peer-urls` are exactly its URLs in
/// `--initial-cluster`, so the ids every member derives agree with the
/// addresses the peers will dial. Same messages as etcd.
fn check_advertised_peer_urls(config: &Config, in_cluster: &[String]) -> Result<(), StartError> {
    let mut advertised = split_urls(&config.initial_advertise_peer_urls);
    advertised.sort();
    let mut listed = in_cluster.to_vec();
    listed.sort();
    if let Some(url) = listed.iter().find(|url| !advertised.contains(url)) {
        return Err(StartError::Config(format!(
            "--initial-cluster has {}={url} but missing from --initial-advertise-peer-urls={} \
             (resolved urls: {:?} != {:?})",
            config.name,
            config.initial_advertise_peer_urls,
            advertised.join(","),
            listed.join(","),
        )));
    }
    if let Some(url) = advertised.iter().find(|url| !listed.contains(url)) {
        return Err(StartError::Config(format!(
            "--initial-advertise-peer-urls has {url} but missing from --initial-cluster={}",
            config.initial_cluster()
        )));
    }
    Ok(())
}

#[cfg(madsim)]
fn sabotaged_stale_read() -> bool {
    crate::sabotage::active(crate::sabotage::Sabotage::StaleRead)
}

#[cfg(not(madsim))]
fn sabotaged_stale_read() -> bool {
    false
}

/// The bytes read back at once for a backup's checksum, and sent at once.
pub const BACKUP_READ_BYTES: usize = 1024 * 1024;

/// A backup written to a scratch file (`Server::backup_file`), removed
/// when dropped: its pages, then their SHA-256.
pub struct BackupFile {
    disk: Arc<dyn Disk>,
    path: std::path::PathBuf,
    /// The whole file, checksum included.
    pub bytes: u64,
    /// The revision it holds.
    pub revision: i64,
}

impl Drop for BackupFile {
    fn drop(&mut self) {
        if let Err(error) = self.disk.remove(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove a backup's scratch file");
        }
    }
}

impl BackupFile {
    /// `len` bytes from `offset` (fewer at the end).
    pub async fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
        let (disk, path) = (self.disk.clone(), self.path.clone());
        let len = len.min(self.bytes.saturating_sub(offset) as usize);
        crate::storage::blocking::run(move || {
            let mut chunk = vec![0; len];
            disk.read_at(&path, offset, &mut chunk)
                .map_err(|error| Error::Disk(format!("reading the backup: {error}")))?;
            Ok(chunk)
        })
        .await
    }
}

/// Writes the backup of what `view` holds to `file`'s scratch file: the
/// pages, a piece of revisions at a time, then their checksum, read back.
fn write_backup(mut file: BackupFile, view: &crate::backend::View) -> Result<BackupFile, Error> {
    use crate::backup::bolt::PageOut;
    let disk_error = |error: String| Error::Disk(format!("writing the backup: {error}"));
    let header = crate::raft_node::view_header(view).map_err(|error| {
        tracing::error!(%error, "the backend's view holds no state");
        Error::Corrupt
    })?;
    struct Pages<'a>(&'a dyn Disk, &'a std::path::Path);
    impl PageOut for Pages<'_> {
        fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
            self.0.write_at(self.1, offset, bytes)
        }
    }
    file.disk
        .create(&file.path)
        .map_err(|error| disk_error(error.to_string()))?;
    let mut cursor = Some(crate::mvcc::Revision::new(0, 0));
    let records = || (view.next_piece(&mut cursor)).map_err(|error| error.to_string());
    let (_, pages) = crate::backup::write_pages(Pages(&*file.disk, &file.path), &header, records)
        .map_err(|error| disk_error(error.to_string()))?;
    let body = pages * crate::backup::bolt::PAGE_BYTES as u64;
    let mut offset = 0;
    let mut failed = None;
    let chunks = std::iter::from_fn(|| {
        if offset >= body || failed.is_some() {
            return None;
        }
        let mut chunk = vec![0; BACKUP_READ_BYTES.min((body - offset) as usize)];
        if let Err(error) = file.disk.read_at(&file.path, offset, &mut chunk) {
            failed = Some(error.to_string());
            return None;
        }
        offset += chunk.len() as u64;
        Some(chunk)
    });
    let sum = crate::backup::checksum_of(chunks);
    if let Some(error) = failed {
        return Err(disk_error(error));
    }
    file.disk
        .write_at(&file.path, body, &sum)
        .map_err(|error| disk_error(error.to_string()))?;
    file.bytes = body + sum.len() as u64;
    file.revision = header.current_revision;
    Ok(file)
}
