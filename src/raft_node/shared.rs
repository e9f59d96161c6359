//! `Shared`: what request handlers read without going through the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::apply::StateMachine;

/// What request handlers may read without going through the loop.
#[derive(Debug)]
pub struct Shared {
    pub state: RwLock<StateMachine>,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Raft's term and the leader it knows in that term, published
    /// together so no reader sees one term's leader with another's term.
    pub(super) position: std::sync::Mutex<(u64, u64)>,
    pub(super) commit_index: AtomicU64,
    pub(super) last_index: AtomicU64,
    /// Which peers' streams are up, and since when (etcd's health checks).
    pub peer_activity: crate::transport::PeerActivity,
    /// The store's revision after the latest apply, for watchers.
    pub(crate) revision: Arc<crate::published::Published<i64>>,
    /// Set once the member is stopping: the raft loop returns (the member
    /// no longer votes) and client streams end with "server stopped".
    pub(crate) stopping: Arc<crate::published::Published<bool>>,
    /// This member's lease deadlines (`crate::lease`); the loop alone
    /// changes them, request handlers read them for TimeToLive.
    pub lease_timers: std::sync::Mutex<crate::lease::Timers>,
    /// This member's login tokens (`crate::auth::tokens`); the loop
    /// assigns and voids them as logins and auth changes apply.
    pub tokens: std::sync::Mutex<crate::auth::tokens::SimpleTokens>,
    /// The member's Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The backend, for its file's size.
    pub(crate) backend: crate::backend::Writer,
}

impl Shared {
    pub fn term(&self) -> u64 {
        self.term_and_leader().0
    }
    pub fn leader_id(&self) -> u64 {
        self.term_and_leader().1
    }
    /// (term, leader id) as raft held them at one instant.
    pub fn term_and_leader(&self) -> (u64, u64) {
        *self.position.lock().expect("position lock")
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Relaxed)
    }
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }
    /// The index of the last entry the state machine applied.
    pub fn applied_index(&self) -> u64 {
        self.state.read().expect("state lock").applied_index()
    }

    /// Stops the member: the raft loop returns after its current turn,
    /// whose writes are synced, and client streams end.
    pub fn stop(&self) {
        self.stopping.set(true);
    }

    /// Resolves once `stop` was called (at once if it already was).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Wakes whenever applying changed the store's revision.
    pub fn subscribe_revisions(&self) -> crate::published::Subscriber<i64> {
        self.revision.subscribe()
    }

    /// The backend's size as etcd reports its bbolt file's: the file
    /// (`dbSize`, `etcd_mvcc_db_total_size_in_bytes`) and, in use, the
    /// revisions it holds (`dbSizeInUse`; what compaction and
    /// defragmentation give back is the difference).
    pub fn db_sizes(&self) -> DbSizes {
        let logical = self.state.read().expect("state lock").store().size_bytes();
        let file = self.backend.file_bytes();
        DbSizes {
            file,
            in_use: logical.max(EMPTY_IN_USE_BYTES).min(file),
        }
    }

    /// The metrics in Prometheus's text format, with the gauges read on
    /// demand (the file's size) brought up to date first.
    pub fn metrics_text(&self) -> String {
        let sizes = self.db_sizes();
        self.metrics.db_total_size.set(sizes.file as i64);
        self.metrics.db_in_use_size.set(sizes.in_use as i64);
        self.metrics.encode()
    }

    /// After applying: the revision for watchers, and the metrics that
    /// follow the state, read under the one lock taken anyway.
    pub(super) fn publish_revision(&self) {
        let revision = {
            let state = self.state.read().expect("state lock");
            self.metrics
                .proposals_applied
                .set(state.applied_index() as i64);
            self.metrics
                .keys_total
                .set(state.store().key_count() as i64);
            state.store().current_revision()
        };
        self.revision.set(revision);
    }
}

/// What an empty backend has in use, as etcd's fresh bbolt file reports
/// it (`dbSizeInUse` 16384: its meta, freelist and bucket pages), so a
/// new member's Status carries the field as etcd's does.
pub const EMPTY_IN_USE_BYTES: u64 = 16 * 1024;

/// The backend's sizes in bytes (`Shared::db_sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbSizes {
    pub file: u64,
    pub in_use: u64,
}
