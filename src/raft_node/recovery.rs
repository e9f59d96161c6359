//! Opening a member's storage: bootstrap a new one, or recover the newest
//! valid snapshot plus the WAL after it (DESIGN.md "Storage model").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use raft::eraftpb::ConfState;
use raft::RawNode;
use thiserror::Error;

use super::{ElectionTimeouts, LogStore, RaftNode, Shared, MAX_INFLIGHT_MSGS, MAX_SIZE_PER_MSG};
use crate::apply::StateMachine;
use crate::clock::Clock;
use crate::membership::{Member, Members};
use crate::proto::detcdpb::MemberAttributes;
use crate::storage::snapshot::{Snapshot, SnapshotDir, SnapshotError};
use crate::transport::{MessageFilter, Transport};
use crate::storage::wal::{Metadata, Wal, WalError};
use crate::storage::Disk;

/// What the driver needs to know about its member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Voters of a new cluster (ignored when recovering).
    pub initial_voters: Vec<u64>,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub quota_bytes: i64,
    pub max_request_bytes: usize,
    /// Seeds the deterministic election timeouts.
    pub seed: u64,
    /// Unique prefix for proposal ids across restarts (etcd `idutil`: the
    /// member id's low bits and the start time).
    pub proposal_id_base: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    /// The members of a new cluster (ignored when recovering: the
    /// replicated registry in the state machine is the truth then).
    pub initial_members: Vec<Member>,
}

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("data dir {data_dir} belongs to member {found:x}, not {expected:x} (wrong --name, --initial-cluster or --data-dir?)")]
    WrongMember { data_dir: PathBuf, found: u64, expected: u64 },
    #[error("cannot recover: {0}")]
    Inconsistent(String),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

impl RaftNode {
    pub fn open(config: &NodeConfig, disk: Arc<dyn Disk>, clock: Clock, filter: Arc<dyn MessageFilter>) -> Result<RaftNode, RecoveryError> {
        let member_dir = config.data_dir.join("member");
        let wal_dir = member_dir.join("wal");
        let snapshots = SnapshotDir::open(disk.clone(), &member_dir.join("snap"))?;
        let recovered = if Wal::exists(&*disk, &wal_dir) {
            recover(config, disk, &wal_dir, &snapshots)?
        } else {
            bootstrap(config, disk, &wal_dir, &snapshots)?
        };
        let Recovered { wal, state, log, snapshot_index, snapshot_term } = recovered;
        let raft_config = raft::Config {
            id: config.member_id,
            election_tick: config.election_ticks,
            heartbeat_tick: 1,
            applied: state.applied_index(),
            max_size_per_msg: MAX_SIZE_PER_MSG,
            max_inflight_msgs: MAX_INFLIGHT_MSGS,
            pre_vote: true,
            check_quorum: true,
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let voters = log.conf_state().voters.clone();
        let mut raw = RawNode::new(&raft_config, log, &logger)?;
        let election = ElectionTimeouts::new(config.seed, config.election_ticks);
        election.fix(&mut raw);
        if voters == [config.member_id] {
            // A sole voter need not wait out an election timeout.
            raw.campaign()?;
        }
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            member_id: config.member_id,
            cluster_id: config.cluster_id,
            term: AtomicU64::new(raw.raft.term),
            leader_id: AtomicU64::new(raft::INVALID_ID),
            commit_index: AtomicU64::new(raw.raft.raft_log.committed),
            last_index: AtomicU64::new(raw.raft.raft_log.last_index()),
        });
        let peer_urls = recovered_peers(&shared, config.member_id);
        let transport = Transport::new(config.member_id, config.cluster_id, peer_urls, filter, clock);
        let attributes = MemberAttributes { id: config.member_id, name: config.name.clone(), client_urls: config.client_urls.clone() };
        Ok(RaftNode {
            raw,
            transport,
            attributes,
            published: false,
            wal: Some(wal),
            snapshots: Arc::new(snapshots),
            shared,
            election,
            max_request_bytes: config.max_request_bytes,
            quota_bytes: config.quota_bytes,
            snapshot_count: config.snapshot_count,
            snapshot_indexes: (snapshot_index, snapshot_index),
            applied_term: snapshot_term,
            next_proposal_id: config.proposal_id_base,
            proposals: BTreeMap::new(),
            queued: Vec::new(),
            reads_in_flight: BTreeMap::new(),
            reads_ready: Vec::new(),
        })
    }
}

struct Recovered {
    wal: Wal,
    state: StateMachine,
    log: LogStore,
    snapshot_index: u64,
    snapshot_term: u64,
}

/// The peers' URLs as the replicated member registry knows them.
fn recovered_peers(shared: &Shared, member_id: u64) -> BTreeMap<u64, String> {
    let state = shared.state.read().expect("state lock");
    let peers = state.members().list().filter(|member| member.id != member_id);
    peers.filter_map(|member| member.peer_urls.first().map(|url| (member.id, url.clone()))).collect()
}

/// A new member: an initial snapshot at index 0 records the members (so
/// every later recovery knows them), then the first WAL segment appears.
/// A crash in between leaves no WAL, and the next start bootstraps again.
fn bootstrap(config: &NodeConfig, disk: Arc<dyn Disk>, wal_dir: &std::path::Path, snapshots: &SnapshotDir) -> Result<Recovered, RecoveryError> {
    let conf_state = ConfState { voters: config.initial_voters.clone(), ..ConfState::default() };
    let state = StateMachine::new(config.quota_bytes, Members::new(config.initial_members.clone()));
    snapshots.save(&Snapshot { index: 0, term: 0, conf_state: conf_state.clone(), state: state.encode() })?;
    let metadata = Metadata { member_id: config.member_id, cluster_id: config.cluster_id };
    let wal = Wal::create(disk, wal_dir, metadata, conf_state.clone())?;
    tracing::info!(data_dir = %config.data_dir.display(), member = format_args!("{:x}", config.member_id), "bootstrapped a new member");
    Ok(Recovered {
        wal,
        state,
        log: LogStore::new(conf_state, 0, 0),
        snapshot_index: 0,
        snapshot_term: 0,
    })
}

fn recover(config: &NodeConfig, disk: Arc<dyn Disk>, wal_dir: &std::path::Path, snapshots: &SnapshotDir) -> Result<Recovered, RecoveryError> {
    let (wal, replay) = Wal::open(disk, wal_dir)?;
    if replay.torn_tail_bytes > 0 {
        tracing::warn!(bytes = replay.torn_tail_bytes, "truncated a torn write at the end of the WAL");
    }
    if replay.metadata.member_id != config.member_id {
        return Err(RecoveryError::WrongMember {
            data_dir: config.data_dir.clone(),
            found: replay.metadata.member_id,
            expected: config.member_id,
        });
    }
    let first_entry = replay.entries.first().map(|entry| entry.index);
    let (valid, bad) = snapshots.load_newest_first()?;
    for error in &bad {
        tracing::error!(%error, "skipping a snapshot that fails its checks");
    }
    // The newest snapshot the WAL continues from: the WAL must hold every
    // entry after it (or none at all, if nothing was written since).
    let covered = |index: u64| first_entry.is_none_or(|first| first <= index + 1);
    let snapshot = valid.into_iter().find(|snapshot| covered(snapshot.index));
    let (state, mut log, snapshot_index, snapshot_term) = match snapshot {
        Some(snapshot) => {
            let state = StateMachine::decode(&snapshot.state, config.quota_bytes)
                .map_err(|reason| RecoveryError::Inconsistent(format!("snapshot at index {}: {reason}", snapshot.index)))?;
            if state.applied_index() != snapshot.index {
                return Err(RecoveryError::Inconsistent(format!(
                    "snapshot at index {} holds state applied to {}",
                    snapshot.index,
                    state.applied_index()
                )));
            }
            let log = LogStore::new(snapshot.conf_state.clone(), snapshot.index, snapshot.term);
            (state, log, snapshot.index, snapshot.term)
        }
        None if covered(0) => {
            let conf_state = replay
                .conf_state
                .clone()
                .ok_or_else(|| RecoveryError::Inconsistent("the WAL has no configuration".into()))?;
            tracing::warn!("no snapshot found: taking the member list from --initial-cluster");
            let members = Members::new(config.initial_members.clone());
            (StateMachine::new(config.quota_bytes, members), LogStore::new(conf_state, 0, 0), 0, 0)
        }
        None => {
            return Err(RecoveryError::Inconsistent(format!(
                "the WAL starts at entry {} but no valid snapshot covers the entries before it{}",
                first_entry.unwrap_or(0),
                if bad.is_empty() { String::new() } else { format!(" ({} snapshot(s) failed their checks)", bad.len()) }
            )));
        }
    };
    let entries: Vec<_> = replay.entries.into_iter().filter(|entry| entry.index > snapshot_index).collect();
    log.append(&entries);
    let mut hard_state = replay.hard_state;
    hard_state.term = hard_state.term.max(snapshot_term);
    // A snapshot only ever holds committed state, so its index is committed
    // even if the hard state recording that was lost.
    hard_state.commit = hard_state.commit.max(snapshot_index);
    if hard_state.commit > log.last() {
        return Err(RecoveryError::Inconsistent(format!(
            "the hard state says entry {} is committed but the log ends at {}",
            hard_state.commit,
            log.last()
        )));
    }
    log.set_hard_state(hard_state);
    tracing::info!(snapshot_index, last_index = log.last(), "recovered from snapshot and WAL");
    Ok(Recovered { wal, state, log, snapshot_index, snapshot_term })
}
