//! The leader's lease duties on its ticks, and each member's lease
//! deadlines after an apply.

use std::time::Duration;

use raft::StateRole;
use tokio::sync::oneshot;

use crate::apply::Response;
use crate::error::Error;
use crate::proto::detcdpb::{
    internal_request::Request, LeaseCheckpoint, LeaseCheckpoints, LeaseExpiries, LeaseExpiry,
};

use super::RaftNode;

impl RaftNode {
    /// The leader's lease duties, on its ticks: propose expiries for
    /// leases past their deadline, and checkpoint remaining TTLs. Only a
    /// leader that has applied its own term's first entry acts: before
    /// that it may not have applied renewals its predecessor committed.
    pub(super) fn tick_leases(&mut self) {
        let now = self.clock.elapsed();
        if self.raw.raft.state != StateRole::Leader || self.applied_term != self.raw.raft.term {
            // A new leader checkpoints at once: what it holds is the
            // freshest view any member has.
            self.next_lease_check = now;
            self.next_lease_checkpoint = now;
            // Expiries it proposed in an earlier term may have been lost
            // with it: as leader again it proposes them at once.
            (self.shared.lease_timers.lock().expect("lease timers lock")).forget_proposed();
            return;
        }
        let mut proposals = Vec::new();
        if now >= self.next_lease_check {
            #[cfg(madsim)]
            let late = crate::sabotage::active(crate::sabotage::Sabotage::LeaseLateExpiry);
            #[cfg(not(madsim))]
            let late = false;
            let every = crate::lease::EXPIRY_CHECK_INTERVAL * if late { 20 } else { 1 };
            self.next_lease_check = now + every;
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
    pub(super) fn on_lease_applied(
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
                    let remaining = Duration::from_millis(*remaining_millis as u64);
                    timers.checkpoint(*id, started_at + remaining);
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
            _ => {}
        }
    }
}
