//! Receives what every member's raft loop reports through `detcd::probe`
//! while the run goes on, and forwards it to the raft properties
//! (`properties::raft`: log matching, state machine safety, durability;
//! election safety comes from the monitor). Also where the nemesis arms
//! crash points and learns which member stopped at one.

use std::cell::RefCell;
use std::rc::Rc;

use detcd::probe::{CrashPoint, Observer};

use crate::properties::raft::RaftInvariants;

#[derive(Default)]
pub struct Invariants {
    state: RefCell<RaftInvariants>,
    crash_points: RefCell<CrashPoints>,
    /// The member whose disk the nemesis slowed, and by how much per fsync.
    slow_disk: std::cell::Cell<Option<(u64, std::time::Duration)>>,
}

/// The crash points the nemesis armed, and the members that hit one.
#[derive(Default)]
struct CrashPoints {
    /// Each fires once, on the first member that reaches it.
    armed: std::collections::BTreeSet<CrashPoint>,
    hit: Vec<(u64, CrashPoint)>,
}

thread_local! {
    /// The run in progress on this thread, so a run that ends in a panic
    /// can still report the violation that came first.
    static CURRENT: RefCell<Option<Rc<Invariants>>> = const { RefCell::new(None) };
}

/// The violation the interrupted run on this thread had seen, if any (a
/// member that lost its log typically panics in raft right after).
pub fn take_pending_violation() -> Option<String> {
    detcd::probe::install(None);
    CURRENT
        .with(|current| current.borrow_mut().take())
        .and_then(|invariants| invariants.violation())
}

impl Invariants {
    pub fn install() -> Rc<Invariants> {
        let invariants = Rc::new(Invariants::default());
        detcd::probe::install(Some(invariants.clone()));
        CURRENT.with(|current| *current.borrow_mut() = Some(invariants.clone()));
        invariants
    }

    pub fn uninstall(&self) {
        detcd::probe::install(None);
        CURRENT.with(|current| current.borrow_mut().take());
    }

    /// Arms `point`: the next member to reach it stops there.
    pub fn arm(&self, point: CrashPoint) {
        self.crash_points.borrow_mut().armed.insert(point);
    }

    /// Slows `member`'s fsyncs by the given latency each; `None`: every
    /// disk at its normal speed.
    pub fn set_slow_disk(&self, slow: Option<(u64, std::time::Duration)>) {
        self.slow_disk.set(slow);
    }

    /// The member whose fsyncs are slowed, if any.
    pub fn slow_disk(&self) -> Option<u64> {
        self.slow_disk.get().map(|(member, _)| member)
    }

    /// Whether any crash point is armed.
    pub fn armed(&self) -> bool {
        !self.crash_points.borrow().armed.is_empty()
    }

    /// Disarms every point (the nemesis's phase is over).
    pub fn disarm_all(&self) {
        self.crash_points.borrow_mut().armed.clear();
    }

    /// The members that stopped at a crash point since the last call.
    pub fn take_crashed(&self) -> Vec<(u64, CrashPoint)> {
        std::mem::take(&mut self.crash_points.borrow_mut().hit)
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<String> {
        self.state.borrow().violation().map(str::to_string)
    }

    /// How much was compared.
    pub fn summary(&self) -> String {
        self.state.borrow().summary()
    }
}

impl Observer for Invariants {
    fn extra_sync_latency(&self, member: u64) -> std::time::Duration {
        match self.slow_disk.get() {
            Some((slow, extra)) if slow == member => extra,
            _ => std::time::Duration::ZERO,
        }
    }

    fn crash_here(&self, member: u64, point: CrashPoint) -> bool {
        let mut crash_points = self.crash_points.borrow_mut();
        if !crash_points.armed.remove(&point) {
            return false;
        }
        crash_points.hit.push((member, point));
        true
    }

    fn recovered(&self, member: u64, durable_index: u64, term: u64, vote: u64) {
        self.state
            .borrow_mut()
            .recovered(member, durable_index, term, vote);
    }

    fn vote_granted(&self, member: u64, term: u64, candidate: u64) {
        self.state
            .borrow_mut()
            .vote_granted(member, term, candidate);
    }

    fn stored_state_stale(&self, member: u64, index: u64) {
        self.state.borrow_mut().stored_state_stale(member, index);
    }

    fn claimed_unsynced(&self, member: u64, what: &str) {
        self.state.borrow_mut().claimed_unsynced(member, what);
    }

    fn applied(
        &self,
        member: u64,
        index: u64,
        term: u64,
        entry_hash: u64,
        state_hash: Option<u64>,
    ) {
        self.state
            .borrow_mut()
            .applied(member, index, term, entry_hash, state_hash);
    }
}
