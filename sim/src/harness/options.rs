//! What one simulation run does: the command-line choices plus the swarm
//! options drawn from the seed.

use std::fmt;
use std::time::Duration;

use madsim::rand::Rng;

pub use crate::options::Workload;

/// Fixed by the user.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub nodes: usize,
    /// Simulated seconds of the safety phase (faults on).
    pub duration: Duration,
    pub workload: Workload,
    pub sabotage: detcd::sabotage::Sabotage,
}

/// Drawn from the seed (swarm testing: each run enables a different mix of
/// faults at different rates, which finds more bugs than one fixed mix).
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmOptions {
    pub clients: usize,
    pub keys: usize,
    pub crash: bool,
    pub pause: bool,
    pub disk_full: bool,
    /// Bit rot on a crashed member's disk (crashing one if none is down).
    pub disk_corruption: bool,
    pub partition: bool,
    pub message_faults: bool,
    pub clock_skew: bool,
    /// An operator compacts every few seconds during the safety phase.
    pub compaction: bool,
    /// A client sends hostile requests (`hostile.rs`) during the safety phase.
    pub hostile: bool,
    /// The power fails on every member, or a majority, at once.
    pub power_loss: bool,
    /// The nemesis crashes members at named points in the code.
    pub crash_points: bool,
    /// An operator moves leadership (Maintenance.MoveLeader) during faults.
    pub leader_moves: bool,
    /// An operator defragments or takes a backup (Maintenance.Defragment,
    /// Maintenance.Snapshot) during faults.
    pub maintenance: bool,
    /// An operator replaces a member (remove, wipe, re-add as a learner,
    /// promote) during faults (`churn.rs`).
    pub churn: bool,
    /// One member's incoming replication is delayed, so it lags while
    /// clients keep reading from it.
    pub lagging: bool,
    /// Mean pause between two nemesis actions.
    pub nemesis_interval: Duration,
    /// Per-message probabilities (parts per million) while message faults are on.
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,
    pub delay_ppm: u32,
}

impl SwarmOptions {
    pub fn draw(rng: &mut impl Rng) -> SwarmOptions {
        SwarmOptions {
            clients: rng.gen_range(2..=5),
            // At least two keys: one key's history is one partition for the
            // checker, and long single-key append histories are its hard case.
            keys: rng.gen_range(2..=5),
            crash: rng.gen_bool(0.6),
            pause: rng.gen_bool(0.4),
            disk_full: rng.gen_bool(0.3),
            disk_corruption: rng.gen_bool(0.3),
            partition: rng.gen_bool(0.6),
            message_faults: rng.gen_bool(0.5),
            clock_skew: rng.gen_bool(0.4),
            compaction: rng.gen_bool(0.5),
            nemesis_interval: Duration::from_millis(rng.gen_range(300..3000)),
            drop_ppm: rng.gen_range(0..200_000),
            duplicate_ppm: rng.gen_range(0..100_000),
            delay_ppm: rng.gen_range(0..200_000),
            // Drawn last, so the draws before it keep their values.
            hostile: rng.gen_bool(0.5),
            power_loss: rng.gen_bool(0.5),
            crash_points: rng.gen_bool(0.5),
            leader_moves: rng.gen_bool(0.5),
            maintenance: rng.gen_bool(0.5),
            churn: rng.gen_bool(0.4),
            lagging: rng.gen_bool(0.4),
        }
    }
}

impl fmt::Display for SwarmOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clients={} keys={} crash={} pause={} disk-full={} disk-corruption={} partition={} message-faults={} (drop {}‰ dup {}‰ delay {}‰) clock-skew={} compaction={} hostile={} power-loss={} crash-points={} leader-moves={} maintenance={} churn={} lagging={} nemesis-every~{:?}",
            self.clients,
            self.keys,
            self.crash,
            self.pause,
            self.disk_full,
            self.disk_corruption,
            self.partition,
            self.message_faults,
            self.drop_ppm / 1000,
            self.duplicate_ppm / 1000,
            self.delay_ppm / 1000,
            self.clock_skew,
            self.compaction,
            self.hostile,
            self.power_loss,
            self.crash_points,
            self.leader_moves,
            self.maintenance,
            self.churn,
            self.lagging,
            self.nemesis_interval
        )
    }
}
