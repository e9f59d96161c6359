//! The cluster in a box: N members of the production server on simulated
//! nodes, each with its own simulated disk and clock, and a shared
//! transport filter through which the nemesis cuts links and drops,
//! duplicates or delays single raft messages.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use detcd::clock::{Clock, Skew};
use detcd::config::Config;
use detcd::membership::member_id;
use detcd::raft_node::FatalError;
use detcd::rng::NodeRng;
use detcd::server::{Server, Started};
use detcd::storage::sim_disk::DiskFaults;
use detcd::storage::SimDisk;
use detcd::transport::{MessageFilter, Verdict};
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};
use raft::eraftpb::Message;

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
const TOKEN: &str = "detcd-sim";

pub fn member_ip(index: usize) -> IpAddr {
    IpAddr::from([10, 0, 0, index as u8 + 1])
}

pub fn client_url(index: usize) -> String {
    format!("http://{}:{CLIENT_PORT}", member_ip(index))
}

fn peer_url(index: usize) -> String {
    format!("http://{}:{PEER_PORT}", member_ip(index))
}

/// Link cuts and message faults, consulted for every raft message sent.
#[derive(Debug, Default)]
pub struct NetFilter {
    state: Mutex<FilterState>,
}

#[derive(Debug, Default)]
struct FilterState {
    /// (from, to) member-id pairs whose messages are dropped.
    cut: BTreeSet<(u64, u64)>,
    drop_ppm: u32,
    duplicate_ppm: u32,
    delay_ppm: u32,
}

/// Longest delay given to a single delayed message.
const MESSAGE_DELAY_MAX: Duration = Duration::from_millis(500);

impl NetFilter {
    pub fn cut(&self, from: u64, to: u64) {
        self.state.lock().unwrap().cut.insert((from, to));
    }

    pub fn heal_links(&self) {
        self.state.lock().unwrap().cut.clear();
    }

    pub fn set_message_faults(&self, drop_ppm: u32, duplicate_ppm: u32, delay_ppm: u32) {
        let mut state = self.state.lock().unwrap();
        state.drop_ppm = drop_ppm;
        state.duplicate_ppm = duplicate_ppm;
        state.delay_ppm = delay_ppm;
    }
}

impl MessageFilter for NetFilter {
    fn verdict(&self, from: u64, to: u64, _message: &Message) -> Verdict {
        let state = self.state.lock().unwrap();
        if state.cut.contains(&(from, to)) {
            return Verdict::Drop;
        }
        let draw = madsim::rand::thread_rng().gen_range(0..1_000_000u32);
        if draw < state.drop_ppm {
            Verdict::Drop
        } else if draw < state.drop_ppm + state.duplicate_ppm {
            Verdict::Duplicate
        } else if draw < state.drop_ppm + state.duplicate_ppm + state.delay_ppm {
            let millis = madsim::rand::thread_rng().gen_range(1..MESSAGE_DELAY_MAX.as_millis() as u64);
            Verdict::Delay(Duration::from_millis(millis))
        } else {
            Verdict::Deliver
        }
    }
}

pub struct SimCluster {
    handle: Handle,
    pub nodes: Vec<NodeHandle>,
    pub disks: Vec<Arc<SimDisk>>,
    pub clocks: Vec<Clock>,
    pub member_ids: Vec<u64>,
    pub filter: Arc<NetFilter>,
    /// Members currently killed.
    pub down: BTreeSet<usize>,
    /// Members currently paused (SIGSTOP: alive, silent, then back).
    pub paused: BTreeSet<usize>,
    /// Members whose disk is full (they stop at their next fsync).
    pub disk_full: BTreeSet<usize>,
}

impl SimCluster {
    pub fn start(size: usize) -> SimCluster {
        let handle = Handle::current();
        let initial_cluster: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer_url(i))).collect();
        let initial_cluster = initial_cluster.join(",");
        let filter = Arc::new(NetFilter::default());
        let disks: Vec<Arc<SimDisk>> = (0..size).map(|_| Arc::new(SimDisk::new())).collect();
        let clocks: Vec<Clock> = (0..size).map(|_| Clock::new()).collect();
        let member_ids = (0..size).map(|i| member_id(&[peer_url(i)], TOKEN)).collect();
        let nodes = (0..size)
            .map(|index| {
                let (disk, clock, filter, initial_cluster) = (disks[index].clone(), clocks[index].clone(), filter.clone(), initial_cluster.clone());
                handle
                    .create_node()
                    .name(format!("m{index}"))
                    .ip(member_ip(index))
                    .init(move || run_member(index, initial_cluster.clone(), disk.clone(), clock.clone(), filter.clone()))
                    .build()
            })
            .collect();
        SimCluster { handle, nodes, disks, clocks, member_ids, filter, down: BTreeSet::new(), paused: BTreeSet::new(), disk_full: BTreeSet::new() }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// kill -9 and power loss: unsynced disk writes are lost, the last may tear.
    pub fn crash(&mut self, index: usize) {
        self.handle.kill(self.nodes[index].id());
        self.disks[index].crash(madsim::rand::thread_rng().gen());
        self.down.insert(index);
    }

    pub fn restart(&mut self, index: usize) {
        self.handle.restart(self.nodes[index].id());
        self.down.remove(&index);
    }

    pub fn pause(&mut self, index: usize) {
        self.handle.pause(self.nodes[index].id());
        self.paused.insert(index);
    }

    pub fn resume(&mut self, index: usize) {
        self.handle.resume(self.nodes[index].id());
        self.paused.remove(&index);
    }

    /// The disk refuses every write: the member stops with a fatal storage
    /// error at its next fsync, as a real one must.
    pub fn fill_disk(&mut self, index: usize) {
        self.disks[index].set_faults(DiskFaults { full: true });
        self.disk_full.insert(index);
    }

    /// Frees the disk and restarts the member (an operator's fix).
    pub fn free_disk(&mut self, index: usize) {
        self.disks[index].set_faults(DiskFaults::default());
        self.disk_full.remove(&index);
        self.handle.kill(self.nodes[index].id());
        self.handle.restart(self.nodes[index].id());
    }

    pub fn set_skew(&self, index: usize, skew: Skew) {
        self.clocks[index].set_skew(skew);
    }

    /// Ends every fault: links healed, message faults off, clocks true,
    /// crashed members restarted.
    pub fn heal_all(&mut self) {
        self.filter.heal_links();
        self.filter.set_message_faults(0, 0, 0);
        for clock in &self.clocks {
            clock.set_skew(Skew::default());
        }
        for index in std::mem::take(&mut self.disk_full) {
            self.disks[index].set_faults(DiskFaults::default());
            if !self.down.contains(&index) {
                self.handle.kill(self.nodes[index].id());
                self.handle.restart(self.nodes[index].id());
            }
        }
        for index in std::mem::take(&mut self.paused) {
            self.handle.resume(self.nodes[index].id());
        }
        for index in std::mem::take(&mut self.down) {
            self.handle.restart(self.nodes[index].id());
        }
    }
}

async fn run_member(index: usize, initial_cluster: String, disk: Arc<SimDisk>, clock: Clock, filter: Arc<NetFilter>) {
    let config = Config::parse_from([
        "detcd".to_string(),
        format!("--name=m{index}"),
        format!("--data-dir=/m{index}.etcd"),
        format!("--listen-client-urls={}", client_url(index)),
        format!("--advertise-client-urls={}", client_url(index)),
        format!("--listen-peer-urls={}", peer_url(index)),
        format!("--initial-advertise-peer-urls={}", peer_url(index)),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={TOKEN}"),
        "--snapshot-count=100".to_string(),
    ]);
    let Started { server, raft_loop, peer_service } =
        Server::start(&config, disk, clock, NodeRng::from_os(), filter).await.expect("member starts");
    let client_address = SocketAddr::new(member_ip(index), CLIENT_PORT);
    let peer_address = SocketAddr::new(member_ip(index), PEER_PORT);
    tokio::select! {
        biased;
        result = raft_loop => match result {
            Ok(Err(FatalError::Removed)) => {}
            // A storage failure stops the member, never a wrong answer.
            Ok(Err(fatal @ FatalError::Wal(_))) | Ok(Err(fatal @ FatalError::Snapshot(_))) => {
                tracing::warn!("m{index} stopped: {fatal}");
            }
            other => panic!("m{index}: raft loop stopped: {other:?}"),
        },
        result = detcd::api::serve(server, client_address, std::future::pending()) => panic!("m{index}: client service stopped: {result:?}"),
        result = detcd::api::serve_peers(peer_service, peer_address, std::future::pending()) => panic!("m{index}: peer service stopped: {result:?}"),
    }
}
