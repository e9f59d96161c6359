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
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::raft_node::{Command, FatalError, NodeConfig, RaftNode, RecoveryError, Shared};
use crate::rng::NodeRng;
use crate::storage::Disk;

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

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

impl Server {
    /// Opens (or bootstraps) the member's storage and starts its raft loop.
    /// The returned handle finishes when the loop stops: `Ok` after every
    /// `Server` clone is dropped, `Err` on a fatal storage error.
    pub fn start(
        config: &Config,
        disk: Arc<dyn Disk>,
        clock: Clock,
        mut rng: NodeRng,
    ) -> Result<(Server, tokio::task::JoinHandle<Result<(), FatalError>>), StartError> {
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
        };
        let node = RaftNode::open(&node_config, disk)?;
        let shared = node.shared();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_LEN);
        let loop_clock = clock.clone();
        let tick_interval = config.tick_interval();
        let handle = tokio::spawn(async move { node.run(loop_clock, tick_interval, receiver).await });
        let limits = Limits {
            max_txn_ops: config.max_txn_ops as usize,
            max_request_bytes: config.max_request_bytes as usize,
            request_timeout: config.request_timeout(),
        };
        Ok((Server { shared, commands, clock, limits }, handle))
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
            _ = self.clock.sleep(self.limits.request_timeout) => Err(Error::Timeout),
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
