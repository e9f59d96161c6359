//! `Error`: the operating errors of the MVCC store, with etcd's exact texts.
//!
//! Client libraries match on these strings (etcd `mvcc/kvstore.go`), so the
//! texts of `Compacted`, `FutureRevision` and `RevisionNotFound` must not
//! change.

/// An error a caller can handle; programmer errors are `assert!`s instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The requested revision is older than the compact revision (etcd
    /// `ErrCompacted`).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is newer than the current revision (etcd
    /// `ErrFutureRev`).
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// The key has no revision that answers the request (etcd
    /// `ErrRevisionNotFound`), e.g. a tombstone for a key that is not live.
    #[error("mvcc: revision not found")]
    RevisionNotFound,
    /// A snapshot image could not be decoded or is internally inconsistent.
    #[error("mvcc: corrupt snapshot image: {0}")]
    Corrupt(String),
    /// A revision the on-disk backend holds could not be read back
    /// (`ColdLog`): the member must stop rather than answer.
    #[error("mvcc: the backend cannot be read: {0}")]
    Unreadable(String),
}
