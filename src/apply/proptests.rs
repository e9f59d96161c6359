//! Any request a client can send, driven through the whole write path
//! without the network: validate, encode into a committed entry, decode,
//! apply. What passes validation must decode to itself and apply without
//! a panic, and applying the decoded entry must leave the same state as
//! applying the request itself (the encoding loses nothing). Hostile
//! shapes are in the mix: odd enum values, negative limits and
//! revisions, empty and `\0` keys, nesting around etcd's depth limit.

use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::api::validate;
use crate::proto::detcdpb::InternalRequest;
use crate::proto::etcdserverpb::{compare, request_op, Compare, RequestOp};

/// Default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![0]),
        prop::collection::vec(prop::sample::select(b"abc\0\xff".to_vec()), 1..4),
    ]
}

fn small_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-3i64..40, any::<i64>()]
}

fn odd_enum() -> impl Strategy<Value = i32> {
    prop_oneof![-2i32..6, any::<i32>()]
}

fn range() -> impl Strategy<Value = RangeRequest> {
    (
        (key(), key(), small_i64(), small_i64()),
        (odd_enum(), odd_enum(), any::<[bool; 3]>()),
        (small_i64(), small_i64(), small_i64(), small_i64()),
    )
        .prop_map(
            |((key, range_end, limit, revision), (order, target, flags), mods)| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order: order,
                sort_target: target,
                serializable: flags[0],
                keys_only: flags[1],
                count_only: flags[2],
                min_mod_revision: mods.0,
                max_mod_revision: mods.1,
                min_create_revision: mods.2,
                max_create_revision: mods.3,
            },
        )
}

fn put() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        prop::collection::vec(any::<u8>(), 0..16),
        prop_oneof![Just(0i64), any::<i64>()],
        any::<[bool; 3]>(),
    )
        .prop_map(|(key, value, lease, flags)| PutRequest {
            key,
            value,
            lease,
            prev_kv: flags[0],
            ignore_value: flags[1],
            ignore_lease: flags[2],
        })
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), key(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    let target_union = prop_oneof![
        Just(None),
        small_i64().prop_map(|v| Some(compare::TargetUnion::Version(v))),
        small_i64().prop_map(|v| Some(compare::TargetUnion::CreateRevision(v))),
        small_i64().prop_map(|v| Some(compare::TargetUnion::ModRevision(v))),
        key().prop_map(|v| Some(compare::TargetUnion::Value(v))),
        small_i64().prop_map(|v| Some(compare::TargetUnion::Lease(v))),
    ];
    (odd_enum(), odd_enum(), key(), key(), target_union).prop_map(
        |(result, target, key, range_end, target_union)| Compare {
            result,
            target,
            key,
            range_end,
            target_union,
        },
    )
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        range().prop_map(request_op::Request::RequestRange),
        put().prop_map(request_op::Request::RequestPut),
        delete().prop_map(request_op::Request::RequestDeleteRange),
    ]
    .prop_map(|request| RequestOp {
        request: Some(request),
    });
    let op = leaf.prop_recursive(4, 24, 4, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..4),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(compare, success, failure)| RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    compare,
                    success,
                    failure,
                })),
            })
    });
    let op = prop_oneof![9 => op, 1 => Just(RequestOp { request: None })];
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

/// A chain of single-op transactions around etcd's depth limit.
fn deep_txn() -> impl Strategy<Value = TxnRequest> {
    (100usize..=crate::proto::TXN_DEPTH_MAX + 2, put()).prop_map(|(depth, put)| {
        let put = RequestOp {
            request: Some(request_op::Request::RequestPut(put)),
        };
        crate::proto::nested_txn(depth, put)
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        3 => range().prop_map(Request::Range),
        6 => put().prop_map(Request::Put),
        2 => delete().prop_map(Request::DeleteRange),
        6 => txn().prop_map(Request::Txn),
        1 => deep_txn().prop_map(Request::Txn),
        1 => (small_i64(), any::<bool>()).prop_map(|(revision, physical)| {
            Request::Compaction(CompactionRequest { revision, physical })
        }),
    ]
}

/// The API's checks for each kind of request (compaction has none before
/// raft: its revision is checked at apply).
fn validate(request: &Request) -> Result<(), Error> {
    match request {
        Request::Range(range) => validate::range(range),
        Request::Put(put) => validate::put(put),
        Request::DeleteRange(delete) => validate::delete_range(delete),
        Request::Txn(txn) => validate::txn(txn, MAX_TXN_OPS),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn whatever_passes_validation_decodes_to_itself_and_applies(
        requests in prop::collection::vec(request(), 1..12)
    ) {
        let mut from_entries = StateMachine::new(0, Members::default());
        let mut direct = StateMachine::new(0, Members::default());
        let mut index = 0;
        for (id, request) in requests.into_iter().enumerate() {
            if validate(&request).is_err() {
                continue; // refused before raft: never committed
            }
            index += 1;
            let entry = InternalRequest { id: id as u64, request: Some(request), auth: None };
            let bytes = entry.encode_to_vec();
            let decoded = InternalRequest::decode(&bytes[..]);
            prop_assert!(decoded.is_ok(), "a validated request must decode: {decoded:?}");
            let decoded = decoded.unwrap();
            prop_assert_eq!(&decoded, &entry);
            let applied = from_entries.apply(index, decoded.request.as_ref());
            let expected = direct.apply(index, entry.request.as_ref());
            prop_assert_eq!(applied, expected);
        }
        prop_assert_eq!(from_entries.state_hash().unwrap(), direct.state_hash().unwrap());
    }
}

/// Lease operations over a few ids, mixed with key writes.
fn lease_request() -> impl Strategy<Value = Request> {
    let id = 1i64..4;
    prop_oneof![
        2 => (id.clone(), 1i64..100).prop_map(|(id, ttl)| Request::LeaseGrant(
            crate::proto::etcdserverpb::LeaseGrantRequest { id, ttl }
        )),
        1 => id.clone().prop_map(|id| Request::LeaseRevoke(
            crate::proto::etcdserverpb::LeaseRevokeRequest { id }
        )),
        1 => (id.clone(), 0u64..20).prop_map(|(id, renewed_at)| Request::LeaseExpire(
            crate::proto::detcdpb::LeaseExpiries {
                expiries: vec![crate::proto::detcdpb::LeaseExpiry { id, renewed_at }],
            }
        )),
        4 => (prop::sample::select(vec!["a", "b", "c", "d"]), 0i64..4).prop_map(|(key, lease)| {
            Request::Put(PutRequest { key: key.into(), lease, ..Default::default() })
        }),
        1 => prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(|key| {
            Request::DeleteRange(DeleteRangeRequest { key: key.into(), ..Default::default() })
        }),
        2 => txn().prop_map(Request::Txn),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Each lease's keys are exactly the live keys that name it, after
    /// every step and after a trip through the state image; a failed
    /// request changes nothing.
    #[test]
    fn lease_keys_match_the_live_keys_that_name_them(
        requests in prop::collection::vec(lease_request(), 1..30)
    ) {
        let mut machine = StateMachine::new(0, Members::default());
        for (index, request) in requests.iter().enumerate() {
            if validate(request).is_err() {
                continue;
            }
            let before = StateMachine::decode(&machine.encode().unwrap(), 0).unwrap();
            let result = machine.apply(index as u64 + 1, Some(request)).unwrap();
            if result.is_err() {
                // Only the applied index moved.
                prop_assert_eq!(machine.store().state_hash().unwrap(), before.store().state_hash().unwrap());
                prop_assert_eq!(machine.leases(), before.leases());
            }
            let live = machine
                .range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() })
                .unwrap();
            for lease in machine.leases().iter() {
                let expected: Vec<Vec<u8>> = live
                    .kvs
                    .iter()
                    .filter(|kv| kv.lease == lease.id)
                    .map(|kv| kv.key.clone())
                    .collect();
                let attached: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
                prop_assert_eq!(attached, expected, "lease {} after {:?}", lease.id, request);
            }
            for kv in &live.kvs {
                if kv.lease != 0 {
                    prop_assert!(
                        machine.leases().contains(kv.lease),
                        "key {:?} names lease {} that is gone", kv.key, kv.lease
                    );
                }
            }
        }
        let decoded = StateMachine::decode(&machine.encode().unwrap(), 0).unwrap();
        prop_assert_eq!(decoded.leases(), machine.leases());
        prop_assert_eq!(decoded.state_hash().unwrap(), machine.state_hash().unwrap());
    }
}
