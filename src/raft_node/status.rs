//! `RaftStatus`: raft's view of itself, as etcd publishes it under
//! `raft.status` in `/debug/vars`.

use std::fmt::Write as _;

use raft::{ProgressState, StateRole};

use super::RaftNode;

/// Raft's state at one instant (etcd's `raft.Status`): progress only on a
/// leader, as etcd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub lead: u64,
    pub role: StateRole,
    pub applied: u64,
    /// (id, match, next, state) per member, by id.
    pub progress: Vec<(u64, u64, u64, ProgressState)>,
    pub lead_transferee: u64,
}

impl RaftStatus {
    /// The JSON etcd's `raft.Status.MarshalJSON` writes: ids in hex,
    /// states by Go's names.
    pub fn to_etcd_json(&self) -> String {
        let role = match self.role {
            StateRole::Follower => "StateFollower",
            StateRole::Candidate => "StateCandidate",
            StateRole::Leader => "StateLeader",
            StateRole::PreCandidate => "StatePreCandidate",
        };
        let mut json = format!(
            "{{\"id\":\"{:x}\",\"term\":{},\"vote\":\"{:x}\",\"commit\":{},\"lead\":\"{:x}\",\"raftState\":\"{role}\",\"applied\":{},\"progress\":{{",
            self.id, self.term, self.vote, self.commit, self.lead, self.applied
        );
        for (i, (id, matched, next, state)) in self.progress.iter().enumerate() {
            let state = match state {
                ProgressState::Probe => "StateProbe",
                ProgressState::Replicate => "StateReplicate",
                ProgressState::Snapshot => "StateSnapshot",
            };
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(
                json,
                "{comma}\"{id:x}\":{{\"match\":{matched},\"next\":{next},\"state\":\"{state}\"}}"
            );
        }
        let _ = write!(
            json,
            "}},\"leadtransferee\":\"{:x}\"}}",
            self.lead_transferee
        );
        json
    }
}

impl RaftNode {
    pub(super) fn raft_status(&self) -> RaftStatus {
        let raft = &self.raw.raft;
        let mut progress: Vec<_> = if raft.state == StateRole::Leader {
            raft.prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched, pr.next_idx, pr.state))
                .collect()
        } else {
            Vec::new()
        };
        progress.sort_by_key(|(id, ..)| *id);
        RaftStatus {
            id: raft.id,
            term: raft.term,
            vote: raft.vote,
            commit: raft.raft_log.committed,
            lead: raft.leader_id,
            role: raft.state,
            applied: raft.raft_log.applied,
            progress,
            lead_transferee: raft.lead_transferee.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_etcds() {
        let status = RaftStatus {
            id: 0xf2d0,
            term: 2,
            vote: 0xf2d0,
            commit: 6,
            lead: 0xf2d0,
            role: StateRole::Leader,
            applied: 6,
            progress: vec![
                (0xa, 5, 6, ProgressState::Probe),
                (0xf2d0, 6, 7, ProgressState::Replicate),
            ],
            lead_transferee: 0,
        };
        assert_eq!(
            status.to_etcd_json(),
            "{\"id\":\"f2d0\",\"term\":2,\"vote\":\"f2d0\",\"commit\":6,\"lead\":\"f2d0\",\
             \"raftState\":\"StateLeader\",\"applied\":6,\"progress\":{\
             \"a\":{\"match\":5,\"next\":6,\"state\":\"StateProbe\"},\
             \"f2d0\":{\"match\":6,\"next\":7,\"state\":\"StateReplicate\"}},\
             \"leadtransferee\":\"0\"}"
        );
        let follower = RaftStatus {
            role: StateRole::Follower,
            progress: Vec::new(),
            ..status
        };
        assert!(follower
            .to_etcd_json()
            .contains("\"raftState\":\"StateFollower\",\"applied\":6,\"progress\":{},"));
    }
}
