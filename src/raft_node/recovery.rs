//! Opening a member's storage: bootstrap a new one, or recover the newest
//! valid snapshot plus the WAL after it (DESIGN.md "Storage model").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::eraftpb::{ConfChangeType, ConfState, Entry, EntryType, HardState};
use raft::RawNode;
use thiserror::Error;

use super::{
    strangers, ElectionTimeouts, LogStore, RaftNode, Shared, MAX_INFLIGHT_MSGS, MAX_SIZE_PER_MSG,
};
use crate::apply::StateMachine;
use crate::clock::Clock;
use crate::membership::{Member, Members};
use crate::proto::detcdpb::{MemberAttributes, MemberInfo};
use crate::storage::snapshot::{
    FileAt, LegacySnapshot, SnapshotDir, SnapshotError, SnapshotReader,
};
use crate::storage::wal::{Metadata, Wal, WalError};
use crate::storage::Disk;
use crate::transport::{MessageFilter, Transport};
use tokio::sync::mpsc;

/// What the driver needs to know about its member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Where the WAL lives (`--wal-dir`, or `storage::wal::default_dir`).
    pub wal_dir: PathBuf,
    /// How to start when the data dir is empty (ignored when recovering:
    /// the WAL knows who we are, the replicated registry who the others are).
    pub bootstrap: Bootstrap,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub quota_bytes: i64,
    pub max_request_bytes: usize,
    /// Seeds the deterministic election timeouts.
    pub seed: u64,
    /// Wall time at start, for proposal ids unique across restarts.
    pub start_unix_millis: i64,
    pub name: String,
    pub client_urls: Vec<String>,
    /// `--auth-token-ttl`: how long a login token lives unused.
    pub auth_token_ttl: std::time::Duration,
    /// `--strict-reconfig-check`: promote a learner only while enough
    /// members are started.
    pub strict_reconfig_check: bool,
    /// `--force-new-cluster`: on a restart, remove every other member
    /// (`standalone`).
    pub force_new_cluster: bool,
    /// `--backend-batch-interval` and `--backend-batch-limit`
    /// (`Writer::set_batching`).
    pub backend_batch: (std::time::Duration, usize),
    /// `--experimental-warning-apply-duration`: a slower apply is logged
    /// and counted.
    pub slow_apply: std::time::Duration,
    /// `--initial-election-tick-advance` (`RaftNode::advance_ticks`).
    pub initial_election_tick_advance: bool,
    /// `--experimental-compaction-batch-limit`
    /// (`Writer::set_compaction_batch_limit`).
    pub compaction_batch_limit: usize,
}

#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A member of a new cluster (`--initial-cluster-state new`): the log
    /// starts with one configuration change per member, as etcd's does.
    NewCluster {
        member_id: u64,
        cluster_id: u64,
        members: Vec<Member>,
    },
    /// A member added to a running cluster (`existing`): an empty log that
    /// the leader fills, configuration changes included. `peers` are the
    /// members the cluster reported, so our answers can reach the leader
    /// before the log has taught us who is who.
    Join {
        member_id: u64,
        cluster_id: u64,
        peers: BTreeMap<u64, Vec<String>>,
    },
}

impl Bootstrap {
    /// Peer URLs to start the transport with, before the registry is built.
    fn peers(&self) -> BTreeMap<u64, Vec<String>> {
        match self {
            Bootstrap::NewCluster {
                member_id, members, ..
            } => members
                .iter()
                .filter(|member| member.id != *member_id)
                .filter_map(|member| {
                    Some((member.id, crate::transport::peer_target(&member.peer_urls)?))
                })
                .collect(),
            Bootstrap::Join { peers, .. } => peers.clone(),
        }
    }
}

/// How a recovery that finds the WAL ending before the backend's state
/// says so. Never the right answer to a damaged disk: a WAL refuses a
/// damaged record itself, and the backend only holds entries the WAL had
/// synced; so the WAL lost some (the simulator counts it as a durability
/// violation).
pub const WAL_BEHIND_BACKEND: &str = "does not continue from there";

#[derive(Debug, Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot recover: {0}")]
    Inconsistent(String),
    #[error("the backend {path} cannot be trusted: {reason}")]
    Backend { path: PathBuf, reason: String },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

/// The on-disk backend's database file.
pub(super) fn backend_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("backend").join("db.redb")
}

impl RaftNode {
    /// True if the data dir (with its WAL in `wal_dir`) holds a member
    /// already. A member directory that holds snapshots or WAL files but
    /// no WAL segment in `wal_dir` has lost its log (or it is elsewhere:
    /// a `--wal-dir` added or dropped): bootstrapping over it would serve
    /// an empty or shorter history, so it is refused. Empty directories (a
    /// first start that crashed before its WAL appeared atomically) are a
    /// fresh start.
    pub fn has_data(
        disk: &dyn Disk,
        data_dir: &Path,
        wal_dir: &Path,
    ) -> Result<bool, RecoveryError> {
        if Wal::exists(disk, wal_dir) {
            return Ok(true);
        }
        let snap_dir = data_dir.join("member").join("snap");
        let backend_dir = data_dir.join("member").join("backend");
        let default_wal_dir = crate::storage::wal::default_dir(data_dir);
        let mut dirs = vec![wal_dir, &snap_dir, &backend_dir];
        if default_wal_dir != wal_dir {
            dirs.push(&default_wal_dir);
        }
        let mut leftovers = Vec::new();
        for dir in dirs {
            for name in disk.list(dir).unwrap_or_default() {
                if !name.ends_with(".tmp") {
                    leftovers.push(dir.join(name).display().to_string());
                }
            }
        }
        if leftovers.is_empty() {
            return Ok(false);
        }
        Err(RecoveryError::Inconsistent(format!(
            "{} has no WAL segment, yet the member's directories hold {}: the log is lost, and a new member \
             bootstrapped over it would serve a shorter history; restore the WAL (or give \
             --wal-dir as the member last ran with), or remove the data dir and add this \
             member again",
            wal_dir.display(),
            leftovers.join(", ")
        )))
    }

    pub fn open(
        config: &NodeConfig,
        disk: Arc<dyn Disk>,
        clock: Clock,
        filter: Arc<dyn MessageFilter>,
    ) -> Result<RaftNode, RecoveryError> {
        let wal_dir = config.wal_dir.clone();
        let snapshots =
            SnapshotDir::open(disk.clone(), &config.data_dir.join("member").join("snap"))?;
        let restarting = Self::has_data(&*disk, &config.data_dir, &wal_dir)?;
        let mut recovered = if restarting {
            recover(config, disk, &wal_dir, &snapshots)?
        } else {
            bootstrap(config, disk, &wal_dir)?
        };
        if restarting && config.force_new_cluster {
            super::standalone::force(&mut recovered.wal, &mut recovered.log, &snapshots)?;
        }
        let Recovered {
            wal,
            mut state,
            log,
            snapshot_index,
            snapshot_term,
            backend,
        } = recovered;
        state.track_changes();
        let (interval, limit) = config.backend_batch;
        backend.set_batching(interval, limit);
        backend.set_compaction_batch_limit(config.compaction_batch_limit);
        // Values the backend holds leave memory; a state restored from it
        // reads them from there already.
        state.attach_cold(backend.cold_log(), backend.durable().revision);
        let Metadata {
            member_id,
            cluster_id,
        } = wal.metadata();
        let raft_config = raft::Config {
            id: member_id,
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
        let mut raw = RawNode::new(&raft_config, log, &logger)?;
        let election = ElectionTimeouts::new(config.seed, config.election_ticks);
        election.fix(&mut raw);
        let mut peer_urls = config.bootstrap.peers();
        peer_urls.remove(&member_id);
        let metrics = Arc::new(crate::metrics::Metrics::new(crate::ETCD_API_VERSION));
        let transport = Transport::new(
            member_id,
            cluster_id,
            BTreeMap::new(),
            filter,
            clock.clone(),
            metrics.clone(),
        );
        if !state.cluster_version().is_empty() {
            super::applying::log_capabilities(&metrics, state.cluster_version());
        }
        let revision = crate::published::Published::new(state.store().current_revision());
        let stopping = crate::published::Published::new(false);
        let shared = Arc::new(Shared {
            revision,
            stopping,
            peer_activity: transport.activity(),
            state: RwLock::new(state),
            member_id,
            cluster_id,
            position: std::sync::Mutex::new((raw.raft.term, raft::INVALID_ID)),
            commit_index: AtomicU64::new(raw.raft.raft_log.committed),
            last_index: AtomicU64::new(raw.raft.raft_log.last_index()),
            lease_timers: std::sync::Mutex::new(crate::lease::Timers::default()),
            tokens: std::sync::Mutex::new(crate::auth::tokens::SimpleTokens::new(
                config.auth_token_ttl,
            )),
            metrics,
            backend: backend.clone(),
        });
        // Every lease resumes from its checkpoint, else its full TTL: the
        // instants before the restart are gone with the process.
        {
            let state = shared.state.read().expect("state lock");
            shared
                .lease_timers
                .lock()
                .expect("lease timers lock")
                .reset(clock.elapsed(), state.leases());
        }
        peer_urls.extend(recovered_peers(&shared, member_id));
        let mut transport = transport;
        for (id, urls) in peer_urls {
            transport.set_peer(id, urls);
        }
        let attributes = MemberAttributes {
            id: member_id,
            name: config.name.clone(),
            client_urls: config.client_urls.clone(),
        };
        // Every entry in the log was persisted before this start, so a lease
        // it (re)started runs from now at the latest, not from whenever the
        // entry is applied (after an election, if a majority restarted).
        let mut entry_starts = super::waiters::EntryStarts::default();
        let (first, last) = (
            raw.raft.raft_log.first_index(),
            raw.raft.raft_log.last_index(),
        );
        if first <= last {
            entry_starts.persisted(first, last, clock.elapsed());
        }
        let (vouched, vouched_answers) = mpsc::channel(strangers::STRANGERS_MAX);
        // All a restart finds is durable: a crash took what was not. That
        // may be more than the WAL holds (a snapshot file adopted before a
        // crash kept the WAL from marking it).
        #[cfg(madsim)]
        let synced = {
            let synced = wal.synced_index();
            synced.recovered(raw.raft.raft_log.persisted);
            synced
        };
        Ok(RaftNode {
            raw,
            transport,
            known_leader: raft::INVALID_ID,
            attributes,
            published: false,
            publish_proposed_at: None,
            published_announced: false,
            strict_reconfig_check: config.strict_reconfig_check,
            slow_apply: config.slow_apply,
            tick_advance_until: config
                .initial_election_tick_advance
                .then(|| clock.elapsed() + super::TICK_ADVANCE_WAIT),
            cluster_version_due: false,
            cluster_version_proposed_at: None,
            #[cfg(madsim)]
            stored_parts: None,
            #[cfg(madsim)]
            synced,
            last_heard: std::time::Duration::ZERO,
            removal_asked_at: std::time::Duration::ZERO,
            removed: Arc::default(),
            removal_asking: Arc::default(),
            dropped_messages: 0,
            strangers: strangers::Strangers::default(),
            vouched,
            vouched_answers: Some(vouched_answers),
            heartbeats_sent: BTreeMap::new(),
            round_trips: BTreeMap::new(),
            clock,
            entry_starts,
            next_lease_check: std::time::Duration::ZERO,
            next_lease_checkpoint: std::time::Duration::ZERO,
            wal: Some(wal),
            writes: super::wal_writes::WalWrites::default(),
            backend,
            snapshots: Arc::new(snapshots),
            shared,
            election,
            max_request_bytes: config.max_request_bytes,
            quota_bytes: config.quota_bytes,
            snapshot_policy: super::waiters::SnapshotPolicy::new(
                config.snapshot_count,
                snapshot_index,
            ),
            applied_term: snapshot_term,
            proposals: super::waiters::Proposals::new(proposal_id_base(
                member_id,
                config.start_unix_millis,
            )),
            reads: super::waiters::ReadIndexQueue::default(),
            // A first boot is no restart: the sabotage waits for one.
            #[cfg(madsim)]
            sabotage_applied_twice: !restarting,
            #[cfg(madsim)]
            sabotage_applied_early: 0,
            follower_snapshot: None,
            snapshot_source: None,
        })
    }
}

/// etcd's `idutil.Generator` layout: 2 bytes of member id, then 5 bytes of
/// milliseconds, then a byte of counter, so ids stay unique across restarts.
fn proposal_id_base(member_id: u64, wall_unix_millis: i64) -> u64 {
    let prefix = (member_id & 0xffff) << 48;
    let time = ((wall_unix_millis as u64) & 0xff_ffff_ffff) << 8;
    prefix | time
}

/// The log a new cluster starts with: one committed configuration change
/// per initial member, in id order, at term 1 (etcd `StartNode`). A member
/// that joins later replays them too, so every member derives the same
/// configuration from the log alone.
fn bootstrap_entries(members: &[Member]) -> Vec<Entry> {
    members
        .iter()
        .enumerate()
        .map(|(position, member)| {
            let info = MemberInfo {
                id: member.id,
                name: member.name.clone(),
                peer_urls: member.peer_urls.clone(),
                is_learner: false,
            };
            let change = super::single_change(ConfChangeType::AddNode, member.id, info);
            Entry {
                entry_type: EntryType::EntryConfChangeV2,
                term: 1,
                index: position as u64 + 1,
                data: protobuf::Message::write_to_bytes(&change)
                    .expect("conf change encodes")
                    .into(),
                ..Entry::default()
            }
        })
        .collect()
}

struct Recovered {
    wal: Wal,
    state: StateMachine,
    log: LogStore,
    snapshot_index: u64,
    snapshot_term: u64,
    backend: crate::backend::Writer,
}

/// Opens (or makes, if there is none) the backend at `path`.
fn open_backend(
    disk: &Arc<dyn Disk>,
    path: &Path,
) -> Result<crate::backend::Backend, RecoveryError> {
    let untrusted = |error: crate::backend::Error| RecoveryError::Backend {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let dir = path.parent().expect("the backend path has a parent");
    disk.create_dir_all(dir)
        .map_err(|error| untrusted(crate::backend::Error::Engine(error.to_string())))?;
    // The name about to be trusted may come from a rename (a new backend
    // installed, or the first one created) that a kill -9 left in the page
    // cache only: made durable now, or a power loss after this start could
    // bring back the older file, behind a WAL released past it.
    disk.sync_dir(dir)
        .map_err(|error| untrusted(crate::backend::Error::Engine(error.to_string())))?;
    crate::backend::Backend::open(disk.clone(), path).map_err(untrusted)
}

/// The peers' URLs as the replicated member registry knows them.
pub(super) fn recovered_peers(shared: &Shared, member_id: u64) -> BTreeMap<u64, Vec<String>> {
    let state = shared.state.read().expect("state lock");
    let peers = state
        .members()
        .list()
        .filter(|member| member.id != member_id);
    peers
        .filter_map(|member| Some((member.id, crate::transport::peer_target(&member.peer_urls)?)))
        .collect()
}

fn bootstrap(
    config: &NodeConfig,
    disk: Arc<dyn Disk>,
    wal_dir: &Path,
) -> Result<Recovered, RecoveryError> {
    let (metadata, entries) = match &config.bootstrap {
        Bootstrap::NewCluster {
            member_id,
            cluster_id,
            members,
        } => (
            Metadata {
                member_id: *member_id,
                cluster_id: *cluster_id,
            },
            bootstrap_entries(members),
        ),
        Bootstrap::Join {
            member_id,
            cluster_id,
            ..
        } => (
            Metadata {
                member_id: *member_id,
                cluster_id: *cluster_id,
            },
            Vec::new(),
        ),
    };
    let hard_state = if entries.is_empty() {
        HardState::default()
    } else {
        HardState {
            term: 1,
            commit: entries.len() as u64,
            ..HardState::default()
        }
    };
    let wal = Wal::create(
        disk.clone(),
        wal_dir,
        metadata,
        ConfState::default(),
        &entries,
        &hard_state,
    )?;
    // After the WAL: a backend without a WAL would be refused as a lost log.
    let path = backend_path(&config.data_dir);
    crate::backend::writer::remove_scratch(&*disk, &path);
    let backend = crate::backend::Writer::new(
        disk.clone(),
        &path,
        open_backend(&disk, &path)?,
        crate::backend::Durable::default(),
        metadata.member_id,
    );
    let mut log = LogStore::new(ConfState::default(), 0, 0);
    log.append(&entries);
    log.set_hard_state(hard_state);
    tracing::info!(data_dir = %config.data_dir.display(), member = format_args!("{:x}", metadata.member_id), "bootstrapped a new member");
    Ok(Recovered {
        wal,
        state: StateMachine::new(config.quota_bytes, Members::default()),
        log,
        snapshot_index: 0,
        snapshot_term: 0,
        backend,
    })
}

fn recover(
    config: &NodeConfig,
    disk: Arc<dyn Disk>,
    wal_dir: &Path,
    snapshots: &SnapshotDir,
) -> Result<Recovered, RecoveryError> {
    let (wal, replay) = Wal::open(disk.clone(), wal_dir)?;
    let member_id = wal.metadata().member_id;
    if let Some(torn) = &replay.torn_tail {
        // A torn write from a crash: only bytes never fsynced, so nothing
        // acknowledged (ARCHITECTURE.md, "what the WAL can detect").
        tracing::warn!(
            path = %torn.path.display(),
            offset = torn.offset,
            bytes = torn.bytes,
            dropped = torn.what,
            last_entry = replay.entries.last().map(|entry| entry.index).unwrap_or(0),
            "truncated a torn write at the end of the WAL"
        );
    }
    let first_entry = replay.entries.first().map(|entry| entry.index);
    let last_entry = replay.entries.last().map(|entry| entry.index);
    let (valid, bad) = snapshots.load_newest_first()?;
    for error in &bad {
        tracing::error!(%error, "skipping a snapshot that fails its checks");
    }
    // The newest snapshot the WAL continues from: the WAL must hold every
    // entry after it (or none at all, if nothing was written since), and
    // must either mark it or reach it. A leader's snapshot saved by an
    // install that crashed before its WAL mark is not the member's state:
    // the WAL still ends below it, and taking it would append the
    // leader's next entries after that lower end, a gap the next recovery
    // refuses (the simulator found this, seed 209).
    let marked = |index: u64| replay.snapshot_marks.iter().any(|mark| mark.index == index);
    let covered = |index: u64| {
        first_entry.is_none_or(|first| first <= index + 1)
            && (marked(index) || last_entry.is_none_or(|last| last >= index))
    };
    let path = backend_path(&config.data_dir);
    crate::backend::writer::remove_scratch(&*disk, &path);
    let backend = crate::backend::Writer::new(
        disk.clone(),
        &path,
        open_backend(&disk, &path)?,
        crate::backend::Durable::default(),
        member_id,
    );
    let corrupt_backend = |reason: String| RecoveryError::Backend {
        path: path.clone(),
        reason,
    };
    let backend_index = backend
        .load()
        .map_err(|error| corrupt_backend(error.to_string()))?
        .consistent_index;
    // A snapshot file newer than the backend: one from the leader whose
    // install crashed before the backend took it, or a data dir from
    // before the backend (or restored from a backup). The backend is
    // rebuilt from it, piece by piece, and the state restored from there.
    if let Some(found) = valid
        .into_iter()
        .find(|found| found.index > backend_index && covered(found.index))
    {
        let rebuilding = |reason: String| {
            corrupt_backend(format!(
                "rebuilding it from the snapshot at {}: {reason}",
                found.index
            ))
        };
        let (_, _, durable) = if found.legacy {
            let stream = legacy_stream(&*disk, &found.path, config.quota_bytes)?;
            let mut reader = SnapshotReader::open(stream.as_slice()).map_err(rebuilding)?;
            super::durable::build_from_snapshot(&backend, &mut reader, config.quota_bytes)
        } else {
            let mut reader = SnapshotReader::open(FileAt {
                disk: disk.clone(),
                path: found.path.clone(),
            })
            .map_err(rebuilding)?;
            super::durable::build_from_snapshot(&backend, &mut reader, config.quota_bytes)
        }
        .map_err(rebuilding)?;
        backend
            .install(durable)
            .map_err(|error| rebuilding(error.to_string()))?;
        tracing::info!(
            index = found.index,
            "rebuilt the backend from a snapshot file"
        );
    }
    let stored = super::durable::restore(&backend, config.quota_bytes).map_err(corrupt_backend)?;
    let (state, mut log, snapshot_index, snapshot_term) = match stored {
        Some((state, conf_state, durable)) => {
            // The backend holds every entry it was committed with, and the
            // WAL every entry applied: a WAL that does not continue from
            // the backend lost entries (or the backend is not this
            // member's).
            if !covered(durable.index) {
                return Err(RecoveryError::Inconsistent(format!(
                    "the backend holds the state at index {} but the WAL ({}) {WAL_BEHIND_BACKEND}",
                    durable.index,
                    match (first_entry, last_entry) {
                        (Some(first), Some(last)) => format!("entries {first} to {last}"),
                        _ => "no entries".to_string(),
                    }
                )));
            }
            let log = LogStore::new(conf_state, durable.index, durable.term);
            let (index, term) = (durable.index, durable.term);
            backend.set_durable(durable);
            (state, log, index, term)
        }
        None if covered(0) => {
            let conf_state = replay.conf_state.clone().ok_or_else(|| {
                RecoveryError::Inconsistent("the WAL has no configuration".into())
            })?;
            backend.set_durable(crate::backend::Durable::default());
            (
                StateMachine::new(config.quota_bytes, Members::default()),
                LogStore::new(conf_state, 0, 0),
                0,
                0,
            )
        }
        None => {
            return Err(RecoveryError::Inconsistent(format!(
                "the WAL starts at entry {} but no valid snapshot covers the entries before it{}",
                first_entry.unwrap_or(0),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!(" ({} snapshot(s) failed their checks)", bad.len())
                }
            )));
        }
    };
    let entries: Vec<_> = replay
        .entries
        .into_iter()
        .filter(|entry| entry.index > snapshot_index)
        .collect();
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
    tracing::info!(
        snapshot_index,
        last_index = log.last(),
        "recovered from snapshot and WAL"
    );
    Ok(Recovered {
        wal,
        state,
        log,
        snapshot_index,
        snapshot_term,
        backend,
    })
}

/// A format-2 snapshot file (a whole state image) as a snapshot stream:
/// what a data dir from before snapshots streamed holds.
fn legacy_stream(
    disk: &dyn crate::storage::Disk,
    path: &Path,
    quota_bytes: i64,
) -> Result<Vec<u8>, RecoveryError> {
    let inconsistent = |reason: String| {
        RecoveryError::Inconsistent(format!("snapshot {}: {reason}", path.display()))
    };
    let bytes = disk
        .read(path)
        .map_err(|error| inconsistent(error.to_string()))?;
    let legacy = LegacySnapshot::decode(&bytes).map_err(inconsistent)?;
    let state = StateMachine::decode(&legacy.state, quota_bytes).map_err(inconsistent)?;
    if state.applied_index() != legacy.index {
        return Err(inconsistent(format!(
            "it holds state applied to {}, not {}",
            state.applied_index(),
            legacy.index
        )));
    }
    let conf_state = legacy
        .conf_state
        .write_to_bytes()
        .expect("a conf state encodes");
    state
        .write_snapshot(legacy.term, conf_state, Vec::new())
        .map_err(inconsistent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::snapshot::LegacySnapshot;
    use crate::storage::wal::SnapshotMark;
    use crate::storage::SimDisk;

    fn config() -> NodeConfig {
        NodeConfig {
            data_dir: PathBuf::from("/m"),
            wal_dir: crate::storage::wal::default_dir(Path::new("/m")),
            bootstrap: Bootstrap::Join {
                member_id: 1,
                cluster_id: 1,
                peers: BTreeMap::new(),
            },
            election_ticks: 10,
            snapshot_count: 100,
            quota_bytes: 0,
            max_request_bytes: 1 << 20,
            seed: 1,
            start_unix_millis: 0,
            name: "m".into(),
            client_urls: Vec::new(),
            auth_token_ttl: std::time::Duration::from_secs(300),
            strict_reconfig_check: true,
            force_new_cluster: false,
            backend_batch: (
                crate::backend::writer::COMMIT_INTERVAL,
                crate::backend::writer::COMMIT_LIMIT,
            ),
            slow_apply: crate::raft_node::SLOW_APPLY,
            initial_election_tick_advance: true,
            compaction_batch_limit: crate::backend::writer::COMPACTION_BATCH_LIMIT,
        }
    }

    /// Seed 209's case: the log reaches entry 3, and a leader's snapshot at
    /// 200 was saved by an install that crashed before its WAL mark. Taking
    /// it would put the leader's entry 201 right after entry 3 in the WAL.
    #[test]
    fn a_leaders_snapshot_is_the_state_only_once_the_wal_marks_it() {
        let disk = Arc::new(SimDisk::new());
        let wal_dir = wal_with_entries(&disk, 3);
        let voters = ConfState {
            voters: vec![1],
            ..ConfState::default()
        };
        let snapshots = SnapshotDir::open(disk.clone(), Path::new("/m/member/snap")).unwrap();
        let mut state = StateMachine::new(0, Members::default());
        state.restore_membership(Members::default(), 200);
        save_snapshot(&snapshots, &state, 2, &voters);

        let recovered = recover(&config(), disk.clone(), &wal_dir, &snapshots).unwrap();
        assert_eq!(
            recovered.snapshot_index, 0,
            "the unmarked snapshot is not used"
        );
        assert_eq!(recovered.log.last(), 3);
        drop(recovered);

        let (mut wal, _) = Wal::open(disk.clone(), &wal_dir).unwrap();
        wal.mark_installed(SnapshotMark {
            index: 200,
            term: 2,
        });
        wal.sync().unwrap();
        drop(wal);
        let recovered = recover(&config(), disk, &wal_dir, &snapshots).unwrap();
        assert_eq!(recovered.snapshot_index, 200, "once marked it is the state");
        assert_eq!(recovered.log.last(), 200);
    }

    /// A kill -9 right after a new backend file was renamed into place,
    /// before the directory was synced: the restart opens it, and a power
    /// loss after that start must not bring the older name back.
    #[test]
    fn the_backend_a_start_opens_survives_a_later_power_loss() {
        let disk = Arc::new(SimDisk::new());
        let path = backend_path(Path::new("/m"));
        drop(open_backend(&(disk.clone() as Arc<dyn Disk>), &path).unwrap());
        let older = path.with_extension("older");
        disk.rename(&path, &older).unwrap();
        disk.sync_dir(path.parent().unwrap()).unwrap();
        // The install's rename, which the kill leaves unsynced.
        disk.rename(&older, &path).unwrap();
        disk.fence();
        disk.survive_kill();
        drop(open_backend(&(disk.clone() as Arc<dyn Disk>), &path).unwrap());
        disk.crash(1);
        assert!(
            disk.file_len(&path).is_ok(),
            "the backend the start opened is gone after a power loss"
        );
    }

    /// A WAL of entries 1 to `last` at term 1, all committed.
    fn wal_with_entries(disk: &Arc<SimDisk>, last: u64) -> PathBuf {
        let wal_dir = PathBuf::from("/m/member/wal");
        let voters = ConfState {
            voters: vec![1],
            ..ConfState::default()
        };
        let metadata = Metadata {
            member_id: 1,
            cluster_id: 1,
        };
        let mut wal = Wal::create(
            disk.clone(),
            &wal_dir,
            metadata,
            voters,
            &[],
            &HardState::default(),
        )
        .unwrap();
        let entries: Vec<Entry> = (1..=last)
            .map(|index| Entry {
                index,
                term: 1,
                ..Entry::default()
            })
            .collect();
        let hard_state = HardState {
            term: 1,
            commit: last,
            ..HardState::default()
        };
        wal.append(&entries, Some(&hard_state));
        wal.sync().unwrap();
        wal_dir
    }

    /// Stores a state applied to `index` as the member's backend.
    fn backend_at(disk: &Arc<SimDisk>, index: u64) {
        let mut state = StateMachine::new(0, Members::default());
        state.restore_membership(Members::default(), index);
        let voters = ConfState {
            voters: vec![1],
            ..ConfState::default()
        };
        let stream = state
            .write_snapshot(1, voters.write_to_bytes().unwrap(), Vec::new())
            .unwrap();
        let path = backend_path(Path::new("/m"));
        disk.create_dir_all(path.parent().unwrap()).unwrap();
        crate::backend::Backend::build_at(disk.clone(), &path, |built| {
            let mut reader = SnapshotReader::open(stream.as_slice()).unwrap();
            built
                .fill_from_snapshot(&mut reader, &mut |_, _| Ok(()))
                .map(|_| ())
        })
        .unwrap();
    }

    /// Saves `state` as the snapshot file at its applied index.
    fn save_snapshot(snapshots: &SnapshotDir, state: &StateMachine, term: u64, voters: &ConfState) {
        let file = snapshots.create(term, state.applied_index()).unwrap();
        let file = state
            .write_snapshot(term, voters.write_to_bytes().unwrap(), file)
            .unwrap();
        snapshots.keep(file).unwrap();
    }

    #[test]
    fn the_backend_is_the_state_and_the_wal_replays_after_it() {
        let disk = Arc::new(SimDisk::new());
        let wal_dir = wal_with_entries(&disk, 5);
        backend_at(&disk, 3);
        let snapshots = SnapshotDir::open(disk.clone(), Path::new("/m/member/snap")).unwrap();
        let recovered = recover(&config(), disk, &wal_dir, &snapshots).unwrap();
        assert_eq!(
            recovered.snapshot_index, 3,
            "the backend's consistent index"
        );
        assert_eq!(recovered.state.applied_index(), 3);
        assert_eq!(recovered.log.last(), 5, "entries 4 and 5 are replayed");
        assert_eq!(recovered.backend.durable().index, 3);
    }

    #[test]
    fn a_backend_the_wal_does_not_continue_from_is_refused() {
        let disk = Arc::new(SimDisk::new());
        let wal_dir = wal_with_entries(&disk, 2);
        backend_at(&disk, 7);
        let snapshots = SnapshotDir::open(disk.clone(), Path::new("/m/member/snap")).unwrap();
        let refused = recover(&config(), disk, &wal_dir, &snapshots)
            .err()
            .expect("entries 3 to 7 are lost");
        assert!(
            refused
                .to_string()
                .contains("the backend holds the state at index 7"),
            "{refused}"
        );
    }

    #[test]
    fn a_newer_snapshot_file_rebuilds_the_backend() {
        for legacy in [false, true] {
            let disk = Arc::new(SimDisk::new());
            let wal_dir = wal_with_entries(&disk, 4);
            backend_at(&disk, 2);
            let snapshots = SnapshotDir::open(disk.clone(), Path::new("/m/member/snap")).unwrap();
            let mut state = StateMachine::new(0, Members::default());
            state.restore_membership(Members::default(), 4);
            let voters = ConfState {
                voters: vec![1],
                ..ConfState::default()
            };
            if legacy {
                tracing::info!("a format-2 file, from before snapshots streamed");
                let bytes = LegacySnapshot {
                    index: 4,
                    term: 1,
                    conf_state: voters,
                    state: state.encode().unwrap(),
                }
                .encode();
                crate::storage::disk::write_atomically(&*disk, &snapshots.path(1, 4), &bytes)
                    .unwrap();
            } else {
                save_snapshot(&snapshots, &state, 1, &voters);
            }
            let recovered = recover(&config(), disk.clone(), &wal_dir, &snapshots).unwrap();
            assert_eq!(recovered.snapshot_index, 4);
            assert_eq!(recovered.state.applied_index(), 4);
            drop(recovered);
            let backend =
                crate::backend::Backend::open(disk, &backend_path(Path::new("/m"))).unwrap();
            assert_eq!(
                backend.consistent_index().unwrap(),
                4,
                "rebuilt from the file"
            );
        }
    }
}
