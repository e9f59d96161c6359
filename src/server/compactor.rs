//! Auto-compaction, as etcd 3.4's `--auto-compaction-mode` and
//! `--auto-compaction-retention` ask: only the leader compacts, through
//! raft like any compaction request.
//!
//! - `periodic`: keep `retention` of history. Every tenth of the
//!   retention (at most every 6 minutes) the leader notes the current
//!   revision; once per retention (at most hourly) it compacts to the
//!   revision it noted a retention ago (etcd `compactor.Periodic`).
//! - `revision`: keep `retention` revisions. Every `REVISION_INTERVAL` the
//!   leader compacts to the current revision minus the retention, if that
//!   moved (etcd `compactor.Revision`).
//!
//! `Schedule` is the decision alone, over a clock reading and a revision,
//! so it is unit-tested without a server.

use std::collections::VecDeque;
use std::time::Duration;

use super::Server;
use crate::proto::etcdserverpb::{CompactionRequest, RangeRequest};

/// How often the revision compactor looks (etcd's `revInterval`).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The periodic compactor compacts at most this far apart (etcd: 1 hour).
pub const PERIODIC_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// Revisions noted per compaction interval (etcd's `retryDivisor`).
pub const PERIODIC_DIVISOR: u32 = 10;

pub use crate::config::AutoCompaction as Mode;

/// When to look next, and what to compact when.
#[derive(Debug)]
pub struct Schedule {
    mode: Mode,
    /// Periodic: (when, revision) noted, oldest first.
    noted: VecDeque<(Duration, i64)>,
    last_compaction: Duration,
    compacted: i64,
}

impl Schedule {
    pub fn new(mode: Mode, now: Duration) -> Schedule {
        Schedule {
            mode,
            noted: VecDeque::new(),
            last_compaction: now,
            compacted: 0,
        }
    }

    /// How long to wait between looks.
    pub fn interval(&self) -> Duration {
        match self.mode {
            Mode::Off => Duration::MAX,
            Mode::Periodic(period) => period.min(PERIODIC_INTERVAL_MAX) / PERIODIC_DIVISOR,
            Mode::Revision(_) => REVISION_INTERVAL,
        }
    }

    /// A look at `now`, with the store at `revision`: the revision to
    /// compact to, if it is time.
    pub fn look(&mut self, now: Duration, revision: i64) -> Option<i64> {
        match self.mode {
            Mode::Off => None,
            Mode::Revision(keep) => {
                let target = revision - keep;
                (target > self.compacted && target > 0).then_some(target)
            }
            Mode::Periodic(period) => {
                self.noted.push_back((now, revision));
                let compact_every = period.min(PERIODIC_INTERVAL_MAX);
                if now.saturating_sub(self.last_compaction) < compact_every {
                    return None;
                }
                // The newest revision noted at least a retention ago.
                let cutoff = now.checked_sub(period)?;
                while self.noted.len() > 1 && self.noted[1].0 <= cutoff {
                    self.noted.pop_front();
                }
                let &(noted_at, target) = self.noted.front()?;
                (noted_at <= cutoff && target > self.compacted && target > 0).then_some(target)
            }
        }
    }

    /// A compaction to `revision` went through (or was already done).
    pub fn compacted(&mut self, now: Duration, revision: i64) {
        self.compacted = self.compacted.max(revision);
        self.last_compaction = now;
    }
}

/// Runs until the member stops: the leader compacts on schedule.
pub async fn run(server: Server, mode: Mode) {
    if mode == Mode::Off {
        return;
    }
    tracing::info!(?mode, "auto-compaction enabled");
    let clock = server.clock().clone();
    let mut schedule = Schedule::new(mode, clock.elapsed());
    while let Some(leads) = server.leads_after(schedule.interval()).await {
        if !leads {
            continue;
        }
        let probe = RangeRequest {
            key: b"compactor".to_vec(),
            keys_only: true,
            limit: 1,
            serializable: true,
            ..RangeRequest::default()
        };
        let Ok(current) = server.range(probe).await else {
            continue;
        };
        let revision = current.header.map_or(0, |header| header.revision);
        let Some(target) = schedule.look(clock.elapsed(), revision) else {
            continue;
        };
        let request = CompactionRequest {
            revision: target,
            physical: false,
        };
        match server.compact(request).await {
            Ok(_) => {
                tracing::info!(revision = target, "auto-compacted");
                schedule.compacted(clock.elapsed(), target);
            }
            Err(crate::error::Error::Compacted) => schedule.compacted(clock.elapsed(), target),
            Err(error) => tracing::warn!(revision = target, %error, "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn periodic_keeps_one_retention_of_history() {
        let mut schedule = Schedule::new(Mode::Periodic(s(10)), s(0));
        assert_eq!(schedule.interval(), s(1));
        // Revision = 100 + time: a look every second.
        let mut compactions = Vec::new();
        for t in 1..=35 {
            if let Some(target) = schedule.look(s(t), 100 + t as i64) {
                schedule.compacted(s(t), target);
                compactions.push((t, target));
            }
        }
        // Every 10 s, to the revision noted 10 s before (the first look
        // is at 1 s).
        assert_eq!(compactions, [(11, 101), (21, 111), (31, 121)]);
    }

    #[test]
    fn revision_mode_keeps_the_last_revisions_and_skips_when_nothing_moved() {
        let mut schedule = Schedule::new(Mode::Revision(100), s(0));
        assert_eq!(schedule.interval(), REVISION_INTERVAL);
        assert_eq!(schedule.look(s(300), 50), None);
        assert_eq!(schedule.look(s(300), 250), Some(150));
        schedule.compacted(s(300), 150);
        assert_eq!(schedule.look(s(600), 250), None);
        assert_eq!(schedule.look(s(900), 400), Some(300));
    }
}
