//! The raft loop's bookkeeping, kept apart from its I/O so it can be
//! unit-tested: callers waiting for their proposals, proposals queued while
//! there is no leader, linearizable reads waiting for their read index,
//! when to take a snapshot, and the readiness rules of promotion and
//! step-down. Plain structs: no raft, no disk, no clock.
//!
//! Every queue is bounded. A caller that gave up (its request timed out,
//! so its receiver is gone) is forgotten at the next prune, so an entry
//! that never commits cannot pin memory.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::error::Error;

use super::Reply;

/// Proposals awaiting their apply, at most (etcd refuses new requests
/// once apply lags commit by 5000 entries; this bounds what waits).
pub const PROPOSALS_WAITING_MAX: usize = 10_000;
/// Proposals held while no leader is known, at most.
pub const PROPOSALS_QUEUED_MAX: usize = 4096;
/// Linearizable reads waiting for a read index or its apply, at most.
pub const READS_WAITING_MAX: usize = 10_000;

/// Callers waiting for a proposal to apply, by proposal id, and proposals
/// held until a leader is known.
pub struct Proposals<T, R> {
    next_id: u64,
    waiting: BTreeMap<u64, Reply<R>>,
    queued: Vec<(T, Reply<R>)>,
}

impl<T, R> Proposals<T, R> {
    /// Ids start after `base`, which makes them unique to this member and
    /// this start (see `recovery::proposal_id_base`).
    pub fn new(base: u64) -> Self {
        Proposals {
            next_id: base,
            waiting: BTreeMap::new(),
            queued: Vec::new(),
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Whether a new proposal may wait; prunes first. The caller answers a
    /// refusal with etcd's "too many requests".
    pub fn has_room(&mut self) -> bool {
        if self.waiting.len() >= PROPOSALS_WAITING_MAX {
            self.prune();
        }
        self.waiting.len() < PROPOSALS_WAITING_MAX
    }

    pub fn wait(&mut self, id: u64, reply: Reply<R>) {
        debug_assert!(self.waiting.len() < PROPOSALS_WAITING_MAX, "has_room first");
        self.waiting.insert(id, reply);
    }

    /// Answers the caller waiting for proposal `id`, if it still waits.
    pub fn answer(&mut self, id: u64, result: Result<R, Error>) {
        if let Some(reply) = self.waiting.remove(&id) {
            let _ = reply.send(result);
        }
    }

    /// Holds a proposal until a leader is known; refuses it (with the
    /// error etcd gives without a leader) once the queue is full.
    pub fn queue(&mut self, proposal: T, reply: Reply<R>) {
        if self.queued.len() >= PROPOSALS_QUEUED_MAX {
            self.queued.retain(|(_, reply)| !reply.is_closed());
        }
        if self.queued.len() >= PROPOSALS_QUEUED_MAX {
            let _ = reply.send(Err(Error::NoLeader));
            return;
        }
        self.queued.push((proposal, reply));
    }

    /// The queued proposals whose callers still wait, oldest first.
    pub fn take_queued(&mut self) -> Vec<(T, Reply<R>)> {
        std::mem::take(&mut self.queued)
            .into_iter()
            .filter(|(_, reply)| !reply.is_closed())
            .collect()
    }

    /// Forgets callers that gave up. Returns how many.
    pub fn prune(&mut self) -> usize {
        let before = self.waiting.len() + self.queued.len();
        self.waiting.retain(|_, reply| !reply.is_closed());
        self.queued.retain(|(_, reply)| !reply.is_closed());
        before - self.waiting.len() - self.queued.len()
    }

    /// Proposals waiting for their apply (etcd_server_proposals_pending).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.len()
    }
}

/// Linearizable reads: first waiting for raft to confirm a read index
/// (by request id), then for the state machine to apply up to it.
#[derive(Default)]
pub struct ReadIndexQueue {
    confirming: BTreeMap<u64, Reply<()>>,
    applying: Vec<(u64, Reply<()>)>,
}

impl ReadIndexQueue {
    /// Whether a new read may wait; prunes first. Refused reads get etcd's
    /// "too many requests".
    pub fn has_room(&mut self) -> bool {
        if self.len() >= READS_WAITING_MAX {
            self.prune();
        }
        self.len() < READS_WAITING_MAX
    }

    pub fn start(&mut self, id: u64, reply: Reply<()>) {
        self.confirming.insert(id, reply);
    }

    /// Raft confirmed read `id` at `index`.
    pub fn confirmed(&mut self, id: u64, index: u64) {
        if let Some(reply) = self.confirming.remove(&id) {
            self.applying.push((index, reply));
        }
    }

    /// Answers every read whose index has been applied.
    pub fn applied(&mut self, applied: u64) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.applying)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.applying = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }

    /// The leader changed: a read index taken under the old one may not be
    /// served (etcd #20418), so reads still confirming fail.
    pub fn leader_changed(&mut self) {
        for (_, reply) in std::mem::take(&mut self.confirming) {
            let _ = reply.send(Err(Error::LeaderChanged));
        }
    }

    pub fn prune(&mut self) {
        self.confirming.retain(|_, reply| !reply.is_closed());
        self.applying.retain(|(_, reply)| !reply.is_closed());
    }

    pub fn len(&self) -> usize {
        self.confirming.len() + self.applying.len()
    }
}

/// Bytes of applied entries after which a snapshot (a WAL mark of the
/// backend's durable point) is due whatever `--snapshot-count` says.
pub const MARK_BYTES: u64 = 64 * 1024 * 1024;

/// When the loop saves a snapshot: every `snapshot_count` applied entries
/// (or `MARK_BYTES` of them), when raft needs one for a follower, or when
/// an operator asks.
pub struct SnapshotPolicy {
    snapshot_count: u64,
    /// Bytes of entries applied since the newest snapshot: past
    /// `MARK_BYTES` a snapshot is due too, whatever the count, so the WAL
    /// (which recovery reads whole) stays small when entries are large.
    applied_bytes: u64,
    /// The newest durable snapshot's index, and the one before it (the
    /// WAL is kept from there, so either can seed recovery).
    indexes: (u64, u64),
    requests: Vec<Reply<()>>,
}

impl SnapshotPolicy {
    pub fn new(snapshot_count: u64, newest: u64) -> Self {
        SnapshotPolicy {
            snapshot_count,
            applied_bytes: 0,
            indexes: (newest, newest),
            requests: Vec::new(),
        }
    }

    pub fn snapshot_count(&self) -> u64 {
        self.snapshot_count
    }

    #[cfg(test)]
    pub fn newest(&self) -> u64 {
        self.indexes.0
    }

    /// The index WAL segments may be released to once a new snapshot is
    /// durable: the snapshot before it.
    pub fn release_to(&self) -> u64 {
        self.indexes.0
    }

    pub fn request(&mut self, reply: Reply<()>) {
        self.requests.push(reply);
    }

    pub fn requested(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Whether to save a snapshot at `applied`, given whether raft wants
    /// one for a follower.
    pub fn due(&self, applied: u64, raft_wants: bool) -> bool {
        let fresh = applied > self.indexes.0;
        applied >= self.indexes.0 + self.snapshot_count
            || (fresh && raft_wants)
            || (fresh && self.requested())
            || (fresh && self.applied_bytes >= MARK_BYTES)
    }

    /// An entry of `bytes` was applied.
    pub fn applied(&mut self, bytes: u64) {
        self.applied_bytes = self.applied_bytes.saturating_add(bytes);
    }

    /// A snapshot at `index` is durable: it becomes the newest, and the
    /// operators who asked are answered.
    pub fn saved(&mut self, index: u64) {
        assert!(
            index >= self.indexes.0,
            "snapshots never go back: {index} after {}",
            self.indexes.0
        );
        self.indexes = (index, self.indexes.0);
        self.applied_bytes = 0;
        self.answer_requests();
    }

    /// A snapshot from the leader replaced the whole state at `index`: it
    /// is the newest and the oldest the WAL needs.
    pub fn installed(&mut self, index: u64) {
        self.indexes = (index, index);
        self.applied_bytes = 0;
    }

    /// Answers the operators who asked (the newest snapshot already holds
    /// everything applied).
    pub fn answer_requests(&mut self) {
        for reply in self.requests.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }
}

/// etcd's `isLearnerReady`: a learner may be promoted once it holds
/// `ready_percent` of the leader's log.
pub fn learner_ready(learner_matched: u64, leader_matched: u64, ready_percent: f64) -> bool {
    learner_matched as f64 >= leader_matched as f64 * ready_percent
}

/// The voter a stopping leader hands over to: the one holding the most of
/// its log, the lowest id among equals. `voters` is (id, matched) without
/// the leader itself.
pub fn pick_transferee(voters: impl IntoIterator<Item = (u64, u64)>) -> Option<u64> {
    voters
        .into_iter()
        .max_by_key(|&(id, matched)| (matched, std::cmp::Reverse(id)))
        .map(|(id, _)| id)
}

/// Persisted batches remembered at most; older entries start at apply.
pub const ENTRY_STARTS_MAX: usize = 4096;

/// When this member first persisted each recent log entry: the instant
/// the Ready that held it was taken. A lease deadline starts there (see
/// `crate::lease`), not at apply, which can come an election later.
/// Entries with no record (replayed after a restart) start at apply.
#[derive(Debug, Default)]
pub struct EntryStarts {
    /// (first index, last index, instant), ascending.
    batches: VecDeque<(u64, u64, Duration)>,
}

impl EntryStarts {
    /// Entries `first..=last` were persisted by a Ready taken `at`; any
    /// remembered entry from `first` on was overwritten.
    pub fn persisted(&mut self, first: u64, last: u64, at: Duration) {
        while let Some(back) = self.batches.back_mut() {
            if back.1 < first {
                break;
            }
            if back.0 >= first {
                self.batches.pop_back();
            } else {
                back.1 = first - 1;
            }
        }
        self.batches.push_back((first, last, at));
        if self.batches.len() > ENTRY_STARTS_MAX {
            self.batches.pop_front();
        }
    }

    pub fn started_at(&self, index: u64) -> Option<Duration> {
        self.batches
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&index))
            .map(|(_, _, at)| *at)
    }

    /// Forgets batches applied in full.
    pub fn applied(&mut self, index: u64) {
        while self.batches.front().is_some_and(|batch| batch.1 <= index) {
            self.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn reply<T>() -> (Reply<T>, oneshot::Receiver<Result<T, Error>>) {
        oneshot::channel()
    }

    #[test]
    fn a_proposal_is_answered_once_and_forgotten() {
        let mut proposals: Proposals<&str, u32> = Proposals::new(100);
        let id = proposals.next_id();
        assert_eq!(id, 101);
        let (sender, mut receiver) = reply();
        assert!(proposals.has_room());
        proposals.wait(id, sender);
        proposals.answer(id, Ok(7));
        assert_eq!(receiver.try_recv().unwrap(), Ok(7));
        assert_eq!(proposals.waiting(), 0);
        proposals.answer(id, Ok(8)); // applied again elsewhere: nobody waits
    }

    #[test]
    fn callers_that_gave_up_are_pruned_and_make_room() {
        let mut proposals: Proposals<&str, u32> = Proposals::new(0);
        let mut kept = Vec::new();
        for n in 0..PROPOSALS_WAITING_MAX {
            let (sender, receiver) = reply();
            let id = proposals.next_id();
            proposals.wait(id, sender);
            if n % 2 == 0 {
                kept.push(receiver); // still waiting
            } // else: dropped, as a caller that timed out
        }
        assert!(
            proposals.has_room(),
            "a full table prunes the abandoned half"
        );
        assert_eq!(proposals.waiting(), PROPOSALS_WAITING_MAX / 2);
        let mut full: Proposals<&str, u32> = Proposals::new(0);
        let mut receivers = Vec::new();
        for _ in 0..PROPOSALS_WAITING_MAX {
            let (sender, receiver) = reply();
            receivers.push(receiver);
            let id = full.next_id();
            full.wait(id, sender);
        }
        assert!(!full.has_room(), "nobody gave up: no room");
    }

    #[test]
    fn the_queue_without_a_leader_is_bounded() {
        let mut proposals: Proposals<u32, u32> = Proposals::new(0);
        let mut receivers = Vec::new();
        for n in 0..PROPOSALS_QUEUED_MAX as u32 {
            let (sender, receiver) = reply();
            receivers.push(receiver);
            proposals.queue(n, sender);
        }
        assert_eq!(proposals.queued(), PROPOSALS_QUEUED_MAX);
        let (sender, mut refused) = reply();
        proposals.queue(u32::MAX, sender);
        assert_eq!(refused.try_recv().unwrap(), Err(Error::NoLeader));
        receivers.truncate(10); // the rest gave up
        let queued = proposals.take_queued();
        assert_eq!(
            queued.len(),
            10,
            "only callers that still wait are proposed"
        );
        assert_eq!(queued[0].0, 0, "oldest first");
    }

    #[test]
    fn reads_are_answered_once_their_index_is_applied() {
        let mut reads = ReadIndexQueue::default();
        let (first, mut first_answer) = reply();
        let (second, mut second_answer) = reply();
        reads.start(1, first);
        reads.start(2, second);
        reads.confirmed(1, 10);
        reads.confirmed(2, 12);
        reads.applied(11);
        assert_eq!(first_answer.try_recv().unwrap(), Ok(()));
        assert!(
            second_answer.try_recv().is_err(),
            "index 12 is not applied yet"
        );
        reads.applied(12);
        assert_eq!(second_answer.try_recv().unwrap(), Ok(()));
        assert_eq!(reads.len(), 0);
    }

    #[test]
    fn a_leader_change_fails_reads_not_yet_confirmed() {
        let mut reads = ReadIndexQueue::default();
        let (confirming, mut confirming_answer) = reply();
        let (applying, mut applying_answer) = reply();
        reads.start(1, confirming);
        reads.start(2, applying);
        reads.confirmed(2, 5);
        reads.leader_changed();
        assert_eq!(
            confirming_answer.try_recv().unwrap(),
            Err(Error::LeaderChanged)
        );
        assert!(
            applying_answer.try_recv().is_err(),
            "a confirmed read still waits"
        );
        reads.applied(5);
        assert_eq!(applying_answer.try_recv().unwrap(), Ok(()));
    }

    #[test]
    fn snapshots_are_due_by_count_by_raft_or_by_request() {
        let mut policy = SnapshotPolicy::new(100, 0);
        assert!(!policy.due(99, false));
        assert!(policy.due(100, false));
        assert!(policy.due(1, true), "raft needs one for a follower");
        assert!(!policy.due(0, true), "nothing applied since the newest");
        let (sender, mut answer) = reply();
        policy.request(sender);
        assert!(policy.due(5, false));
        policy.saved(5);
        assert_eq!(answer.try_recv().unwrap(), Ok(()));
        assert_eq!(policy.newest(), 5);
        assert_eq!(policy.release_to(), 5);
        assert!(!policy.due(104, false));
        assert!(policy.due(105, false));
        // Large entries: due by bytes before the count.
        policy.applied(MARK_BYTES - 1);
        assert!(!policy.due(6, false));
        policy.applied(1);
        assert!(policy.due(6, false));
        assert!(!policy.due(5, false), "nothing applied since the newest");
        policy.saved(6);
        assert!(!policy.due(7, false), "the count of bytes starts over");
    }

    #[test]
    fn readiness_and_transferee_follow_etcd() {
        assert!(learner_ready(90, 100, 0.9));
        assert!(!learner_ready(89, 100, 0.9));
        assert!(learner_ready(0, 0, 0.9));
        assert_eq!(pick_transferee([(3, 10), (2, 12), (4, 12)]), Some(2));
        assert_eq!(pick_transferee(std::iter::empty()), None);
    }

    #[test]
    fn entry_starts_follow_overwrites_and_applies() {
        let at = Duration::from_millis;
        let mut starts = EntryStarts::default();
        starts.persisted(1, 3, at(10));
        starts.persisted(4, 6, at(20));
        assert_eq!(starts.started_at(2), Some(at(10)));
        assert_eq!(starts.started_at(6), Some(at(20)));
        assert_eq!(starts.started_at(7), None);
        // A new leader overwrote 5 onwards.
        starts.persisted(5, 5, at(30));
        assert_eq!(starts.started_at(4), Some(at(20)));
        assert_eq!(starts.started_at(5), Some(at(30)));
        assert_eq!(starts.started_at(6), None);
        starts.applied(4);
        assert_eq!(starts.started_at(2), None);
        assert_eq!(starts.started_at(5), Some(at(30)));
        for index in 10..10 + ENTRY_STARTS_MAX as u64 + 5 {
            starts.persisted(index, index, at(index));
        }
        assert_eq!(starts.batches.len(), ENTRY_STARTS_MAX);
    }
}
