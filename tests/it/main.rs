//! Integration tests of the real `detcd` binary: etcdctl 3.4 against detcd
//! and the reference etcd 3.4.23, durability under kill -9, and flags.
//! One test binary for the whole crate keeps link times down.
#![cfg(not(madsim))]
// Integration tests drive real processes, files and sockets: outside the core.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

/// A test's phase log: the subscriber is installed first, so it shows in a
/// failing test's output whatever ran before (tidy:
/// `phase_logs_go_through_phase`).
macro_rules! phase {
    ($($arg:tt)*) => {{
        crate::support::init_tracing();
        tracing::info!($($arg)*);
    }};
}

mod auth;
mod cluster;
mod cluster_support;
mod conformance;
mod durability;
mod etcdctl_diff;
mod flags;
mod gateway;
mod hardening;
mod leases;
mod maintenance;
mod operations;
mod support;
mod tidy;
mod tls;
