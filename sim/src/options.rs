//! Choices shared by the `detcd-sim` command line and the simulation
//! harness (plain Rust, so the normal build can parse them too).

/// What the simulated clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// get / put / cas on a few keys.
    Register,
    /// single- and multi-key appends (a read, then a txn comparing mod
    /// revisions) and multi-key reads on a few keys.
    Append,
    /// register and append operations mixed.
    Mixed,
}

/// The deliberate bugs the madsim build of detcd can switch on
/// (`detcd::sabotage`), by name, with what they do.
/// `harness.rs` checks it matches the madsim build's list.
pub const SABOTAGES: [(&str, &str); 6] = [
    (
        "stale-read",
        "serve linearizable reads locally without ReadIndex",
    ),
    (
        "ack-before-fsync",
        "acknowledge writes before the WAL is fsynced",
    ),
    (
        "double-apply",
        "apply the first key-value write after a restart twice",
    ),
    (
        "corruption-as-torn-tail",
        "drop a WAL record that fails its checksum as if torn",
    ),
    ("watch-gap", "watchers skip events at every 16th revision"),
    (
        "follower-ack-before-fsync",
        "followers acknowledge appends before their fsync (power loss catches it)",
    ),
];
