//! Auth over raw gRPC, as client libraries meet it, diffed with etcd
//! 3.4.23: what a token is worth after an auth change (a JWT carries the
//! revision it was minted at and goes stale; a simple token is checked at
//! the current one), garbage tokens, tokens after auth is disabled, and
//! no-password users.

use detcd::proto::authpb::{permission::Type as PermType, Permission};
use detcd::proto::etcdserverpb::{
    auth_client::AuthClient, kv_client::KvClient, AuthRoleGrantPermissionRequest,
    AuthUserChangePasswordRequest, AuthenticateRequest, RangeRequest,
};
use tonic::metadata::MetadataValue;

use crate::support::{Flavor, ServerProcess};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A request carrying `token` in etcd's metadata key.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = MetadataValue::try_from(token) {
        request.metadata_mut().insert("token", value);
    }
    request
}

fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Root, alice (readwrite on "a"), bob without a password, auth on; then
/// the calls, one line each.
fn transcript(server: &ServerProcess) -> Vec<String> {
    for step in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--new-user-password=apw"],
        &["user", "add", "bob", "--no-password"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "readwrite", "a"],
        &["user", "grant-role", "alice", "r"],
        &["user", "grant-role", "bob", "r"],
        &["auth", "enable"],
    ] {
        server.ctl_ok(step);
    }
    let url = server.client_url.clone();
    runtime().block_on(async move {
        let mut lines = Vec::new();
        let mut auth = AuthClient::connect(url.clone()).await.unwrap();
        let mut kv = KvClient::connect(url).await.unwrap();
        let login = |name: &str, password: &str| AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        async fn token(
            auth: &mut AuthClient<tonic::transport::Channel>,
            name: &str,
            password: &str,
        ) -> String {
            let login = AuthenticateRequest {
                name: name.into(),
                password: password.into(),
            };
            auth.authenticate(login).await.unwrap().into_inner().token
        }
        let read_a = || RangeRequest {
            key: b"a".to_vec(),
            ..RangeRequest::default()
        };
        let alice = token(&mut auth, "alice", "apw").await;
        let root = token(&mut auth, "root", "rootpw").await;
        lines.push(format!(
            "alice reads a: {}",
            outcome(kv.range(with_token(read_a(), &alice)).await)
        ));
        let grant = AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(Permission {
                perm_type: PermType::Read as i32,
                key: b"b".to_vec(),
                range_end: Vec::new(),
            }),
        };
        lines.push(format!(
            "root changes a role: {}",
            outcome(auth.role_grant_permission(with_token(grant, &root)).await)
        ));
        lines.push(format!(
            "alice reads a with her token from before: {}",
            outcome(kv.range(with_token(read_a(), &alice)).await)
        ));
        let again = token(&mut auth, "alice", "apw").await;
        lines.push(format!(
            "alice reads a after logging in again: {}",
            outcome(kv.range(with_token(read_a(), &again)).await)
        ));
        lines.push(format!(
            "a garbage token: {}",
            outcome(kv.range(with_token(read_a(), "garbage.1")).await)
        ));
        lines.push(format!("no token: {}", outcome(kv.range(read_a()).await)));
        lines.push(format!(
            "bob, who has no password, logs in: {}",
            outcome(auth.authenticate(login("bob", "")).await)
        ));
        lines.push(format!(
            "a wrong password: {}",
            outcome(auth.authenticate(login("alice", "nope")).await)
        ));
        lines.push(format!(
            "an unknown user: {}",
            outcome(auth.authenticate(login("nobody", "x")).await)
        ));
        let change = AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "apw2".into(),
        };
        lines.push(format!(
            "root changes alice's password: {}",
            outcome(auth.user_change_password(with_token(change, &root)).await)
        ));
        lines.push(format!(
            "alice reads a with her token from before the change: {}",
            outcome(kv.range(with_token(read_a(), &again)).await)
        ));
        lines.push(format!(
            "alice logs in with her old password: {}",
            outcome(auth.authenticate(login("alice", "apw")).await)
        ));
        let renewed = token(&mut auth, "alice", "apw2").await;
        lines.push(format!(
            "alice reads a with her new password's token: {}",
            outcome(kv.range(with_token(read_a(), &renewed)).await)
        ));
        lines
    })
}

fn check(flags: &[&str]) {
    let ours = transcript(&ServerProcess::start(Flavor::Detcd, flags));
    let theirs = transcript(&ServerProcess::start(Flavor::Etcd, flags));
    assert_eq!(ours, theirs, "detcd (left) and etcd 3.4.23 (right) differ");
}

/// Simple tokens are checked at the current auth revision: an auth change
/// leaves them good.
#[test]
fn simple_tokens_after_an_auth_change_match_etcd() {
    check(&[]);
}

/// A JWT carries the revision it was minted at: after an auth change it
/// is refused with "revision of auth store is old", and a new login works.
#[test]
fn jwt_tokens_go_stale_after_an_auth_change_as_in_etcd() {
    let keys = tempfile::tempdir().unwrap();
    let flag = crate::support::jwt_auth_token_flag(keys.path(), "");
    let ours = transcript(&ServerProcess::start(Flavor::Detcd, &[&flag]));
    assert!(
        ours[2].ends_with("InvalidArgument: etcdserver: revision of auth store is old"),
        "{ours:#?}"
    );
    check(&[&flag]);
}

/// A simple token unused for `--auth-token-ttl` seconds is gone: the
/// next request with it is refused as an invalid token, on both servers.
#[test]
fn an_unused_simple_token_expires_after_its_ttl() {
    for flavor in [Flavor::Detcd, Flavor::Etcd] {
        let server = ServerProcess::start(flavor, &["--auth-token-ttl=2"]);
        for step in [
            &["user", "add", "root", "--new-user-password=rootpw"][..],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
        ] {
            server.ctl_ok(step);
        }
        let url = server.client_url.clone();
        runtime().block_on(async move {
            let mut auth = AuthClient::connect(url.clone()).await.unwrap();
            let mut kv = KvClient::connect(url).await.unwrap();
            let token = auth
                .authenticate(AuthenticateRequest {
                    name: "root".into(),
                    password: "rootpw".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .token;
            let read = || {
                with_token(
                    RangeRequest {
                        key: b"a".to_vec(),
                        ..RangeRequest::default()
                    },
                    &token,
                )
            };
            assert_eq!(outcome(kv.range(read()).await), "ok", "{flavor:?}");
            // Unused for well over its TTL (etcd sweeps once a second).
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            assert_eq!(
                outcome(kv.range(read()).await),
                "Unauthenticated: etcdserver: invalid auth token",
                "{flavor:?}"
            );
        });
    }
}

/// Stricter than etcd 3.4.23, as etcd 3.4.26 is (CVE-2023-32082): a
/// lease's keys are listed only to a user who may read all of them.
#[test]
fn a_leases_keys_are_shown_only_to_who_may_read_them() {
    let server = ServerProcess::start(Flavor::Detcd, &[]);
    for step in [
        &["user", "add", "root", "--new-user-password=rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice", "--new-user-password=apw"],
        &["role", "add", "r"],
        &["role", "grant-permission", "r", "readwrite", "a"],
        &["user", "grant-role", "alice", "r"],
        &["auth", "enable"],
    ] {
        server.ctl_ok(step);
    }
    let granted = server.ctl_ok(&["lease", "grant", "600", "--user=root:rootpw"]);
    let id = granted.split(' ').nth(1).unwrap().to_string();
    let lease = format!("--lease={id}");
    server.ctl_ok(&["put", "a", "1", &lease, "--user=root:rootpw"]);
    server.ctl_ok(&["put", "secret", "2", &lease, "--user=root:rootpw"]);
    let without_keys = server.ctl(&["lease", "timetolive", &id, "--user=alice:apw"]);
    assert!(without_keys.status.success(), "{without_keys:?}");
    let with_keys = server.ctl(&["lease", "timetolive", &id, "--keys", "--user=alice:apw"]);
    assert!(
        String::from_utf8_lossy(&with_keys.stderr).contains("etcdserver: permission denied"),
        "{with_keys:?}"
    );
    let as_root = server.ctl_ok(&["lease", "timetolive", &id, "--keys", "--user=root:rootpw"]);
    assert!(as_root.contains("secret"), "{as_root}");
}

/// With auth enabled only root changes the membership (etcd
/// `checkMembershipOperationPermission`): alice's member add, update,
/// promote and remove are refused before anything else is looked at, even
/// for an unknown id, and change nothing; root's go through. Diffed with
/// etcd 3.4.23.
#[test]
fn only_root_changes_the_membership_as_in_etcd() {
    fn transcript(server: &ServerProcess) -> Vec<String> {
        for step in [
            &["user", "add", "root", "--new-user-password=rootpw"][..],
            &["user", "grant-role", "root", "root"],
            &["user", "add", "alice", "--new-user-password=apw"],
            &["auth", "enable"],
        ] {
            server.ctl_ok(step);
        }
        let run = |user: &str, args: &[&str]| {
            let mut full = vec!["--user", user];
            full.extend_from_slice(args);
            let output = server.ctl(&full);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let error = stderr.lines().find(|line| line.starts_with("Error:"));
            format!(
                "{args:?}: {:?} {}",
                output.status.code(),
                error.unwrap_or("")
            )
        };
        let alice = "alice:apw";
        let root = "root:rootpw";
        let learner = [
            "member",
            "add",
            "l",
            "--learner",
            "--peer-urls=http://127.0.0.1:9",
        ];
        let mut lines = vec![
            run(alice, &learner),
            run(alice, &["member", "remove", "1234"]),
            run(
                alice,
                &["member", "update", "1234", "--peer-urls=http://127.0.0.1:8"],
            ),
            run(alice, &["member", "promote", "1234"]),
            run(root, &learner),
        ];
        let listed = server.ctl_ok(&["--user", root, "member", "list"]);
        lines.push(format!(
            "members after root's add: {}",
            listed.lines().count()
        ));
        let id = listed
            .lines()
            .find(|line| line.contains("127.0.0.1:9"))
            .and_then(|line| line.split(',').next())
            .expect("the learner is listed")
            .to_string();
        let by_id = |user: &str| run(user, &["member", "remove", &id]).replace(&id, "<learner>");
        lines.push(by_id(alice));
        lines.push(by_id(root));
        let listed = server.ctl_ok(&["--user", root, "member", "list"]);
        lines.push(format!("members at the end: {}", listed.lines().count()));
        lines
    }
    let ours = transcript(&ServerProcess::start(Flavor::Detcd, &[]));
    let theirs = transcript(&ServerProcess::start(Flavor::Etcd, &[]));
    assert_eq!(ours, theirs);
    assert!(ours[0].contains("permission denied"), "{ours:?}");
}
