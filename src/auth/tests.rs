use proptest::prelude::*;

use super::*;

fn perm(kind: PermType, key: &str, range_end: &str) -> authpb::Permission {
    authpb::Permission {
        perm_type: kind as i32,
        key: key.as_bytes().to_vec(),
        range_end: range_end.as_bytes().to_vec(),
    }
}

fn as_user(store: &AuthStore, name: &str) -> AuthInfo {
    AuthInfo {
        username: name.to_string(),
        revision: store.revision(),
    }
}

/// root (with the root role), alice with role r1, auth on.
fn store_with(perms: &[authpb::Permission]) -> AuthStore {
    let mut store = AuthStore::default();
    store.user_add("root", b"h", false).unwrap();
    store.user_grant_role("root", ROOT_ROLE).unwrap();
    store.user_add("alice", b"h", false).unwrap();
    store.role_add("r1").unwrap();
    for perm in perms {
        store.role_grant_permission("r1", Some(perm)).unwrap();
    }
    store.user_grant_role("alice", "r1").unwrap();
    store.enable().unwrap();
    store
}

#[test]
fn enabling_needs_root_with_the_root_role() {
    let mut store = AuthStore::default();
    assert_eq!(store.enable(), Err(Error::RootUserNotExist));
    store.user_add("root", b"h", false).unwrap();
    assert_eq!(store.enable(), Err(Error::RootRoleNotExist));
    store.user_grant_role("root", ROOT_ROLE).unwrap();
    let before = store.revision();
    store.enable().unwrap();
    assert!(store.is_enabled());
    // As in etcd, enabling does not move the revision; disabling does.
    assert_eq!(store.revision(), before);
    store.enable().unwrap();
    assert_eq!(store.revision(), before);
    store.disable();
    assert_eq!(store.revision(), before + 1);
}

/// etcd writes its backend's `enabled` key when auth is first enabled and
/// keeps it from then on; a backup's auth bucket follows the flag.
#[test]
fn the_state_remembers_auth_was_enabled_once() {
    let mut store = AuthStore::default();
    store.disable();
    assert!(!store.to_proto().enabled_once);
    store = store_with(&[]);
    store.disable();
    let state = store.to_proto();
    assert!(!state.enabled && state.enabled_once);
    assert!(
        AuthStore::from_proto(state)
            .unwrap()
            .to_proto()
            .enabled_once
    );
    // States written before the flag: enabled implies it.
    let older = AuthState {
        enabled: true,
        enabled_once: false,
        ..store_with(&[]).to_proto()
    };
    assert!(
        AuthStore::from_proto(older)
            .unwrap()
            .to_proto()
            .enabled_once
    );
}

#[test]
fn root_is_protected_while_auth_is_on() {
    let mut store = store_with(&[]);
    assert_eq!(store.user_delete("root"), Err(Error::InvalidAuthMgmt));
    assert_eq!(
        store.user_revoke_role("root", ROOT_ROLE),
        Err(Error::InvalidAuthMgmt)
    );
    assert_eq!(store.role_delete(ROOT_ROLE), Err(Error::InvalidAuthMgmt));
    assert_eq!(store.disable(), TokenEffect::InvalidateAll);
    assert_eq!(store.user_revoke_role("root", ROOT_ROLE), Ok(()));
}

#[test]
fn failed_changes_change_nothing() {
    let mut store = store_with(&[perm(PermType::Read, "a", "")]);
    let before = store.clone();
    assert_eq!(
        store.user_add("alice", b"x", false),
        Err(Error::UserAlreadyExist)
    );
    assert_eq!(store.user_add("", b"x", false), Err(Error::UserEmpty));
    assert_eq!(store.role_add("r1"), Err(Error::RoleAlreadyExist));
    assert_eq!(store.role_add(""), Err(Error::RoleEmpty));
    assert_eq!(
        store.user_grant_role("nobody", "r1"),
        Err(Error::UserNotFound)
    );
    assert_eq!(
        store.user_grant_role("alice", "nope"),
        Err(Error::RoleNotFound)
    );
    assert_eq!(
        store.user_revoke_role("alice", "nope"),
        Err(Error::RoleNotGranted)
    );
    assert_eq!(
        store.role_revoke_permission("r1", b"b", b""),
        Err(Error::PermissionNotGranted)
    );
    assert_eq!(
        store.role_grant_permission("nope", Some(&perm(PermType::Read, "a", ""))),
        Err(Error::RoleNotFound)
    );
    assert_eq!(
        store.role_grant_permission("r1", None),
        Err(Error::PermissionNotGiven)
    );
    assert_eq!(store, before);
}

#[test]
fn permissions_stay_sorted_and_one_per_range() {
    let mut store = store_with(&[]);
    store
        .role_grant_permission("r1", Some(&perm(PermType::Read, "p", "q")))
        .unwrap();
    store
        .role_grant_permission("r1", Some(&perm(PermType::Read, "a", "")))
        .unwrap();
    store
        .role_grant_permission("r1", Some(&perm(PermType::Write, "a", "")))
        .unwrap();
    let perms = store.role_get("r1").unwrap();
    assert_eq!(
        perms,
        vec![
            perm(PermType::Write, "a", ""),
            perm(PermType::Read, "p", "q")
        ]
    );
    store.role_revoke_permission("r1", b"p", b"q").unwrap();
    assert_eq!(store.role_get("r1").unwrap().len(), 1);
}

#[test]
fn deleting_a_role_takes_it_from_its_users() {
    let mut store = store_with(&[perm(PermType::Read, "a", "")]);
    store.role_delete("r1").unwrap();
    assert_eq!(store.user_get("alice").unwrap(), Vec::<String>::new());
    let alice = as_user(&store, "alice");
    assert_eq!(
        store.check(&alice, b"a", b"", Access::Read),
        Err(Error::PermissionDenied)
    );
}

#[test]
fn checks_follow_etcds_order() {
    let store = store_with(&[perm(PermType::Read, "a", "")]);
    let nobody = AuthInfo::default();
    assert_eq!(
        store.check(&nobody, b"a", b"", Access::Read),
        Err(Error::UserEmpty)
    );
    let stale = AuthInfo {
        username: "alice".into(),
        revision: store.revision() - 1,
    };
    assert!(stale.revision > 0);
    assert_eq!(
        store.check(&stale, b"a", b"", Access::Read),
        Err(Error::AuthOldRevision)
    );
    let ghost = as_user(&store, "ghost");
    assert_eq!(
        store.check(&ghost, b"a", b"", Access::Read),
        Err(Error::PermissionDenied)
    );
    let root = as_user(&store, "root");
    assert_eq!(store.check(&root, b"zz", b"\0", Access::Write), Ok(()));
    assert_eq!(store.check_admin(&root), Ok(()));
    let alice = as_user(&store, "alice");
    assert_eq!(store.check(&alice, b"a", b"", Access::Read), Ok(()));
    assert_eq!(
        store.check(&alice, b"a", b"", Access::Write),
        Err(Error::PermissionDenied)
    );
    assert_eq!(store.check_admin(&alice), Err(Error::PermissionDenied));
    assert_eq!(store.check_admin(&nobody), Err(Error::UserEmpty));
}

#[test]
fn ranges_merge_across_roles_and_permissions() {
    let store = store_with(&[
        perm(PermType::Read, "a", "c"),
        perm(PermType::Readwrite, "c", "e"),
        perm(PermType::Write, "x", "\0"),
    ]);
    let alice = as_user(&store, "alice");
    assert_eq!(store.check(&alice, b"a", b"e", Access::Read), Ok(()));
    assert_eq!(
        store.check(&alice, b"b", b"f", Access::Read),
        Err(Error::PermissionDenied)
    );
    assert_eq!(
        store.check(&alice, b"a", b"e", Access::Write),
        Err(Error::PermissionDenied)
    );
    assert_eq!(store.check(&alice, b"xy", b"\0", Access::Write), Ok(()));
    assert_eq!(
        store.check(&alice, b"xy", b"\0", Access::Read),
        Err(Error::PermissionDenied)
    );
}

#[test]
fn a_txn_needs_every_branch_and_compare() {
    use crate::proto::etcdserverpb::{Compare, PutRequest};
    let store = store_with(&[
        perm(PermType::Readwrite, "a", ""),
        perm(PermType::Read, "b", ""),
    ]);
    let alice = as_user(&store, "alice");
    let put = |key: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            ..PutRequest::default()
        })),
    };
    let compare = |key: &str| Compare {
        key: key.as_bytes().to_vec(),
        ..Compare::default()
    };
    let ok = TxnRequest {
        compare: vec![compare("b")],
        success: vec![put("a")],
        failure: vec![],
    };
    assert_eq!(store.check_txn(&alice, &ok), Ok(()));
    let else_branch = TxnRequest {
        failure: vec![put("b")],
        ..ok.clone()
    };
    assert_eq!(
        store.check_txn(&alice, &else_branch),
        Err(Error::PermissionDenied)
    );
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(else_branch)),
        }],
        ..ok.clone()
    };
    assert_eq!(
        store.check_txn(&alice, &nested),
        Err(Error::PermissionDenied)
    );
    let unreadable_compare = TxnRequest {
        compare: vec![compare("c")],
        ..ok
    };
    assert_eq!(
        store.check_txn(&alice, &unreadable_compare),
        Err(Error::PermissionDenied)
    );
}

#[test]
fn a_txn_op_that_returns_the_previous_value_needs_read() {
    use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
    let store = store_with(&[perm(PermType::Write, "w", "")]);
    let alice = as_user(&store, "alice");
    let txn = |request| TxnRequest {
        success: vec![RequestOp {
            request: Some(request),
        }],
        ..TxnRequest::default()
    };
    let put = |prev_kv| {
        txn(request_op::Request::RequestPut(PutRequest {
            key: b"w".to_vec(),
            prev_kv,
            ..PutRequest::default()
        }))
    };
    let delete = |prev_kv| {
        txn(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: b"w".to_vec(),
                prev_kv,
                ..DeleteRangeRequest::default()
            },
        ))
    };
    assert_eq!(store.check_txn(&alice, &put(false)), Ok(()));
    assert_eq!(store.check_txn(&alice, &delete(false)), Ok(()));
    let denied = Err(Error::PermissionDenied);
    assert_eq!(store.check_txn(&alice, &put(true)), denied);
    assert_eq!(store.check_txn(&alice, &delete(true)), denied);
}

#[test]
fn the_image_round_trips() {
    let mut store = store_with(&[
        perm(PermType::Read, "a", "b"),
        perm(PermType::Write, "c", ""),
    ]);
    store.user_add("bob", b"", true).unwrap();
    let decoded = AuthStore::from_proto(store.to_proto()).unwrap();
    assert_eq!(decoded, store);
    assert_eq!(decoded.password_hash("bob"), None);
    let mut not_utf8 = store.to_proto();
    not_utf8.users[0].name = vec![0xff, 0xff];
    assert!(AuthStore::from_proto(not_utf8).is_err());
}

/// Every key of length ≤ 4 over {\0, a, b, c}: every range boundary the
/// property below makes (a key, or a key + "\0") is one of them, so a gap
/// in the granted ranges always starts at one.
fn universe() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for key in &last {
            for byte in [0u8, b'a', b'b', b'c'] {
                let mut longer = key.clone();
                longer.push(byte);
                next.push(longer);
            }
        }
        keys.extend(next.iter().cloned());
        last = next;
    }
    keys
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

fn short_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..=3)
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), Just(vec![0u8]), short_key()]
}

proptest! {
    /// The merged-range check agrees with asking key by key whether some
    /// permission of the user's covers it.
    #[test]
    fn range_checks_agree_with_a_key_by_key_model(
        grants in proptest::collection::vec((0..3i32, short_key(), range_end()), 0..6),
        start in short_key(),
        end in range_end(),
        write in any::<bool>(),
    ) {
        let perms: Vec<_> = grants
            .iter()
            .map(|(kind, key, end)| authpb::Permission { perm_type: *kind, key: key.clone(), range_end: end.clone() })
            .collect();
        let store = store_with(&perms);
        // A later grant on the same range replaced an earlier one.
        let perms = store.role_get("r1").unwrap();
        let access = if write { Access::Write } else { Access::Read };
        let wanted: Vec<Vec<u8>> = universe()
            .into_iter()
            .filter(|key| in_range(key, &start, &end))
            .collect();
        let covered = |key: &[u8]| perms.iter().any(|perm| {
            allows(perm.perm_type(), access) && in_range(key, &perm.key, &perm.range_end)
        });
        // A range with no key in it (end before start) asks for its start.
        let model = if wanted.is_empty() { covered(&start) } else { wanted.iter().all(|key| covered(key)) };
        let alice = as_user(&store, "alice");
        prop_assert_eq!(store.check(&alice, &start, &end, access).is_ok(), model);
    }
}
