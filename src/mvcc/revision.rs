//! `Revision`: the position of one change in the store's history.
//!
//! Port of etcd `mvcc/revision.go`. Every write transaction gets one main
//! revision; each change inside it gets the next sub revision, starting at 0.

use std::fmt;

/// A (main, sub) pair, ordered by main revision and then by sub revision.
///
/// The field order matters: the derived `Ord` compares `main` first, which is
/// exactly etcd's `revision.GreaterThan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The revision of the write transaction; the store-wide logical clock.
    pub main: i64,
    /// The index of the change within its write transaction.
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}_{}", self.main, self.sub)
    }
}
