//! The one place domain errors become gRPC statuses, with etcd's codes and
//! strings (etcd `v3rpc/rpctypes/error.go`): client libraries parse them.

use tonic::{Code, Status};

use crate::error::Error;

pub fn code(error: &Error) -> Code {
    match error {
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::DuplicateKey
        | Error::RequestTooLarge
        | Error::MemberBadUrls
        | Error::UserEmpty
        | Error::RoleEmpty
        | Error::AuthFailed
        | Error::PermissionNotGiven
        | Error::InvalidAuthMgmt
        | Error::AuthOldRevision => Code::InvalidArgument,
        Error::PermissionDenied => Code::PermissionDenied,
        Error::InvalidAuthToken => Code::Unauthenticated,
        Error::RootUserNotExist
        | Error::RootRoleNotExist
        | Error::UserAlreadyExist
        | Error::UserNotFound
        | Error::RoleAlreadyExist
        | Error::RoleNotFound
        | Error::RoleNotGranted
        | Error::PermissionNotGranted
        | Error::AuthNotEnabled => Code::FailedPrecondition,
        Error::NoPasswordUser | Error::JwtVerifyOnly => Code::Unknown,
        Error::Compacted | Error::FutureRevision | Error::LeaseTtlTooLarge => Code::OutOfRange,
        Error::NoSpace => Code::ResourceExhausted,
        Error::LeaseNotFound => Code::NotFound,
        Error::NoLeader
        | Error::LeaderChanged
        | Error::Stopped
        | Error::Timeout
        | Error::LeaderTransferTimeout
        | Error::Unhealthy
        | Error::NotSupportedForLearner => Code::Unavailable,
        Error::NotLeader
        | Error::BadLeaderTransferee
        | Error::MemberExist
        | Error::PeerUrlExist
        | Error::MemberNotLearner
        | Error::LearnerNotReady
        | Error::TooManyLearners
        | Error::LeaseExists => Code::FailedPrecondition,
        Error::MemberNotFound => Code::NotFound,
        // etcd 3.4 maps this one to its client-side error value instead of
        // a gRPC status, so grpc-go sends it as Unknown; clients see that.
        // So does this one (`ErrTooManyRequests`).
        Error::MemberNotEnoughStarted | Error::TooManyRequests => Code::Unknown,
        // etcd's v3election returns these as plain Go errors: Unknown.
        Error::ElectionNotLeader | Error::ElectionNoLeader | Error::MissingLeaderKey => {
            Code::Unknown
        }
        Error::Corrupt => Code::DataLoss,
        Error::Disk(_) => Code::Unknown,
    }
}

/// An error of the v3lock and v3election services. etcd runs them through
/// an in-process client, whose errors are plain Go errors by the time the
/// service returns them, so gRPC sends every one as Unknown with etcd's text.
pub fn recipe_error(error: Error) -> Status {
    Status::new(Code::Unknown, error.to_string())
}

/// An auth error as etcd's maintenance services return it: the auth
/// package's own error, which reaches clients unmapped, as Unknown with
/// the auth package's text (`authMaintenanceServer.isAuthenticated`).
pub fn maintenance_auth_error(error: Error) -> Status {
    let text = match error {
        Error::UserEmpty => "auth: user name is empty".to_string(),
        Error::UserNotFound => "auth: user not found".to_string(),
        Error::PermissionDenied => "auth: permission denied".to_string(),
        Error::InvalidAuthToken => "auth: invalid auth token".to_string(),
        other => return Status::from(other),
    };
    Status::new(Code::Unknown, text)
}

/// A status as Go prints it (`status.Error(...).Error()`): etcd 3.4.23
/// puts this text in a refused watch's cancel reason.
pub fn go_status_text(error: &Error) -> String {
    let code = match code(error) {
        Code::InvalidArgument => "InvalidArgument",
        Code::PermissionDenied => "PermissionDenied",
        Code::Unauthenticated => "Unauthenticated",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Unavailable => "Unavailable",
        Code::OutOfRange => "OutOfRange",
        Code::NotFound => "NotFound",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::DataLoss => "DataLoss",
        _ => "Unknown",
    };
    format!("rpc error: code = {code} desc = {error}")
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        Status::new(code(&error), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: Error, expected_code: Code, expected_message: &str) {
        let status = Status::from(error);
        assert_eq!(status.code(), expected_code);
        assert_eq!(status.message(), expected_message);
    }

    #[test]
    fn errors_map_to_etcds_codes_and_strings() {
        check(
            Error::EmptyKey,
            Code::InvalidArgument,
            "etcdserver: key is not provided",
        );
        check(
            Error::Compacted,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        check(
            Error::FutureRevision,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        check(
            Error::LeaseNotFound,
            Code::NotFound,
            "etcdserver: requested lease not found",
        );
        check(
            Error::LeaseExists,
            Code::FailedPrecondition,
            "etcdserver: lease already exists",
        );
        check(
            Error::LeaseTtlTooLarge,
            Code::OutOfRange,
            "etcdserver: too large lease TTL",
        );
        check(
            Error::TooManyOps,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        check(
            Error::DuplicateKey,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );
        check(
            Error::NoSpace,
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        );
        check(
            Error::LeaderChanged,
            Code::Unavailable,
            "etcdserver: leader changed",
        );
        check(
            Error::MemberNotEnoughStarted,
            Code::Unknown,
            "etcdserver: re-configuration failed due to not enough started members",
        );
        check(
            Error::TooManyRequests,
            Code::Unknown,
            "etcdserver: too many requests",
        );
        check(
            Error::Timeout,
            Code::Unavailable,
            "etcdserver: request timed out",
        );
    }
}
