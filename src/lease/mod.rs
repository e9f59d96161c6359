//! Leases (etcd `lease/lessor.go`), in two halves split by what each may
//! depend on.
//!
//! - `Leases` is replicated state. Only applying committed entries changes
//!   it, so it is deterministic and part of the state image and hash: each
//!   lease's granted TTL, its checkpointed remaining TTL, the raft index of
//!   its latest grant or renewal, and the keys attached to it.
//! - `Timers` is each member's own deadline per lease, on its own `Clock`.
//!   It is never replicated. Only the leader acts on it, by proposing
//!   expiries; followers keep theirs running so that a new leader resumes
//!   every lease where it stood instead of restarting it.
//!
//! Why the deadlines hold across leader changes (ARCHITECTURE.md states the
//! guarantee): every event that (re)starts a lease — grant, keepalive —
//! or measures it — a checkpoint — is a raft entry, and each member starts
//! the deadline at the instant it first persisted that entry
//! (`started_at`); a checkpoint only ever brings it in. A follower
//! receives an entry after the leader proposed it, so its deadline is never
//! earlier than the leader's (clocks running at the same rate); a keepalive
//! is answered only once committed, so any later leader knows of it. A new
//! leader waits until it has applied its own term's first entry before it
//! expires anything, so renewals the old leader committed are never missed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::mvcc::KeyValue;
use crate::proto::detcdpb::StoredLease;

/// Largest TTL a lease may have, in seconds (etcd `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How often the leader looks for expired leases (etcd's revoke loop).
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Expiries proposed per second at most (etcd `leaseRevokeRate`).
pub const EXPIRIES_PER_SECOND: usize = 1000;
/// An expiry proposed this long ago without effect is proposed again (etcd
/// `expiredLeaseRetryInterval`): the leader may have lost the proposal.
pub const EXPIRY_RETRY: Duration = Duration::from_secs(3);
/// How often the leader checkpoints remaining TTLs. etcd's default is five
/// minutes and off; ours is on, and short, because a checkpoint is what a
/// restarted or lagging member resumes from: a member that received a
/// lease's entries late (it was cut off, then caught up) runs that lease
/// long by its lag only until the next checkpoint reaches it.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Leases per checkpoint entry (etcd `maxLeaseCheckpointBatchSize`).
pub const CHECKPOINT_BATCH_MAX: usize = 1000;
/// Leases held at most; a grant past it is refused as "too many requests"
/// so a client cannot grow every member's memory without bound.
pub const LEASES_MAX: usize = 1_000_000;

/// One lease, as every member holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The granted TTL, in seconds.
    pub ttl: i64,
    /// The remaining TTL of the latest checkpoint in milliseconds; 0: none
    /// since the latest grant or renewal, so the full TTL counts.
    pub remaining_millis: i64,
    /// The raft index of the lease's grant or latest renewal.
    pub renewed_at: u64,
    /// The keys attached to the lease.
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// What a member resumes the lease from after a restart or a snapshot:
    /// the checkpointed remaining TTL, else the full TTL.
    pub fn resume_from(&self) -> Duration {
        if self.remaining_millis > 0 {
            Duration::from_millis(self.remaining_millis as u64)
        } else {
            ttl_duration(self.ttl)
        }
    }
}

/// A TTL in seconds as a duration (negative TTLs never reach here).
pub fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

/// The replicated lease table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leases {
    by_id: BTreeMap<i64, Lease>,
    /// Which lease each attached key belongs to.
    key_lease: BTreeMap<Vec<u8>, i64>,
}

impl Leases {
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_id.values()
    }

    /// An unused id for a grant that asked for none, picked from the raft
    /// index so every member picks the same one.
    pub fn pick_id(&self, index: u64) -> i64 {
        let mut attempt = 0u64;
        loop {
            let id = (crate::rng::stable_hash(&[index, attempt]) & (i64::MAX as u64)) as i64;
            if id != 0 && !self.by_id.contains_key(&id) {
                return id;
            }
            attempt += 1;
        }
    }

    /// etcd `lessor.Grant`, applied at raft `index`.
    pub fn grant(&mut self, id: i64, ttl: i64, index: u64) -> Result<&Lease, Error> {
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.by_id.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        if self.by_id.len() >= LEASES_MAX {
            return Err(Error::TooManyRequests);
        }
        let lease = Lease {
            id,
            ttl,
            remaining_millis: 0,
            renewed_at: index,
            keys: BTreeSet::new(),
        };
        Ok(self.by_id.entry(id).or_insert(lease))
    }

    /// A keepalive applied at raft `index`: the full TTL counts again.
    pub fn renew(&mut self, id: i64, index: u64) -> Result<i64, Error> {
        let lease = self.by_id.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        lease.renewed_at = index;
        lease.remaining_millis = 0;
        Ok(lease.ttl)
    }

    /// Records a checkpoint, unless the lease is gone or was renewed after
    /// the leader measured it. Whether it took effect.
    pub fn checkpoint(&mut self, id: i64, remaining_millis: i64, renewed_at: u64) -> bool {
        match self.by_id.get_mut(&id) {
            Some(lease) if lease.renewed_at == renewed_at => {
                lease.remaining_millis = remaining_millis.max(1);
                true
            }
            _ => false,
        }
    }

    /// Removes a lease, answering its attached keys in key order (the
    /// caller deletes them). The keys stay attached until it does.
    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        self.by_id.remove(&id)
    }

    /// Keeps the key → lease map in step with one write transaction's
    /// changes (etcd attaches and detaches in `storeTxnWrite.put/delete`):
    /// an overwritten or deleted key leaves its old lease, a put with a
    /// lease joins it.
    pub fn record_changes(&mut self, changes: &[Arc<KeyValue>]) {
        for change in changes {
            #[cfg(madsim)]
            if crate::sabotage::active(crate::sabotage::Sabotage::OverwriteKeepsLease)
                && change.lease == 0
                && !change.is_tombstone()
            {
                continue;
            }
            if let Some(old) = self.key_lease.remove(&change.key) {
                if let Some(lease) = self.by_id.get_mut(&old) {
                    lease.keys.remove(&change.key);
                }
            }
            if change.is_tombstone() || change.lease == 0 {
                continue;
            }
            if let Some(lease) = self.by_id.get_mut(&change.lease) {
                lease.keys.insert(change.key.clone());
                self.key_lease.insert(change.key.clone(), change.lease);
            }
        }
    }

    /// Words for the state hash, in a fixed order.
    pub fn hash_words(&self) -> Vec<u64> {
        let mut words = Vec::new();
        for lease in self.by_id.values() {
            words.extend([
                lease.id as u64,
                lease.ttl as u64,
                lease.remaining_millis as u64,
                lease.renewed_at,
                lease.keys.len() as u64,
            ]);
            for key in &lease.keys {
                words.push(crate::rng::stable_hash(
                    &key.iter().map(|&b| u64::from(b)).collect::<Vec<_>>(),
                ));
            }
        }
        words
    }

    /// The image holds the leases without their keys: the store's live
    /// key-values name their lease, and `attach_live` rebuilds the sets
    /// from them, as etcd's `restoreLeases` does.
    pub fn to_stored(&self) -> Vec<StoredLease> {
        (self.by_id.values())
            .map(|lease| StoredLease {
                id: lease.id,
                ttl: lease.ttl,
                remaining_millis: lease.remaining_millis,
                renewed_at: lease.renewed_at,
            })
            .collect()
    }

    pub fn from_stored(stored: Vec<StoredLease>) -> Result<Leases, String> {
        let mut leases = Leases::default();
        for lease in stored {
            let id = lease.id;
            let lease = Lease {
                id,
                ttl: lease.ttl,
                remaining_millis: lease.remaining_millis,
                renewed_at: lease.renewed_at,
                keys: BTreeSet::new(),
            };
            if leases.by_id.insert(id, lease).is_some() {
                return Err(format!("lease {id:x} appears twice in the image"));
            }
        }
        Ok(leases)
    }

    /// Attaches the live keys that name a lease (after decoding).
    pub fn attach_live<'a>(&mut self, live: impl Iterator<Item = (&'a [u8], i64)>) {
        for (key, lease) in live {
            if let Some(entry) = self.by_id.get_mut(&lease) {
                entry.keys.insert(key.to_vec());
                self.key_lease.insert(key.to_vec(), lease);
            }
        }
    }
}

/// One member's deadlines, on its own clock (see the module docs).
#[derive(Debug, Default)]
pub struct Timers {
    deadlines: BTreeMap<i64, Duration>,
    /// Expiries this member proposed as leader, and when.
    proposed: BTreeMap<i64, Duration>,
    /// Where the next checkpoint batch starts (a round robin over ids).
    checkpoint_cursor: i64,
}

impl Timers {
    /// (Re)starts a lease: it runs out `ttl` after `started_at`.
    pub fn start(&mut self, id: i64, started_at: Duration, ttl: Duration) {
        self.deadlines.insert(id, started_at + ttl);
        self.proposed.remove(&id);
    }

    /// A checkpoint the leader measured when it proposed it: the lease
    /// runs out by `deadline`, unless this member already has it running
    /// out sooner. A member that persists the entry late (behind a
    /// partition, until it heals) counts the remaining time from then:
    /// taken as is, that would stretch the lease past its TTL, and past
    /// the deadline this member already kept (found by the simulator,
    /// seed 200167 of the lease workload).
    pub fn checkpoint(&mut self, id: i64, deadline: Duration) {
        let kept = self.deadlines.entry(id).or_insert(deadline);
        *kept = (*kept).min(deadline);
    }

    pub fn remove(&mut self, id: i64) {
        self.deadlines.remove(&id);
        self.proposed.remove(&id);
    }

    /// Forgets which expiries were proposed: a member that is not leader
    /// now proposes none, and as leader again must not wait out
    /// `EXPIRY_RETRY` for ones an earlier term may have lost.
    pub fn forget_proposed(&mut self) {
        self.proposed.clear();
    }

    /// After a restart or an installed snapshot: every lease resumes from
    /// its checkpoint (else its full TTL) from `now`.
    pub fn reset(&mut self, now: Duration, leases: &Leases) {
        self.deadlines = leases
            .iter()
            .map(|lease| (lease.id, now + lease.resume_from()))
            .collect();
        self.proposed.clear();
    }

    pub fn deadline(&self, id: i64) -> Option<Duration> {
        self.deadlines.get(&id).copied()
    }

    /// Time left on a lease, zero once past its deadline.
    pub fn remaining(&self, id: i64, now: Duration) -> Option<Duration> {
        self.deadline(id)
            .map(|deadline| deadline.saturating_sub(now))
    }

    /// Leases past their deadline that need an expiry proposed (never
    /// proposed, or proposed longer than `EXPIRY_RETRY` ago), at most
    /// `max`, soonest deadline first. They count as proposed from `now`.
    pub fn take_expired(&mut self, now: Duration, max: usize) -> Vec<i64> {
        let mut expired: Vec<(Duration, i64)> = self
            .deadlines
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .filter(|(id, _)| {
                self.proposed
                    .get(id)
                    .is_none_or(|at| now.saturating_sub(*at) >= EXPIRY_RETRY)
            })
            .map(|(id, deadline)| (*deadline, *id))
            .collect();
        expired.sort();
        expired.truncate(max);
        for (_, id) in &expired {
            self.proposed.insert(*id, now);
        }
        expired.into_iter().map(|(_, id)| id).collect()
    }

    /// The next checkpoint batch: up to `max` leases from the cursor on
    /// (wrapping), with their remaining time at `now`.
    pub fn checkpoint_batch(&mut self, now: Duration, max: usize) -> Vec<(i64, Duration)> {
        let window: Vec<(i64, Duration)> = self
            .deadlines
            .range(self.checkpoint_cursor..)
            .chain(self.deadlines.range(..self.checkpoint_cursor))
            .take(max)
            .map(|(id, deadline)| (*id, *deadline))
            .collect();
        if let Some((last, _)) = window.last() {
            self.checkpoint_cursor = last.saturating_add(1);
        }
        // A lease past its deadline (its expiry not yet committed) is
        // checkpointed too, as all but over, so a member that comes back
        // does not hold it for a whole TTL more.
        window
            .into_iter()
            .map(|(id, deadline)| {
                let remaining = deadline.saturating_sub(now);
                (id, remaining.max(Duration::from_millis(1)))
            })
            .collect()
    }

    /// Lease ids, soonest deadline first (etcd lists leases by expiry).
    pub fn by_deadline(&self, leases: &Leases) -> Vec<i64> {
        let mut ids: Vec<(Duration, i64)> = leases
            .iter()
            .map(|lease| (self.deadline(lease.id).unwrap_or(Duration::MAX), lease.id))
            .collect();
        ids.sort();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::LeaseLeasesDropsTheLast) {
            ids.pop();
        }
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests;
