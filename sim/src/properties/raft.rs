//! Raft's safety properties, checked online from what the harness
//! collects while a run goes on (the monitor's Status polls and the
//! members' `detcd::probe` reports). Each violation is named:
//! - election safety: at most one leader per term (§5.2): every member
//!   that names a leader for a term names the same one;
//! - log matching: every member that applies index i applies the same
//!   entry (term and contents) there; committed entries never change;
//! - state machine safety: members that applied the same index hold the
//!   same state (the harness samples a state hash);
//! - durability: a member never restarts with less in its log than it had
//!   applied: what it applied it had persisted, and disks keep what was
//!   synced; and its backend is never handed a state besides the
//!   revisions (members, alarms, leases, auth) other than the applied one;
//! - acknowledged durability: a member acknowledges appends, and raft
//!   counts its entries as persisted, only as far as its WAL has synced
//!   them (checked as each acknowledgement leaves, so a bug that acks
//!   early is caught without waiting for a power loss to land in it);
//! - vote durability: a member that sent its vote in a term restarts in a
//!   later term or with that vote (§5.2's persistent `votedFor`), so it
//!   can never vote twice in one term.
//!
//! Plain Rust with unit tests; the harness only forwards reports. The
//! first violation is kept: later ones are usually its consequences.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct RaftInvariants {
    /// term -> (leader id, the member that reported it)
    leaders: BTreeMap<u64, (u64, u64)>,
    /// index -> (term, entry hash, member that first applied it)
    entries: BTreeMap<u64, (u64, u64, u64)>,
    /// index -> (state hash, member that first reported it)
    states: BTreeMap<u64, (u64, u64)>,
    /// member -> highest index it ever applied
    applied: BTreeMap<u64, u64>,
    /// member -> (term, candidate) of the latest vote it sent
    votes: BTreeMap<u64, (u64, u64)>,
    violation: Option<String>,
}

impl RaftInvariants {
    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    fn violate(&mut self, message: String) {
        self.violation.get_or_insert(message);
    }

    /// `reporter` says `leader` leads in `term` (ids; 0 means none).
    pub fn leader_reported(&mut self, term: u64, leader: u64, reporter: u64) {
        if leader == 0 {
            return;
        }
        match self.leaders.get(&term).copied() {
            None => {
                self.leaders.insert(term, (leader, reporter));
            }
            Some((known, first)) if known != leader => self.violate(format!(
                "election safety: in term {term} member {first:x} named leader {known:x} and member {reporter:x} named {leader:x}"
            )),
            Some(_) => {}
        }
    }

    /// `member` applied the entry of `term` with contents hashing to
    /// `entry_hash` at `index`, reaching `state_hash` if it was sampled.
    pub fn applied(
        &mut self,
        member: u64,
        index: u64,
        term: u64,
        entry_hash: u64,
        state_hash: Option<u64>,
    ) {
        let highest = self.applied.entry(member).or_default();
        *highest = (*highest).max(index);
        match self.entries.get(&index).copied() {
            None => {
                self.entries.insert(index, (term, entry_hash, member));
            }
            Some((known_term, known_hash, first)) if (known_term, known_hash) != (term, entry_hash) => self.violate(format!(
                "log matching: member {first:x} applied term {known_term} entry {known_hash:016x} at index {index}, \
                 member {member:x} applied term {term} entry {entry_hash:016x}"
            )),
            Some(_) => {}
        }
        if let Some(hash) = state_hash {
            match self.states.get(&index).copied() {
                None => {
                    self.states.insert(index, (hash, member));
                }
                Some((known, first)) if known != hash => self.violate(format!(
                    "state machine safety: after index {index} member {first:x} has state {known:016x}, member {member:x} has {hash:016x}"
                )),
                Some(_) => {}
            }
        }
    }

    /// `member` restarted with a log that ends at `durable_index`.
    /// `member`'s backend would hold a state besides the revisions other
    /// than the one it applied through `index`.
    pub fn stored_state_stale(&mut self, member: u64, index: u64) {
        self.violate(format!(
            "durability: after index {index} member {member:x}'s backend would hold members, alarms, leases or auth other than it applied: a change kept only in memory"
        ));
    }

    /// `member` claimed more of its log durable than its WAL had synced:
    /// an acknowledgement a crash could take back.
    pub fn claimed_unsynced(&mut self, member: u64, what: &str) {
        self.violate(format!("durability: member {member:x} {what}"));
    }

    pub fn recovered(&mut self, member: u64, durable_index: u64, term: u64, vote: u64) {
        let applied = self.applied.get(&member).copied().unwrap_or(0);
        if durable_index < applied {
            self.violate(format!(
                "durability: member {member:x} had applied index {applied} but restarted with a log ending at {durable_index}"
            ));
        }
        if let Some(&(voted_term, candidate)) = self.votes.get(&member) {
            if term < voted_term || (term == voted_term && vote != candidate) {
                self.violate(format!(
                    "vote durability: member {member:x} sent its vote in term {voted_term} to {candidate:x} but restarted in term {term} having voted for {vote:x}: it may vote twice in one term"
                ));
            }
        }
    }

    /// `member` sent its vote in `term` to `candidate`.
    pub fn vote_granted(&mut self, member: u64, term: u64, candidate: u64) {
        let latest = self.votes.entry(member).or_insert((term, candidate));
        if term >= latest.0 {
            *latest = (term, candidate);
        }
    }

    /// Terms with a known leader.
    pub fn terms_seen(&self) -> usize {
        self.leaders.len()
    }

    /// How many applied entries and state hashes were compared.
    pub fn summary(&self) -> String {
        format!(
            "{} applied indices matched across members, {} sampled state hashes",
            self.entries.len(),
            self.states.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RaftInvariants;

    #[test]
    fn two_leaders_in_one_term_break_election_safety() {
        let mut raft = RaftInvariants::default();
        raft.leader_reported(2, 0xa, 1);
        raft.leader_reported(2, 0xa, 2);
        raft.leader_reported(3, 0xb, 1);
        raft.leader_reported(4, 0, 1);
        assert_eq!(raft.violation(), None);
        assert_eq!(raft.terms_seen(), 2);
        raft.leader_reported(3, 0xc, 2);
        assert!(raft.violation().unwrap().starts_with("election safety"));
    }

    #[test]
    fn a_different_entry_at_an_applied_index_breaks_log_matching() {
        let mut raft = RaftInvariants::default();
        raft.applied(1, 5, 2, 0x55, None);
        raft.applied(2, 5, 2, 0x55, None);
        assert_eq!(raft.violation(), None);
        raft.applied(3, 5, 3, 0x55, None);
        assert!(raft.violation().unwrap().starts_with("log matching"));
    }

    #[test]
    fn a_different_state_at_an_index_breaks_state_machine_safety() {
        let mut raft = RaftInvariants::default();
        raft.applied(1, 8, 2, 0x8, Some(0x100));
        raft.applied(2, 8, 2, 0x8, Some(0x100));
        raft.applied(3, 8, 2, 0x8, None);
        assert_eq!(raft.violation(), None);
        raft.applied(3, 8, 2, 0x8, Some(0x101));
        assert!(raft
            .violation()
            .unwrap()
            .starts_with("state machine safety"));
    }

    #[test]
    fn claiming_more_than_the_wal_synced_breaks_durability() {
        let mut raft = RaftInvariants::default();
        raft.claimed_unsynced(
            1,
            "acknowledged entries through 7 to 2 with its WAL synced through 6",
        );
        let violation = raft.violation().unwrap();
        assert!(
            violation.starts_with("durability: member 1 acknowledged"),
            "{violation}"
        );
    }

    #[test]
    fn restarting_below_the_applied_index_breaks_durability() {
        let mut raft = RaftInvariants::default();
        raft.applied(1, 9, 2, 0x9, None);
        raft.recovered(1, 9, 2, 0);
        raft.recovered(2, 0, 0, 0);
        assert_eq!(raft.violation(), None);
        raft.recovered(1, 8, 2, 0);
        let violation = raft.violation().unwrap().to_string();
        assert!(violation.starts_with("durability"));
        // The first violation is the one kept.
        raft.leader_reported(1, 0xa, 1);
        raft.leader_reported(1, 0xb, 2);
        assert_eq!(raft.violation(), Some(violation.as_str()));
    }

    #[test]
    fn restarting_without_a_sent_vote_breaks_vote_durability() {
        let mut raft = RaftInvariants::default();
        raft.vote_granted(1, 3, 0xa);
        // The vote a member sent comes back with it, or a later term does.
        raft.recovered(1, 0, 3, 0xa);
        raft.recovered(1, 0, 4, 0);
        // A vote for itself is not one it sent; another member's restart
        // is its own.
        raft.recovered(2, 0, 3, 0xb);
        assert_eq!(raft.violation(), None);
        raft.recovered(1, 0, 3, 0);
        assert!(raft.violation().unwrap().starts_with("vote durability"));
    }

    #[test]
    fn restarting_in_an_earlier_term_than_a_sent_vote_breaks_vote_durability() {
        let mut raft = RaftInvariants::default();
        raft.vote_granted(1, 5, 0xa);
        raft.vote_granted(1, 4, 0xb);
        raft.recovered(1, 0, 5, 0xa);
        assert_eq!(raft.violation(), None);
        raft.recovered(1, 0, 4, 0xb);
        assert!(raft.violation().unwrap().starts_with("vote durability"));
    }
}
