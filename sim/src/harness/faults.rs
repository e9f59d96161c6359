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

    /// The nemesis changed something just now; a quorum is `healthy` from
    /// now on (see `properties::availability`).
    pub fn stretch(&self, healthy: bool) {
        self.inner
            .lock()
            .unwrap()
            .stretches
            .push((Instant::now(), healthy));
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
