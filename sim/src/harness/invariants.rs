//! Raft invariants checked online, while the run goes on, from what every
//! member's raft loop reports through `detcd::probe`:
//! - log matching: every member that applies index i applies the same
//!   entry (term and contents) there — committed entries never change;
//! - state machine safety: members that applied the same index hold the
//!   same state (hash sampled every `STATE_HASH_EVERY` indices);
//! - durability: a member never restarts with less on disk than it had
//!   applied — what it applied it had persisted, and disks keep what was
//!   synced.
//!
//! Election safety (one leader per term) is checked by `Monitor`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use detcd::probe::{CrashPoint, Observer};

#[derive(Default)]
pub struct Invariants {
    state: RefCell<InvariantState>,
    crash_points: RefCell<CrashPoints>,
}

/// The crash points the nemesis armed, and the members that hit one.
#[derive(Default)]
struct CrashPoints {
    /// Each fires once, on the first member that reaches it.
    armed: std::collections::BTreeSet<CrashPoint>,
    hit: Vec<(u64, CrashPoint)>,
}

#[derive(Default)]
struct InvariantState {
    /// index -> (term, entry hash, member that first applied it)
    entries: BTreeMap<u64, (u64, u64, u64)>,
    /// index -> (state hash, member that first reported it)
    states: BTreeMap<u64, (u64, u64)>,
    /// member -> highest index it ever applied
    applied: BTreeMap<u64, u64>,
    violation: Option<String>,
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
        self.state.borrow().violation.clone()
    }

    /// How many entries and state hashes were compared.
    pub fn summary(&self) -> String {
        let state = self.state.borrow();
        format!(
            "{} applied indices matched across members, {} sampled state hashes",
            state.entries.len(),
            state.states.len()
        )
    }
}

impl InvariantState {
    fn violate(&mut self, message: String) {
        self.violation.get_or_insert(message);
    }
}

impl Observer for Invariants {
    fn crash_here(&self, member: u64, point: CrashPoint) -> bool {
        let mut crash_points = self.crash_points.borrow_mut();
        if !crash_points.armed.remove(&point) {
            return false;
        }
        crash_points.hit.push((member, point));
        true
    }

    fn recovered(&self, member: u64, durable_index: u64) {
        let mut state = self.state.borrow_mut();
        let applied = state.applied.get(&member).copied().unwrap_or(0);
        if durable_index < applied {
            state.violate(format!(
                "durability: member {member:x} had applied index {applied} but restarted with a log ending at {durable_index}"
            ));
        }
    }

    fn applied(
        &self,
        member: u64,
        index: u64,
        term: u64,
        entry_hash: u64,
        state_hash: Option<u64>,
    ) {
        let mut state = self.state.borrow_mut();
        let highest = state.applied.entry(member).or_default();
        *highest = (*highest).max(index);
        match state.entries.get(&index).copied() {
            None => {
                state.entries.insert(index, (term, entry_hash, member));
            }
            Some((known_term, known_hash, first)) if (known_term, known_hash) != (term, entry_hash) => state.violate(format!(
                "log matching: member {first:x} applied term {known_term} entry {known_hash:016x} at index {index}, \
                 member {member:x} applied term {term} entry {entry_hash:016x}"
            )),
            Some(_) => {}
        }
        if let Some(hash) = state_hash {
            match state.states.get(&index).copied() {
                None => {
                    state.states.insert(index, (hash, member));
                }
                Some((known, first)) if known != hash => state.violate(format!(
                    "state machine safety: after index {index} member {first:x} has state {known:016x}, member {member:x} has {hash:016x}"
                )),
                Some(_) => {}
            }
        }
    }
}
