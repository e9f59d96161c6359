//! Leader changes, stepping down on stop, published status, answered reads.

use std::sync::atomic::Ordering;

use raft::StateRole;
use tokio::sync::oneshot;

use crate::proto::detcdpb::internal_request::Request;

use super::{waiters, RaftNode};

impl RaftNode {
    /// A stopping leader hands leadership to the voter that holds the most
    /// of its log (etcd's `TransferLeadership` on stop), so the cluster
    /// does not wait out an election timeout. The transferee, if any.
    pub(super) fn step_down(&mut self) -> Option<u64> {
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

    pub(super) fn on_leader_change(&mut self, leader_id: u64, role: StateRole) {
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
                self.publish();
            }
            self.announce_published();
        }
    }

    /// Tells the cluster our client URLs (etcd's publish); made again at
    /// every leader change, and every `PUBLISH_RETRY` (`retry_publish`),
    /// until it has been applied.
    fn publish(&mut self) {
        let (reply, _) = oneshot::channel();
        self.propose(Request::Publish(self.attributes.clone()), reply);
        self.publish_proposed_at = Some(self.clock.elapsed());
    }

    /// A publish that was lost on its way to the leader (a dropped
    /// forward, a leader that stepped down before appending it) is made
    /// again, as etcd's publish retries after each request timeout. A
    /// member never published counts as unstarted, and the strict
    /// reconfiguration check then refuses to remove another member for
    /// good (the simulator's churn found it: seed 302004 of the lock
    /// workload).
    pub(super) fn retry_publish(&mut self) {
        let due = self.publish_proposed_at.is_some_and(|proposed_at| {
            self.clock.elapsed().saturating_sub(proposed_at) >= super::PUBLISH_RETRY
        });
        if due && !self.published && self.known_leader != raft::INVALID_ID {
            self.publish();
        }
    }

    pub(super) fn publish_status(&self) {
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

    pub(super) fn answer_reads(&mut self) {
        let applied = self.shared.applied_index();
        self.reads.applied(applied);
    }
}
