//! Auth (etcd `auth/store.go`, `auth/range_perm_cache.go`), in the same
//! two halves as leases:
//!
//! - `AuthStore` is replicated state: whether auth is on, the auth
//!   revision, users (bcrypt hashes, roles) and roles (key permissions).
//!   Only applying committed entries changes it; it is part of the state
//!   image and hash. Apply checks every client request against it, with the
//!   user and auth revision the proposer attached (etcd's `authApplierV3`),
//!   so a request is judged by the permissions in force when it applies.
//! - `tokens::SimpleTokens` is each member's own table of login tokens
//!   with their TTLs, on its `Clock`, never replicated (etcd keeps simple
//!   tokens in memory too: a restarted member forgets them and clients log
//!   in again).
//!
//! Passwords never enter the log. The proposer checks a login's password
//! against the user's hash, or hashes a new password, outside the raft
//! loop (`password`), and proposes only the hash; a login's entry names
//! the hash it was checked against, so a password changed in between
//! voids it.

#[cfg(not(madsim))]
pub mod jwt;
pub mod password;
#[cfg(test)]
mod tests;
pub mod tokens;

#[cfg(not(madsim))]
pub use jwt::JwtProvider;

/// The simulator runs without JWT (`--auth-token jwt` is refused there).
#[cfg(madsim)]
#[derive(Debug)]
pub enum JwtProvider {}

#[cfg(madsim)]
impl JwtProvider {
    pub fn sign(&self, _: &str, _: u64, _: i64) -> Result<String, Error> {
        match *self {}
    }
    pub fn verify(&self, _: &str, _: i64) -> Option<AuthInfo> {
        match *self {}
    }
}

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use crate::error::Error;
use crate::proto::authpb::{self, permission::Type as PermType};
use crate::proto::detcdpb::{AuthState, RequestAuth};
use crate::proto::etcdserverpb::{request_op, RequestOp, TxnRequest};

/// The user that must exist, with the root role, before auth is enabled,
/// and that can never be deleted or lose that role while auth is on.
pub const ROOT_USER: &str = "root";
/// The role that may do everything. It need not exist to be granted.
pub const ROOT_ROLE: &str = "root";

/// Who a request runs as: the user its token names (empty: none) and the
/// auth revision the token was checked at (etcd `auth.AuthInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

impl AuthInfo {
    pub fn to_proto(&self) -> RequestAuth {
        RequestAuth {
            username: self.username.clone(),
            revision: self.revision,
        }
    }

    pub fn from_proto(auth: &RequestAuth) -> AuthInfo {
        AuthInfo {
            username: auth.username.clone(),
            revision: auth.revision,
        }
    }
}

/// What a request does to a key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct User {
    /// The bcrypt hash; empty for a user added with `--no-password`.
    password_hash: Vec<u8>,
    roles: BTreeSet<String>,
    no_password: bool,
}

/// A role's permissions, sorted by key then range end, one per range
/// (etcd's `permSlice`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Role {
    perms: Vec<authpb::Permission>,
}

/// The replicated auth state (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    /// Enabled at some point: etcd's backend holds its `enabled` key.
    enabled_once: bool,
    /// Moves on every change that can change an answer: users, roles,
    /// permissions, enabling and disabling.
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthStore {
    /// Auth off, no users or roles, revision 1 (etcd's `NewAuthStore`).
    fn default() -> AuthStore {
        AuthStore {
            enabled: false,
            enabled_once: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// What an applied auth change means for the members' login tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEffect {
    None,
    /// The user's tokens are void (deleted, or a new password).
    InvalidateUser(String),
    /// Every token is void (auth was disabled).
    InvalidateAll,
}

impl AuthStore {
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn bump(&mut self) {
        self.revision += 1;
    }

    /// The bcrypt hash a login's password is checked against: `None` if
    /// no login as this user can succeed (unknown, or no password).
    pub fn password_hash(&self, name: &str) -> Option<&[u8]> {
        self.users
            .get(name)
            .filter(|user| !user.no_password)
            .map(|user| user.password_hash.as_slice())
    }

    /// etcd `CheckPassword`'s refusals before the bcrypt comparison; the
    /// hash to compare with.
    pub fn login_hash(&self, name: &str) -> Result<Vec<u8>, Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(Error::AuthFailed)?;
        if user.no_password {
            return Err(Error::NoPasswordUser);
        }
        Ok(user.password_hash.clone())
    }

    /// etcd `AuthEnable`: the root user must exist and hold the root role.
    /// Enabling twice changes nothing; enabling does not move the
    /// revision (etcd reloads it), disabling does.
    pub fn enable(&mut self) -> Result<(), Error> {
        if self.enabled {
            return Ok(());
        }
        let root = self.users.get(ROOT_USER).ok_or(Error::RootUserNotExist)?;
        if !root.roles.contains(ROOT_ROLE) {
            return Err(Error::RootRoleNotExist);
        }
        self.enabled = true;
        self.enabled_once = true;
        Ok(())
    }

    pub fn disable(&mut self) -> TokenEffect {
        if !self.enabled {
            return TokenEffect::None;
        }
        self.enabled = false;
        self.bump();
        TokenEffect::InvalidateAll
    }

    /// A login, its password already checked against `password_hash`.
    pub fn authenticate(&self, name: &str, password_hash: &[u8]) -> Result<(), Error> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        match self.password_hash(name) {
            Some(hash) if hash == password_hash => Ok(()),
            _ => Err(Error::AuthFailed),
        }
    }

    pub fn user_add(
        &mut self,
        name: &str,
        password_hash: &[u8],
        no_password: bool,
    ) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(Error::UserAlreadyExist);
        }
        self.users.insert(
            name.to_string(),
            User {
                password_hash: password_hash.to_vec(),
                roles: BTreeSet::new(),
                no_password,
            },
        );
        self.bump();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str) -> Result<TokenEffect, Error> {
        if self.enabled && name == ROOT_USER {
            return Err(Error::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(Error::UserNotFound)?;
        self.bump();
        Ok(TokenEffect::InvalidateUser(name.to_string()))
    }

    pub fn user_change_password(
        &mut self,
        name: &str,
        password_hash: &[u8],
    ) -> Result<TokenEffect, Error> {
        // The options stay: a --no-password user still cannot log in.
        let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
        user.password_hash = password_hash.to_vec();
        self.bump();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::PasswordChangeKeepsTokens) {
            return Ok(TokenEffect::None);
        }
        Ok(TokenEffect::InvalidateUser(name.to_string()))
    }

    /// etcd `UserGrantRole`: granting a role the user holds changes nothing.
    pub fn user_grant_role(&mut self, name: &str, role: &str) -> Result<(), Error> {
        if !self.users.contains_key(name) {
            return Err(Error::UserNotFound);
        }
        if role != ROOT_ROLE && !self.roles.contains_key(role) {
            return Err(Error::RoleNotFound);
        }
        let user = self.users.get_mut(name).expect("checked above");
        if user.roles.insert(role.to_string()) {
            self.bump();
        }
        Ok(())
    }

    pub fn user_revoke_role(&mut self, name: &str, role: &str) -> Result<(), Error> {
        if self.enabled && name == ROOT_USER && role == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
        if !user.roles.remove(role) {
            return Err(Error::RoleNotGranted);
        }
        self.bump();
        Ok(())
    }

    /// The user's roles, sorted.
    pub fn user_get(&self, name: &str) -> Result<Vec<String>, Error> {
        let user = self.users.get(name).ok_or(Error::UserNotFound)?;
        Ok(user.roles.iter().cloned().collect())
    }

    pub fn user_list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_add(&mut self, name: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        self.roles.insert(name.to_string(), Role::default());
        self.bump();
        Ok(())
    }

    pub fn role_get(&self, name: &str) -> Result<Vec<authpb::Permission>, Error> {
        Ok(self
            .roles
            .get(name)
            .ok_or(Error::RoleNotFound)?
            .perms
            .clone())
    }

    pub fn role_list(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// etcd `RoleDelete`: the role leaves every user that held it.
    pub fn role_delete(&mut self, name: &str) -> Result<(), Error> {
        if self.enabled && name == ROOT_ROLE {
            return Err(Error::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(Error::RoleNotFound)?;
        for user in self.users.values_mut() {
            user.roles.remove(name);
        }
        self.bump();
        Ok(())
    }

    /// etcd `RoleGrantPermission`: a permission on the same key and range
    /// end as one the role has replaces it; the list stays sorted.
    pub fn role_grant_permission(
        &mut self,
        name: &str,
        perm: Option<&authpb::Permission>,
    ) -> Result<(), Error> {
        let perm = perm.ok_or(Error::PermissionNotGiven)?;
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let position = role.perms.binary_search_by(|held| {
            (&held.key, &held.range_end).cmp(&(&perm.key, &perm.range_end))
        });
        match position {
            Ok(at) => role.perms[at].perm_type = perm.perm_type,
            Err(at) => role.perms.insert(at, perm.clone()),
        }
        self.bump();
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Error> {
        let role = self.roles.get_mut(name).ok_or(Error::RoleNotFound)?;
        let at = role
            .perms
            .iter()
            .position(|perm| perm.key == key && perm.range_end == range_end)
            .ok_or(Error::PermissionNotGranted)?;
        role.perms.remove(at);
        self.bump();
        Ok(())
    }

    /// etcd `IsAdminPermitted`: what user and role management, and the
    /// maintenance calls that read the whole store, need.
    pub fn check_admin(&self, info: &AuthInfo) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(Error::UserEmpty);
        }
        let user = self.users.get(&info.username).ok_or(Error::UserNotFound)?;
        if !user.roles.contains(ROOT_ROLE) {
            return Err(Error::PermissionDenied);
        }
        Ok(())
    }

    /// Whether the user holds `role` (a user may read its own roles).
    pub fn has_role(&self, username: &str, role: &str) -> bool {
        self.users
            .get(username)
            .is_some_and(|user| user.roles.contains(role))
    }

    /// etcd `isOpPermitted`: may `info` do `access` on the keys from `key`
    /// to `range_end` (etcd's encoding: empty is the one key, "\0" is every
    /// key from `key` on)?
    pub fn check(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(Error::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        let user = self
            .users
            .get(&info.username)
            .ok_or(Error::PermissionDenied)?;
        if user.roles.contains(ROOT_ROLE) {
            return Ok(());
        }
        let wanted = KeyRange::from_request(key, range_end);
        let granted = self.granted_ranges(user, access);
        if granted.iter().any(|range| range.covers(&wanted)) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// The union of the ranges the user's roles allow for `access`, as
    /// disjoint, non-touching ranges in key order.
    fn granted_ranges(&self, user: &User, access: Access) -> Vec<KeyRange> {
        let mut ranges: Vec<KeyRange> = user
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.perms.iter())
            .filter(|perm| allows(perm.perm_type(), access))
            .map(|perm| KeyRange::from_request(&perm.key, &perm.range_end))
            .collect();
        ranges.sort_by(|a, b| a.start.cmp(&b.start));
        let mut merged: Vec<KeyRange> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if last.reaches(&range.start) => {
                    if range.ends_after(last) {
                        last.end = range.end;
                    }
                }
                _ => merged.push(range),
            }
        }
        merged
    }

    /// etcd `checkTxnReqsPermission`: every compare reads its key, and
    /// every operation in both branches (nested txns too) is checked, not
    /// just the branch that will run.
    pub fn check_txn(&self, info: &AuthInfo, txn: &TxnRequest) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        for compare in &txn.compare {
            self.check(info, &compare.key, &compare.range_end, Access::Read)?;
        }
        #[allow(unused_mut)]
        let mut failure = txn.failure.as_slice();
        #[cfg(madsim)]
        if crate::sabotage::active(crate::sabotage::Sabotage::AuthTxnElseUnchecked) {
            failure = &[];
        }
        for op in txn.success.iter().chain(failure) {
            self.check_op(info, op)?;
        }
        Ok(())
    }

    fn check_op(&self, info: &AuthInfo, op: &RequestOp) -> Result<(), Error> {
        match &op.request {
            Some(request_op::Request::RequestRange(range)) => {
                self.check(info, &range.key, &range.range_end, Access::Read)
            }
            Some(request_op::Request::RequestPut(put)) => {
                self.check(info, &put.key, &[], Access::Write)?;
                // etcd 3.4.23 checks this for a put alone but not inside a
                // txn, where a write-only user reads the old value back:
                // detcd checks both (README, deliberate differences).
                if put.prev_kv {
                    self.check(info, &put.key, &[], Access::Read)?;
                }
                Ok(())
            }
            Some(request_op::Request::RequestDeleteRange(delete)) => {
                self.check(info, &delete.key, &delete.range_end, Access::Write)?;
                if delete.prev_kv {
                    self.check(info, &delete.key, &delete.range_end, Access::Read)?;
                }
                Ok(())
            }
            Some(request_op::Request::RequestTxn(txn)) => self.check_txn(info, txn),
            None => Ok(()),
        }
    }

    /// Words for the state hash that members compare.
    pub fn hash_words(&self) -> Vec<u64> {
        self.to_proto()
            .encode_to_vec()
            .into_iter()
            .map(u64::from)
            .collect()
    }

    /// The whole auth state as one message (users with their password
    /// hashes, roles with their permissions).
    pub fn to_proto(&self) -> AuthState {
        AuthState {
            enabled: self.enabled,
            enabled_once: self.enabled_once,
            revision: self.revision,
            users: self
                .users
                .iter()
                .map(|(name, user)| authpb::User {
                    name: name.clone().into_bytes(),
                    password: user.password_hash.clone(),
                    roles: user.roles.iter().cloned().collect(),
                    options: Some(authpb::UserAddOptions {
                        no_password: user.no_password,
                    }),
                })
                .collect(),
            roles: self
                .roles
                .iter()
                .map(|(name, role)| authpb::Role {
                    name: name.clone().into_bytes(),
                    key_permission: role.perms.clone(),
                })
                .collect(),
        }
    }

    /// Reads what `to_proto` made (inside a state image); refuses what
    /// no store could hold.
    pub fn from_proto(state: AuthState) -> Result<AuthStore, String> {
        let name = |bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|_| "auth state: a name is not UTF-8".to_string())
        };
        let mut store = AuthStore {
            enabled: state.enabled,
            enabled_once: state.enabled_once || state.enabled,
            revision: state.revision,
            ..AuthStore::default()
        };
        for user in state.users {
            let no_password = user
                .options
                .as_ref()
                .is_some_and(|options| options.no_password);
            store.users.insert(
                name(user.name)?,
                User {
                    password_hash: user.password,
                    roles: user.roles.into_iter().collect(),
                    no_password,
                },
            );
        }
        for role in state.roles {
            let mut perms = role.key_permission;
            perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
            store.roles.insert(name(role.name)?, Role { perms });
        }
        Ok(store)
    }
}

fn allows(granted: PermType, access: Access) -> bool {
    #[cfg(madsim)]
    if granted == PermType::Write
        && crate::sabotage::active(crate::sabotage::Sabotage::AuthWriteGrantsRead)
    {
        return true;
    }
    matches!(
        (granted, access),
        (PermType::Readwrite, _)
            | (PermType::Read, Access::Read)
            | (PermType::Write, Access::Write)
    )
}

/// A half-open key range; `end: None` runs past every key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyRange {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The smallest key after `key`: the range of one key is [key, key\0).
    fn one_key(key: &[u8]) -> KeyRange {
        let mut end = key.to_vec();
        end.push(0);
        KeyRange {
            start: key.to_vec(),
            end: Some(end),
        }
    }

    /// A request's (or a permission's) range: an empty end is the one key,
    /// "\0" every key from `key` on.
    fn from_request(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::one_key(key),
            [0] => KeyRange {
                start: key.to_vec(),
                end: None,
            },
            end => KeyRange {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    /// Does this range reach `key` (contain it, or end right at it)?
    fn reaches(&self, key: &[u8]) -> bool {
        self.end.as_deref().is_none_or(|end| key <= end)
    }

    fn ends_after(&self, other: &KeyRange) -> bool {
        match (&self.end, &other.end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => mine > theirs,
        }
    }

    /// Is every key of `wanted` in this range? A request range that holds
    /// no key (its end at or before its start) needs its start covered.
    fn covers(&self, wanted: &KeyRange) -> bool {
        if wanted.start < self.start {
            return false;
        }
        match (&self.end, &wanted.end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(end), Some(wanted_end)) if wanted_end <= &wanted.start => wanted.start < *end,
            (Some(end), Some(wanted_end)) => wanted_end <= end,
        }
    }
}
