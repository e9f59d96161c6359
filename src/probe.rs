//! Observation points for the simulator's online invariant checks,
//! compiled only into the simulation build (`--cfg madsim`), like
//! `sabotage`. The raft loop reports what it recovered and what it
//! applied; an observer the simulator installs compares members.
//!
//! The observer is per thread: a madsim runtime runs every simulated node
//! on the thread that runs the seed.

use std::cell::RefCell;
use std::rc::Rc;

/// Entries whose index is a multiple of this also report the state hash
/// after them: hashing the whole state at every entry would dominate a
/// simulation's run time. Every member samples the same indices.
pub const STATE_HASH_EVERY: u64 = 8;

/// Named moments at which the nemesis may crash a member, like etcd's
/// robustness failpoints (raftBeforeSave, raftAfterSave, beforeApplySnap,
/// ...): the raft loop stops right there, and the harness then crashes
/// the member (its unsynced bytes are lost) and restarts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrashPoint {
    /// A batch is written to the WAL, not yet fsynced.
    WalWrittenNotSynced,
    /// A batch is durable; the messages that announce it (votes, a
    /// follower's acknowledgements) have not left.
    PersistedNotAnnounced,
    /// The backend holds a durable point the WAL does not mark yet.
    BackendDurableNotMarked,
    /// A leader's snapshot file is durable and the new backend built
    /// beside the old, but the WAL does not yet say the log was replaced.
    SnapshotInstallHalfway,
    /// Some entries of a committed batch are applied, the rest not.
    MidApply,
    /// A leader's snapshot was just installed: the member next recovers
    /// from what the install left (faults that follow the state).
    SnapshotInstalled,
    /// A follower just replaced conflicting entries at the tail of its
    /// log with the leader's: it next recovers from the overwritten log.
    LogOverwritten,
    /// A new WAL segment is durable; the old one is not sealed yet.
    WalRolledNotSealed,
    /// Old WAL segments were just released (removed, durably): the member
    /// next recovers from the snapshot and what is left.
    WalReleased,
    /// A backend commit is written, not yet fsynced: the member next
    /// recovers from what of it the crash left (redb's commit slots) and
    /// replays the WAL from the backend's consistent index.
    BackendWrittenNotSynced,
    /// A member just granted its vote, durably, and sent it: it next
    /// recovers in the term it voted in, and must not vote again there
    /// (a candidate's request that comes late asks it twice).
    VoteGranted,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 11] = [
        CrashPoint::WalWrittenNotSynced,
        CrashPoint::PersistedNotAnnounced,
        CrashPoint::BackendDurableNotMarked,
        CrashPoint::SnapshotInstallHalfway,
        CrashPoint::MidApply,
        CrashPoint::SnapshotInstalled,
        CrashPoint::LogOverwritten,
        CrashPoint::WalRolledNotSealed,
        CrashPoint::WalReleased,
        CrashPoint::BackendWrittenNotSynced,
        CrashPoint::VoteGranted,
    ];
}

pub trait Observer {
    /// Whether `member` crashes at `point` now (the nemesis armed it).
    fn crash_here(&self, _member: u64, _point: CrashPoint) -> bool {
        false
    }
    /// How much longer than usual each of `member`'s fsyncs takes now: the
    /// nemesis slowed its disk. Its raft loop waits that long per batch,
    /// so it persists, acknowledges and applies late while it keeps
    /// serving clients.
    fn extra_sync_latency(&self, _member: u64) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// `member` starts with a log (or snapshot) that ends at
    /// `durable_index`, in `term`, having voted for `vote` there (0: for
    /// no one).
    fn recovered(&self, member: u64, durable_index: u64, term: u64, vote: u64);
    /// `member` sent its vote in `term` to `candidate`.
    fn vote_granted(&self, _member: u64, _term: u64, _candidate: u64) {}
    /// After applying through `index`, `member` handed its backend a
    /// batch after which the backend would hold other members, alarms,
    /// leases or auth than its applied state: a change kept only in
    /// memory, lost at the next restart.
    fn stored_state_stale(&self, _member: u64, _index: u64) {}
    /// `member` claimed more of its log durable than its WAL synced (an
    /// acknowledgement, or raft's own count): `what` says which.
    fn claimed_unsynced(&self, _member: u64, _what: &str) {}
    /// `member` applied the entry at `index`; `state_hash` is the state
    /// after it, at sampled indices.
    fn applied(&self, member: u64, index: u64, term: u64, entry_hash: u64, state_hash: Option<u64>);
}

thread_local! {
    static OBSERVER: RefCell<Option<Rc<dyn Observer>>> = const { RefCell::new(None) };
}

/// Installs `observer` for this thread (the seed's runtime); `None` removes it.
pub fn install(observer: Option<Rc<dyn Observer>>) {
    OBSERVER.with(|slot| *slot.borrow_mut() = observer);
}

pub(crate) fn observing() -> bool {
    OBSERVER.with(|slot| slot.borrow().is_some())
}

fn with(report: impl FnOnce(&dyn Observer)) {
    let observer = OBSERVER.with(|slot| slot.borrow().clone());
    if let Some(observer) = observer {
        report(&*observer);
    }
}

pub(crate) fn recovered(member: u64, durable_index: u64, term: u64, vote: u64) {
    with(|observer| observer.recovered(member, durable_index, term, vote));
}

pub(crate) fn vote_granted(member: u64, term: u64, candidate: u64) {
    with(|observer| observer.vote_granted(member, term, candidate));
}

pub(crate) fn stored_state_stale(member: u64, index: u64) {
    with(|observer| observer.stored_state_stale(member, index));
}

pub(crate) fn claimed_unsynced(member: u64, what: &str) {
    with(|observer| observer.claimed_unsynced(member, what));
}

pub(crate) fn applied(
    member: u64,
    index: u64,
    term: u64,
    entry_hash: u64,
    state_hash: Option<u64>,
) {
    with(|observer| observer.applied(member, index, term, entry_hash, state_hash));
}

/// How much longer than usual `member`'s fsyncs take now.
pub(crate) fn extra_sync_latency(member: u64) -> std::time::Duration {
    let mut extra = std::time::Duration::ZERO;
    with(|observer| extra = observer.extra_sync_latency(member));
    extra
}

/// Whether `member` must crash at `point` now.
pub(crate) fn crash_here(member: u64, point: CrashPoint) -> bool {
    let mut crash = false;
    with(|observer| crash = observer.crash_here(member, point));
    crash
}
