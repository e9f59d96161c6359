//! The auth workload: an administrator (root) sets up users and roles,
//! enables auth, then keeps granting and revoking one role's readwrite
//! permission on the secret key, while its users read and write that key,
//! directly and through the else branch of a txn whose compare always
//! fails. Everything is recorded with virtual time for
//! `properties::auth::check`. Once the faults are healed, `disable` turns
//! auth off again, so the run's final checks read the store as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::client::{Client, ClientError};
use detcd::proto::authpb::{permission::Type as PermType, Permission};
use detcd::proto::etcdserverpb::{
    compare, request_op, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, Compare,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use madsim::rand::Rng;
use tokio::time::Instant;

use crate::properties::auth::{Outcome, PermissionChange, SecretAccess};

use super::trace::Trace;
use crate::workload::REQUEST_TIMEOUT;

pub const SECRET_KEY: &[u8] = b"auth/secret";
/// Readable and writable by the users all along: their txns compare it.
const PUBLIC_KEY: &[u8] = b"auth/public";
/// Root's password, which the churn operator logs in with too.
pub const ROOT_PASSWORD: &str = "rootpw";
/// The role whose permission on the secret key comes and goes.
const TOGGLED_ROLE: &str = "secret-rw";
const PUBLIC_ROLE: &str = "public-rw";
/// Time between two permission changes, at most.
const CHANGE_EVERY_MAX: Duration = Duration::from_millis(800);
/// Time between two requests of a user, at most.
const ACCESS_EVERY_MAX: Duration = Duration::from_millis(150);
/// How long the administrator keeps trying to disable auth at the end.
const DISABLE_FOR: Duration = Duration::from_secs(30);

/// What the auth clients of a run recorded, with times since its start.
#[derive(Clone)]
pub struct AuthLog {
    changes: Arc<Mutex<Vec<PermissionChange>>>,
    accesses: Arc<Mutex<Vec<SecretAccess>>>,
    /// Set once auth is on: users start then.
    enabled: Arc<AtomicBool>,
    started: Instant,
}

impl AuthLog {
    pub fn new(started: Instant) -> AuthLog {
        AuthLog {
            changes: Arc::default(),
            accesses: Arc::default(),
            enabled: Arc::default(),
            started,
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn take(&self) -> (Vec<PermissionChange>, Vec<SecretAccess>) {
        (
            std::mem::take(&mut self.changes.lock().unwrap()),
            std::mem::take(&mut self.accesses.lock().unwrap()),
        )
    }
}

pub fn user_name(client: u64) -> String {
    format!("user{client}")
}

fn user_password(client: u64) -> String {
    format!("pw{client}")
}

fn secret_permission() -> Permission {
    Permission {
        perm_type: PermType::Readwrite as i32,
        key: SECRET_KEY.to_vec(),
        range_end: Vec::new(),
    }
}

/// Retries a call until it succeeds or fails for a reason that says it
/// is done already (the user or role exists), or `deadline` passes; true
/// if it is done.
macro_rules! until_done {
    ($deadline:expr, $call:expr) => {{
        let mut done = false;
        while Instant::now() < $deadline {
            match $call.await {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(ClientError::Server(status)) if status.message().contains("already exists") => {
                    done = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        done
    }};
}

/// The administrator: set-up, then permission changes until `deadline`,
/// then auth off again.
pub async fn admin(
    endpoints: Vec<String>,
    users: u64,
    log: AuthLog,
    trace: Trace,
    deadline: Instant,
) {
    let mut client = Client::new(endpoints)
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_credentials("root", ROOT_PASSWORD);
    let set_up = async {
        let mut names = vec![("root".to_string(), ROOT_PASSWORD.to_string())];
        names.extend((0..users).map(|n| (user_name(n), user_password(n))));
        for (name, password) in names {
            let add = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: None,
            };
            if !until_done!(deadline, client.user_add(add.clone())) {
                return false;
            }
        }
        for role in [TOGGLED_ROLE, PUBLIC_ROLE] {
            let add = AuthRoleAddRequest { name: role.into() };
            if !until_done!(deadline, client.role_add(add.clone())) {
                return false;
            }
        }
        let public = AuthRoleGrantPermissionRequest {
            name: PUBLIC_ROLE.into(),
            perm: Some(Permission {
                perm_type: PermType::Readwrite as i32,
                key: PUBLIC_KEY.to_vec(),
                range_end: Vec::new(),
            }),
        };
        if !until_done!(deadline, client.role_grant_permission(public.clone())) {
            return false;
        }
        let mut grants = vec![("root".to_string(), "root".to_string())];
        for n in 0..users {
            grants.push((user_name(n), TOGGLED_ROLE.into()));
            grants.push((user_name(n), PUBLIC_ROLE.into()));
        }
        for (user, role) in grants {
            let grant = AuthUserGrantRoleRequest { user, role };
            if !until_done!(deadline, client.user_grant_role(grant.clone())) {
                return false;
            }
        }
        until_done!(deadline, client.auth_enable())
    };
    if !set_up.await {
        trace.record("auth admin: set-up did not finish before the deadline".into());
        return;
    }
    trace.record("auth admin: auth enabled".into());
    log.enabled.store(true, Ordering::SeqCst);
    // The permission starts off; each change flips it.
    let mut grant = true;
    while Instant::now() < deadline {
        let pause = madsim::rand::thread_rng().gen_range(0..CHANGE_EVERY_MAX.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let invoked = log.now();
        let result = if grant {
            client
                .role_grant_permission(AuthRoleGrantPermissionRequest {
                    name: TOGGLED_ROLE.into(),
                    perm: Some(secret_permission()),
                })
                .await
                .map(|_| ())
        } else {
            client
                .role_revoke_permission(AuthRoleRevokePermissionRequest {
                    role: TOGGLED_ROLE.into(),
                    key: SECRET_KEY.to_vec(),
                    range_end: Vec::new(),
                })
                .await
                .map(|_| ())
                .or_else(|error| match &error {
                    // Revoked already (an earlier attempt applied after all).
                    ClientError::Server(status) if status.message().contains("not granted") => {
                        Ok(())
                    }
                    _ => Err(error),
                })
        };
        let acknowledged = result.is_ok().then(|| log.now());
        log.changes.lock().unwrap().push(PermissionChange {
            grant,
            invoked,
            acknowledged,
        });
        if acknowledged.is_some() {
            trace.record(format!(
                "auth admin: {} the secret permission",
                if grant { "granted" } else { "revoked" }
            ));
            grant = !grant;
        }
    }
}

/// Turns auth off again once the faults are healed, so the run's final
/// checks read the store without credentials. False if it could not.
pub async fn disable(endpoints: Vec<String>, trace: Trace) -> bool {
    let mut client = Client::new(endpoints)
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_credentials("root", ROOT_PASSWORD);
    let until = Instant::now() + DISABLE_FOR;
    let disabled = until_done!(until, client.auth_disable());
    trace.record(format!("auth admin: auth disabled: {disabled}"));
    disabled
}

/// One user, once auth is on, until `deadline`.
pub async fn user(id: u64, endpoints: Vec<String>, log: AuthLog, trace: Trace, deadline: Instant) {
    let mut client = Client::new(endpoints)
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_credentials(&user_name(id), &user_password(id));
    while !log.enabled.load(Ordering::SeqCst) {
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sequence = 0;
    while Instant::now() < deadline {
        sequence += 1;
        let value = format!("{id}.{sequence}").into_bytes();
        let pick = madsim::rand::thread_rng().gen_range(0..3);
        let invoked = log.now();
        let (what, result) = match pick {
            0 => (
                "put",
                client
                    .put(PutRequest {
                        key: SECRET_KEY.to_vec(),
                        value,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            ),
            1 => (
                "get",
                client
                    .range(RangeRequest {
                        key: SECRET_KEY.to_vec(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            ),
            _ => {
                let never = Compare {
                    key: PUBLIC_KEY.to_vec(),
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Value as i32,
                    target_union: Some(compare::TargetUnion::Value(b"never".to_vec())),
                    ..Default::default()
                };
                let put = |key: &[u8]| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.to_vec(),
                        value: value.clone(),
                        ..Default::default()
                    })),
                };
                let txn = TxnRequest {
                    compare: vec![never],
                    success: vec![put(PUBLIC_KEY)],
                    failure: vec![put(SECRET_KEY)],
                };
                ("txn-else", client.txn(txn).await.map(|_| ()))
            }
        };
        let outcome = match &result {
            Ok(()) => Outcome::Succeeded,
            Err(ClientError::Server(status))
                if status.message() == "etcdserver: permission denied" =>
            {
                Outcome::Denied
            }
            Err(_) => Outcome::Other,
        };
        if let Err(error) = &result {
            if outcome == Outcome::Other {
                trace.record(format!("auth user {id}: {what} failed: {error}"));
            }
        }
        log.accesses.lock().unwrap().push(SecretAccess {
            client: id,
            what,
            invoked,
            completed: log.now(),
            outcome,
        });
        let pause = madsim::rand::thread_rng().gen_range(0..ACCESS_EVERY_MAX.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
