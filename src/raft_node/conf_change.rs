//! Membership changes through raft: proposing, promoting a ready learner,
//! applying a change to raft, the registry and the transport.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType};
use raft::StateRole;

use crate::apply::Response;
use crate::error::Error;
use crate::membership::{Member, MembershipChange};
use crate::proto::detcdpb::MemberInfo;

use super::{waiters, FatalError, RaftNode, Reply, LEARNER_READY_PERCENT};

impl RaftNode {
    /// A raft configuration change: one member added, promoted or removed
    /// per `ConfChangeV2` (a simple change, no joint consensus; v1 entries,
    /// as etcd 3.4 writes them, are read too). The registry checks it
    /// first; raft applies it only if it passed, as etcd turns a refused
    /// change into a no-op.
    pub(super) fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), FatalError> {
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

    pub(super) fn update_transport(&mut self, change: &MembershipChange) {
        match change {
            MembershipChange::Add(member) if member.id != self.shared.member_id => {
                if let Some(urls) = crate::transport::peer_target(&member.peer_urls) {
                    self.transport.set_peer(member.id, urls);
                }
            }
            MembershipChange::UpdatePeerUrls(id, urls) if *id != self.shared.member_id => {
                if let Some(urls) = crate::transport::peer_target(urls) {
                    self.transport.set_peer(*id, urls);
                }
            }
            MembershipChange::Remove(id) => self.transport.remove_peer(*id),
            _ => {}
        }
    }

    /// Proposes a configuration change; the caller hears the outcome when
    /// it is applied.
    pub(super) fn propose_conf_change(&mut self, change: ConfChangeV2, reply: Reply<Response>) {
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
    pub(super) fn promote(&mut self, id: u64, reply: Reply<Response>) {
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
            if !self.strict_reconfig_check || state.members().ready_to_promote() {
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
pub(super) fn decode_conf_change(entry: &Entry) -> Result<(ConfChangeV2, MemberInfo), String> {
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
