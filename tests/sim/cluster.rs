//! Replicated clusters in the simulator: 3 and 5 members of the production
//! server, each with its own simulated disk, under member crashes and a
//! partitioned leader. Every acknowledged write must be on every member
//! once the cluster has healed.
#![allow(clippy::disallowed_methods)] // The test reads virtual time for its deadlines.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use detcd::clock::Clock;
use detcd::config::Config;
use detcd::proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient, MemberAddRequest, MemberPromoteRequest,
    MemberRemoveRequest, PutRequest, RangeRequest, StatusRequest,
};
use detcd::raft_node::FatalError;
use detcd::rng::NodeRng;
use detcd::server::{Server, Started};
use detcd::storage::SimDisk;
use detcd::transport::DeliverAll;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// A client call's deadline (virtual time): longer than an election.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the cluster may take to agree on a leader or converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Attempts per write across members before it counts as not acknowledged.
const WRITE_ATTEMPTS: usize = 10;

fn ip(index: usize) -> IpAddr {
    IpAddr::from([10, 0, 0, index as u8 + 1])
}

fn client_url(index: usize) -> String {
    format!("http://{}:{CLIENT_PORT}", ip(index))
}

struct SimCluster {
    handle: Handle,
    nodes: Vec<NodeHandle>,
    disks: Vec<Arc<SimDisk>>,
    client: NodeHandle,
    started: tokio::time::Instant,
}

impl SimCluster {
    fn start(size: usize, snapshot_count: u64) -> SimCluster {
        let handle = Handle::current();
        let initial_cluster: Vec<String> = (0..size).map(|i| format!("m{i}=http://{}:{PEER_PORT}", ip(i))).collect();
        let initial_cluster = initial_cluster.join(",");
        let disks: Vec<Arc<SimDisk>> = (0..size).map(|_| Arc::new(SimDisk::new())).collect();
        let nodes = (0..size)
            .map(|index| {
                let disk = disks[index].clone();
                let initial_cluster = initial_cluster.clone();
                handle
                    .create_node()
                    .name(format!("m{index}"))
                    .ip(ip(index))
                    .init(move || run_member(index, initial_cluster.clone(), "new", snapshot_count, disk.clone()))
                    .build()
            })
            .collect();
        let client = handle.create_node().name("client").ip(IpAddr::from([10, 0, 1, 1])).build();
        SimCluster { handle, nodes, disks, client, started: tokio::time::Instant::now() }
    }

    /// Starts member `index` (the next one) to join the running cluster
    /// with `--initial-cluster-state existing`, after MemberAdd.
    fn start_joining(&mut self, snapshot_count: u64) -> usize {
        let index = self.nodes.len();
        let initial_cluster: Vec<String> = (0..=index).map(|i| format!("m{i}=http://{}:{PEER_PORT}", ip(i))).collect();
        let initial_cluster = initial_cluster.join(",");
        let disk = Arc::new(SimDisk::new());
        self.disks.push(disk.clone());
        let node = self
            .handle
            .create_node()
            .name(format!("m{index}"))
            .ip(ip(index))
            .init(move || run_member(index, initial_cluster.clone(), "existing", snapshot_count, disk.clone()))
            .build();
        self.nodes.push(node);
        index
    }

    /// A Cluster-service call through member `via`, on the client node.
    async fn cluster_call<T: Send + 'static, F>(&self, via: usize, call: impl FnOnce(ClusterClient<tonic::transport::Channel>) -> F + Send + 'static) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>> + Send,
    {
        let url = client_url(via);
        self.client
            .spawn(async move {
                let attempt = async move {
                    let client = ClusterClient::connect(url).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                    call(client).await
                };
                tokio::time::timeout(CALL_TIMEOUT, attempt).await.unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("timed out")))
            })
            .await
            .unwrap()
    }

    fn size(&self) -> usize {
        self.nodes.len()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.size()).collect()
    }

    /// kill -9 and power loss: unsynced disk writes are gone.
    fn crash(&self, index: usize) {
        tracing::info!("crash m{index}");
        self.handle.kill(self.nodes[index].id());
        self.disks[index].crash(madsim::rand::thread_rng().gen());
    }

    fn restart(&self, index: usize) {
        tracing::info!("restart m{index}");
        self.handle.restart(self.nodes[index].id());
    }

    fn partition(&self, index: usize) {
        tracing::info!("partition m{index} away");
        madsim::net::NetSim::current().clog_node(self.nodes[index].id());
    }

    fn heal(&self, index: usize) {
        madsim::net::NetSim::current().unclog_node(self.nodes[index].id());
    }

    async fn status(&self, index: usize) -> Option<(u64, u64)> {
        let url = client_url(index);
        let call = async move {
            let mut client = MaintenanceClient::connect(url).await.ok()?;
            let status = client.status(StatusRequest {}).await.ok()?.into_inner();
            Some((status.header?.member_id, status.leader))
        };
        self.client.spawn(async move { tokio::time::timeout(CALL_TIMEOUT, call).await.ok().flatten() }).await.unwrap()
    }

    /// Waits until every member in `among` names the same leader, one of
    /// them; returns its index.
    async fn wait_for_leader(&self, among: &[usize]) -> usize {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let mut statuses = Vec::new();
            for &index in among {
                statuses.push(self.status(index).await);
            }
            if let Some(Some((_, leader))) = statuses.first() {
                let agreed = *leader != 0 && statuses.iter().all(|status| status.is_some_and(|(_, l)| l == *leader));
                let leader_index = among.iter().zip(&statuses).find(|(_, status)| status.is_some_and(|(id, _)| id == *leader));
                if let (true, Some((&index, _))) = (agreed, leader_index) {
                    return index;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "members {among:?} agreed on no leader in {CONVERGE_TIMEOUT:?}");
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Writes through the members in `via`, trying the next on failure.
    /// Returns whether the write was acknowledged.
    async fn put(&self, via: &[usize], key: &str, value: &str) -> bool {
        for attempt in 0..WRITE_ATTEMPTS {
            let url = client_url(via[attempt % via.len()]);
            let request = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
            let call = async move {
                let mut client = KvClient::connect(url).await.ok()?;
                client.put(request).await.ok()
            };
            let outcome = self.client.spawn(async move { tokio::time::timeout(CALL_TIMEOUT, call).await.ok().flatten() }).await.unwrap();
            if outcome.is_some() {
                return true;
            }
        }
        false
    }

    /// Every key under "key" as one member sees it, without a read index.
    async fn local_keys(&self, index: usize) -> Option<BTreeMap<String, String>> {
        let url = client_url(index);
        let call = async move {
            let mut client = KvClient::connect(url).await.ok()?;
            let request = RangeRequest { key: b"key".to_vec(), range_end: b"kez".to_vec(), serializable: true, ..Default::default() };
            let response = client.range(request).await.ok()?.into_inner();
            Some(response.kvs.into_iter().map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap())).collect())
        };
        self.client.spawn(async move { tokio::time::timeout(CALL_TIMEOUT, call).await.ok().flatten() }).await.unwrap()
    }

    /// Waits until every member holds every acknowledged write, and all
    /// hold the same keys.
    async fn wait_converged(&self, acknowledged: &BTreeMap<String, String>) {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        while !self.converged(acknowledged).await {
            assert!(tokio::time::Instant::now() < deadline, "members did not converge in {CONVERGE_TIMEOUT:?}");
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn converged(&self, acknowledged: &BTreeMap<String, String>) -> bool {
        let mut views = Vec::new();
        for index in self.all() {
            let Some(keys) = self.local_keys(index).await else { return false };
            if !acknowledged.iter().all(|(key, value)| keys.get(key) == Some(value)) {
                return false;
            }
            views.push(keys);
        }
        views.windows(2).all(|pair| pair[0] == pair[1])
    }

    /// Writes `count` keys starting at `first` through `via`.
    async fn write_keys(&self, via: &[usize], first: usize, count: usize, acknowledged: &mut BTreeMap<String, String>) {
        for n in first..first + count {
            let (key, value) = (format!("key{n:04}"), format!("value{n}"));
            if self.put(via, &key, &value).await {
                acknowledged.insert(key, value);
            }
        }
    }
}

fn run_member(
    index: usize,
    initial_cluster: String,
    initial_cluster_state: &'static str,
    snapshot_count: u64,
    disk: Arc<SimDisk>,
) -> impl std::future::Future<Output = ()> {
    async move {
        let config = Config::parse_from([
            "detcd".to_string(),
            format!("--name=m{index}"),
            format!("--data-dir=/m{index}.etcd"),
            format!("--listen-client-urls={}", client_url(index)),
            format!("--advertise-client-urls={}", client_url(index)),
            format!("--listen-peer-urls=http://{}:{PEER_PORT}", ip(index)),
            format!("--initial-advertise-peer-urls=http://{}:{PEER_PORT}", ip(index)),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={initial_cluster_state}"),
            format!("--snapshot-count={snapshot_count}"),
        ]);
        let Started { server, raft_loop, peer_service } =
            Server::start(&config, disk, Clock::new(), NodeRng::from_os(), Arc::new(DeliverAll)).await.expect("member starts");
        let client_address = SocketAddr::new(ip(index), CLIENT_PORT);
        let peer_address = SocketAddr::new(ip(index), PEER_PORT);
        tokio::select! {
            biased;
            result = raft_loop => match result {
                // A removed member stops, as etcd's does.
                Ok(Err(FatalError::Removed)) => {}
                other => panic!("m{index}: raft loop stopped: {other:?}"),
            },
            result = detcd::api::serve(server, client_address, std::future::pending()) => panic!("m{index}: client server stopped: {result:?}"),
            result = detcd::api::serve_peers(peer_service, peer_address, std::future::pending()) => panic!("m{index}: peer server stopped: {result:?}"),
        }
    }
}

#[madsim::test]
async fn three_members_survive_leader_crash_and_partition() {
    let cluster = SimCluster::start(3, 20);
    let mut acknowledged = BTreeMap::new();

    tracing::info!("a leader is elected and writes through any member are acknowledged");
    let leader = cluster.wait_for_leader(&cluster.all()).await;
    cluster.write_keys(&cluster.all(), 0, 20, &mut acknowledged).await;
    assert_eq!(acknowledged.len(), 20, "a healthy cluster acknowledges every write");

    tracing::info!("the leader crashes: the other two elect a new one and keep writing");
    cluster.crash(leader);
    let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors).await;
    assert_ne!(new_leader, leader);
    cluster.write_keys(&survivors, 20, 60, &mut acknowledged).await;

    tracing::info!("the old leader restarts and catches up (by snapshot: it missed more than --snapshot-count)");
    cluster.restart(leader);
    cluster.wait_converged(&acknowledged).await;

    tracing::info!("the leader is partitioned away: the majority elects another and keeps writing");
    let leader = cluster.wait_for_leader(&cluster.all()).await;
    cluster.partition(leader);
    let majority: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    let majority_leader = cluster.wait_for_leader(&majority).await;
    assert_ne!(majority_leader, leader);
    cluster.write_keys(&majority, 80, 20, &mut acknowledged).await;

    tracing::info!("the partition heals: the old leader has stepped down, everyone converges");
    cluster.heal(leader);
    let healed_leader = cluster.wait_for_leader(&cluster.all()).await;
    assert_ne!(healed_leader, leader, "check-quorum made the cut-off leader step down");
    cluster.wait_converged(&acknowledged).await;
    eprintln!("3 members: {} writes acknowledged, converged at {:?} virtual", acknowledged.len(), cluster.started.elapsed());
}

#[madsim::test]
async fn five_members_survive_two_crashes() {
    let cluster = SimCluster::start(5, 50);
    let mut acknowledged = BTreeMap::new();

    tracing::info!("five members elect a leader and take writes");
    let leader = cluster.wait_for_leader(&cluster.all()).await;
    cluster.write_keys(&cluster.all(), 0, 20, &mut acknowledged).await;

    tracing::info!("the leader and one more member crash: three still make a quorum");
    let other = (leader + 1) % cluster.size();
    cluster.crash(leader);
    cluster.crash(other);
    let survivors: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader && i != other).collect();
    cluster.wait_for_leader(&survivors).await;
    cluster.write_keys(&survivors, 20, 30, &mut acknowledged).await;
    assert!(acknowledged.len() >= 45, "a quorum keeps acknowledging writes: {}", acknowledged.len());

    tracing::info!("both come back and converge");
    cluster.restart(leader);
    cluster.restart(other);
    cluster.wait_for_leader(&cluster.all()).await;
    cluster.wait_converged(&acknowledged).await;
    eprintln!("5 members: {} writes acknowledged, converged at {:?} virtual", acknowledged.len(), cluster.started.elapsed());
}

#[madsim::test]
async fn learner_joins_catches_up_is_promoted_and_a_member_is_removed() {
    let mut cluster = SimCluster::start(3, 20);
    let mut acknowledged = BTreeMap::new();

    tracing::info!("enough writes that the log is compacted: the newcomer needs a snapshot");
    cluster.wait_for_leader(&cluster.all()).await;
    cluster.write_keys(&cluster.all(), 0, 60, &mut acknowledged).await;

    tracing::info!("MemberAdd as a learner, then the new member joins with --initial-cluster-state existing");
    let peer_url = format!("http://{}:{PEER_PORT}", ip(3));
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    let added = loop {
        let peer_url = peer_url.clone();
        let attempt = cluster
            .cluster_call(0, move |mut client| async move {
                client.member_add(MemberAddRequest { peer_ur_ls: vec![peer_url], is_learner: true }).await.map(|r| r.into_inner())
            })
            .await;
        match attempt {
            Ok(added) => break added,
            // Strict reconfiguration waits until every voter has been connected for a while.
            Err(status) if status.message() == "etcdserver: unhealthy cluster" => {}
            Err(status) => panic!("member add: {status}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the cluster stayed unhealthy");
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let new_id = added.member.unwrap().id;
    assert_eq!(added.members.len(), 4);
    let newcomer = cluster.start_joining(20);
    cluster.wait_converged(&acknowledged).await;

    tracing::info!("once caught up the learner is promoted (retrying while the leader says it is not ready)");
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let promoted = cluster
            .cluster_call(1, move |mut client| async move { client.member_promote(MemberPromoteRequest { id: new_id }).await })
            .await;
        match promoted {
            Ok(_) => break,
            Err(status) => assert!(tokio::time::Instant::now() < deadline, "promotion never succeeded: {status}"),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let leader = cluster.wait_for_leader(&cluster.all()).await;

    tracing::info!("the leader is removed: it stops, the other three elect a leader and keep writing");
    let leader_id = cluster.status(leader).await.expect("leader answers").0;
    let remaining: Vec<usize> = cluster.all().into_iter().filter(|&i| i != leader).collect();
    let via = remaining[0];
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let removed = cluster
            .cluster_call(via, move |mut client| async move { client.member_remove(MemberRemoveRequest { id: leader_id }).await })
            .await;
        match removed {
            Ok(_) => break,
            Err(status) if status.message() == "etcdserver: unhealthy cluster" => {}
            Err(status) => panic!("member remove: {status}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the cluster stayed unhealthy");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    cluster.wait_for_leader(&remaining).await;
    cluster.write_keys(&remaining, 60, 20, &mut acknowledged).await;
    assert!(remaining.contains(&newcomer));
    for index in remaining {
        let keys = cluster.local_keys(index).await;
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        let mut keys = keys;
        while !keys.as_ref().is_some_and(|keys| acknowledged.iter().all(|(k, v)| keys.get(k) == Some(v))) {
            assert!(tokio::time::Instant::now() < deadline, "m{index} did not converge after the removal");
            tokio::time::sleep(POLL_INTERVAL).await;
            keys = cluster.local_keys(index).await;
        }
    }
}
