//! The simulation harness (madsim build only): the production detcd server
//! on simulated nodes, clients recording a history, a swarm-style nemesis,
//! then the checks (DESIGN.md "Simulation harness", TigerBeetle's VOPR).
//!
//! One seed decides everything: which faults are enabled and how often
//! (drawn per run and printed), every delay, crash and partition, and so the
//! whole run; `replay` repeats it bit for bit.
//!
//! Time here is the simulator's own clock (madsim answers `Instant::now`
//! with virtual time, the same for every seed), which the clippy.toml
//! ban on OS time would flag: the members read theirs through their
//! `Clock` seam, which the simulator skews per member; the harness, which
//! judges them, reads the one global clock on purpose.
#![allow(clippy::disallowed_methods)]

pub mod api_probe;
pub mod auth;
pub mod churn;
pub mod cluster;
pub mod faults;
pub mod hostile;
pub mod invariants;
pub mod monitor;
pub mod nemesis;
pub mod network;
pub mod operator;
pub mod options;
pub mod run;
pub mod trace;
