//! Deterministic randomized election timeouts.
//!
//! raft-rs draws each randomized election timeout from `thread_rng`, which
//! escapes the simulator. After every call into the RawNode the driver
//! overrides it with a value derived from the node's seed and the raft
//! state, so it never depends on raft's own draw, yet differs per node and
//! per term, so split votes still resolve (DESIGN.md, seam 3).

use raft::{RawNode, StateRole, Storage};

use crate::rng::stable_hash;

#[derive(Clone, Copy, Debug)]
pub struct ElectionTimeouts {
    node_seed: u64,
    /// Inclusive lower bound, in ticks (raft's election tick).
    min_ticks: usize,
    /// Exclusive upper bound, in ticks (twice the election tick).
    max_ticks: usize,
}

impl ElectionTimeouts {
    pub fn new(node_seed: u64, election_ticks: usize) -> ElectionTimeouts {
        ElectionTimeouts {
            node_seed,
            min_ticks: election_ticks,
            max_ticks: 2 * election_ticks,
        }
    }

    pub fn fix<S: Storage>(&self, raw: &mut RawNode<S>) {
        let raft = &mut raw.raft;
        let role = match raft.state {
            StateRole::Follower => 0,
            StateRole::Candidate => 1,
            StateRole::Leader => 2,
            StateRole::PreCandidate => 3,
        };
        let draw = stable_hash(&[self.node_seed, raft.id, raft.term, role, raft.leader_id]);
        let want = self.min_ticks + (draw % (self.max_ticks - self.min_ticks) as u64) as usize;
        if raft.randomized_election_timeout() != want {
            raft.set_randomized_election_timeout(want);
        }
    }
}
