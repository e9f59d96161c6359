//! The nemesis: a schedule of faults drawn from the seed before the run
//! starts, printed, then applied one at a time (each fault is held, then
//! healed, then the cluster gets a quiet gap). The same seed, member count,
//! run time and fault kinds give the same schedule, so the command a run
//! prints replays it.

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// No fault before this: the cluster elects and the clients connect.
const WARMUP: Duration = Duration::from_secs(2);
/// No fault held into the last stretch of the run.
const QUIET_END: Duration = Duration::from_secs(2);
/// A quiet gap between faults, in ms.
const GAP_MS: std::ops::Range<u64> = 500..2500;
/// How long a fault is held, in ms: long enough for elections and client
/// failover to happen inside it.
const HOLD_MS: std::ops::Range<u64> = 1000..4000;

/// How far a clock fault steps a member's clock, either way, in seconds.
const CLOCK_STEP_SECS: std::ops::RangeInclusive<i32> = 1..=30;

/// The kinds `--nemesis` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// kill -9, then restart on the same data.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Random halves, one-way, the leader isolated, a bridge (namespaces).
    Partition,
    /// Delay and loss on one member's link with tc netem (namespaces).
    Netem,
    /// MoveLeader to a random other member.
    Leader,
    /// Remove a member, wipe it, re-add it as a learner, promote it.
    Churn,
    /// Fill a member's disk (a small tmpfs) (root).
    Disk,
    /// Step a member's clock (libfaketime; Go's etcd reads the clock
    /// without libc, so it is untouched).
    Clock,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Netem,
        FaultKind::Leader,
        FaultKind::Churn,
        FaultKind::Disk,
        FaultKind::Clock,
    ];

    /// Needs root: namespaces, netem, tmpfs mounts (not with --no-netns).
    pub fn needs_root(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::Netem | FaultKind::Disk
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill(usize),
    Pause(usize),
    /// No traffic between the two sides.
    Halves(Vec<usize>, Vec<usize>),
    /// `from` cannot send to `to`.
    OneWay {
        from: usize,
        to: usize,
    },
    /// The member that leads when the fault starts is cut from the rest.
    IsolateLeader,
    /// `bridge` reaches both sides, which cannot reach each other.
    Bridge {
        bridge: usize,
        left: Vec<usize>,
        right: Vec<usize>,
    },
    Netem {
        member: usize,
        delay_ms: u32,
        jitter_ms: u32,
        loss_percent: u32,
    },
    MoveLeader(usize),
    /// Removed, wiped, re-added as a learner (while held), promoted (heal).
    Churn(usize),
    DiskFull(usize),
    /// The member's clock jumps by `offset_secs`, and back at heal.
    Clock {
        member: usize,
        offset_secs: i32,
    },
}

fn names(members: &[usize]) -> String {
    let names: Vec<String> = members.iter().map(|m| format!("m{}", m + 1)).collect();
    format!("{{{}}}", names.join(","))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(m) => write!(f, "kill -9 m{}", m + 1),
            Fault::Pause(m) => write!(f, "pause m{}", m + 1),
            Fault::Halves(a, b) => write!(f, "partition {} | {}", names(a), names(b)),
            Fault::OneWay { from, to } => write!(f, "one-way m{} -/-> m{}", from + 1, to + 1),
            Fault::IsolateLeader => write!(f, "isolate the leader"),
            Fault::Bridge {
                bridge,
                left,
                right,
            } => write!(
                f,
                "bridge m{} between {} and {}",
                bridge + 1,
                names(left),
                names(right)
            ),
            Fault::Netem {
                member,
                delay_ms,
                jitter_ms,
                loss_percent,
            } => write!(
                f,
                "netem m{}: delay {delay_ms}ms±{jitter_ms}ms, loss {loss_percent}%",
                member + 1
            ),
            Fault::MoveLeader(m) => write!(f, "move the leader to m{}", m + 1),
            Fault::Churn(m) => write!(
                f,
                "remove m{0}, wipe it, re-add it as a learner; promote at heal",
                m + 1
            ),
            Fault::DiskFull(m) => write!(f, "fill m{}'s disk", m + 1),
            Fault::Clock {
                member,
                offset_secs,
            } => write!(f, "step m{}'s clock {offset_secs:+} s", member + 1),
        }
    }
}

impl Fault {
    /// The one-way cuts (from, to) that make this partition; empty for
    /// faults that are not partitions or that depend on the leader.
    pub fn cuts(&self) -> Vec<(usize, usize)> {
        let both = |a: &[usize], b: &[usize]| {
            let mut cuts = Vec::new();
            for &x in a {
                for &y in b {
                    cuts.push((x, y));
                    cuts.push((y, x));
                }
            }
            cuts
        };
        match self {
            Fault::Halves(a, b) => both(a, b),
            Fault::OneWay { from, to } => vec![(*from, *to)],
            Fault::Bridge { left, right, .. } => both(left, right),
            _ => Vec::new(),
        }
    }
}

/// One fault of the schedule, at `at` after the run started.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{:>7.3}s for {:.3}s: {}",
            self.at.as_secs_f64(),
            self.hold.as_secs_f64(),
            self.fault
        )
    }
}

/// The schedule for a run of `time` over `nodes` members.
pub fn schedule(seed: u64, nodes: usize, kinds: &[FaultKind], time: Duration) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut steps = Vec::new();
    if kinds.is_empty() {
        return steps;
    }
    let mut t = WARMUP;
    loop {
        let at = t + Duration::from_millis(rng.gen_range(GAP_MS));
        let hold = Duration::from_millis(rng.gen_range(HOLD_MS));
        if at + hold + QUIET_END > time {
            break;
        }
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let fault = draw(&mut rng, kind, nodes);
        steps.push(Step { at, hold, fault });
        t = at + hold;
    }
    steps
}

fn draw(rng: &mut ChaCha8Rng, kind: FaultKind, nodes: usize) -> Fault {
    let mut members: Vec<usize> = (0..nodes).collect();
    members.shuffle(rng);
    match kind {
        FaultKind::Kill => Fault::Kill(members[0]),
        FaultKind::Pause => Fault::Pause(members[0]),
        FaultKind::Partition => match rng.gen_range(0..4) {
            0 => {
                let (minority, majority) = members.split_at(nodes / 2);
                let mut minority = minority.to_vec();
                let mut majority = majority.to_vec();
                minority.sort_unstable();
                majority.sort_unstable();
                Fault::Halves(minority, majority)
            }
            1 => Fault::OneWay {
                from: members[0],
                to: members[1],
            },
            2 => Fault::IsolateLeader,
            _ => {
                let rest = &members[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                let mut left = left.to_vec();
                let mut right = right.to_vec();
                left.sort_unstable();
                right.sort_unstable();
                Fault::Bridge {
                    bridge: members[0],
                    left,
                    right,
                }
            }
        },
        FaultKind::Netem => Fault::Netem {
            member: members[0],
            delay_ms: rng.gen_range(20..200),
            jitter_ms: rng.gen_range(0..50),
            loss_percent: rng.gen_range(0..30),
        },
        FaultKind::Leader => Fault::MoveLeader(members[0]),
        FaultKind::Churn => Fault::Churn(members[0]),
        FaultKind::Disk => Fault::DiskFull(members[0]),
        FaultKind::Clock => {
            let magnitude = rng.gen_range(CLOCK_STEP_SECS);
            Fault::Clock {
                member: members[0],
                offset_secs: if rng.gen_bool(0.5) {
                    magnitude
                } else {
                    -magnitude
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule() {
        let kinds = FaultKind::ALL;
        let a = schedule(7, 3, &kinds, Duration::from_secs(60));
        let b = schedule(7, 3, &kinds, Duration::from_secs(60));
        let c = schedule(8, 3, &kinds, Duration::from_secs(60));
        let text = |steps: &[Step]| steps.iter().map(Step::to_string).collect::<Vec<_>>();
        assert!(a.len() > 5);
        assert_eq!(text(&a), text(&b));
        assert_ne!(text(&a), text(&c));
    }

    #[test]
    fn faults_do_not_overlap_and_end_before_the_quiet_end() {
        let time = Duration::from_secs(60);
        let steps = schedule(1, 5, &FaultKind::ALL, time);
        for pair in steps.windows(2) {
            assert!(pair[0].at + pair[0].hold < pair[1].at);
        }
        let last = steps.last().unwrap();
        assert!(last.at + last.hold + QUIET_END <= time);
        assert!(steps[0].at >= WARMUP);
    }

    #[test]
    fn partitions_cut_both_ways_between_sides_only() {
        let fault = Fault::Bridge {
            bridge: 0,
            left: vec![1],
            right: vec![2],
        };
        assert_eq!(fault.cuts(), vec![(1, 2), (2, 1)]);
        let halves = Fault::Halves(vec![0], vec![1, 2]);
        assert_eq!(halves.cuts(), vec![(0, 1), (1, 0), (0, 2), (2, 0)]);
        assert_eq!(Fault::OneWay { from: 2, to: 0 }.cuts(), vec![(2, 0)]);
        assert!(Fault::Kill(0).cuts().is_empty());
    }
}
