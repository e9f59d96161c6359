//! Durable storage: the disk seam, the write-ahead log, snapshot files, and
//! the storage engine of the coming on-disk backend (redb over the seam).
//!
//! Architecture invariants: nothing outside this module touches files; only
//! `real_disk` touches the OS; nothing here knows MVCC or gRPC (snapshot
//! application state is opaque bytes).

pub mod backend;
pub mod blocking;
pub mod disk;
pub mod real_disk;
pub mod record;
pub mod sim_disk;
pub mod snapshot;
pub mod synced;
pub mod wal;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
pub mod crash_at_sync;
#[cfg(test)]
mod tests;

pub use disk::Disk;
pub use real_disk::RealDisk;
pub use sim_disk::SimDisk;
