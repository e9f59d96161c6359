//! detcd-sim: the history model, history formats and linearizability checker of detcd's simulator.
//!
//! Module map (see DESIGN.md "Simulation harness"):
//! - [`harness`] (madsim build only): the simulated cluster, nemesis,
//!   workloads and the run that checks them.
//! - [`etcd_workload`] (madsim build, or the `client` feature): the etcd
//!   workload's clients, over detcd's client, on either runtime: the
//!   simulator and the jepsen-style tool run the same workload.
//! - [`workload`] (madsim build, or the `client` feature): the register
//!   and append workloads' clients and the compactor, on either runtime.
//! - [`lease_workload`], [`lock_workload`] (madsim build, or the `client`
//!   feature): the lease and lock clients whose records
//!   `properties::leases` and `properties::locks` check, on either runtime.
//! - [`watcher`] (madsim build, or the `client` feature): watch consumers
//!   that record what `properties::watch` checks, on either runtime.
//! - [`history`]: operations with invocation and completion times and an
//!   outcome (ok, definite failure, indeterminate).
//! - [`model`]: sequential specifications: a register, a many-key kv map and
//!   etcd's KV API with revisions.
//! - [`check`]: the linearizability checker (Wing & Gong search with Lowe's
//!   memoization, partitioned by key, bounded by a step budget).
//! - [`generate`]: seeded synthetic kv histories for the checker benchmark.
//! - [`format`]: readers for Jepsen's etcd logs, porcupine's kv logs and our
//!   own JSON Lines history format (which the simulator writes).
//! - [`properties`]: the lease and lock guarantees, checked over what
//!   their workloads recorded.
//! - [`report`]: the text explanation and the HTML timeline of a verdict.
//!
//! Architecture invariants: these modules are plain Rust, with no async
//! runtime, so they build the same with and without `--cfg madsim`; they
//! never read a clock (the checker's budget counts steps, so a verdict is the
//! same on every machine); no output depends on hash-map iteration order.
//! The `detcd-sim` binary (src/main.rs, src/cli/) is the only place that
//! touches files or measures wall time.

pub mod check;
#[cfg(any(madsim, feature = "client"))]
pub mod etcd_workload;
pub mod format;
pub mod generate;
#[cfg(madsim)]
pub mod harness;
pub mod history;
#[cfg(any(madsim, feature = "client"))]
pub mod lease_workload;
#[cfg(any(madsim, feature = "client"))]
pub mod lock_workload;
pub mod model;
pub mod options;
pub mod properties;
pub mod report;
#[cfg(any(madsim, feature = "client"))]
pub mod watcher;
#[cfg(any(madsim, feature = "client"))]
pub mod workload;
