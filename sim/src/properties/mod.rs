//! Checks of the properties other than linearizability, over records the
//! harness keeps: raft's safety properties (`raft`), leases (`leases`),
//! locks (`locks`), auth (`auth`), revisions (`revisions`), reads at past
//! revisions and serializable reads (`past_reads`), etcd's watch guarantees
//! (`watch`), response headers (`headers`), convergence after the heal
//! (`convergence`) and availability while a quorum is healthy
//! (`availability`). Plain Rust, like the
//! checker: times are virtual time since the run started, and nothing here
//! reads a clock, so every verdict is reproducible from the record.

pub mod auth;
pub mod availability;
pub mod convergence;
pub mod headers;
pub mod leases;
pub mod locks;
pub mod past_reads;
pub mod raft;
pub mod revisions;
pub mod watch;

use std::time::Duration;

/// The faults a time-based check must allow for.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// When a clock was first skewed, if ever. The nemesis's skews step
    /// clocks by seconds and drift them by up to 10%: past the bound the
    /// lease guarantee assumes.
    pub skewed_at: Option<Duration>,
    /// (from when, how many members were out from then on), in time order.
    /// Out: crashed, powered off, or stopped by a full disk; coming back
    /// restarts a member's lease timers from their checkpoints.
    pub out: Vec<(Duration, usize)>,
    /// The nemesis's changes, in time order, each with whether a quorum
    /// was healthy from then on (`availability`).
    pub stretches: Vec<availability::Stretch>,
}

impl Faults {
    pub fn skewed_before(&self, at: Duration) -> bool {
        self.skewed_at.is_some_and(|skewed| skewed <= at)
    }

    /// The last instant in (`from`, `to`) at which a member came back
    /// (after a crash, a power loss or a full disk): one fewer member out.
    /// A member that comes back resumes its leases from their checkpoints,
    /// so until the leader's next checkpoint reaches it, it may hold a
    /// lease up to a full TTL from that instant.
    pub fn last_restart_within(&self, from: Duration, to: Duration) -> Option<Duration> {
        self.out
            .windows(2)
            .filter(|pair| pair[1].1 < pair[0].1)
            .map(|pair| pair[1].0)
            .rfind(|at| *at > from && *at < to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_where_fewer_members_are_out() {
        let s = Duration::from_secs;
        let faults = Faults {
            skewed_at: Some(s(5)),
            out: vec![
                (s(1), 1),
                (s(2), 2),
                (s(4), 1),
                (s(6), 2),
                (s(6), 1),
                (s(7), 0),
            ],
            ..Faults::default()
        };
        assert_eq!(faults.last_restart_within(s(0), s(10)), Some(s(7)));
        assert_eq!(
            faults.last_restart_within(s(0), s(6) + s(1) / 2),
            Some(s(6))
        );
        assert_eq!(faults.last_restart_within(s(0), s(3)), None);
        assert!(!faults.skewed_before(s(4)));
        assert!(faults.skewed_before(s(5)));
    }
}
