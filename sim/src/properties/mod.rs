//! Checks of the properties other than linearizability, over records the
//! workloads keep: leases (`leases`) and locks (`locks`). Plain Rust, like
//! the checker: times are virtual time since the run started, and nothing
//! here reads a clock, so every verdict is reproducible from the record.

pub mod leases;
pub mod locks;
pub mod revisions;

use std::time::Duration;

/// The faults a time-based check must allow for.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// When a clock was first skewed, if ever. The nemesis's skews step
    /// clocks by seconds and drift them by up to 10%: past the bound the
    /// lease guarantee assumes.
    pub skewed_at: Option<Duration>,
    /// (from when, how many members were out from then on), in time order.
    /// Out: crashed, powered off, or stopped by a full disk, all of which
    /// restart a member's lease timers from their checkpoints.
    pub out: Vec<(Duration, usize)>,
}

impl Faults {
    pub fn skewed_before(&self, at: Duration) -> bool {
        self.skewed_at.is_some_and(|skewed| skewed <= at)
    }

    /// How long, between `from` and `to`, at least `majority` members were
    /// out at once.
    pub fn majority_out_within(&self, from: Duration, to: Duration, majority: usize) -> Duration {
        let mut total = Duration::ZERO;
        for (position, &(start, out)) in self.out.iter().enumerate() {
            if out < majority {
                continue;
            }
            let end = self.out.get(position + 1).map_or(to, |&(next, _)| next);
            let (start, end) = (start.max(from), end.min(to));
            if end > start {
                total += end - start;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_out_time_is_clipped_to_the_window() {
        let s = Duration::from_secs;
        let faults = Faults {
            skewed_at: Some(s(5)),
            out: vec![(s(1), 1), (s(2), 2), (s(4), 1), (s(6), 3), (s(7), 0)],
        };
        assert_eq!(faults.majority_out_within(s(0), s(10), 2), s(3));
        assert_eq!(
            faults.majority_out_within(s(3), s(6) + s(1) / 2, 2),
            s(1) + s(1) / 2
        );
        assert_eq!(faults.majority_out_within(s(0), s(10), 3), s(1));
        assert!(!faults.skewed_before(s(4)));
        assert!(faults.skewed_before(s(5)));
    }
}
