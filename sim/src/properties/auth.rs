//! The auth property, checked over what the auth workload
//! (`harness::auth`) recorded: an administrator grants and revokes one
//! role's readwrite permission on the secret key while its users keep
//! reading and writing that key, directly and through the else branch of a
//! txn whose compare always fails. Auth changes are linearizable (they go
//! through raft, and requests are checked when they apply or are served
//! after a read index), so:
//!
//! - a user's request that began after a revoke was acknowledged, and
//!   ended before any later grant was sent, must have been refused: the
//!   permission was certainly off the whole time;
//! - one that began after a grant was acknowledged, and ended before any
//!   later revoke was sent, must not have been refused for permission.

use std::time::Duration;

/// One permission change the administrator sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionChange {
    pub grant: bool,
    pub invoked: Duration,
    /// When it was acknowledged; `None`: it failed or its fate is unknown
    /// (it may still apply later).
    pub acknowledged: Option<Duration>,
}

/// How a user's request on the secret key ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Refused with "permission denied".
    Denied,
    /// Anything else (timeouts, no leader, old auth revision...).
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretAccess {
    pub client: u64,
    /// What it was: "put", "get", "txn-else".
    pub what: &'static str,
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome,
}

/// The permission's state over `[from, to]` if certain: `Some(true)` if a
/// grant was acknowledged before `from` and no revoke was sent until `to`,
/// `Some(false)` the other way round.
fn certain_state(changes: &[PermissionChange], from: Duration, to: Duration) -> Option<bool> {
    let latest_acknowledged = changes
        .iter()
        .filter(|change| change.acknowledged.is_some_and(|at| at < from))
        .max_by_key(|change| change.acknowledged)?;
    let state = latest_acknowledged.grant;
    let contradicted = changes.iter().any(|change| {
        change.grant != state
            && change.invoked <= to
            && change
                .acknowledged
                .is_none_or(|at| at > latest_acknowledged.acknowledged.unwrap())
    });
    (!contradicted).then_some(state)
}

/// Every violation found; empty when the record holds.
pub fn check(changes: &[PermissionChange], accesses: &[SecretAccess]) -> Vec<String> {
    let mut violations = Vec::new();
    for access in accesses {
        let state = certain_state(changes, access.invoked, access.completed);
        match (state, access.outcome) {
            (Some(false), Outcome::Succeeded) => violations.push(format!(
                "client {}'s {} of the secret key succeeded between {:?} and {:?}, while its permission was revoked",
                access.client, access.what, access.invoked, access.completed
            )),
            (Some(true), Outcome::Denied) => violations.push(format!(
                "client {}'s {} of the secret key was denied between {:?} and {:?}, while its permission was granted",
                access.client, access.what, access.invoked, access.completed
            )),
            _ => {}
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn change(grant: bool, invoked: u64, acknowledged: Option<u64>) -> PermissionChange {
        PermissionChange {
            grant,
            invoked: secs(invoked),
            acknowledged: acknowledged.map(secs),
        }
    }

    fn access(invoked: u64, completed: u64, outcome: Outcome) -> SecretAccess {
        SecretAccess {
            client: 1,
            what: "put",
            invoked: secs(invoked),
            completed: secs(completed),
            outcome,
        }
    }

    #[test]
    fn only_certain_windows_judge() {
        let changes = [
            change(true, 0, Some(1)),
            change(false, 10, Some(11)),
            change(true, 20, None),
        ];
        // Granted for sure between 1 and 10.
        assert!(check(&changes, &[access(2, 3, Outcome::Succeeded)]).is_empty());
        assert_eq!(check(&changes, &[access(2, 3, Outcome::Denied)]).len(), 1);
        // Straddles the revoke: anything goes.
        assert!(check(&changes, &[access(9, 12, Outcome::Succeeded)]).is_empty());
        assert!(check(&changes, &[access(9, 12, Outcome::Denied)]).is_empty());
        // Revoked for sure between 11 and 20.
        assert_eq!(
            check(&changes, &[access(12, 13, Outcome::Succeeded)]).len(),
            1
        );
        assert!(check(&changes, &[access(12, 13, Outcome::Other)]).is_empty());
        // After a grant of unknown fate: nothing is certain.
        assert!(check(&changes, &[access(21, 22, Outcome::Succeeded)]).is_empty());
        assert!(check(&changes, &[access(30, 31, Outcome::Denied)]).is_empty());
    }
}
