//! `ColdLog`: the revisions the store handed to the on-disk backend, read
//! back from there.
//!
//! The store keeps the key index and each revision's size in memory, and
//! the values only until the backend holds them durably
//! (`Store::evict_through`); older values are read through this trait,
//! which `crate::backend` implements on the disk seam. So mvcc itself does
//! no I/O, and a store without a cold log (tests, decoded images) keeps
//! everything in memory.

use super::{Record, Revision};

/// Read access to the revisions stored on disk.
pub trait ColdLog: Send + Sync {
    /// The records at `revisions`, in the same order. Each must be
    /// stored: a missing one is an error.
    fn get(&self, revisions: &[Revision]) -> Result<Vec<Record>, String>;

    /// Every stored record from `from` up to and including main revision
    /// `through_main`, in revision order. It may include revisions a
    /// compaction removed since (their removal is committed later); the
    /// store filters them out.
    fn scan(
        &self,
        from: Revision,
        through_main: i64,
        visit: &mut dyn FnMut(Revision, Record),
    ) -> Result<(), String>;
}
