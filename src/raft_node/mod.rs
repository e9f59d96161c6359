//! The raft driver: owns raft-rs's `RawNode`, the WAL and the state
//! machine, and runs the Ready loop. Everything else talks to it through
//! `Command`s on a bounded channel.
//!
//! Ordering of one Ready, and why (raft-rs `Ready` docs; Raft thesis §3.8):
//! 0. send the leader's messages (appends, heartbeats) at once: a leader
//!    may send before its own fsync (thesis §10.2.1), since it counts
//!    itself only once persisted;
//! 1. put new entries and hard state in the in-memory log and hand them to
//!    the WAL's writes (`wal_writes`): one write and one fsync for all the
//!    Readies that came while the write before was in flight (group
//!    commit), when raft's `must_sync()` asks for one — a vote or an entry
//!    counts only once it is durable. The loop does not wait: it steps
//!    messages and takes proposals during the fsync;
//! 2. apply committed entries and answer their proposers — after commit,
//!    which raft reports only once a quorum persisted them, and only up to
//!    what this member persisted;
//! 3. advance (`advance_append_async`). Once a write is durable, raft hears
//!    of it (`on_persist_ready`) and the persisted messages of the Readies
//!    it held leave (votes, a follower's acknowledgements): no peer hears
//!    of state we could lose in a crash.
//!
//! Architecture invariants: the driver is the only writer of the state
//! machine and of the WAL; nothing here reads the OS clock (ticks come from
//! the node's `Clock`) or randomness (election timeouts come from
//! `election`).

mod admission;
mod applying;
mod commands;
mod conf_change;
mod durable;
mod election;
mod inbound;
mod leadership;
mod leases;
mod log_store;
mod recovery;
pub use recovery::WAL_BEHIND_BACKEND;
mod shared;
mod snapshots;
mod standalone;
mod status;
pub use status::RaftStatus;
mod strangers;
mod waiters;
mod wal_writes;

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use crate::apply::Response;
use crate::clock::Clock;
use crate::error::Error;
use crate::proto::detcdpb::{
    internal_request::Request, ClusterVersionSet, MemberAttributes, RequestAuth,
};
use crate::storage::snapshot::SnapshotDir;
use crate::storage::wal::Wal;
use crate::transport::Transport;

pub use conf_change::single_change;
pub use durable::view_header;
pub use election::ElectionTimeouts;
pub use log_store::LogStore;
pub use recovery::{Bootstrap, NodeConfig, RecoveryError};
pub use shared::Shared;

/// Commands taken from the channel per loop turn before handling a Ready:
/// the batch that shares one fsync. Bounded so ticks are never starved.
pub const COMMAND_BATCH_MAX: usize = 1024;
/// Entries kept in the in-memory log behind a snapshot, so a slightly
/// lagging follower can catch up from the log instead of a whole snapshot
/// (etcd `SnapshotCatchUpEntries`).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
/// Revision bytes the backend's writer may be behind by before the loop
/// stops taking commands until it catches up.
pub const UNFLUSHED_BYTES_MAX: u64 = 2 * crate::backend::writer::COMMIT_BYTES;
/// The memory the applied entries kept for slow followers may take: past
/// it the oldest go (`LogStore::compact_to_bytes`), and a follower behind
/// them gets a snapshot. Small in the simulator, so that path runs there.
#[cfg(not(madsim))]
pub const LOG_BYTES_MAX: u64 = 64 * 1024 * 1024;
#[cfg(madsim)]
pub const LOG_BYTES_MAX: u64 = 32 * 1024;
/// What the log may grow to while a follower being caught up (by a
/// snapshot or from the log) still needs its entries.
pub const LOG_BYTES_PINNED_MAX: u64 = 2 * LOG_BYTES_MAX;
/// How long a snapshot for followers (and the view of the backend it is
/// read from, which keeps defragmentation waiting) outlives its last send.
pub const SNAPSHOT_SOURCE_IDLE: Duration = Duration::from_secs(5);
/// Largest append message raft sends to a follower.
pub const MAX_SIZE_PER_MSG: u64 = 1024 * 1024;
/// Append messages in flight per follower.
pub const MAX_INFLIGHT_MSGS: usize = 256;

pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

pub enum Command {
    /// Replicate and apply a request; answer with its result.
    Propose {
        request: Request,
        /// Who asked, for a client's request (see `StateMachine::apply_as`).
        auth: Option<RequestAuth>,
        reply: Reply<Response>,
    },
    /// Answer once the state machine has applied everything committed
    /// before the request (a linearizable read point).
    ReadIndex { reply: Reply<()> },
    /// Hand leadership to `transferee` (answered at once; the caller
    /// watches the leader change).
    TransferLeader { transferee: u64, reply: Reply<()> },
    /// Replicate a raft configuration change (member add or remove).
    ChangeConf {
        change: ConfChangeV2,
        reply: Reply<Response>,
    },
    /// Promote a learner, if this member leads and the learner caught up.
    Promote { id: u64, reply: Reply<Response> },
    /// Save a snapshot of the applied state now, so compacted history and
    /// old WAL segments leave the disk (Maintenance.Defragment).
    Snapshot { reply: Reply<()> },
    /// The member is stopping: if it leads, hand leadership to the most
    /// caught-up voter. Answered with that voter, if any.
    StepDown { reply: Reply<Option<u64>> },
    /// Raft's view of itself (`/debug/vars`).
    Status { reply: Reply<RaftStatus> },
}

/// An apply, or a read-only range, slower than this is counted and logged
/// by default (etcd's `--experimental-warning-apply-duration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);
/// How long after its start a member of a cluster of several still
/// fast-forwards its election ticks once it reaches its peers (etcd waits
/// as long, rafthttp's `ConnReadTimeout`).
pub const TICK_ADVANCE_WAIT: Duration = Duration::from_secs(5);
/// A WAL fsync slower than this is logged (etcd's `warnSyncDuration`).
pub const SLOW_FSYNC: Duration = Duration::from_secs(1);
/// A loop turn (persist, apply, snapshot bookkeeping) slower than this is
/// logged at debug level with its parts, to find what stalls requests.
pub const SLOW_TURN: Duration = Duration::from_millis(20);
/// How long a leader waits for its cluster version proposal to apply
/// before it proposes again (etcd's leader looks every 4 s).
pub const CLUSTER_VERSION_RETRY: Duration = Duration::from_secs(5);
/// How long a member waits for its publish to apply before it proposes it
/// again (etcd retries after each request timeout).
pub const PUBLISH_RETRY: Duration = Duration::from_secs(5);

/// A learner may be promoted once it has this share of the leader's log
/// (etcd `readyPercent`).
pub const LEARNER_READY_PERCENT: f64 = 0.9;

/// Raft messages received from peers wait here for the loop. Bounded: a
/// flood from peers slows their streams instead of growing memory.
pub const STEP_QUEUE_LEN: usize = 1024;

impl From<crate::storage::wal::WalError> for FatalError {
    fn from(error: crate::storage::wal::WalError) -> FatalError {
        match error {
            #[cfg(madsim)]
            crate::storage::wal::WalError::CrashPoint(point) => FatalError::CrashPoint(point),
            error => FatalError::Wal(error),
        }
    }
}

/// A storage failure: the node must stop rather than serve data it cannot
/// trust (STYLE.md, fatal errors).
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error(transparent)]
    Wal(crate::storage::wal::WalError),
    #[error(transparent)]
    Snapshot(#[from] crate::storage::snapshot::SnapshotError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("snapshot received from the leader is unusable: {0}")]
    BadSnapshot(String),
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
    /// The simulator's nemesis crashes the member at this point.
    #[cfg(madsim)]
    #[error("crash point {0:?}")]
    CrashPoint(crate::probe::CrashPoint),
    /// Not a storage failure: this member was removed and must stop.
    #[error("the member has been permanently removed from the cluster")]
    Removed,
}

pub struct RaftNode {
    raw: RawNode<LogStore>,
    transport: Transport,
    /// The leader as of the last soft state, to notice changes.
    known_leader: u64,
    /// What this member publishes about itself once a leader is known.
    attributes: MemberAttributes,
    published: bool,
    /// When this member last proposed its publish.
    publish_proposed_at: Option<Duration>,
    /// Whether this process has logged that it is published, once a
    /// leader is known (`announce_published`).
    published_announced: bool,
    /// `--strict-reconfig-check` (see `NodeConfig`).
    strict_reconfig_check: bool,
    /// `--experimental-warning-apply-duration` (`SLOW_APPLY` by default).
    slow_apply: Duration,
    /// Until when (on the member's clock) the election ticks are still to
    /// be fast-forwarded once the peers are reached (`advance_ticks`);
    /// `None` once done, given up, or with the flag off.
    tick_advance_until: Option<Duration>,
    /// This member leads and applied its term's empty entry while the
    /// cluster had no version: it proposes one once the Ready is done.
    cluster_version_due: bool,
    /// When this member last proposed the cluster version.
    cluster_version_proposed_at: Option<Duration>,
    /// The state parts this member last handed its backend, for the
    /// simulator's `check_stored_parts`.
    #[cfg(madsim)]
    stored_parts: Option<Vec<u8>>,
    /// How far the WAL has synced the log, by its own account
    /// (`Wal::synced_index`), for `check_synced`.
    #[cfg(madsim)]
    synced: Arc<crate::storage::synced::SyncedLog>,
    /// When a peer's message was last admitted, when the peers were last
    /// asked whether this member was removed, and their answer
    /// (`check_removed`).
    last_heard: Duration,
    removal_asked_at: Duration,
    removed: Arc<std::sync::atomic::AtomicBool>,
    removal_asking: Arc<std::sync::atomic::AtomicBool>,
    /// The WAL, while no write is in flight (`wal_writes`).
    wal: Option<Wal>,
    /// The WAL's write in flight and the Readies queued behind it.
    writes: wal_writes::WalWrites,
    /// The on-disk backend: the applied state, committed in batches.
    backend: crate::backend::Writer,
    snapshots: Arc<SnapshotDir>,
    shared: Arc<Shared>,
    election: ElectionTimeouts,
    max_request_bytes: usize,
    quota_bytes: i64,
    /// When to save a snapshot, and who asked for one.
    snapshot_policy: waiters::SnapshotPolicy,
    applied_term: u64,
    /// Callers waiting for their proposals (and proposals made while there
    /// was no leader, sent once one appears).
    proposals: waiters::Proposals<(Request, Option<RequestAuth>), Response>,
    reads: waiters::ReadIndexQueue,
    /// Peer messages refused by `admission` since the start.
    dropped_messages: u64,
    /// Refused senders the peers were asked about, and where the answers
    /// (a vouched stranger's id and peer URL) arrive.
    strangers: strangers::Strangers,
    vouched: mpsc::Sender<(u64, Vec<String>)>,
    vouched_answers: Option<mpsc::Receiver<(u64, Vec<String>)>>,
    /// When the oldest unanswered heartbeat went to each peer, and each
    /// peer's round-trip histogram (etcd's prober measures the same).
    heartbeats_sent: std::collections::BTreeMap<u64, Duration>,
    round_trips: std::collections::BTreeMap<u64, prometheus::Histogram>,
    /// The member's clock: lease deadlines and the instants entries were
    /// persisted.
    clock: Clock,
    entry_starts: waiters::EntryStarts,
    /// When the leader next looks for expired leases, and next
    /// checkpoints remaining TTLs.
    next_lease_check: Duration,
    next_lease_checkpoint: Duration,
    /// The double-apply sabotage strikes once per start, at the first
    /// key-value write (re-applying a publish would change nothing).
    #[cfg(madsim)]
    sabotage_applied_twice: bool,
    /// The apply-before-commit sabotage: the index through which a leader
    /// applied its own entries once they were durable here, before a
    /// quorum had them.
    #[cfg(madsim)]
    sabotage_applied_early: u64,
    /// A snapshot for followers being made off the loop, from a view of
    /// the backend (`snapshots.rs`).
    /// With the applied index when it was asked for, which it covers.
    follower_snapshot: Option<(u64, MadeSnapshot)>,
    /// The snapshot raft has for followers, streamed by the transport from
    /// a view of the backend, and when it was made or last sent: it is let
    /// go (and its view closed) once no send is in flight and it has not
    /// been sent for `SNAPSHOT_SOURCE_IDLE`.
    snapshot_source: Option<(Arc<dyn crate::transport::SnapshotSource>, Duration)>,
}

/// A snapshot for followers being made, once made.
type MadeSnapshot = oneshot::Receiver<Result<Arc<durable::ViewSnapshot>, String>>;

impl RaftNode {
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Where snapshots from the leader are received (by the peer service).
    pub fn snapshot_dir(&self) -> Arc<SnapshotDir> {
        self.snapshots.clone()
    }

    /// Runs until the command channel closes (clean shutdown) or storage
    /// fails (fatal).
    pub async fn run(
        mut self,
        clock: Clock,
        tick_interval: Duration,
        mut commands: mpsc::Receiver<Command>,
        mut steps: mpsc::Receiver<Vec<Message>>,
    ) -> Result<(), FatalError> {
        let mut ticker = clock.interval(tick_interval);
        let mut vouched = self.vouched_answers.take().expect("run once");
        let writer = tokio::spawn(
            self.backend
                .clone()
                .run(clock.clone(), self.shared.metrics.clone()),
        );
        let result = self
            .run_loop(&mut ticker, &mut vouched, &mut commands, &mut steps)
            .await;
        writer.abort();
        result
    }

    async fn run_loop(
        &mut self,
        ticker: &mut tokio::time::Interval,
        vouched: &mut mpsc::Receiver<(u64, Vec<String>)>,
        commands: &mut mpsc::Receiver<Command>,
        steps: &mut mpsc::Receiver<Vec<Message>>,
    ) -> Result<(), FatalError> {
        let stopped = self.shared.stopped();
        tokio::pin!(stopped);
        // Apply what the log already holds (a new cluster's configuration
        // changes included) before anything else, then let a sole voter
        // lead at once instead of waiting out an election timeout.
        #[cfg(madsim)]
        crate::probe::recovered(
            self.shared.member_id,
            self.raw.raft.raft_log.last_index(),
            self.raw.raft.term,
            self.raw.raft.vote,
        );
        self.on_ready().await?;
        let voters: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        if voters == [self.shared.member_id] && self.raw.raft.state != StateRole::Leader {
            self.raw.campaign()?;
            self.election.fix(&mut self.raw);
            self.on_ready().await?;
        }
        loop {
            // The write in flight is polled here, beside the other events,
            // and put back after (`wal_writes`).
            let mut in_flight = self.writes.in_flight.take();
            tokio::select! {
                biased;
                // The writes in flight and queued finish, then what may
                // still be buffered (a commit-only hard state) is synced.
                // From here on the member neither votes nor acknowledges,
                // and waiting callers learn that the server stopped when
                // their replies are dropped.
                () = &mut stopped => {
                    self.writes.in_flight = in_flight.take();
                    self.settle().await?;
                    let mut wal = self.wal.take().expect("wal present");
                    let (wal, synced) = crate::storage::blocking::run(move || {
                        let synced = wal.sync();
                        (wal, synced)
                    })
                    .await;
                    self.wal = Some(wal);
                    synced?;
                    // Not needed for durability (the WAL has it all), but
                    // the next start replays less.
                    self.backend.flush().await?;
                    tracing::info!("raft loop stopped");
                    return Ok(());
                }
                written = wal_writes::InFlight::finish(&mut in_flight), if in_flight.is_some() => {
                    let done = in_flight.take().expect("a write in flight");
                    self.on_written(done, written)?;
                }
                _ = ticker.tick() => {
                    self.check_removed()?;
                    self.raw.tick();
                    self.advance_ticks();
                    for peer in self.transport.take_unreachable() {
                        self.raw.report_unreachable(peer);
                    }
                    self.tick_leases();
                    self.retry_cluster_version();
                    self.retry_publish();
                }
                Some(messages) = steps.recv() => {
                    self.step(messages);
                    for _ in 1..COMMAND_BATCH_MAX {
                        let Ok(messages) = steps.try_recv() else { break };
                        self.step(messages);
                    }
                }
                Some((id, urls)) = vouched.recv() => {
                    self.strangers.forget(id);
                    if !self.transport.knows(id) {
                        tracing::info!(
                            member = format_args!("{id:x}"),
                            urls = urls.join(","),
                            "a peer ahead of this member vouched for a sender it did not know"
                        );
                        self.transport.set_peer(id, urls);
                    }
                }
                // While the backend's writer is behind, new commands wait
                // (a bounded queue): the applies they would bring would
                // only pile up in memory.
                command = commands.recv(),
                    if self.backend.unflushed_bytes() <= UNFLUSHED_BYTES_MAX => {
                    let Some(command) = command else {
                        // A clean stop too: what is queued becomes durable.
                        self.writes.in_flight = in_flight.take();
                        self.settle().await?;
                        return Ok(());
                    };
                    self.handle(command);
                    for _ in 1..COMMAND_BATCH_MAX {
                        let Ok(command) = commands.try_recv() else { break };
                        self.handle(command);
                    }
                }
            }
            if let Some(in_flight) = in_flight {
                self.writes.in_flight = Some(in_flight);
            }
            self.election.fix(&mut self.raw);
            self.on_ready().await?;
            // A write that finished within the turn (a snapshot mark
            // settles the WAL) may have given raft more to do.
            while self.raw.has_ready() {
                self.on_ready().await?;
            }
            self.election.fix(&mut self.raw);
        }
    }

    /// etcd's `--initial-election-tick-advance`: in a cluster of several,
    /// once this member's streams to more than one peer are up, all but
    /// two ticks of the election timeout count as passed, so a cluster
    /// with no leader elects one about two ticks later instead of a whole
    /// timeout. A member that hears a leader meanwhile is not moved: its
    /// heartbeats reset the count, and pre-vote keeps a member that
    /// missed one from disturbing it. A sole member campaigns at once
    /// anyway (`run_loop`).
    fn advance_ticks(&mut self) {
        let Some(until) = self.tick_advance_until else {
            return;
        };
        if self.clock.elapsed() > until || self.raw.raft.state == StateRole::Leader {
            self.tick_advance_until = None;
            return;
        }
        let conf = self.raw.raft.prs().conf();
        let members = conf.voters().ids().len() + conf.learners().len();
        let active_peers = self
            .transport
            .activity()
            .lock()
            .expect("activity lock")
            .len();
        if members <= 1 || active_peers <= 1 {
            return;
        }
        self.tick_advance_until = None;
        let ticks = self.raw.raft.election_timeout().saturating_sub(2);
        tracing::info!(
            forward_ticks = ticks,
            election_ticks = self.raw.raft.election_timeout(),
            "initialized peer connections; fast-forwarding election ticks"
        );
        for _ in 0..ticks {
            self.raw.tick();
        }
    }

    /// Hands messages to the transport, noting which snapshots left and
    /// which it had to drop (reported to raft after the advance).
    fn send(&mut self, messages: Vec<Message>, snapshots_sent: &mut Vec<(u64, bool)>) {
        let now = self.clock.elapsed();
        for message in &messages {
            #[cfg(madsim)]
            if grants_vote(message) {
                crate::probe::vote_granted(self.shared.member_id, message.term, message.to);
            }
            #[cfg(madsim)]
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgAppendResponse
                && !message.reject
            {
                self.check_synced(message.index, || {
                    format!(
                        "acknowledged entries through {} to {:x}",
                        message.index, message.to
                    )
                });
            }
            match message.get_msg_type() {
                raft::eraftpb::MessageType::MsgHeartbeat => {
                    self.heartbeats_sent.entry(message.to).or_insert(now);
                }
                raft::eraftpb::MessageType::MsgSnapshot => tracing::info!(
                    to = format_args!("{:x}", message.to),
                    index = message.get_snapshot().get_metadata().index,
                    bytes = message.get_snapshot().data.len(),
                    "sending a snapshot"
                ),
                _ => {}
            }
        }
        let snapshots: Vec<u64> = messages
            .iter()
            .filter(|m| m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        if !snapshots.is_empty() {
            if let Some((_, used)) = &mut self.snapshot_source {
                *used = self.clock.elapsed();
            }
        }
        let source = self.snapshot_source.as_ref().map(|(source, _)| source);
        let dropped = self.transport.send(messages, source);
        snapshots_sent.extend(snapshots.into_iter().map(|to| (to, !dropped.contains(&to))));
    }

    /// The simulator's check that `index`, which this member is about to
    /// claim durable (`what`), is within what its WAL has synced.
    #[cfg(madsim)]
    fn check_synced(&self, index: u64, what: impl FnOnce() -> String) {
        let synced = self.synced.through();
        if index > synced {
            let claim = format!("{} with its WAL synced through {synced}", what());
            crate::probe::claimed_unsynced(self.shared.member_id, &claim);
        }
    }

    /// raft hears that the Readies through `number` are durable.
    fn on_persist_ready(&mut self, number: u64) {
        self.raw.on_persist_ready(number);
        #[cfg(madsim)]
        {
            let persisted = self.raw.raft.raft_log.persisted;
            self.check_synced(persisted, || {
                format!("let raft count entries through {persisted} as persisted")
            });
        }
    }

    /// Stops the loop here if the simulator's nemesis armed `point`.
    #[cfg(madsim)]
    fn crash_point(&self, point: crate::probe::CrashPoint) -> Result<(), FatalError> {
        if crate::probe::crash_here(self.shared.member_id, point) {
            return Err(FatalError::CrashPoint(point));
        }
        Ok(())
    }

    async fn on_ready(&mut self) -> Result<(), FatalError> {
        if !self.raw.has_ready() {
            // Snapshots need not wait for raft to have news: the backend's
            // commits move on their own.
            return self.maybe_snapshot().await;
        }
        let ready_at = self.clock.elapsed();
        if self.raw.snap().is_some_and(|snapshot| !snapshot.is_empty()) {
            // The install marks the WAL after every write before it, and
            // nothing may call into raft between ready() and the advance.
            self.settle().await?;
        }
        let mut ready = self.raw.ready();
        // Nothing may call into the RawNode between ready() and the
        // advance: a proposal now would land in the batch being persisted.
        // Leader changes are acted on after the advance.
        let soft_state = ready
            .ss()
            .map(|soft_state| (soft_state.leader_id, soft_state.raft_state));
        // A leader's messages may go out before its own fsync (Raft thesis
        // §10.2.1): they are appends and heartbeats, safe to send early.
        let mut snapshots_sent = Vec::new();
        self.send(ready.take_messages(), &mut snapshots_sent);
        let installs = !ready.snapshot().is_empty();
        if installs {
            self.install_snapshot(ready.snapshot().clone()).await?;
        }
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::FollowerAckBeforeFsync) {
            self.send(ready.take_persisted_messages(), &mut snapshots_sent);
        }
        // 1. Persist: into the in-memory log now, into the WAL by a write
        // that runs while the loop goes on (`wal_writes`).
        let entries = ready.take_entries();
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            self.entry_starts
                .persisted(first.index, last.index, ready_at);
        }
        let overwrites = entries
            .first()
            .is_some_and(|first| first.index <= self.raw.store().last());
        // The entries replaced are durable no more, though the write that
        // replaces them has not begun, and the write in flight cannot
        // make them so.
        #[cfg(madsim)]
        if let Some(first) = entries.first().filter(|_| overwrites) {
            self.synced.replaced_from(first.index);
        }
        let store = self.raw.mut_store();
        store.append(&entries);
        if let Some(hard_state) = ready.hs() {
            store.set_hard_state(hard_state.clone());
        }
        #[cfg(madsim)]
        let early: Vec<Entry> =
            if crate::sabotage::active(crate::sabotage::Sabotage::ApplyBeforeCommit) {
                let requests = entries.iter().filter(|entry| is_request(entry));
                requests.cloned().collect()
            } else {
                Vec::new()
            };
        let persisted_now = self.persist(wal_writes::Queued {
            entries,
            hard_state: ready.hs().cloned(),
            must_sync: ready.must_sync(),
            number: ready.number(),
            messages: ready.take_persisted_messages(),
            overwrites,
        })?;
        for read_state in ready.take_read_states() {
            let id = u64::from_le_bytes(
                read_state
                    .request_ctx
                    .as_slice()
                    .try_into()
                    .unwrap_or_default(),
            );
            self.reads.confirmed(id, read_state.index);
        }
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::ReadIndexSkipsApply) {
            self.reads.applied(u64::MAX);
        }
        let apply_started = self.clock.elapsed();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::ApplyBeforeCommit)
            && self.raw.raft.state == StateRole::Leader
        {
            if let Some(last) = early.last() {
                self.sabotage_applied_early = last.index;
            }
            self.apply(early)?;
        }
        // 2. Apply what is committed: raft hands out only entries this
        // member has persisted, so the write in flight need not finish.
        self.apply(ready.take_committed_entries())?;
        // 3. Advance; raft hears of the write when it is durable.
        self.raw.advance_append_async(ready);
        if let Some(number) = persisted_now {
            self.on_persist_ready(number);
        }
        if installs {
            // What the snapshot holds counts as applied (below) only once
            // raft knows it persisted.
            self.settle().await?;
        }
        self.raw.advance_apply();
        if std::mem::take(&mut self.cluster_version_due) {
            self.propose_cluster_version();
        }
        self.report_snapshots(snapshots_sent);
        if let Some((leader_id, role)) = soft_state {
            self.on_leader_change(leader_id, role);
        }
        self.publish_status();
        self.answer_reads();
        let applied = self.clock.elapsed();
        self.maybe_snapshot().await?;
        let done = self.clock.elapsed();
        if done.saturating_sub(ready_at) > SLOW_TURN {
            tracing::debug!(
                took = ?done.saturating_sub(ready_at),
                before_apply = ?apply_started.saturating_sub(ready_at),
                apply = ?applied.saturating_sub(apply_started),
                snapshot = ?done.saturating_sub(applied),
                "slow raft loop turn"
            );
        }
        Ok(())
    }

    /// raft-rs pauses a follower's progress while a snapshot is in
    /// flight and resumes only on the follower's answer or this report;
    /// our transport sends and forgets, and a lost answer would pause it
    /// for good (found by the simulator: a restarted member stayed
    /// behind forever). Reporting it finished makes the leader probe.
    /// A snapshot the transport dropped itself is reported failed, so
    /// the leader retries at once.
    fn report_snapshots(&mut self, snapshots_sent: Vec<(u64, bool)>) {
        for (to, left) in snapshots_sent {
            let status = if left {
                raft::SnapshotStatus::Finish
            } else {
                raft::SnapshotStatus::Failure
            };
            self.raw.report_snapshot(to, status);
        }
    }

    fn observe_fsync(&self, took: Duration) {
        self.shared.metrics.wal_fsync.observe(took.as_secs_f64());
        if took > SLOW_FSYNC {
            tracing::warn!(took = ?took, expected = ?SLOW_FSYNC, "slow fdatasync");
        }
    }

    /// The simulator's check that the backend follows the applied state
    /// besides the revisions: the parts it holds after `batch` (those of
    /// the batch, or the last written) equal the applied state's, but for
    /// the applied index, which only key-value rounds move.
    #[cfg(madsim)]
    fn check_stored_parts(&mut self, batch: &crate::backend::Batch) {
        use prost::Message as _;
        if !crate::probe::observing() {
            return;
        }
        let written = batch.meta.as_ref().and_then(|meta| meta.state.clone());
        if let Some(written) = written {
            self.stored_parts = Some(written);
        }
        let comparable = |parts: &[u8]| {
            crate::proto::detcdpb::StateParts::decode(parts)
                .ok()
                .map(|mut parts| {
                    parts.applied_index = 0;
                    parts
                })
        };
        let state = self.shared.state.read().expect("state lock");
        let stored = self.stored_parts.as_deref().and_then(comparable);
        if stored.is_some() && stored != comparable(&state.encode_parts()) {
            crate::probe::stored_state_stale(self.shared.member_id, state.applied_index());
        }
    }

    fn propose_cluster_version(&mut self) {
        self.cluster_version_proposed_at = Some(self.clock.elapsed());
        let (reply, _) = oneshot::channel();
        let ver = crate::ETCD_CLUSTER_VERSION.to_string();
        self.propose(Request::ClusterVersionSet(ClusterVersionSet { ver }), reply);
    }

    /// A cluster version proposal raft dropped (a leader transfer under
    /// way) is made again after `CLUSTER_VERSION_RETRY`, as etcd's leader
    /// checks the version every few seconds.
    fn retry_cluster_version(&mut self) {
        let Some(proposed_at) = self.cluster_version_proposed_at else {
            return;
        };
        if self.raw.raft.state != StateRole::Leader
            || self.applied_term != self.raw.raft.term
            || self.clock.elapsed().saturating_sub(proposed_at) < CLUSTER_VERSION_RETRY
            || !self
                .shared
                .state
                .read()
                .expect("state lock")
                .cluster_version()
                .is_empty()
        {
            return;
        }
        self.propose_cluster_version();
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), FatalError> {
        #[cfg(madsim)]
        let entries = if crate::sabotage::active(crate::sabotage::Sabotage::ApplyBeforeCommit) {
            let early = self.sabotage_applied_early;
            let mut entries = entries;
            entries.retain(|entry| entry.index > early || !is_request(entry));
            entries
        } else {
            entries
        };
        let mut applied_any = false;
        for (position, entry) in entries.into_iter().enumerate() {
            #[cfg(madsim)]
            if position > 0 {
                self.crash_point(crate::probe::CrashPoint::MidApply)?;
            }
            #[cfg(not(madsim))]
            let _ = position;
            self.applied_term = entry.term;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    // A new leader's empty entry. Once its own applies, a
                    // leader of a cluster without a version sets one, as
                    // etcd's does.
                    let mut state = self.shared.state.write().expect("state lock");
                    state.skip(entry.index);
                    self.cluster_version_due = self.raw.raft.state == StateRole::Leader
                        && entry.term == self.raw.raft.term
                        && state.cluster_version().is_empty();
                }
                EntryType::EntryNormal => self.apply_request(&entry)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?
                }
            }
            #[cfg(madsim)]
            self.report_applied(&entry);
            self.entry_starts.applied(entry.index);
            self.snapshot_policy.applied(entry.data.len() as u64);
            applied_any = true;
        }
        if applied_any {
            // A round that read values it could not trust must not reach
            // the backend: the member stops instead.
            self.check_backend()?;
            let durable_revision = self.backend.durable().revision;
            let batch = {
                let mut state = self.shared.state.write().expect("state lock");
                // What the backend holds durably leaves memory.
                state.evict_through(durable_revision);
                durable::changes(&mut state, self.applied_term, self.raw.store().conf_state())
            };
            #[cfg(madsim)]
            self.check_stored_parts(&batch);
            self.backend.submit(batch);
        }
        self.shared.publish_revision();
        Ok(())
    }
}

/// Whether `message` grants a vote (not a pre-vote): raft may send it only
/// once the vote is durable.
#[cfg(madsim)]
fn grants_vote(message: &Message) -> bool {
    message.get_msg_type() == raft::eraftpb::MessageType::MsgRequestVoteResponse && !message.reject
}

/// Whether `entry` carries a client request (not a leader's empty entry or
/// a configuration change): what the apply-before-commit sabotage applies
/// early.
#[cfg(madsim)]
fn is_request(entry: &Entry) -> bool {
    entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty()
}
