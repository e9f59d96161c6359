//! The `detcd-sim` subcommands (binary only: the library never touches files or clocks).

// This is the seam clippy.toml asks for: the command line is the one place
// that reads and writes files and measures wall time (for people only;
// verdicts depend on the step budget).
#![allow(clippy::disallowed_methods)]

pub mod check;
pub mod generate;
pub mod run;

/// Exit codes of `detcd-sim check`, part of its contract with scripts and CI.
pub const EXIT_LINEARIZABLE: u8 = 0;
pub const EXIT_NOT_LINEARIZABLE: u8 = 1;
pub const EXIT_UNKNOWN: u8 = 2;
/// sysexits' EX_USAGE: unreadable or malformed input, or bad arguments.
pub const EXIT_UNREADABLE: u8 = 64;

// Exit codes of `detcd-sim run` / `replay` (used by the madsim build; the
// normal build passes the simulation's own exit code through).
#[cfg_attr(not(madsim), allow(dead_code))]
pub const EXIT_PASS: u8 = 0;
#[cfg_attr(not(madsim), allow(dead_code))]
pub const EXIT_CORRECTNESS: u8 = 1;
#[cfg_attr(not(madsim), allow(dead_code))]
pub const EXIT_LIVENESS: u8 = 2;
pub const EXIT_CRASH: u8 = 3;
