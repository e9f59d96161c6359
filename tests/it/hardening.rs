//! What a hostile or careless client must not be able to do to a cluster:
//! a request that passes the API's checks is applied on every member, and
//! every member keeps serving, before and after a restart. Passes against
//! the reference etcd 3.4.23 too (`DETCD_IT_FLAVOR=etcd`).

use detcd::client::{Client, ClientError};
use detcd::proto::detcdpb::{
    internal_request, raft_client::RaftClient, InternalRequest, RaftBatch, SnapshotChunk,
};
use detcd::proto::etcdserverpb::{
    request_op, watch_client::WatchClient, watch_request, PutRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};

use crate::cluster_support::{flavor_from_env, Cluster, Consistency};
use crate::support::{Flavor, ServerProcess};
use raft::eraftpb::MessageType;

/// etcd's answer to a transaction over its op budget (`ErrGRPCTooManyOps`).
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";

/// A `depth`-deep transaction (etcd's budget allows 128) putting `key`.
fn nested_txn(depth: usize, key: &str) -> TxnRequest {
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: format!("depth-{depth}").into_bytes(),
            ..Default::default()
        })),
    };
    detcd::proto::nested_txn(depth, put)
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

    phase!("depths around prost's and etcd's limits are accepted, through a follower too");
    for (depth, via) in [(49, leader), (50, follower), (100, leader), (128, follower)] {
        let endpoint = &cluster.members[via].client_url;
        if let Err(error) = send_txn(endpoint, nested_txn(depth, &format!("nested-{depth}"))) {
            panic!("a {depth}-deep txn must apply, as in etcd: {error}");
        }
    }

    phase!("one level past etcd's default op budget is refused with etcd's error");
    let refused = send_txn(
        &cluster.members[leader].client_url,
        nested_txn(129, "too-deep"),
    );
    match refused {
        Err(ClientError::Server(status)) => assert_eq!(status.message(), TOO_MANY_OPS),
        other => panic!("a 129-deep txn must be refused with {TOO_MANY_OPS:?}: {other:?}"),
    }

    phase!("every member applied them and keeps serving");
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

    phase!("a restart replays the committed entries and every member comes back");
    for &member in &all {
        cluster.kill(member);
    }
    cluster.restart(&all);
    check_all(&cluster);
}

#[test]
fn sigterm_stops_a_member_with_open_connections_and_a_watch() {
    let flavor = flavor_from_env();
    let mut server = ServerProcess::start(flavor, &[]);
    let address = server.client_url.trim_start_matches("http://").to_string();

    phase!("a client holds an idle socket, an idle HTTP/2 connection and a watch");
    let _idle_socket = std::net::TcpStream::connect(&address).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = server.client_url.clone();
    let (mut watch, _idle_channel, _requests) = runtime.block_on(async {
        let idle = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = WatchClient::connect(endpoint).await.unwrap();
        let (requests, receiver) = tokio::sync::mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"watched".to_vec(),
                    ..Default::default()
                },
            )),
        };
        requests.send(create).await.unwrap();
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        let created = stream.message().await.unwrap().unwrap();
        assert!(created.created, "the watch is set up: {created:?}");
        (stream, idle, requests)
    });

    phase!("SIGTERM: the member exits cleanly although every connection stays open");
    let exit = server.terminate();
    // etcd re-raises the signal once its handlers ran: no exit code.
    let clean = exit == Some(0) || (flavor == Flavor::Etcd && exit.is_none());
    assert!(clean, "exit {exit:?}\n{}", server.log());

    phase!("the watcher hears that its stream ended, with an error");
    let ended = runtime.block_on(async {
        tokio::time::timeout(crate::support::STOP_TIMEOUT, watch.message()).await
    });
    match ended {
        Ok(Err(status)) => phase!(%status, "the watch ended"),
        other => panic!("the watch must end with an error: {other:?}"),
    }
}

#[test]
fn sigterm_stopped_members_no_longer_vote() {
    let mut cluster = Cluster::start("sigterm-stops-voting", 3, &[]);
    let all = cluster.all();
    let leader = cluster.wait_for_leader(&all);
    cluster.put(leader, "before", "1");

    phase!("the leader stops first: it hands over, so the others keep a leader");
    cluster.terminate(leader);
    let rest: Vec<usize> = all.iter().copied().filter(|&m| m != leader).collect();
    let new_leader = cluster.wait_for_leader(&rest);
    cluster.put(new_leader, "one-stopped", "2");

    phase!("with 2 of 3 stopped, the last member cannot write: nobody votes for it");
    let other = rest.iter().copied().find(|&m| m != new_leader).unwrap();
    cluster.terminate(other);
    let put = cluster.ctl(
        new_leader,
        &["--command-timeout=3s", "put", "two-stopped", "3"],
    );
    assert!(
        !put.status.success(),
        "a write without a quorum must fail: {}",
        String::from_utf8_lossy(&put.stdout)
    );

    phase!("restarted, the cluster has every acknowledged write");
    cluster.restart(&[leader, other]);
    for member in all {
        assert_eq!(
            cluster
                .get(member, "one-stopped", Consistency::Linearizable)
                .as_deref(),
            Some("2")
        );
    }
}

/// A raft message as a forger writes it, from ids any response header or
/// `member list` shows.
fn forged(kind: MessageType, from: u64, to: u64, term: u64, commit: u64) -> Vec<u8> {
    use protobuf::Message as _;
    let mut message = raft::eraftpb::Message::default();
    message.set_msg_type(kind);
    message.from = from;
    message.to = to;
    message.term = term;
    message.commit = commit;
    if kind == MessageType::MsgAppend {
        let put = InternalRequest {
            id: 1,
            request: Some(internal_request::Request::Put(PutRequest {
                key: b"forged".to_vec(),
                value: b"by a stranger".to_vec(),
                ..Default::default()
            })),
            auth: None,
        };
        let entry = raft::eraftpb::Entry {
            index: 1_000,
            term,
            data: prost::Message::encode_to_vec(&put).into(),
            ..Default::default()
        };
        message.entries = vec![entry].into();
        message.index = 999;
        message.log_term = term;
    }
    message.write_to_bytes().unwrap()
}

#[test]
fn forged_peer_messages_are_dropped_and_no_member_panics() {
    let cluster = Cluster::start("forged-peer-messages", 3, &[]);
    let all = cluster.all();
    let leader = cluster.wait_for_leader(&all);
    let target = all.iter().copied().find(|&m| m != leader).unwrap();
    let list = cluster.member_list(target);
    let target_id = cluster.member_id(target);
    let peer_id = cluster.member_id(leader);
    let stranger = 0x5eed_f00d;

    phase!("forge what a peer could send: a heartbeat committing past the log, a stranger's append, local-only types");
    let batch = |from: u64, messages: Vec<Vec<u8>>| RaftBatch {
        cluster_id: list.cluster_id,
        from,
        to: target_id,
        messages,
    };
    let batches = vec![
        batch(
            peer_id,
            vec![forged(
                MessageType::MsgHeartbeat,
                peer_id,
                target_id,
                1,
                1_000_000_000,
            )],
        ),
        batch(
            stranger,
            vec![forged(
                MessageType::MsgAppend,
                stranger,
                target_id,
                1_000,
                1_000,
            )],
        ),
        batch(
            stranger,
            vec![forged(
                MessageType::MsgHeartbeat,
                stranger,
                target_id,
                1_000,
                0,
            )],
        ),
        batch(
            target_id,
            vec![forged(
                MessageType::MsgHeartbeat,
                target_id,
                target_id,
                1,
                0,
            )],
        ),
        batch(
            peer_id,
            vec![forged(MessageType::MsgHup, peer_id, target_id, 1, 0)],
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = RaftClient::connect(cluster.members[target].peer_url.clone())
            .await
            .unwrap();
        // The stream may end with an error status; only the member's
        // survival matters here.
        let _ = client.stream(tokio_stream::iter(batches)).await;
    });

    phase!("the member is still up, wrote nothing forged, and its term did not jump");
    cluster.put(target, "after-forgery", "ok");
    for &member in &all {
        assert_eq!(
            cluster.get(member, "forged", Consistency::Linearizable),
            None
        );
        assert_eq!(
            cluster
                .get(member, "after-forgery", Consistency::Linearizable)
                .as_deref(),
            Some("ok")
        );
    }
    let status = &cluster.statuses(&[target])[0];
    assert!(
        status.raft_term < 1_000,
        "a stranger set the term: {status:?}"
    );
    assert!(
        cluster.log(target).contains("dropped a peer message"),
        "the drop is logged"
    );
}

#[test]
fn forged_snapshots_are_refused_before_raft_hears_of_them() {
    use protobuf::Message as _;
    let cluster = Cluster::start("forged-snapshots", 3, &[]);
    let all = cluster.all();
    let leader = cluster.wait_for_leader(&all);
    let target = all.iter().copied().find(|&m| m != leader).unwrap();
    let list = cluster.member_list(target);
    let target_id = cluster.member_id(target);
    let peer_id = cluster.member_id(leader);
    let mut snapshot = raft::eraftpb::Message::default();
    snapshot.set_msg_type(MessageType::MsgSnapshot);
    snapshot.from = peer_id;
    snapshot.to = target_id;
    snapshot.term = 1;
    snapshot.mut_snapshot().mut_metadata().index = 1_000;
    snapshot.mut_snapshot().mut_metadata().term = 1;
    let snapshot = snapshot.write_to_bytes().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (in_batch, in_call) = runtime.block_on(async {
        let mut client = RaftClient::connect(cluster.members[target].peer_url.clone())
            .await
            .unwrap();
        phase!("a snapshot in a raft batch is refused: snapshots come in a call of their own");
        let batch = RaftBatch {
            cluster_id: list.cluster_id,
            from: peer_id,
            to: target_id,
            messages: vec![snapshot.clone()],
        };
        let in_batch = client.stream(tokio_stream::iter(vec![batch])).await;
        phase!("a Snapshot call whose stream fails its checks is refused");
        let chunks = vec![
            SnapshotChunk {
                cluster_id: list.cluster_id,
                from: peer_id,
                to: target_id,
                message: snapshot.clone(),
                stream: b"DSNP\x03\x00\x00\x00".to_vec(),
            },
            SnapshotChunk {
                cluster_id: list.cluster_id,
                from: peer_id,
                to: target_id,
                message: Vec::new(),
                stream: vec![0x55; 4096],
            },
        ];
        let in_call = client.snapshot(tokio_stream::iter(chunks)).await;
        (in_batch, in_call)
    });
    let refused = in_batch.expect_err("the batch is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    let refused = in_call.expect_err("the stream is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

    phase!("the member is up, kept no file of it, and its log did not jump");
    cluster.put(target, "after-forgery", "ok");
    assert_eq!(
        cluster
            .get(target, "after-forgery", Consistency::Linearizable)
            .as_deref(),
        Some("ok")
    );
    let snap_dir = cluster.members[target].data_dir.join("member/snap");
    let mut files = Vec::new();
    for dir in [snap_dir.clone(), snap_dir.join("incoming")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                files.push(entry.path());
            }
        }
    }
    assert!(files.is_empty(), "{files:?}");
    let status = &cluster.statuses(&[target])[0];
    assert!(
        status.raft_index < 1_000,
        "a forged snapshot moved the log: {status:?}"
    );
}
