//! What a hostile or careless client must not be able to do to a cluster:
//! a request that passes the API's checks is applied on every member, and
//! every member keeps serving, before and after a restart. Passes against
//! the reference etcd 3.4.23 too (`DETCD_IT_FLAVOR=etcd`).

use detcd::client::{Client, ClientError};
use detcd::proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

use crate::cluster_support::{Cluster, Consistency};

/// etcd's answer to a transaction over its op budget (`ErrGRPCTooManyOps`).
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";

/// `depth` transactions, each the only success op of its parent (the
/// outermost counts), with a put of `key` at the bottom.
fn nested_txn(depth: usize, key: &str) -> TxnRequest {
    let mut txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: format!("depth-{depth}").into_bytes(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    for _ in 1..depth {
        txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(txn)),
            }],
            ..Default::default()
        };
    }
    txn
}

fn send_txn(endpoint: &str, txn: TxnRequest) -> Result<(), ClientError> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = Client::new(vec![endpoint.to_string()]);
        client.txn(txn).await.map(|_| ())
    })
}

#[test]
fn deeply_nested_txns_apply_on_every_member_as_in_etcd() {
    let mut cluster = Cluster::start("deeply-nested-txns", 3, &[]);
    let all = cluster.all();
    let leader = cluster.wait_for_leader(&all);
    let follower = all.iter().copied().find(|&m| m != leader).unwrap();

    tracing::info!("depths around prost's and etcd's limits are accepted, through a follower too");
    for (depth, via) in [(49, leader), (50, follower), (100, leader), (128, follower)] {
        let endpoint = &cluster.members[via].client_url;
        if let Err(error) = send_txn(endpoint, nested_txn(depth, &format!("nested-{depth}"))) {
            panic!("a {depth}-deep txn must apply, as in etcd: {error}");
        }
    }

    tracing::info!("one level past etcd's default op budget is refused with etcd's error");
    let refused = send_txn(
        &cluster.members[leader].client_url,
        nested_txn(129, "too-deep"),
    );
    match refused {
        Err(ClientError::Server(status)) => assert_eq!(status.message(), TOO_MANY_OPS),
        other => panic!("a 129-deep txn must be refused with {TOO_MANY_OPS:?}: {other:?}"),
    }

    tracing::info!("every member applied them and keeps serving");
    let check_all = |cluster: &Cluster| {
        for &member in &all {
            for depth in [49, 50, 100, 128] {
                let value = cluster.get(
                    member,
                    &format!("nested-{depth}"),
                    Consistency::Linearizable,
                );
                assert_eq!(value.as_deref(), Some(format!("depth-{depth}").as_str()));
            }
            assert_eq!(
                cluster.get(member, "too-deep", Consistency::Serializable),
                None
            );
        }
    };
    check_all(&cluster);
    cluster.put(follower, "after", "still-serving");

    tracing::info!("a restart replays the committed entries and every member comes back");
    for &member in &all {
        cluster.kill(member);
    }
    cluster.restart(&all);
    check_all(&cluster);
}
