//! What the nemesis did that a time-based check must allow for, recorded
//! as it happens (through `SimCluster`) and handed to the property checks
//! as `properties::Faults`.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::properties::availability::Stretch;
use crate::properties::Faults;

#[derive(Clone, Default)]
pub struct FaultLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    out: Vec<(Instant, usize)>,
    skewed_at: Option<Instant>,
    /// When the nemesis changed something, and whether a quorum was
    /// healthy from then on.
    stretches: Vec<(Instant, bool)>,
    /// What the last stretch started from (see `stretch`).
    last_state: Option<u64>,
}

impl FaultLog {
    /// `out` members are out from now on.
    pub fn out_changed(&self, out: usize) {
        self.inner.lock().unwrap().out.push((Instant::now(), out));
    }

    /// A clock was skewed now.
    pub fn skewed(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.skewed_at.get_or_insert_with(Instant::now);
    }

    /// The nemesis may have changed something just now; a quorum is
    /// `healthy` from now on (see `properties::availability`). A new
    /// stretch starts if `state` (a digest of what health depends on)
    /// changed, or if the change disturbs the cluster without changing it
    /// (`disturbed`: a member crashed and restarted at once, a leader
    /// move, maintenance).
    pub fn stretch(&self, healthy: bool, state: u64, disturbed: bool) {
        let mut inner = self.inner.lock().unwrap();
        if !disturbed && inner.last_state == Some(state) {
            return;
        }
        inner.last_state = Some(state);
        inner.stretches.push((Instant::now(), healthy));
    }

    /// The nemesis is done: the heal that follows restarts members.
    pub fn end_stretches(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.last_state = None;
        inner.stretches.push((Instant::now(), false));
    }

    /// The record, as times since `started`.
    pub fn summary(&self, started: Instant) -> Faults {
        let inner = self.inner.lock().unwrap();
        let since = |at: Instant| at.saturating_duration_since(started);
        Faults {
            skewed_at: inner.skewed_at.map(since),
            out: inner
                .out
                .iter()
                .map(|&(at, out)| (since(at), out))
                .collect(),
            stretches: inner
                .stretches
                .iter()
                .map(|&(at, healthy)| Stretch {
                    from: since(at),
                    healthy,
                })
                .collect(),
        }
    }
}
