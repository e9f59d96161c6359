//! The server: wires storage, the raft driver and the state machine
//! together, and offers the request path the gRPC layer calls — proposals
//! for writes, read-index waits for linearizable reads, local reads for
//! serializable ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::apply::Response;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::membership::InitialCluster;
use crate::proto::detcdpb::internal_request::Request;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, StatusResponse, TxnRequest, TxnResponse,
};
use crate::membership::Member;
use crate::raft_node::{Command, FatalError, NodeConfig, RaftNode, RecoveryError, Shared, STEP_QUEUE_LEN};
use crate::transport::{MessageFilter, RaftService};
use crate::rng::NodeRng;
use crate::storage::Disk;

/// The etcd version whose API detcd serves, reported by Status so client
/// libraries that gate features on the server version treat us as it.
pub const ETCD_API_VERSION: &str = "3.4.23";
/// How often MoveLeader checks whether the transfer is done.
const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Requests waiting for the raft loop. Senders wait when it is full: the
/// back-pressure that keeps a burst of clients from growing memory.
pub const COMMAND_QUEUE_LEN: usize = 4096;

/// Limits and identity the request path needs.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
}

#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    clock: Clock,
    pub limits: Limits,
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
    pub fn start(config: &Config, disk: Arc<dyn Disk>, clock: Clock, mut rng: NodeRng, filter: Arc<dyn MessageFilter>) -> Result<Started, StartError> {
        let cluster = InitialCluster::parse(&config.initial_cluster(), &config.initial_cluster_token)
            .map_err(|error| StartError::Config(error.to_string()))?;
        let member = cluster.member(&config.name).map_err(|error| StartError::Config(error.to_string()))?;
        let node_config = NodeConfig {
            data_dir: config.data_dir(),
            member_id: member.id,
            cluster_id: cluster.cluster_id,
            initial_voters: cluster.members.iter().map(|member| member.id).collect(),
            election_ticks: config.election_ticks(),
            snapshot_count: config.snapshot_count,
            quota_bytes: config.quota_backend_bytes,
            max_request_bytes: config.max_request_bytes as usize,
            seed: rng.next_u64(),
            proposal_id_base: proposal_id_base(member.id, clock.wall_unix_millis()),
            name: config.name.clone(),
            client_urls: split_urls(&config.advertise_client_urls),
            initial_members: cluster.members.clone(),
        };
        let node = RaftNode::open(&node_config, disk, clock.clone(), filter)?;
        let shared = node.shared();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (steps, step_receiver) = mpsc::channel(STEP_QUEUE_LEN);
        let loop_clock = clock.clone();
        let tick_interval = config.tick_interval();
        let raft_loop = tokio::spawn(async move { node.run(loop_clock, tick_interval, receiver, step_receiver).await });
        let peer_service = RaftService { member_id: shared.member_id, cluster_id: shared.cluster_id, steps };
        let limits = Limits {
            max_txn_ops: config.max_txn_ops as usize,
            max_request_bytes: config.max_request_bytes as usize,
            request_timeout: config.request_timeout(),
        };
        Ok(Started { server: Server { shared, commands, clock, limits }, raft_loop, peer_service })
    }

    pub fn member_id(&self) -> u64 {
        self.shared.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id
    }

    /// Completes a response header as etcd's `header.fill` does.
    pub fn fill_header(&self, header: &mut Option<ResponseHeader>) {
        let header = header.get_or_insert_with(ResponseHeader::default);
        header.cluster_id = self.shared.cluster_id;
        header.member_id = self.shared.member_id;
        header.raft_term = self.shared.term();
        if header.revision == 0 {
            header.revision = self.shared.state.read().expect("state lock").store().current_revision();
        }
    }

    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        if !request.serializable {
            self.read_index().await?;
        }
        self.shared.state.read().expect("state lock").range(&request)
    }

    pub async fn put(&self, request: PutRequest) -> Result<PutResponse, Error> {
        match self.propose(Request::Put(request)).await? {
            Response::Put(response) => Ok(response),
            other => unreachable!("put answered with {other:?}"),
        }
    }

    pub async fn delete_range(&self, request: DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        match self.propose(Request::DeleteRange(request)).await? {
            Response::DeleteRange(response) => Ok(response),
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    /// A transaction with only ranges is a read (linearizable unless every
    /// range is serializable, as in etcd); anything else goes through raft.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Error> {
        if crate::apply::is_read_only_txn(&request) {
            if !crate::apply::is_serializable_txn(&request) {
                self.read_index().await?;
            }
            return self.shared.state.read().expect("state lock").txn_read_only(&request);
        }
        match self.propose(Request::Txn(request)).await? {
            Response::Txn(response) => Ok(response),
            other => unreachable!("txn answered with {other:?}"),
        }
    }

    pub async fn compact(&self, request: CompactionRequest) -> Result<CompactionResponse, Error> {
        match self.propose(Request::Compaction(request)).await? {
            Response::Compaction(response) => Ok(response),
            other => unreachable!("compaction answered with {other:?}"),
        }
    }

    /// What etcd's Maintenance.Status reports.
    pub fn status(&self) -> StatusResponse {
        let (revision, db_size, applied, is_learner) = {
            let state = self.shared.state.read().expect("state lock");
            let is_learner = state.members().get(self.shared.member_id).is_some_and(|member| member.is_learner);
            (state.store().current_revision(), state.store().size_bytes() as i64, state.applied_index(), is_learner)
        };
        let leader = self.shared.leader_id();
        StatusResponse {
            header: Some(ResponseHeader { revision, ..ResponseHeader::default() }),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader,
            raft_index: self.shared.commit_index(),
            raft_term: self.shared.term(),
            raft_applied_index: applied,
            errors: if leader == raft::INVALID_ID { vec![Error::NoLeader.to_string()] } else { Vec::new() },
            db_size_in_use: db_size,
            is_learner,
        }
    }

    pub fn members(&self) -> Vec<Member> {
        self.shared.state.read().expect("state lock").members().list().cloned().collect()
    }

    /// Hands leadership to `transferee` and waits until it has it (etcd
    /// `MoveLeader`: only the leader may be asked).
    pub async fn move_leader(&self, transferee: u64) -> Result<(), Error> {
        self.call(|reply| Command::TransferLeader { transferee, reply }).await?;
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

    async fn propose(&self, request: Request) -> Result<Response, Error> {
        self.call(|reply| Command::Propose { request, reply }).await
    }

    async fn read_index(&self) -> Result<(), Error> {
        self.call(|reply| Command::ReadIndex { reply }).await
    }

    /// Sends a command to the raft loop and waits for its answer, at most
    /// the request timeout.
    async fn call<T>(&self, command: impl FnOnce(crate::raft_node::Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.commands.send(command(reply)).await.map_err(|_| Error::Stopped)?;
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

/// etcd's `idutil.Generator` layout: 2 bytes of member id, then 5 bytes of
/// milliseconds, then a byte of counter, so ids stay unique across restarts.
fn proposal_id_base(member_id: u64, wall_unix_millis: i64) -> u64 {
    let prefix = (member_id & 0xffff) << 48;
    let time = ((wall_unix_millis as u64) & 0xff_ffff_ffff) << 8;
    prefix | time
}

/// Splits a comma-separated URL flag.
pub fn split_urls(flag: &str) -> Vec<String> {
    flag.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
}

/// Parses one of `--listen-client-urls` (`http://host:port`) into an address.
pub fn parse_listen_url(url: &str) -> Result<SocketAddr, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err(format!("{url}: TLS is not supported yet (use http://)")),
        Some((scheme, _)) => return Err(format!("{url}: URL scheme must be http, not {scheme:?}")),
        None => return Err(format!("{url}: URL must be of the form http://host:port")),
    };
    let host_port = rest.trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').ok_or_else(|| format!("{url}: missing port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{url}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" | "" => std::net::IpAddr::from([127, 0, 0, 1]),
        host => host.parse().map_err(|_| format!("{url}: host must be an IP address or localhost"))?,
    };
    Ok(SocketAddr::new(ip, port))
}
