//! detcd: an etcd v3 compatible, Raft-replicated key-value store whose core
//! runs on tokio or, unchanged, inside madsim's deterministic simulator.
//! See ARCHITECTURE.md for the code map and invariants.

pub mod api;
pub mod apply;
pub mod auth;
pub mod backend;
pub mod backup;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
#[cfg(madsim)]
pub mod probe;
pub mod proto;
pub mod published;
pub mod raft_node;
pub mod rng;
#[cfg(madsim)]
pub mod sabotage;
pub mod server;
pub mod storage;
#[cfg(not(madsim))]
pub mod tcp_proxy;
pub mod tls;
pub mod transport;
pub mod watch;

/// The etcd version whose API detcd serves, reported by Status, /version
/// and the metrics, so client libraries that gate features on the server
/// version treat us as it.
pub const ETCD_API_VERSION: &str = "3.4.23";
/// The cluster version a new cluster's leader sets, as etcd 3.4.23's does
/// (/version's `etcdcluster`, the `cluster` bucket of a backup).
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";
