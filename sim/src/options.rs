//! Choices shared by the `detcd-sim` command line and the simulation
//! harness (plain Rust, so the normal build can parse them too).

/// What the simulated clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// get / put on a few keys.
    Register,
    /// get / put / append (a read, then a compare-and-swap txn) on a few keys.
    Append,
    /// register and append operations mixed.
    Mixed,
}

/// The deliberate bugs the madsim build of detcd can switch on
/// (`detcd::sabotage`), by name, with what they do.
pub const SABOTAGES: [(&str, &str); 3] = [
    ("stale-read", "serve linearizable reads locally without ReadIndex"),
    ("ack-before-fsync", "acknowledge writes before the WAL is fsynced"),
    ("double-apply", "re-apply the last entry after a restart"),
];
