//! Domain errors of the server, one variant per etcd error a client can see.
//!
//! The texts are etcd's (`etcdserver/api/v3rpc/rpctypes/error.go`), because
//! client libraries match on them. `api::status` is the one place that turns
//! them into gRPC status codes.

use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The raft loop has too many callers waiting already.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A failure of this member's own disk outside a request's data path
    /// (a backup's scratch file): Go's plain error, Unknown.
    #[error("{0}")]
    Disk(String),
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// etcd's `ErrNoPasswordUser`, which etcd does not map to a gRPC
    /// status: clients see Unknown with the auth package's text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// etcd's `ErrVerifyOnly`: a JWT setup without a private key cannot
    /// log anyone in (unmapped in etcd too: Unknown).
    #[error("auth: token signing attempted with verify-only key")]
    JwtVerifyOnly,
    /// etcd `concurrency.ErrElectionNotLeader` (v3election).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// etcd `concurrency.ErrElectionNoLeader` (v3election).
    #[error("election: no leader")]
    ElectionNoLeader,
    /// etcd v3election's `ErrMissingLeaderKey`.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
}

impl Error {
    /// The error an etcd string names (errors forwarded between members
    /// travel as their etcd text); an unknown text is a timeout.
    pub fn from_etcd_string(text: &str) -> Error {
        const KNOWN: &[Error] = &[
            Error::MemberNotFound,
            Error::MemberNotLearner,
            Error::LearnerNotReady,
            Error::TooManyLearners,
            Error::MemberNotEnoughStarted,
            Error::NotLeader,
            Error::NoLeader,
            Error::LeaderChanged,
            Error::Stopped,
            Error::TooManyRequests,
            Error::Timeout,
        ];
        KNOWN
            .iter()
            .find(|error| error.to_string() == text)
            .cloned()
            .unwrap_or(Error::Timeout)
    }
}

impl From<crate::mvcc::Error> for Error {
    fn from(error: crate::mvcc::Error) -> Error {
        match error {
            crate::mvcc::Error::Compacted => Error::Compacted,
            crate::mvcc::Error::FutureRevision => Error::FutureRevision,
            // The first two cannot reach a client: the apply layer never
            // tombstones a dead key, and a corrupt image stops the node at
            // start. An unreadable backend stops the member too, and the
            // read that found it fails rather than answer.
            crate::mvcc::Error::RevisionNotFound
            | crate::mvcc::Error::Corrupt(_)
            | crate::mvcc::Error::Unreadable(_) => Error::Corrupt,
        }
    }
}
