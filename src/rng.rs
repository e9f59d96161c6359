//! The randomness seam: a per-node seeded generator.
//!
//! Production seeds it from the OS once at start; simulation seeds it from
//! the run's seed, so one number decides every draw the node makes.
#![allow(clippy::disallowed_methods)] // The one module allowed to draw OS randomness (clippy.toml).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A node's random source. Not shared between nodes.
#[derive(Clone, Debug)]
pub struct NodeRng {
    seed: u64,
    rng: ChaCha8Rng,
}

impl NodeRng {
    pub fn from_seed(seed: u64) -> NodeRng {
        NodeRng {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Seeds from the operating system.
    #[cfg(not(madsim))]
    pub fn from_os() -> NodeRng {
        NodeRng::from_seed(rand::rngs::OsRng.next_u64())
    }

    /// In simulation, from the simulation's seeded generator. The OS source
    /// would leak real randomness: on Linux `getrandom` is a raw syscall
    /// madsim cannot intercept (found by `cargo sim run --check-determinism`).
    #[cfg(madsim)]
    pub fn from_os() -> NodeRng {
        NodeRng::from_seed(madsim::rand::random::<u64>())
    }

    /// The seed this generator started from; raft's election timeouts are
    /// derived from it (see `raft_node::election`).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// A stable 64-bit FNV-1a hash (the `fnv` crate), for values that must be
/// identical across processes and runs (std's hasher is randomly keyed).
pub fn stable_hash(words: &[u64]) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = fnv::FnvHasher::default();
    for word in words {
        hasher.write(&word.to_le_bytes());
    }
    hasher.finish()
}
