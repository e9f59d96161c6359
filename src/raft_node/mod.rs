//! The raft driver: owns raft-rs's `RawNode`, the WAL and the state
//! machine, and runs the Ready loop. Everything else talks to it through
//! `Command`s on a bounded channel.
//!
//! Ordering of one Ready, and why (raft-rs `Ready` docs; Raft thesis §3.8):
//! 0. send the leader's messages (appends, heartbeats) at once: a leader
//!    may send before its own fsync (thesis §10.2.1), since it counts
//!    itself only once persisted;
//! 1. persist new entries and hard state with one fsync for the whole batch
//!    (group commit), when raft's `must_sync()` asks for one — a vote or an
//!    entry counts only once it is durable;
//! 2. send the persisted messages (votes, a follower's acknowledgements) —
//!    after persisting, so no peer hears of state we could lose in a crash;
//! 3. apply committed entries and answer their proposers — after commit,
//!    which raft reports only once a quorum persisted them;
//! 4. advance, then do the same for the light ready.
//!
//! Architecture invariants: the driver is the only writer of the state
//! machine and of the WAL; nothing here reads the OS clock (ticks come from
//! the node's `Clock`) or randomness (election timeouts come from
//! `election`).

mod admission;
mod durable;
mod election;
mod log_store;
mod recovery;
mod strangers;
mod waiters;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState,
    Message, Snapshot as RaftSnapshot,
};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot};

use crate::apply::{Response, StateMachine};
use crate::clock::Clock;
use crate::error::Error;
use crate::membership::{Member, MembershipChange};
use crate::proto::detcdpb::{
    internal_request::Request, InternalRequest, LeaseCheckpoint, LeaseCheckpoints, LeaseExpiries,
    LeaseExpiry, MemberAttributes, MemberInfo, RequestAuth,
};
use crate::storage::snapshot::{Snapshot, SnapshotDir};
use crate::storage::wal::{SnapshotMark, Wal};
use crate::transport::Transport;

pub use election::ElectionTimeouts;
pub use log_store::LogStore;
pub use recovery::{Bootstrap, NodeConfig, RecoveryError};

/// Commands taken from the channel per loop turn before handling a Ready:
/// the batch that shares one fsync. Bounded so ticks are never starved.
pub const COMMAND_BATCH_MAX: usize = 1024;
/// Entries kept in the in-memory log behind a snapshot, so a slightly
/// lagging follower can catch up from the log instead of a whole snapshot
/// (etcd `SnapshotCatchUpEntries`).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
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
}

/// An apply slower than this is counted and logged (etcd's
/// `warnApplyDuration`).
pub const SLOW_APPLY: Duration = Duration::from_millis(100);
/// A WAL fsync slower than this is logged (etcd's `warnSyncDuration`).
pub const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// A learner may be promoted once it has this share of the leader's log
/// (etcd `readyPercent`).
pub const LEARNER_READY_PERCENT: f64 = 0.9;

/// A refused peer message is logged once per this many.
const DROPPED_MESSAGES_LOG_EVERY: u64 = 1000;

/// Raft messages received from peers wait here for the loop. Bounded: a
/// flood from peers slows their streams instead of growing memory.
pub const STEP_QUEUE_LEN: usize = 1024;

/// What request handlers may read without going through the loop.
#[derive(Debug)]
pub struct Shared {
    pub state: RwLock<StateMachine>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Raft's term and the leader it knows in that term, published
    /// together so no reader sees one term's leader with another's term.
    position: std::sync::Mutex<(u64, u64)>,
    commit_index: AtomicU64,
    last_index: AtomicU64,
    /// Which peers' streams are up, and since when (etcd's health checks).
    pub peer_activity: crate::transport::PeerActivity,
    /// The store's revision after the latest apply, for watchers.
    pub(crate) revision: Arc<crate::published::Published<i64>>,
    /// Set once the member is stopping: the raft loop returns (the member
    /// no longer votes) and client streams end with "server stopped".
    pub(crate) stopping: Arc<crate::published::Published<bool>>,
    /// This member's lease deadlines (`crate::lease`); the loop alone
    /// changes them, request handlers read them for TimeToLive.
    pub lease_timers: std::sync::Mutex<crate::lease::Timers>,
    /// This member's login tokens (`crate::auth::tokens`); the loop
    /// assigns and voids them as logins and auth changes apply.
    pub tokens: std::sync::Mutex<crate::auth::tokens::SimpleTokens>,
    /// The member's Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The backend, for its file's size.
    pub(crate) backend: crate::backend::Writer,
}

impl Shared {
    pub fn term(&self) -> u64 {
        self.term_and_leader().0
    }
    pub fn leader_id(&self) -> u64 {
        self.term_and_leader().1
    }
    /// (term, leader id) as raft held them at one instant.
    pub fn term_and_leader(&self) -> (u64, u64) {
        *self.position.lock().expect("position lock")
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Relaxed)
    }
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }
    /// The index of the last entry the state machine applied.
    pub fn applied_index(&self) -> u64 {
        self.state.read().expect("state lock").applied_index()
    }

    /// Stops the member: the raft loop returns after its current turn,
    /// whose writes are synced, and client streams end.
    pub fn stop(&self) {
        self.stopping.set(true);
    }

    /// Resolves once `stop` was called (at once if it already was).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Wakes whenever applying changed the store's revision.
    pub fn subscribe_revisions(&self) -> crate::published::Subscriber<i64> {
        self.revision.subscribe()
    }

    /// After applying: the revision for watchers, and the metrics that
    /// follow the state, read under the one lock taken anyway.
    fn publish_revision(&self) {
        let revision = {
            let state = self.state.read().expect("state lock");
            self.metrics
                .proposals_applied
                .set(state.applied_index() as i64);
            let size = state.store().size_bytes() as i64;
            self.metrics.db_total_size.set(size);
            self.metrics.db_in_use_size.set(size);
            self.metrics
                .keys_total
                .set(state.store().key_count() as i64);
            state.store().current_revision()
        };
        self.revision.set(revision);
    }
}

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
    wal: Option<Wal>,
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
    vouched: mpsc::Sender<(u64, String)>,
    vouched_answers: Option<mpsc::Receiver<(u64, String)>>,
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
}

impl RaftNode {
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
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
        vouched: &mut mpsc::Receiver<(u64, String)>,
        commands: &mut mpsc::Receiver<Command>,
        steps: &mut mpsc::Receiver<Vec<Message>>,
    ) -> Result<(), FatalError> {
        let stopped = self.shared.stopped();
        tokio::pin!(stopped);
        // Apply what the log already holds (a new cluster's configuration
        // changes included) before anything else, then let a sole voter
        // lead at once instead of waiting out an election timeout.
        #[cfg(madsim)]
        crate::probe::recovered(self.shared.member_id, self.raw.raft.raft_log.last_index());
        self.on_ready().await?;
        let voters: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        if voters == [self.shared.member_id] && self.raw.raft.state != StateRole::Leader {
            self.raw.campaign()?;
            self.election.fix(&mut self.raw);
            self.on_ready().await?;
        }
        loop {
            tokio::select! {
                biased;
                // Entries and votes were synced in their own turn; what may
                // still be buffered (a commit-only hard state) is synced
                // now. From here on the member neither votes nor
                // acknowledges, and waiting callers learn that the server
                // stopped when their replies are dropped.
                () = &mut stopped => {
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
                _ = ticker.tick() => {
                    self.raw.tick();
                    for peer in self.transport.take_unreachable() {
                        self.raw.report_unreachable(peer);
                    }
                    self.tick_leases();
                }
                Some(messages) = steps.recv() => {
                    self.step(messages);
                    for _ in 1..COMMAND_BATCH_MAX {
                        let Ok(messages) = steps.try_recv() else { break };
                        self.step(messages);
                    }
                }
                Some((id, url)) = vouched.recv() => {
                    self.strangers.forget(id);
                    if !self.transport.knows(id) {
                        tracing::info!(
                            member = format_args!("{id:x}"),
                            %url,
                            "a peer ahead of this member vouched for a sender it did not know"
                        );
                        self.transport.set_peer(id, url);
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    self.handle(command);
                    for _ in 1..COMMAND_BATCH_MAX {
                        let Ok(command) = commands.try_recv() else { break };
                        self.handle(command);
                    }
                }
            }
            self.election.fix(&mut self.raw);
            self.on_ready().await?;
            self.election.fix(&mut self.raw);
        }
    }

    /// Hands messages to the transport, noting which snapshots left and
    /// which it had to drop (reported to raft after the advance).
    fn send(&mut self, messages: Vec<Message>, snapshots_sent: &mut Vec<(u64, bool)>) {
        let now = self.clock.elapsed();
        for message in &messages {
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
        let dropped = self.transport.send(messages);
        snapshots_sent.extend(snapshots.into_iter().map(|to| (to, !dropped.contains(&to))));
    }

    /// Asks the known peers about a sender this member does not know (see
    /// `strangers`), in a task of its own: the loop never waits on a peer.
    fn ask_about_stranger(&mut self, id: u64) {
        if !self.strangers.should_ask(id, self.clock.elapsed()) {
            return;
        }
        let applied = self.shared.applied_index();
        let peers = self.transport.peer_urls();
        let clock = self.clock.clone();
        let vouched = self.vouched.clone();
        tokio::spawn(async move {
            if let Some(url) = strangers::vouch(id, peers, applied, clock).await {
                let _ = vouched.send((id, url)).await;
            }
        });
    }

    fn step(&mut self, messages: Vec<Message>) {
        for message in messages {
            let prs = self.raw.raft.prs();
            let transport = &self.transport;
            let is_peer = |id: u64| prs.get(id).is_some() || transport.knows(id);
            let view = admission::MemberView {
                member_id: self.shared.member_id,
                is_peer: &is_peer,
                last_index: self.raw.raft.raft_log.last_index(),
            };
            if let Err(refusal) = admission::admit(&message, &view) {
                if refusal == admission::Refusal::FromStranger {
                    self.ask_about_stranger(message.from);
                }
                self.dropped_messages += 1;
                // The first, then every thousandth: a flood of forged
                // messages must not flood the log too.
                if self.dropped_messages % DROPPED_MESSAGES_LOG_EVERY == 1 {
                    tracing::warn!(
                        from = format_args!("{:x}", message.from),
                        kind = ?message.get_msg_type(),
                        term = message.term,
                        dropped = self.dropped_messages,
                        "dropped a peer message that {refusal}"
                    );
                }
                continue;
            }
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse {
                if let Some(sent) = self.heartbeats_sent.remove(&message.from) {
                    let round_trip = self.clock.elapsed().saturating_sub(sent);
                    self.round_trips
                        .entry(message.from)
                        .or_insert_with(|| self.shared.metrics.peer_round_trip(message.from))
                        .observe(round_trip.as_secs_f64());
                }
            }
            if let Err(error) = self.raw.step(message) {
                // Messages from removed members or stale terms: raft says no.
                tracing::debug!(%error, "raft refused a message");
            }
            self.election.fix(&mut self.raw);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Propose {
                request,
                auth,
                reply,
            } => {
                if self.raw.raft.leader_id == raft::INVALID_ID {
                    self.proposals.queue((request, auth), reply);
                } else {
                    self.propose_as(request, auth, reply);
                }
            }
            Command::Snapshot { reply } => self.snapshot_policy.request(reply),
            Command::ReadIndex { reply } => {
                if !self.reads.has_room() {
                    let _ = reply.send(Err(Error::TooManyRequests));
                    return;
                }
                let id = self.proposals.next_id();
                self.raw.read_index(id.to_le_bytes().to_vec());
                self.reads.start(id, reply);
            }
            Command::TransferLeader { transferee, reply } => {
                let result = if self.raw.raft.state != StateRole::Leader {
                    Err(Error::NotLeader)
                } else if !self.raw.raft.prs().conf().voters().contains(transferee) {
                    Err(Error::BadLeaderTransferee)
                } else {
                    self.raw.transfer_leader(transferee);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::ChangeConf { change, reply } => self.propose_conf_change(change, reply),
            Command::Promote { id, reply } => self.promote(id, reply),
            Command::StepDown { reply } => {
                let _ = reply.send(Ok(self.step_down()));
            }
        }
        self.election.fix(&mut self.raw);
    }

    /// Stops the loop here if the simulator's nemesis armed `point`.
    #[cfg(madsim)]
    fn crash_point(&self, point: crate::probe::CrashPoint) -> Result<(), FatalError> {
        if crate::probe::crash_here(self.shared.member_id, point) {
            return Err(FatalError::CrashPoint(point));
        }
        Ok(())
    }

    /// A stopping leader hands leadership to the voter that holds the most
    /// of its log (etcd's `TransferLeadership` on stop), so the cluster
    /// does not wait out an election timeout. The transferee, if any.
    fn step_down(&mut self) -> Option<u64> {
        if self.raw.raft.state != StateRole::Leader {
            return None;
        }
        let me = self.shared.member_id;
        let prs = self.raw.raft.prs();
        let voters = prs.conf().voters().ids();
        let transferee = waiters::pick_transferee(
            voters
                .iter()
                .filter(|&id| id != me)
                .filter_map(|id| prs.get(id).map(|progress| (id, progress)))
                // Only a voter that answered lately (check_quorum keeps
                // this current): a crashed one would waste the whole stop
                // timeout, as etcd's longestConnected avoids too.
                .filter(|(_, progress)| progress.recent_active)
                .map(|(id, progress)| (id, progress.matched)),
        )?;
        self.raw.transfer_leader(transferee);
        Some(transferee)
    }

    /// Proposes a request the member makes itself.
    fn propose(&mut self, request: Request, reply: Reply<Response>) {
        self.propose_as(request, None, reply);
    }

    fn propose_as(&mut self, request: Request, auth: Option<RequestAuth>, reply: Reply<Response>) {
        if !self.proposals.has_room() {
            let _ = reply.send(Err(Error::TooManyRequests));
            return;
        }
        let id = self.proposals.next_id();
        let data = InternalRequest {
            id,
            request: Some(request),
            auth,
        }
        .encode_to_vec();
        if data.len() > self.max_request_bytes {
            let _ = reply.send(Err(Error::RequestTooLarge));
            return;
        }
        match self.raw.propose(vec![], data) {
            Ok(()) => self.proposals.wait(id, reply),
            Err(_) => {
                let _ = reply.send(Err(Error::NoLeader));
            }
        }
    }

    async fn on_ready(&mut self) -> Result<(), FatalError> {
        if !self.raw.has_ready() {
            // Snapshots need not wait for raft to have news: the backend's
            // commits move on their own.
            return self.maybe_snapshot().await;
        }
        let ready_at = self.clock.elapsed();
        let mut ready = self.raw.ready();
        // Nothing may call into the RawNode between ready() and advance():
        // a proposal now would land in the batch being persisted. Leader
        // changes are acted on after the advance.
        let soft_state = ready
            .ss()
            .map(|soft_state| (soft_state.leader_id, soft_state.raft_state));
        // A leader's messages may go out before its own fsync (Raft thesis
        // §10.2.1): they are appends and heartbeats, safe to send early.
        let mut snapshots_sent = Vec::new();
        self.send(ready.take_messages(), &mut snapshots_sent);
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone()).await?;
        }
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::FollowerAckBeforeFsync) {
            self.send(ready.take_persisted_messages(), &mut snapshots_sent);
        }
        // 1. Persist, one fsync for everything in this Ready.
        if let (Some(first), Some(last)) = (ready.entries().first(), ready.entries().last()) {
            self.entry_starts
                .persisted(first.index, last.index, ready_at);
        }
        #[cfg(madsim)]
        let overwrites = ready
            .entries()
            .first()
            .is_some_and(|first| first.index <= self.raw.store().last());
        self.persist(
            ready.entries().clone(),
            ready.hs().cloned(),
            ready.must_sync(),
        )
        .await?;
        let store = self.raw.mut_store();
        store.append(ready.entries());
        if let Some(hard_state) = ready.hs() {
            store.set_hard_state(hard_state.clone());
        }
        #[cfg(madsim)]
        if overwrites {
            self.crash_point(crate::probe::CrashPoint::LogOverwritten)?;
        }
        #[cfg(madsim)]
        self.crash_point(crate::probe::CrashPoint::PersistedNotAnnounced)?;
        // 2. Send what may only leave after the persist: votes and
        // follower acknowledgements.
        self.send(ready.take_persisted_messages(), &mut snapshots_sent);
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
        // 3. Apply.
        self.apply(ready.take_committed_entries())?;
        // 4. Advance, and handle what the light ready adds.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
            // Buffered: the next group commit makes it durable. Recovery
            // never needs it to be current (see `recovery`).
            let hard_state = self.raw.store().hard_state().clone();
            self.wal
                .as_mut()
                .expect("wal present")
                .append(&[], Some(&hard_state));
        }
        self.send(light.take_messages(), &mut snapshots_sent);
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        // raft-rs pauses a follower's progress while a snapshot is in
        // flight and resumes only on the follower's answer or this report;
        // our transport sends and forgets, and a lost answer would pause it
        // for good (found by the simulator: a restarted member stayed
        // behind forever). Reporting it finished makes the leader probe.
        // A snapshot the transport dropped itself is reported failed, so
        // the leader retries at once.
        for (to, left) in snapshots_sent {
            let status = if left {
                raft::SnapshotStatus::Finish
            } else {
                raft::SnapshotStatus::Failure
            };
            self.raw.report_snapshot(to, status);
        }
        if let Some((leader_id, role)) = soft_state {
            self.on_leader_change(leader_id, role);
        }
        self.publish_status();
        self.answer_reads();
        self.maybe_snapshot().await?;
        Ok(())
    }

    /// Writes entries and hard state; fsyncs only when raft says the
    /// batch must be durable before anything else happens (new entries, a
    /// new term or vote). A commit-only hard state waits for the next
    /// fsync: recovery never needs it to be current.
    async fn persist(
        &mut self,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        must_sync: bool,
    ) -> Result<(), FatalError> {
        if !must_sync {
            debug_assert!(entries.is_empty(), "raft: entries always need an fsync");
            if let Some(hard_state) = hard_state {
                self.wal
                    .as_mut()
                    .expect("wal present")
                    .append(&[], Some(&hard_state));
            }
            return Ok(());
        }
        let mut wal = self.wal.take().expect("wal present");
        // Disk work takes milliseconds: keep it off the async runtime. The
        // write and the fsync are two steps, as on a real disk, so in
        // simulation a crash can fall between them and tear the tail.
        let (mut wal, written) = crate::storage::blocking::run(move || {
            wal.append(&entries, hard_state.as_ref());
            let result = wal.write();
            (wal, result)
        })
        .await;
        #[cfg(madsim)]
        if written.is_ok() {
            if let Err(crash) = self.crash_point(crate::probe::CrashPoint::WalWrittenNotSynced) {
                self.wal = Some(wal);
                return Err(crash);
            }
        }
        let (wal, result) = match written {
            Ok(()) => {
                crate::storage::blocking::fsync_latency().await;
                // A disk the nemesis slowed.
                #[cfg(madsim)]
                {
                    let extra = crate::probe::extra_sync_latency(self.shared.member_id);
                    if !extra.is_zero() {
                        tokio::time::sleep(extra).await;
                    }
                }
                // The sabotage's follower acknowledged already; a slow disk
                // keeps its bytes in the page cache for a while.
                #[cfg(madsim)]
                if crate::sabotage::active(crate::sabotage::Sabotage::FollowerAckBeforeFsync)
                    && self.raw.raft.state != StateRole::Leader
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                let started = self.clock.elapsed();
                let synced = crate::storage::blocking::run(move || {
                    let result = wal.sync();
                    (wal, result)
                })
                .await;
                let took = self.clock.elapsed().saturating_sub(started);
                self.shared.metrics.wal_fsync.observe(took.as_secs_f64());
                if took > SLOW_FSYNC {
                    tracing::warn!(took = ?took, expected = ?SLOW_FSYNC, "slow fdatasync");
                }
                synced
            }
            Err(error) => (wal, Err(error)),
        };
        self.wal = Some(wal);
        Ok(result?)
    }

    fn on_leader_change(&mut self, leader_id: u64, role: StateRole) {
        let previous = std::mem::replace(&mut self.known_leader, leader_id);
        let metrics = &self.shared.metrics;
        metrics
            .has_leader
            .set(i64::from(leader_id != raft::INVALID_ID));
        metrics.is_leader.set(i64::from(role == StateRole::Leader));
        if previous != leader_id && leader_id != raft::INVALID_ID {
            metrics.leader_changes.inc();
        }
        if previous != leader_id {
            tracing::info!(
                member = format_args!("{:x}", self.shared.member_id),
                leader = format_args!("{leader_id:x}"),
                ?role,
                "leader changed"
            );
            // A read index taken under the old leader may not be served
            // (etcd #20418): fail the waiting reads instead.
            if previous != raft::INVALID_ID {
                self.reads.leader_changed();
            }
        }
        #[cfg(madsim)]
        if previous != leader_id
            && leader_id == self.shared.member_id
            && crate::sabotage::active(crate::sabotage::Sabotage::LeaseResetOnLeaderChange)
        {
            let now = self.clock.elapsed();
            let state = self.shared.state.read().expect("state lock");
            let mut timers = self.shared.lease_timers.lock().expect("lease timers lock");
            for lease in state.leases().iter() {
                timers.start(lease.id, now, crate::lease::ttl_duration(lease.ttl));
            }
        }
        if leader_id != raft::INVALID_ID {
            for ((request, auth), reply) in self.proposals.take_queued() {
                self.propose_as(request, auth, reply);
            }
            if !self.published {
                // Tell the cluster our client URLs (etcd's publish); retried
                // at every leader change until it has been applied.
                let (reply, _) = oneshot::channel();
                self.propose(Request::Publish(self.attributes.clone()), reply);
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), FatalError> {
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
                    // A new leader's empty entry.
                    self.shared
                        .state
                        .write()
                        .expect("state lock")
                        .skip(entry.index);
                }
                EntryType::EntryNormal => self.apply_request(&entry)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&entry)?
                }
            }
            #[cfg(madsim)]
            self.report_applied(&entry);
            self.entry_starts.applied(entry.index);
            applied_any = true;
        }
        if applied_any {
            let batch = {
                let mut state = self.shared.state.write().expect("state lock");
                durable::changes(&mut state, self.applied_term, self.raw.store().conf_state())
            };
            self.backend.submit(batch);
        }
        self.shared.publish_revision();
        Ok(())
    }

    /// The leader's lease duties, on its ticks: propose expiries for
    /// leases past their deadline, and checkpoint remaining TTLs. Only a
    /// leader that has applied its own term's first entry acts: before
    /// that it may not have applied renewals its predecessor committed.
    fn tick_leases(&mut self) {
        let now = self.clock.elapsed();
        if self.raw.raft.state != StateRole::Leader || self.applied_term != self.raw.raft.term {
            // A new leader checkpoints at once: what it holds is the
            // freshest view any member has.
            self.next_lease_check = now;
            self.next_lease_checkpoint = now;
            return;
        }
        let mut proposals = Vec::new();
        if now >= self.next_lease_check {
            self.next_lease_check = now + crate::lease::EXPIRY_CHECK_INTERVAL;
            let max = crate::lease::EXPIRIES_PER_SECOND
                * crate::lease::EXPIRY_CHECK_INTERVAL.as_millis() as usize
                / 1000;
            let expired = self
                .shared
                .lease_timers
                .lock()
                .expect("lease timers lock")
                .take_expired(now, max);
            if !expired.is_empty() {
                let state = self.shared.state.read().expect("state lock");
                let expiries = expired
                    .into_iter()
                    .filter_map(|id| state.leases().get(id))
                    .map(|lease| LeaseExpiry {
                        id: lease.id,
                        renewed_at: lease.renewed_at,
                    })
                    .collect();
                proposals.push(Request::LeaseExpire(LeaseExpiries { expiries }));
            }
        }
        if now >= self.next_lease_checkpoint {
            self.next_lease_checkpoint = now + crate::lease::CHECKPOINT_INTERVAL;
            let batch = self
                .shared
                .lease_timers
                .lock()
                .expect("lease timers lock")
                .checkpoint_batch(now, crate::lease::CHECKPOINT_BATCH_MAX);
            if !batch.is_empty() {
                let state = self.shared.state.read().expect("state lock");
                let checkpoints = batch
                    .into_iter()
                    .filter_map(|(id, remaining)| {
                        state.leases().get(id).map(|lease| LeaseCheckpoint {
                            id,
                            remaining_millis: remaining.as_millis() as i64,
                            renewed_at: lease.renewed_at,
                        })
                    })
                    .collect();
                proposals.push(Request::LeaseCheckpoint(LeaseCheckpoints { checkpoints }));
            }
        }
        for request in proposals {
            // Nobody waits for these: an expiry or checkpoint that is lost
            // is made again (`EXPIRY_RETRY`, the next interval).
            let (reply, _) = oneshot::channel();
            self.propose(request, reply);
        }
    }

    /// Keeps this member's lease deadlines in step with what applying
    /// `request` did. A (re)started lease runs from the instant this member
    /// persisted the entry.
    /// A login assigns its token on every member; deleting a user or
    /// changing its password voids its tokens, disabling auth voids all.
    fn on_auth_applied(&self, result: Option<&Result<Response, Error>>) {
        use crate::auth::TokenEffect;
        let Some(Ok(response)) = result else { return };
        let mut tokens = self.shared.tokens.lock().expect("tokens lock");
        match response {
            Response::Authenticated { user, token, .. } if !token.is_empty() => {
                tokens.assign(token.clone(), user.clone(), self.clock.elapsed())
            }
            Response::AuthChanged(TokenEffect::InvalidateUser(user)) => {
                tokens.invalidate_user(user)
            }
            Response::AuthChanged(TokenEffect::InvalidateAll) => tokens.clear(),
            _ => {}
        }
    }

    fn on_lease_applied(
        &self,
        index: u64,
        request: Option<&Request>,
        result: Option<&Result<Response, Error>>,
    ) {
        let Some(Ok(response)) = result else { return };
        let started_at = self
            .entry_starts
            .started_at(index)
            .unwrap_or_else(|| self.clock.elapsed());
        let mut timers = self.shared.lease_timers.lock().expect("lease timers lock");
        #[cfg(madsim)]
        let shorten = crate::sabotage::active(crate::sabotage::Sabotage::LeaseEarlyExpiry);
        #[cfg(not(madsim))]
        let shorten = false;
        let ttl_of = |ttl: i64| crate::lease::ttl_duration(ttl) / if shorten { 2 } else { 1 };
        let metrics = &self.shared.metrics;
        match (request, response) {
            (_, Response::LeaseGrant(grant)) => {
                metrics.lease_granted.inc();
                timers.start(grant.id, started_at, ttl_of(grant.ttl))
            }
            (_, Response::LeaseRenewed { id, ttl }) => {
                if self.raw.raft.state == StateRole::Leader {
                    metrics.lease_renewed.inc();
                }
                timers.start(*id, started_at, ttl_of(*ttl))
            }
            (_, Response::LeaseCheckpointed(checkpoints)) => {
                for (id, remaining_millis) in checkpoints {
                    timers.start(
                        *id,
                        started_at,
                        Duration::from_millis(*remaining_millis as u64),
                    );
                }
            }
            (Some(Request::LeaseRevoke(revoke)), Response::LeaseRevoke(_)) => {
                metrics.lease_revoked.inc();
                timers.remove(revoke.id)
            }
            (_, Response::LeasesExpired(ids)) => {
                metrics.lease_revoked.inc_by(ids.len() as u64);
                ids.iter().for_each(|id| timers.remove(*id))
            }
            (Some(Request::Alarm(alarm)), Response::Alarms(changed))
                if alarm.action()
                    == crate::proto::etcdserverpb::alarm_request::AlarmAction::Activate =>
            {
                for raised in changed {
                    tracing::warn!(alarm = %crate::apply::describe_alarm(raised), "alarm raised");
                }
            }
            _ => {}
        }
    }

    #[cfg(madsim)]
    fn report_applied(&self, entry: &Entry) {
        if !crate::probe::observing() {
            return;
        }
        let state_hash = (entry.index % crate::probe::STATE_HASH_EVERY == 0)
            .then(|| self.shared.state.read().expect("state lock").state_hash());
        let words: Vec<u64> = [entry.get_entry_type() as u64]
            .into_iter()
            .chain(entry.data.iter().map(|&byte| u64::from(byte)))
            .collect();
        crate::probe::applied(
            self.shared.member_id,
            entry.index,
            entry.term,
            crate::rng::stable_hash(&words),
            state_hash,
        );
    }

    /// Applies one entry's request; an apply slower than
    /// `SLOW_APPLY` is counted and logged, as etcd does.
    fn apply_request(&mut self, entry: &Entry) -> Result<(), FatalError> {
        let started = self.clock.elapsed();
        let applied = self.apply_request_timed(entry);
        let took = self.clock.elapsed().saturating_sub(started);
        if took > SLOW_APPLY {
            self.shared.metrics.slow_apply.inc();
            tracing::warn!(
                index = entry.index,
                took = ?took,
                expected = ?SLOW_APPLY,
                "apply request took too long"
            );
        }
        applied
    }

    fn apply_request_timed(&mut self, entry: &Entry) -> Result<(), FatalError> {
        let request = match InternalRequest::decode(&entry.data[..]) {
            Ok(request) => request,
            Err(error) => {
                // What we propose always decodes (`api::validate` uses the
                // decoder's limits), so this is a foreign or forged entry;
                // its proposer, if any, times out.
                self.skip_entry(entry, "a committed entry", &error.to_string());
                return Ok(());
            }
        };
        if let Some(Request::Publish(attributes)) = &request.request {
            // Only our current attributes count: an older publish replayed
            // from the log (another name or client URLs before a restart)
            // must not stop us from publishing what the flags say now.
            self.published |= *attributes == self.attributes;
        }
        let result = self.shared.state.write().expect("state lock").apply_as(
            entry.index,
            request.request.as_ref(),
            request.auth.as_ref(),
        );
        self.on_lease_applied(entry.index, request.request.as_ref(), result.as_ref());
        self.on_auth_applied(result.as_ref());
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::DoubleApply)
            && matches!(
                request.request,
                Some(Request::Put(_) | Request::DeleteRange(_) | Request::Txn(_))
            )
            && !std::mem::replace(&mut self.sabotage_applied_twice, true)
        {
            self.shared
                .state
                .write()
                .expect("state lock")
                .apply_again_for_sabotage(request.request.as_ref());
        }
        if let (Some(Ok(_)), Some(Request::MemberUpdate(update))) = (&result, &request.request) {
            self.update_transport(&MembershipChange::UpdatePeerUrls(
                update.id,
                update.peer_urls.clone(),
            ));
        }
        if let Some(result) = result {
            self.proposals.answer(request.id, result);
        }
        Ok(())
    }

    /// Never stop on what an entry holds: a committed entry is the same
    /// bytes on every member, so every member skips an undecodable one
    /// alike (it takes its index, nothing else) and the state machines stay
    /// equal.
    fn skip_entry(&mut self, entry: &Entry, what: &str, reason: &str) {
        tracing::error!(
            index = entry.index,
            %reason,
            "skipping {what} that cannot be decoded"
        );
        self.shared
            .state
            .write()
            .expect("state lock")
            .apply(entry.index, None);
    }

    /// A raft configuration change: one member added, promoted or removed
    /// per `ConfChangeV2` (a simple change, no joint consensus; v1 entries,
    /// as etcd 3.4 writes them, are read too). The registry checks it
    /// first; raft applies it only if it passed, as etcd turns a refused
    /// change into a no-op.
    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), FatalError> {
        let (change, info) = match decode_conf_change(entry) {
            Ok(decoded) => decoded,
            Err(reason) => {
                // raft, never told, keeps its configuration.
                self.skip_entry(entry, "a configuration change", &reason);
                return Ok(());
            }
        };
        let single = &change.changes[0];
        let membership = membership_change(single.get_change_type(), single.node_id, info);
        let result = self
            .shared
            .state
            .write()
            .expect("state lock")
            .apply_membership(entry.index, &membership);
        let Some(result) = result else { return Ok(()) };
        if result.is_ok() {
            let conf_state = self.raw.apply_conf_change(&change)?;
            self.raw.mut_store().set_conf_state(conf_state);
            self.update_transport(&membership);
            tracing::info!(
                ?membership,
                index = entry.index,
                "applied a membership change"
            );
        }
        let id = u64::from_le_bytes(entry.context[..].try_into().unwrap_or_default());
        self.proposals.answer(id, result);
        if membership == MembershipChange::Remove(self.shared.member_id) {
            return Err(FatalError::Removed);
        }
        Ok(())
    }

    fn update_transport(&mut self, change: &MembershipChange) {
        match change {
            MembershipChange::Add(member) if member.id != self.shared.member_id => {
                if let Some(url) = member.peer_urls.first() {
                    self.transport.set_peer(member.id, url.clone());
                }
            }
            MembershipChange::UpdatePeerUrls(id, urls) if *id != self.shared.member_id => {
                if let Some(url) = urls.first() {
                    self.transport.set_peer(*id, url.clone());
                }
            }
            MembershipChange::Remove(id) => self.transport.remove_peer(*id),
            _ => {}
        }
    }

    /// Proposes a configuration change; the caller hears the outcome when
    /// it is applied.
    fn propose_conf_change(&mut self, change: ConfChangeV2, reply: Reply<Response>) {
        if !self.proposals.has_room() {
            let _ = reply.send(Err(Error::TooManyRequests));
            return;
        }
        let id = self.proposals.next_id();
        match self
            .raw
            .propose_conf_change(id.to_le_bytes().to_vec(), change)
        {
            Ok(()) => self.proposals.wait(id, reply),
            Err(error) => {
                tracing::debug!(%error, "configuration change refused by raft");
                // raft refuses while another change is pending or without a leader.
                let _ = reply.send(Err(if self.raw.raft.leader_id == raft::INVALID_ID {
                    Error::NoLeader
                } else {
                    Error::Timeout
                }));
            }
        }
    }

    /// etcd `isLearnerReady`: only the leader knows the learner's progress;
    /// it must have replicated at least `LEARNER_READY_PERCENT` of the log.
    fn promote(&mut self, id: u64, reply: Reply<Response>) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(Error::NotLeader));
            return;
        }
        let leader_match = self
            .raw
            .raft
            .prs()
            .get(self.shared.member_id)
            .map(|progress| progress.matched)
            .unwrap_or(0);
        // etcd's `isLearnerReady`: a member raft does not track passes
        // here and is refused below.
        if let Some(progress) = self.raw.raft.prs().get(id) {
            if !waiters::learner_ready(progress.matched, leader_match, LEARNER_READY_PERCENT) {
                let _ = reply.send(Err(Error::LearnerNotReady));
                return;
            }
        }
        let checked = {
            let state = self.shared.state.read().expect("state lock");
            if state.members().ready_to_promote() {
                state.members().check_promote(id)
            } else {
                Err(Error::MemberNotEnoughStarted)
            }
        };
        if let Err(error) = checked {
            let _ = reply.send(Err(error));
            return;
        }
        self.propose_conf_change(
            single_change(
                ConfChangeType::AddNode,
                id,
                MemberInfo {
                    id,
                    ..MemberInfo::default()
                },
            ),
            reply,
        );
    }

    fn publish_status(&self) {
        *self.shared.position.lock().expect("position lock") =
            (self.raw.raft.term, self.raw.raft.leader_id);
        let metrics = &self.shared.metrics;
        metrics
            .proposals_committed
            .set(self.raw.raft.raft_log.committed as i64);
        metrics
            .proposals_pending
            .set(self.proposals.waiting() as i64);
        self.shared
            .commit_index
            .store(self.raw.raft.raft_log.committed, Ordering::Relaxed);
        self.shared
            .last_index
            .store(self.raw.raft.raft_log.last_index(), Ordering::Relaxed);
    }

    fn answer_reads(&mut self) {
        let applied = self.shared.applied_index();
        self.reads.applied(applied);
    }

    /// Snapshots, which cost little now that the backend holds the state:
    /// - every `--snapshot-count` applied entries (or when an operator
    ///   asks), the backend's durable point is marked in the WAL, and WAL
    ///   segments and log entries before the previous mark are released;
    /// - when raft needs a snapshot for a follower the log no longer
    ///   serves, the state image is made for it now.
    async fn maybe_snapshot(&mut self) -> Result<(), FatalError> {
        match self.backend.failure() {
            None => {}
            Some(crate::backend::Stopped::Failed(failure)) => {
                return Err(crate::backend::Error::Engine(failure).into())
            }
            #[cfg(madsim)]
            Some(crate::backend::Stopped::CrashPoint) => {
                return Err(FatalError::CrashPoint(
                    crate::probe::CrashPoint::BackendWrittenNotSynced,
                ))
            }
        }
        if self.raw.store().take_snapshot_wanted() {
            self.snapshot_for_followers();
        }
        if self.snapshot_policy.requested() {
            // What an operator asked for covers everything applied.
            self.backend.flush().await?;
        }
        let durable = self.backend.durable();
        if !self.snapshot_policy.due(durable.index, false) {
            if self.snapshot_policy.requested() {
                // The newest mark holds everything applied already.
                self.snapshot_policy.answer_requests();
            }
            return Ok(());
        }
        let mut wal = self.wal.take().expect("wal present");
        let hard_state = self.raw.store().hard_state().clone();
        let previous = self.snapshot_policy.release_to();
        let save_started = self.clock.elapsed();
        let mark = SnapshotMark {
            index: durable.index,
            term: durable.term,
        };
        #[cfg(madsim)]
        let crash = self.crash_point(crate::probe::CrashPoint::BackendDurableNotMarked);
        #[cfg(not(madsim))]
        let crash: Result<(), FatalError> = Ok(());
        let (wal, result) = crate::storage::blocking::run(move || {
            let result = (|| -> Result<(), FatalError> {
                crash?;
                // The hard state goes first so its commit covers the mark:
                // recovery must never see a snapshot beyond the commit index.
                wal.append(&[], Some(&hard_state));
                wal.mark_snapshot(mark);
                wal.sync()?;
                wal.release_to(previous)?;
                Ok(())
            })();
            (wal, result)
        })
        .await;
        self.wal = Some(wal);
        result?;
        let took = self.clock.elapsed().saturating_sub(save_started);
        tracing::info!(
            index = mark.index,
            term = mark.term,
            took = ?took,
            "marked the backend's durable state in the WAL"
        );
        // Keep some entries for slow followers, but never more than a
        // snapshot's worth: a small --snapshot-count asks for a small log.
        let catch_up_entries = SNAPSHOT_CATCH_UP_ENTRIES.min(self.snapshot_policy.snapshot_count());
        self.raw
            .mut_store()
            .compact(mark.index.saturating_sub(catch_up_entries));
        self.snapshot_policy.saved(mark.index);
        Ok(())
    }

    /// The state image at the applied index, for followers that the log
    /// cannot catch up; kept until the log needs a newer one.
    fn snapshot_for_followers(&mut self) {
        let state = self.shared.state.read().expect("state lock");
        let snapshot = Snapshot {
            index: state.applied_index(),
            term: self.applied_term,
            conf_state: self.raw.store().conf_state().clone(),
            state: state.encode(),
        };
        drop(state);
        tracing::info!(index = snapshot.index, "made a snapshot for a follower");
        self.raw
            .mut_store()
            .set_snapshot(to_raft_snapshot(&snapshot));
    }

    /// Replaces the whole state by a snapshot the leader sent, crash-safe
    /// at every step: the snapshot file is durable before the WAL says the
    /// log was replaced, and recovery uses the file only once the WAL does.
    async fn install_snapshot(&mut self, raft_snapshot: RaftSnapshot) -> Result<(), FatalError> {
        let snapshot = Snapshot::decode(&raft_snapshot.data).map_err(FatalError::BadSnapshot)?;
        let state = StateMachine::decode(&snapshot.state, self.quota_bytes)
            .map_err(FatalError::BadSnapshot)?;
        if state.applied_index() != snapshot.index
            || snapshot.index != raft_snapshot.get_metadata().index
        {
            return Err(FatalError::BadSnapshot(format!(
                "metadata says index {}, file says {}, state says {}",
                raft_snapshot.get_metadata().index,
                snapshot.index,
                state.applied_index()
            )));
        }
        let snapshots = self.snapshots.clone();
        let mut wal = self.wal.take().expect("wal present");
        let snapshot_conf_state = snapshot.conf_state.clone();
        let mark = SnapshotMark {
            index: snapshot.index,
            term: snapshot.term,
        };
        #[cfg(madsim)]
        let crash = self.crash_point(crate::probe::CrashPoint::SnapshotInstallHalfway);
        #[cfg(not(madsim))]
        let crash: Result<(), FatalError> = Ok(());
        let (wal, result) = crate::storage::blocking::run(move || {
            let result = (|| -> Result<(), FatalError> {
                snapshots.save(&snapshot)?;
                crash?;
                wal.mark_installed(mark);
                wal.sync()?;
                wal.release_to(mark.index)?;
                Ok(())
            })();
            (wal, result)
        })
        .await;
        self.wal = Some(wal);
        result?;
        // Only now the backend: should this crash, recovery finds the
        // snapshot file newer than the backend and rebuilds it from there.
        let (batch, durable) = durable::whole(&state, mark.term, &snapshot_conf_state);
        self.backend.replace(batch, durable).await?;
        let mut state = state;
        state.track_changes();
        tracing::info!(
            index = mark.index,
            term = mark.term,
            "installed a snapshot from the leader"
        );
        self.raw.mut_store().install_snapshot(raft_snapshot);
        self.shared
            .lease_timers
            .lock()
            .expect("lease timers lock")
            .reset(self.clock.elapsed(), state.leases());
        *self.shared.state.write().expect("state lock") = state;
        self.shared.publish_revision();
        self.applied_term = mark.term;
        self.snapshot_policy.installed(mark.index);
        #[cfg(madsim)]
        self.crash_point(crate::probe::CrashPoint::SnapshotInstalled)?;
        Ok(())
    }
}

/// A configuration change of one member, the member in its context.
pub fn single_change(change_type: ConfChangeType, node_id: u64, info: MemberInfo) -> ConfChangeV2 {
    let single = ConfChangeSingle {
        change_type,
        node_id,
        ..ConfChangeSingle::default()
    };
    ConfChangeV2 {
        changes: vec![single].into(),
        context: info.encode_to_vec().into(),
        ..ConfChangeV2::default()
    }
}

/// A configuration change entry, v2 or v1 (as etcd 3.4 writes them), with
/// exactly one change and the member it concerns.
fn decode_conf_change(entry: &Entry) -> Result<(ConfChangeV2, MemberInfo), String> {
    crate::proto::raft_shape::check_entry_data(entry.get_entry_type() as i32, &entry.data)?;
    let change = if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        let mut change = ConfChangeV2::default();
        change
            .merge_from_bytes(&entry.data)
            .map_err(|e| e.to_string())?;
        if change.changes.len() != 1 {
            return Err(format!(
                "{} changes in one entry; detcd makes one at a time",
                change.changes.len()
            ));
        }
        change
    } else {
        let mut change = ConfChange::default();
        change
            .merge_from_bytes(&entry.data)
            .map_err(|e| e.to_string())?;
        let single = ConfChangeSingle {
            change_type: change.change_type,
            node_id: change.node_id,
            ..ConfChangeSingle::default()
        };
        ConfChangeV2 {
            changes: vec![single].into(),
            context: change.context,
            ..ConfChangeV2::default()
        }
    };
    let info = MemberInfo::decode(&change.context[..]).map_err(|e| e.to_string())?;
    Ok((change, info))
}

/// What a committed raft configuration change means for the registry.
fn membership_change(
    change_type: ConfChangeType,
    node_id: u64,
    info: MemberInfo,
) -> MembershipChange {
    match change_type {
        ConfChangeType::RemoveNode => MembershipChange::Remove(node_id),
        ConfChangeType::AddNode if info.peer_urls.is_empty() => MembershipChange::Promote(node_id),
        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => MembershipChange::Add(Member {
            id: node_id,
            name: info.name,
            peer_urls: info.peer_urls,
            client_urls: Vec::new(),
            is_learner: change_type == ConfChangeType::AddLearnerNode,
        }),
    }
}

pub(super) fn to_raft_snapshot(snapshot: &Snapshot) -> RaftSnapshot {
    let mut raft_snapshot = RaftSnapshot {
        data: snapshot.encode().into(),
        ..RaftSnapshot::default()
    };
    let metadata = raft_snapshot.mut_metadata();
    metadata.index = snapshot.index;
    metadata.term = snapshot.term;
    metadata.set_conf_state(snapshot.conf_state.clone());
    raft_snapshot
}
