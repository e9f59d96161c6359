//! detcd-jepsen: real server processes (detcd, or etcd 3.4.23 for
//! comparison), real sockets, real fsync, under a seeded nemesis; the
//! history is judged by the simulator's own checker and properties.
//!
//! One run: start the members (each in a network namespace of its own, or
//! on loopback with `--no-netns`), run the simulator's workload clients
//! (etcd, register, append) and two watchers over gRPC for `--time`
//! seconds while the nemesis applies its schedule, heal everything,
//! require the members to converge (equal HashKV at one revision), then
//! check the history with the etcd model (revisions included) and the
//! past-read property, or the kv model and the revision property, and
//! the watches with etcd's watch guarantees. The run's directory holds the
//! history, the schedule, each member's log and an HTML report.
//!
//! Module map: `tool` is the run itself (arguments, the nemesis loop,
//! convergence, the checks); `cluster` starts, kills, pauses and restarts
//! the processes; `net` builds and removes the namespaces and cuts or
//! shapes links; `nemesis` draws the schedule from the seed; `report`
//! measures and draws.

// A tool, not the core: it spawns processes, writes files and reads the
// wall clock on purpose (see clippy.toml; tests/it/tidy.rs lists it).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[cfg(not(madsim))]
mod cluster;
#[cfg(not(madsim))]
mod nemesis;
#[cfg(not(madsim))]
mod net;
#[cfg(not(madsim))]
mod report;
#[cfg(not(madsim))]
mod tool;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    tool::main()
}

/// Real processes need the real runtime: the simulation build has none.
#[cfg(madsim)]
fn main() {
    eprintln!("detcd-jepsen runs real processes: build it without --cfg madsim");
    std::process::exit(64);
}
