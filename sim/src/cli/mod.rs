//! The `detcd-sim` subcommands (binary only: the library never touches files or clocks).

// This is the seam clippy.toml asks for: the command line is the one place
// that reads and writes files and measures wall time (for people only;
// verdicts depend on the step budget).
#![allow(clippy::disallowed_methods)]

pub mod check;

/// Exit codes of `detcd-sim check`, part of its contract with scripts and CI.
pub const EXIT_LINEARIZABLE: u8 = 0;
pub const EXIT_NOT_LINEARIZABLE: u8 = 1;
pub const EXIT_UNKNOWN: u8 = 2;
/// sysexits' EX_USAGE: unreadable or malformed input, or bad arguments.
pub const EXIT_UNREADABLE: u8 = 64;
