//! A client that sends what a careless or hostile client might: nested
//! transactions up to and past etcd's depth, transactions at the op limit,
//! values up to and past the request size limit, odd enum values, negative
//! limits and revisions, empty keys. Whatever the members answer, none may
//! stop, and all must converge (HashKV covers its keys): apply has to be
//! deterministic for every shape a request can take.
//!
//! It writes only under `hostile/`, outside the workload's keys and the
//! watcher's range, so the linearizability and watch checks are unchanged.

use std::time::Duration;

use detcd::client::Client;
use detcd::proto::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use madsim::rand::Rng;

use super::trace::Trace;
use crate::workload::REQUEST_TIMEOUT;

/// Pause between two hostile requests, at most.
const INTERVAL_MAX: Duration = Duration::from_millis(400);
/// The prefix every hostile write stays under.
const PREFIX: &str = "hostile/";
/// One past the prefix: `[PREFIX, PREFIX_END)` holds every hostile key.
const PREFIX_END: &str = "hostile0";

fn key(name: impl std::fmt::Display) -> Vec<u8> {
    format!("{PREFIX}{name}").into_bytes()
}

fn put(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

/// `depth` transactions, each the only op of its parent, a put at the bottom.
fn nested(depth: usize, rng: &mut impl Rng) -> TxnRequest {
    let mut txn = TxnRequest {
        success: vec![put(key("deep"), depth.to_string().into_bytes())],
        ..Default::default()
    };
    for _ in 1..depth {
        let op = RequestOp {
            request: Some(request_op::Request::RequestTxn(txn)),
        };
        // Either branch: a compare that never holds picks failure.
        txn = if rng.gen_bool(0.5) {
            TxnRequest {
                success: vec![op],
                ..Default::default()
            }
        } else {
            TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Version as i32,
                    key: key("never"),
                    target_union: Some(compare::TargetUnion::Version(-1)),
                    ..Default::default()
                }],
                failure: vec![op],
                ..Default::default()
            }
        };
    }
    txn
}

fn odd_range(rng: &mut impl Rng) -> RangeRequest {
    RangeRequest {
        key: if rng.gen_bool(0.2) {
            vec![0]
        } else {
            b"a".to_vec()
        },
        range_end: vec![0],
        limit: rng.gen_range(-5..20),
        revision: rng.gen_range(-5..2000),
        sort_order: rng.gen_range(-2..6),
        sort_target: rng.gen_range(-2..8),
        serializable: rng.gen_bool(0.5),
        keys_only: rng.gen_bool(0.3),
        count_only: rng.gen_bool(0.2),
        min_mod_revision: rng.gen_range(-2..100),
        max_mod_revision: rng.gen_range(-2..100),
        min_create_revision: rng.gen_range(-2..100),
        max_create_revision: rng.gen_range(-2..100),
    }
}

fn odd_compares(rng: &mut impl Rng) -> TxnRequest {
    let compares = (0..rng.gen_range(1..4))
        .map(|n| Compare {
            result: rng.gen_range(-1..6),
            target: rng.gen_range(-1..7),
            key: if n == 0 { b"k0".to_vec() } else { key(n) },
            range_end: if rng.gen_bool(0.3) {
                vec![0]
            } else {
                Vec::new()
            },
            target_union: match rng.gen_range(0..6) {
                0 => None,
                1 => Some(compare::TargetUnion::Version(rng.gen_range(-2..5))),
                2 => Some(compare::TargetUnion::CreateRevision(rng.gen_range(-2..50))),
                3 => Some(compare::TargetUnion::ModRevision(rng.gen_range(-2..50))),
                4 => Some(compare::TargetUnion::Value(vec![0xff, 0])),
                _ => Some(compare::TargetUnion::Lease(rng.gen_range(-2..5))),
            },
        })
        .collect();
    TxnRequest {
        compare: compares,
        success: vec![put(key("cmp-then"), b"1".to_vec())],
        failure: vec![
            put(key("cmp-else"), b"2".to_vec()),
            RequestOp {
                request: Some(request_op::Request::RequestRange(odd_range(rng))),
            },
        ],
    }
}

/// Sends hostile requests until `deadline`; returns how many it sent.
pub async fn run(endpoints: Vec<String>, deadline: tokio::time::Instant, trace: Trace) -> usize {
    let mut client = Client::new(endpoints).with_request_timeout(REQUEST_TIMEOUT);
    let max_request_bytes = detcd::config::DEFAULT_MAX_REQUEST_BYTES as usize;
    let mut sent = 0;
    while tokio::time::Instant::now() < deadline {
        let pause = madsim::rand::thread_rng().gen_range(0..INTERVAL_MAX.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let choice = madsim::rand::thread_rng().gen_range(0..100);
        let (kind, outcome) = match choice {
            0..=24 => {
                let depth =
                    madsim::rand::thread_rng().gen_range(1..=detcd::proto::TXN_DEPTH_MAX + 2);
                let txn = nested(depth, &mut madsim::rand::thread_rng());
                (format!("txn {depth} deep"), client.txn(txn).await.map(drop))
            }
            25..=34 => {
                let ops = 128 + madsim::rand::thread_rng().gen_range(0..2);
                let txn = TxnRequest {
                    success: (0..ops)
                        .map(|n| put(key(format!("wide{n}")), vec![b'w']))
                        .collect(),
                    ..Default::default()
                };
                (
                    format!("txn with {ops} ops"),
                    client.txn(txn).await.map(drop),
                )
            }
            35..=54 => {
                let range = odd_range(&mut madsim::rand::thread_rng());
                ("odd range".to_string(), client.range(range).await.map(drop))
            }
            55..=74 => {
                let txn = odd_compares(&mut madsim::rand::thread_rng());
                ("odd compares".to_string(), client.txn(txn).await.map(drop))
            }
            75..=76 => {
                // Around the request size limit (rare: big values slow the
                // simulation down): some fit, some are refused.
                let size = max_request_bytes - 64 + madsim::rand::thread_rng().gen_range(0..128);
                let request = PutRequest {
                    key: key("big"),
                    value: vec![b'b'; size],
                    ..Default::default()
                };
                (
                    format!("put of {size} bytes"),
                    client.put(request).await.map(drop),
                )
            }
            77..=89 => {
                let request = PutRequest {
                    key: if madsim::rand::thread_rng().gen_bool(0.5) {
                        Vec::new()
                    } else {
                        key("lease")
                    },
                    lease: madsim::rand::thread_rng().gen_range(-1..3),
                    ignore_value: madsim::rand::thread_rng().gen_bool(0.3),
                    ignore_lease: madsim::rand::thread_rng().gen_bool(0.3),
                    prev_kv: true,
                    ..Default::default()
                };
                ("odd put".to_string(), client.put(request).await.map(drop))
            }
            _ => {
                let request = DeleteRangeRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: PREFIX_END.as_bytes().to_vec(),
                    prev_kv: true,
                };
                (
                    "delete the prefix".to_string(),
                    client.delete_range(request).await.map(drop),
                )
            }
        };
        sent += 1;
        trace.record(format!(
            "hostile: {kind}: {}",
            outcome.map_or_else(|error| error.to_string(), |()| "ok".into())
        ));
    }
    sent
}
