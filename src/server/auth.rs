//! The auth request path (etcd `v3_server.go`'s auth half): who a token
//! names, logins, and the user and role changes, which all go through
//! raft. Passwords are checked or hashed here, before proposing, and
//! never enter the log (`crate::auth` says why).

use std::sync::Arc;

use super::Server;
use crate::apply::Response;
use crate::auth::tokens::{token_index, token_prefix};
use crate::auth::AuthInfo;
use crate::error::Error;
use crate::proto::authpb::Permission;
use crate::proto::detcdpb::internal_request::Request;
use crate::proto::detcdpb::{Authenticate, UserAdd, UserChangePassword};

/// What an auth request answered: names for UserGet/UserList/RoleList,
/// permissions for RoleGet, nothing else for the changes.
pub enum AuthAnswer {
    Done,
    Names(Vec<String>),
    Permissions(Vec<Permission>),
}

impl Server {
    /// This server acting for a client that `info` names: reads are
    /// checked against the caller's permissions, writes carry them to
    /// apply.
    pub fn acting_for(&self, info: AuthInfo) -> Server {
        Server {
            caller: Some(Arc::new(info)),
            ..self.clone()
        }
    }

    /// etcd `AuthInfoFromCtx`: who a request's token names. No token is
    /// no user. A token nobody holds is invalid, auth on or off (disabling
    /// auth voids every token, as in etcd). A token assigned at an entry
    /// this member has not applied yet (the client logged in through
    /// another member) is looked up again after a read index.
    pub async fn auth_info(&self, token: Option<&str>) -> Result<AuthInfo, Error> {
        let Some(token) = token else {
            return Ok(AuthInfo::default());
        };
        if let Some(jwt) = &self.jwt {
            return jwt
                .verify(token, self.clock.wall_unix_millis() / 1000)
                .ok_or(Error::InvalidAuthToken);
        }
        if let Some(info) = self.token_info(token) {
            return Ok(info);
        }
        let applied = self.shared.applied_index();
        if token_index(token).is_some_and(|index| index > applied) {
            self.read_index().await?;
            if let Some(info) = self.token_info(token) {
                return Ok(info);
            }
        }
        Err(Error::InvalidAuthToken)
    }

    /// The caller a verified client certificate names (its common name),
    /// checked at the current auth revision, as etcd does.
    pub fn auth_info_of_user(&self, username: String) -> AuthInfo {
        AuthInfo {
            username,
            revision: self.auth_revision(),
        }
    }

    fn auth_revision(&self) -> u64 {
        self.shared
            .state
            .read()
            .expect("state lock")
            .auth()
            .revision()
    }

    fn token_info(&self, token: &str) -> Option<AuthInfo> {
        let user = self
            .shared
            .tokens
            .lock()
            .expect("tokens lock")
            .user(token, self.clock.elapsed())?;
        // A simple token carries no revision: it is checked at the current
        // one (etcd's tokenSimple.info).
        Some(self.auth_info_of_user(user))
    }

    /// May the caller read the keys from `key` to `range_end` now?
    pub fn check_read(&self, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        self.shared.state.read().expect("state lock").auth().check(
            caller,
            key,
            range_end,
            crate::auth::Access::Read,
        )
    }

    /// AuthStatus (etcd 3.5, for the root role): whether auth is on, and
    /// its revision.
    pub fn auth_status(&self) -> Result<(bool, u64), Error> {
        self.check_admin_now()?;
        let state = self.shared.state.read().expect("state lock");
        Ok((state.auth().is_enabled(), state.auth().revision()))
    }

    /// etcd `IsAdminPermitted` as it is now: what user and role changes
    /// and the maintenance calls that read the whole store need. Apply
    /// checks the changes again, so for them this only spares bcrypt work
    /// on a caller who could not make them anyway.
    pub fn check_admin_now(&self) -> Result<(), Error> {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        self.shared
            .state
            .read()
            .expect("state lock")
            .auth()
            .check_admin(caller)
    }

    /// etcd `Authenticate`: the password is checked here against the
    /// user's hash, then the login goes through raft, so every member
    /// knows the token. Returns the token.
    pub async fn authenticate(&self, name: String, password: String) -> Result<String, Error> {
        self.read_index().await?;
        let hash = self
            .shared
            .state
            .read()
            .expect("state lock")
            .auth()
            .login_hash(&name)?;
        if !self.hasher.verify(password, hash.clone()).await? {
            return Err(Error::AuthFailed);
        }
        let prefix = if self.jwt.is_some() {
            String::new()
        } else {
            let mut rng = self.rng.lock().expect("rng lock");
            token_prefix(|| rng.next_u64())
        };
        let login = Authenticate {
            name,
            password_hash: hash,
            token_prefix: prefix,
        };
        match self.propose(Request::Authenticate(login)).await? {
            Response::Authenticated {
                user,
                token,
                revision,
            } => match &self.jwt {
                Some(jwt) => jwt.sign(&user, revision, self.clock.wall_unix_millis() / 1000),
                None => Ok(token),
            },
            other => unreachable!("authenticate answered with {other:?}"),
        }
    }

    fn salt(&self) -> [u8; 16] {
        let mut rng = self.rng.lock().expect("rng lock");
        let mut salt = [0; 16];
        salt[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        salt[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        salt
    }

    /// etcd `UserAdd`: the password is hashed here (bcrypt, at
    /// `--bcrypt-cost`); a `--no-password` user has no hash.
    pub async fn user_add(
        &self,
        name: String,
        password: String,
        no_password: bool,
    ) -> Result<(), Error> {
        self.check_admin_now()?;
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        let password_hash = if no_password {
            Vec::new()
        } else {
            self.hasher.hash(password, self.salt()).await?
        };
        self.auth_request(Request::UserAdd(UserAdd {
            name,
            password_hash,
            no_password,
        }))
        .await
        .map(|_| ())
    }

    pub async fn user_change_password(&self, name: String, password: String) -> Result<(), Error> {
        self.check_admin_now()?;
        let password_hash = self.hasher.hash(password, self.salt()).await?;
        self.auth_request(Request::UserChangePassword(UserChangePassword {
            name,
            password_hash,
        }))
        .await
        .map(|_| ())
    }

    /// Any other auth request: through raft, checked at apply.
    pub async fn auth_request(&self, request: Request) -> Result<AuthAnswer, Error> {
        match self.propose(request).await? {
            Response::AuthChanged(_) => Ok(AuthAnswer::Done),
            Response::Names(names) => Ok(AuthAnswer::Names(names)),
            Response::Permissions(perms) => Ok(AuthAnswer::Permissions(perms)),
            other => unreachable!("auth request answered with {other:?}"),
        }
    }
}
