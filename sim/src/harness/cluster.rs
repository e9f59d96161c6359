//! The cluster in a box: N members of the production server on simulated
//! nodes, each with its own simulated disk and clock, and client nodes
//! that each live on one member's side of any partition.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use clap::Parser;
use detcd::clock::{Clock, Skew};
use detcd::config::Config;
use detcd::membership::member_id;
use detcd::raft_node::FatalError;
use detcd::rng::NodeRng;
use detcd::server::{Server, Started};
use detcd::storage::sim_disk::DiskFaults;
use detcd::storage::SimDisk;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};

use super::network::NetFilter;

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
const TOKEN: &str = "detcd-sim";
/// Revisions a compaction deletes per backend transaction in the
/// simulation: small, so a compaction takes several.
const SIM_COMPACTION_BATCH_LIMIT: usize = 3;
/// How often watchers that asked for it hear their progress from the
/// server (etcd's default is 10 minutes, longer than any run).
const SIM_PROGRESS_NOTIFY_INTERVAL: &str = "1s";
/// `--snapshot-count` unless a test asks otherwise: small, so runs
/// exercise snapshots and log compaction.
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100;

pub fn member_ip(index: usize) -> IpAddr {
    IpAddr::from([10, 0, 0, index as u8 + 1])
}

pub fn client_url(index: usize) -> String {
    format!("http://{}:{CLIENT_PORT}", member_ip(index))
}

pub fn peer_url(index: usize) -> String {
    format!("http://{}:{PEER_PORT}", member_ip(index))
}

pub struct SimCluster {
    handle: Handle,
    pub nodes: Vec<NodeHandle>,
    pub disks: Vec<Arc<SimDisk>>,
    pub clocks: Vec<Clock>,
    pub member_ids: Vec<u64>,
    /// Every member id each member's client URL ever served, by index
    /// (a rejoined member serves a new id at its old URL).
    pub ids_served: BTreeMap<usize, BTreeSet<u64>>,
    pub filter: Arc<NetFilter>,
    /// Members currently killed.
    pub down: BTreeSet<usize>,
    /// Members currently paused (SIGSTOP: alive, silent, then back).
    pub paused: BTreeSet<usize>,
    /// Members whose disk is full (they stop at their next fsync).
    pub disk_full: BTreeSet<usize>,
    /// Client nodes and the member each lives next to.
    clients: Vec<(NodeHandle, usize)>,
    /// The clients (by index) whose service `properties::availability`
    /// judges: the key-value and etcd workloads'.
    pub served_clients: Vec<usize>,
    /// Members whose disk the nemesis corrupted while they were down.
    pub corrupted: BTreeSet<usize>,
    /// Members that refused to start, and why (their storage failed its
    /// checks); they stay down for the rest of the run.
    pub refused: Arc<Mutex<BTreeMap<usize, String>>>,
    /// Members that stopped on a storage failure while running (a rotted
    /// page may pass the start's checks and fail the next commit; a full
    /// disk fails the next write), and why; out until a restart starts
    /// them.
    pub stopped: Arc<Mutex<BTreeMap<usize, String>>>,
    /// When members were out and clocks skewed, for the lease checks.
    pub faults: super::faults::FaultLog,
    /// Members removed from the cluster and not yet back (membership
    /// churn): their node is stopped and their disk gone.
    pub retired: BTreeSet<usize>,
    /// What each member's node starts with: a rejoin changes it.
    specs: Vec<Arc<Mutex<Spec>>>,
}

/// How a member's node starts, read at each (re)start.
struct Spec {
    initial_cluster: String,
    initial_cluster_state: &'static str,
    disk: Arc<SimDisk>,
}

/// Where client `index` lives: next to one member, on its side of any cut.
pub fn client_ip(index: usize) -> IpAddr {
    IpAddr::from([10, 0, 1, index as u8 + 1])
}

impl SimCluster {
    pub fn start(size: usize) -> SimCluster {
        SimCluster::start_with(size, DEFAULT_SNAPSHOT_COUNT)
    }

    pub fn start_with(size: usize, snapshot_count: u64) -> SimCluster {
        let handle = Handle::current();
        let initial_cluster: Vec<String> =
            (0..size).map(|i| format!("m{i}={}", peer_url(i))).collect();
        let initial_cluster = initial_cluster.join(",");
        let filter = Arc::new(NetFilter::default());
        let disks: Vec<Arc<SimDisk>> = (0..size).map(|_| Arc::new(SimDisk::new())).collect();
        let clocks: Vec<Clock> = (0..size).map(|_| Clock::new()).collect();
        let member_ids: Vec<u64> = (0..size)
            .map(|i| member_id(&[peer_url(i)], TOKEN))
            .collect();
        let refused: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
        let stopped: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
        let specs: Vec<Arc<Mutex<Spec>>> = (0..size)
            .map(|index| {
                Arc::new(Mutex::new(Spec {
                    initial_cluster: initial_cluster.clone(),
                    initial_cluster_state: "new",
                    disk: disks[index].clone(),
                }))
            })
            .collect();
        let nodes = (0..size)
            .map(|index| {
                let member = Member {
                    index,
                    spec: specs[index].clone(),
                    snapshot_count,
                    clock: clocks[index].clone(),
                    filter: filter.clone(),
                    refused: refused.clone(),
                    stopped: stopped.clone(),
                };
                member.start_node(&handle)
            })
            .collect();
        let ids_served = (member_ids.iter().enumerate())
            .map(|(index, &id)| (index, BTreeSet::from([id])))
            .collect();
        SimCluster {
            handle,
            nodes,
            disks,
            clocks,
            member_ids,
            ids_served,
            filter,
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            disk_full: BTreeSet::new(),
            clients: Vec::new(),
            served_clients: Vec::new(),
            corrupted: BTreeSet::new(),
            faults: super::faults::FaultLog::default(),
            refused,
            stopped,
            retired: BTreeSet::new(),
            specs,
        }
    }

    /// A node for client `index`, next to member `index % size`. Returns
    /// the node and the client URLs ordered from its own member on.
    pub fn add_client(&mut self, index: usize) -> (NodeHandle, Vec<String>) {
        let home = self.home_of(index);
        let node = self
            .handle
            .create_node()
            .name(format!("client{index}"))
            .ip(client_ip(index))
            .build();
        self.clients.push((node.clone(), home));
        let endpoints = (0..self.size())
            .map(|offset| client_url((home + offset) % self.size()))
            .collect();
        (node, endpoints)
    }

    /// Starts the next member to join the running cluster with
    /// `--initial-cluster-state existing`, once MemberAdd returned `id`.
    /// Returns its index.
    pub fn join(&mut self, id: u64, snapshot_count: u64) -> usize {
        let index = self.size();
        let initial_cluster: Vec<String> = (0..=index)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect();
        let disk = Arc::new(SimDisk::new());
        let spec = Arc::new(Mutex::new(Spec {
            initial_cluster: initial_cluster.join(","),
            initial_cluster_state: "existing",
            disk: disk.clone(),
        }));
        let member = Member {
            index,
            spec: spec.clone(),
            snapshot_count,
            clock: Clock::new(),
            filter: self.filter.clone(),
            refused: self.refused.clone(),
            stopped: self.stopped.clone(),
        };
        self.disks.push(disk);
        self.specs.push(spec);
        self.clocks.push(member.clock.clone());
        self.member_ids.push(id);
        self.ids_served.entry(index).or_default().insert(id);
        self.nodes.push(member.start_node(&self.handle));
        index
    }

    /// Takes out a member the cluster removed (MemberRemove): its node
    /// stops, whatever fault it was in, and its disk is never used again
    /// (`rejoin` starts it on an empty one).
    pub fn retire(&mut self, index: usize) {
        self.handle.kill(self.nodes[index].id());
        self.down.remove(&index);
        self.paused.remove(&index);
        self.disk_full.remove(&index);
        self.corrupted.remove(&index);
        // Whatever stopped it is moot now: its disk is never used again.
        self.refused.lock().unwrap().remove(&index);
        self.stopped.lock().unwrap().remove(&index);
        self.retired.insert(index);
        self.note_out();
    }

    /// Brings a retired member's node back as the new member `id` that
    /// MemberAdd created for its peer URL: an empty disk, and
    /// `--initial-cluster-state existing` with the members the cluster has.
    pub fn rejoin(&mut self, index: usize, id: u64) {
        let initial_cluster: Vec<String> = (0..self.size())
            .filter(|i| *i == index || !self.retired.contains(i))
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect();
        let disk = Arc::new(SimDisk::new());
        *self.specs[index].lock().unwrap() = Spec {
            initial_cluster: initial_cluster.join(","),
            initial_cluster_state: "existing",
            disk: disk.clone(),
        };
        self.disks[index] = disk;
        self.member_ids[index] = id;
        self.ids_served.entry(index).or_default().insert(id);
        self.retired.remove(&index);
        self.handle.restart(self.nodes[index].id());
        self.note_out();
    }

    /// Members that are up and not paused: the ones a fault or an operator
    /// can act on.
    pub fn running(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|i| {
                !self.down.contains(i) && !self.paused.contains(i) && !self.retired.contains(i)
            })
            .collect()
    }

    /// Cuts member `index` off from every other member, both ways.
    pub fn isolate(&self, index: usize) {
        for other in (0..self.size()).filter(|&other| other != index) {
            self.cut(index, other);
            self.cut(other, index);
        }
        self.sync_client_links();
    }

    /// Cuts raft traffic from member `from` to member `to`.
    pub fn cut(&self, from: usize, to: usize) {
        self.filter.cut(self.member_ids[from], self.member_ids[to]);
    }

    /// Ends every partition.
    pub fn heal_links(&self) {
        self.filter.heal_links();
        self.sync_client_links();
    }

    /// Makes client connectivity follow the partition: a client reaches
    /// exactly the members its own member can talk to both ways.
    pub fn sync_client_links(&self) {
        let net = madsim::net::NetSim::current();
        for (node, home) in &self.clients {
            for member in 0..self.size() {
                let (client, server) = (node.id(), self.nodes[member].id());
                if member != *home
                    && self
                        .filter
                        .separated(self.member_ids[*home], self.member_ids[member])
                {
                    net.clog_link(client, server);
                    net.clog_link(server, client);
                } else {
                    net.unclog_link(client, server);
                    net.unclog_link(server, client);
                }
            }
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// kill -9 and power loss: unsynced disk writes are lost, the last may tear.
    pub fn crash(&mut self, index: usize) {
        self.disks[index].fence();
        self.handle.kill(self.nodes[index].id());
        self.disks[index].crash(madsim::rand::thread_rng().gen());
        self.down.insert(index);
        self.note_out();
    }

    /// kill -9 alone: the machine runs on, so what the member wrote and
    /// never synced stays in its page cache, read back on restart and
    /// still lost to a later power loss.
    pub fn kill(&mut self, index: usize) {
        self.disks[index].fence();
        self.handle.kill(self.nodes[index].id());
        self.disks[index].survive_kill();
        self.down.insert(index);
        self.note_out();
    }

    /// `crash` or `kill`, half and half from the seed; says which.
    pub fn crash_or_kill(&mut self, index: usize) -> &'static str {
        if madsim::rand::thread_rng().gen_bool(0.5) {
            self.kill(index);
            "killed (page cache kept)"
        } else {
            self.crash(index);
            "crashed"
        }
    }

    /// Members whose lease timers stopped: crashed, or stopped by a full
    /// disk (a paused member's clock and timers run on).
    fn note_out(&self) {
        let out: BTreeSet<&usize> = self
            .down
            .iter()
            .chain(&self.disk_full)
            .chain(&self.retired)
            .collect();
        self.faults.out_changed(out.len());
    }

    /// Bit rot on a crashed member's disk. It must notice at restart and
    /// refuse to start, or start and serve only data it can trust.
    pub fn corrupt_disk(&mut self, index: usize) -> Option<String> {
        assert!(
            self.down.contains(&index),
            "the nemesis corrupts only disks at rest"
        );
        let flipped = self.disks[index].corrupt(madsim::rand::thread_rng().gen())?;
        self.corrupted.insert(index);
        Some(flipped)
    }

    /// Members that refused to start: out for good.
    pub fn lost(&self) -> BTreeSet<usize> {
        self.refused.lock().unwrap().keys().copied().collect()
    }

    /// How many members are out of the quorum right now, for whatever reason.
    pub fn unavailable(&self) -> usize {
        let mut out: BTreeSet<usize> = self.lost();
        out.extend(
            self.down
                .iter()
                .chain(&self.paused)
                .chain(&self.disk_full)
                .chain(&self.retired),
        );
        out.len()
    }

    /// The member client `index` lives next to.
    pub fn home_of(&self, index: usize) -> usize {
        index % self.size()
    }

    /// Notes for the availability record whether a quorum is healthy now
    /// (`properties::availability` says what that takes), starting a new
    /// stretch if anything it depends on changed or the cluster was
    /// `disturbed`. A member whose disk is slow (`slow_disk`) is not well;
    /// nor is any while the membership is `changing`. The quorum must hold
    /// the home of a client whose service is judged: clients reach only
    /// the members their own can talk to.
    pub fn note_stretch(&self, slow_disk: Option<u64>, changing: bool, disturbed: bool) {
        let lost = self.lost();
        let lagging = self.filter.lagging();
        let good = |m: usize| {
            let id = Some(self.member_ids[m]);
            !(self.down.contains(&m)
                || self.paused.contains(&m)
                || self.disk_full.contains(&m)
                || self.corrupted.contains(&m)
                || self.retired.contains(&m)
                || lost.contains(&m)
                || lagging == id
                || slow_disk == id)
        };
        let connected = |a: usize, b: usize| {
            !self
                .filter
                .separated(self.member_ids[a], self.member_ids[b])
        };
        let homes: Vec<usize> = self
            .served_clients
            .iter()
            .map(|&client| self.home_of(client))
            .collect();
        let message_faults = self.filter.message_faults_on();
        let healthy = !changing
            && !message_faults
            && crate::properties::availability::quorum_healthy(
                self.size(),
                &homes,
                good,
                connected,
            );
        let members = 0..self.size();
        let mut state = vec![
            u64::from(healthy),
            u64::from(changing),
            u64::from(message_faults),
        ];
        state.extend(members.clone().map(|m| u64::from(good(m))));
        state.extend(
            members
                .clone()
                .flat_map(|a| members.clone().map(move |b| (a, b)))
                .map(|(a, b)| u64::from(connected(a, b))),
        );
        self.faults
            .stretch(healthy, detcd::rng::stable_hash(&state), disturbed);
    }

    /// Members that hold (or may hold) data: the ones to check at the end.
    pub fn serving(&self) -> Vec<usize> {
        let lost = self.lost();
        (0..self.size())
            .filter(|index| !lost.contains(index))
            .collect()
    }

    pub fn restart(&mut self, index: usize) {
        self.handle.restart(self.nodes[index].id());
        self.down.remove(&index);
        self.note_out();
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
        self.note_out();
    }

    /// Frees the disk and restarts the member (an operator's fix).
    pub fn free_disk(&mut self, index: usize) {
        self.disks[index].set_faults(DiskFaults::default());
        self.disk_full.remove(&index);
        self.handle.kill(self.nodes[index].id());
        self.handle.restart(self.nodes[index].id());
        self.note_out();
    }

    pub fn set_skew(&self, index: usize, skew: Skew) {
        self.faults.skewed();
        self.clocks[index].set_skew(skew);
    }

    /// Ends every fault: links healed, message faults off, clocks true,
    /// crashed members restarted.
    pub fn heal_all(&mut self) {
        self.heal_links();
        self.filter.set_message_faults(0, 0, 0);
        self.filter.set_lagging(None);
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

/// What a member's node needs to (re)start it.
#[derive(Clone)]
struct Member {
    index: usize,
    spec: Arc<Mutex<Spec>>,
    snapshot_count: u64,
    clock: Clock,
    filter: Arc<NetFilter>,
    refused: Arc<Mutex<BTreeMap<usize, String>>>,
    stopped: Arc<Mutex<BTreeMap<usize, String>>>,
}

impl Member {
    fn start_node(self, handle: &Handle) -> NodeHandle {
        handle
            .create_node()
            .name(format!("m{}", self.index))
            .ip(member_ip(self.index))
            .init(move || self.clone().run())
            .build()
    }

    async fn run(self) {
        let index = self.index;
        let (initial_cluster, initial_cluster_state, disk) = {
            let spec = self.spec.lock().unwrap();
            (
                spec.initial_cluster.clone(),
                spec.initial_cluster_state,
                spec.disk.clone(),
            )
        };
        let config = Config::parse_from([
            "detcd".to_string(),
            format!("--name=m{index}"),
            format!("--data-dir=/m{index}.etcd"),
            format!("--listen-client-urls={}", client_url(index)),
            format!("--advertise-client-urls={}", client_url(index)),
            format!("--listen-peer-urls={}", peer_url(index)),
            format!("--initial-advertise-peer-urls={}", peer_url(index)),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={initial_cluster_state}"),
            format!("--initial-cluster-token={TOKEN}"),
            format!("--snapshot-count={}", self.snapshot_count),
            // The cheapest bcrypt: hashing takes real time the virtual
            // clock does not see, and this is not the property under test.
            format!("--bcrypt-cost={}", detcd::auth::password::BCRYPT_COST_MIN),
            // A compaction's deletes in several backend transactions, as a
            // large history's are, so crashes and power loss fall
            // between them.
            format!("--experimental-compaction-batch-limit={SIM_COMPACTION_BATCH_LIMIT}"),
            format!("--experimental-watch-progress-notify-interval={SIM_PROGRESS_NOTIFY_INTERVAL}"),
        ]);
        let started = Server::start(
            &config,
            disk,
            self.clock.clone(),
            NodeRng::from_os(),
            self.filter.clone(),
        )
        .await;
        let Started {
            server,
            raft_loop,
            peer_service,
        } = match started {
            Ok(started) => {
                self.refused.lock().unwrap().remove(&index);
                self.stopped.lock().unwrap().remove(&index);
                started
            }
            Err(error) => {
                // Storage that fails its checks: the member must not serve.
                tracing::warn!("m{index} refused to start: {error}");
                self.refused
                    .lock()
                    .unwrap()
                    .insert(index, error.to_string());
                return;
            }
        };
        let client_address = SocketAddr::new(member_ip(index), CLIENT_PORT);
        let peer_address = SocketAddr::new(member_ip(index), PEER_PORT);
        tokio::select! {
            biased;
            result = raft_loop => match result {
                Ok(Err(FatalError::Removed)) => {}
                // A storage failure stops the member, never a wrong answer.
                // It is out until a restart starts it (`stopped`).
                Ok(Err(fatal @ FatalError::Wal(_)))
                | Ok(Err(fatal @ FatalError::Snapshot(_)))
                | Ok(Err(fatal @ FatalError::Backend(_))) => {
                    tracing::warn!("m{index} stopped: {fatal}");
                    self.stopped
                        .lock()
                        .unwrap()
                        .insert(index, format!("stopped on its storage: {fatal}"));
                }
                // The nemesis crashes and restarts it (`nemesis::crash_points`).
                Ok(Err(FatalError::CrashPoint(point))) => {
                    tracing::info!("m{index} stopped at crash point {point:?}");
                }
                other => panic!("m{index}: raft loop stopped: {other:?}"),
            },
            result = detcd::api::serve(server, client_address, std::future::pending()) => panic!("m{index}: client service stopped: {result:?}"),
            result = detcd::api::serve_peers(peer_service, peer_address, std::future::pending()) => panic!("m{index}: peer service stopped: {result:?}"),
        }
    }
}
