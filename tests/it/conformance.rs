//! Answers real etcd client libraries' tests depend on, checked over raw
//! gRPC (or etcdctl) so the same test passes against the reference etcd
//! 3.4.23 (`DETCD_IT_FLAVOR=etcd`): headers where etcd sends them (and
//! not where it does not), gRPC codes, and the order of etcd's checks.

use detcd::proto::etcdserverpb::{
    cluster_client::ClusterClient, maintenance_client::MaintenanceClient, DefragmentRequest,
    MemberListRequest, MoveLeaderRequest, PutRequest, StatusRequest, WatchResponse,
};
use tonic::Code;

use crate::cluster_support::{flavor_from_env, Cluster};
use crate::support::ServerProcess;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn headers_are_where_etcd_sends_them() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let mut maintenance = MaintenanceClient::connect(url.clone()).await.unwrap();
        let status = maintenance
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        let header = status.header.expect("Status has a header");
        assert!(header.revision > 0, "Status's header has the revision");

        phase!("Defragment and MoveLeader answer without a header");
        let defragment = maintenance.defragment(DefragmentRequest {}).await.unwrap();
        assert_eq!(defragment.into_inner().header, None);
        let move_leader = maintenance
            .move_leader(MoveLeaderRequest {
                target_id: status.leader,
            })
            .await
            .unwrap();
        assert_eq!(move_leader.into_inner().header, None);

        phase!("a snapshot's pieces come without a header");
        let mut pieces = maintenance
            .snapshot(detcd::proto::etcdserverpb::SnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        let mut count = 0;
        while let Some(piece) = pieces.message().await.unwrap() {
            assert_eq!(piece.header, None, "piece {count}");
            count += 1;
        }
        assert!(count >= 2, "the file's pieces, then its checksum");

        phase!("MemberList's header has ids and term, and no revision");
        let mut cluster = ClusterClient::connect(url).await.unwrap();
        let list = cluster
            .member_list(MemberListRequest::default())
            .await
            .unwrap()
            .into_inner();
        let header = list.header.expect("MemberList has a header");
        assert_eq!(header.revision, 0, "{header:?}");
        assert_eq!(header.member_id, status.leader);
        assert!(header.cluster_id != 0 && header.raft_term > 0, "{header:?}");
    });
}

#[test]
fn an_oversized_message_is_resource_exhausted_as_in_grpc_go() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let mut kv = detcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .unwrap();
        let put = PutRequest {
            key: b"big".to_vec(),
            value: vec![b'x'; 10 * 1024 * 1024],
            ..Default::default()
        };
        let status = kv.put(put).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("grpc: received message larger than max ("),
            "{status:?}"
        );
    });
}

#[test]
fn an_oversized_watch_request_is_resource_exhausted_too() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        use tokio_stream::StreamExt as _;
        let mut watch = detcd::proto::etcdserverpb::watch_client::WatchClient::connect(url)
            .await
            .unwrap();
        let create = detcd::proto::etcdserverpb::WatchRequest {
            request_union: Some(
                detcd::proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(
                    detcd::proto::etcdserverpb::WatchCreateRequest {
                        key: vec![b'k'; 10 * 1024 * 1024],
                        ..Default::default()
                    },
                ),
            ),
        };
        let requests = tokio_stream::iter([create]).chain(tokio_stream::pending());
        let outcome = async { watch.watch(requests).await?.into_inner().message().await };
        let outcome = tokio::time::timeout(crate::support::STOP_TIMEOUT, outcome).await;
        match outcome {
            Ok(Err(status)) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            }
            other => panic!("the stream must end with RESOURCE_EXHAUSTED: {other:?}"),
        }
    });
}

/// Field 1 of WatchRequest is a message (create_request); a varint there
/// does not decode.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAWatchRequest {
    #[prost(uint64, tag = "1")]
    create_request: u64,
}

#[test]
fn a_watch_message_that_does_not_decode_ends_the_stream_with_internal() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<NotAWatchRequest, WatchResponse>::default();
        let path = http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
        use tokio_stream::StreamExt as _;
        let requests = tokio_stream::iter([NotAWatchRequest { create_request: 7 }])
            .chain(tokio_stream::pending());
        let outcome = async {
            let mut stream = grpc
                .streaming(tonic::Request::new(requests), path, codec)
                .await?
                .into_inner();
            stream.message().await
        };
        let outcome = tokio::time::timeout(crate::support::STOP_TIMEOUT, outcome).await;
        match outcome {
            Ok(Err(status)) => assert_eq!(status.code(), Code::Internal, "{status:?}"),
            other => panic!("the stream must end with INTERNAL: {other:?}"),
        }
    });
}

#[test]
fn promoting_a_lagging_voter_checks_readiness_first_as_etcd_does() {
    let mut cluster = Cluster::start("promote-lagging-voter", 3, &[]);
    let all = cluster.all();
    let leader = cluster.wait_for_leader(&all);
    let lagging = all.iter().copied().find(|&m| m != leader).unwrap();
    let lagging_id = cluster.member_id(lagging);
    cluster.kill(lagging);
    phase!("the stopped voter falls well behind the leader's log");
    for n in 0..30 {
        cluster.put(leader, &format!("k{n}"), "v");
    }
    let output = cluster.ctl(leader, &["member", "promote", &format!("{lagging_id:x}")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "readiness is checked before the member kind: {stderr}"
    );
}

/// A method or service the server does not have is UNIMPLEMENTED with
/// grpc-go's words, which clients show (a newer client calling a method
/// etcd 3.4 lacks, such as 3.7's RangeStream).
#[test]
fn unknown_methods_and_services_are_named_as_grpc_go_names_them() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        for (path, message) in [
            (
                "/etcdserverpb.KV/RangeStream",
                "unknown method RangeStream for service etcdserverpb.KV",
            ),
            ("/nosuch.Service/Get", "unknown service nosuch.Service"),
        ] {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let codec = tonic_prost::ProstCodec::<
                detcd::proto::etcdserverpb::RangeRequest,
                detcd::proto::etcdserverpb::RangeResponse,
            >::default();
            let status = grpc
                .unary(
                    tonic::Request::new(Default::default()),
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    codec,
                )
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unimplemented, "{path}");
            assert_eq!(status.message(), message, "{path}");
        }
    });
}

/// grpc-go, and so etcd, sends a stream's response headers with its first
/// message: a keepalive or watch stream the client has not written to yet
/// has not answered at all (a client's proxy that drops headers sent
/// early breaks the stream, as the Node etcd3 client's tests show).
#[test]
fn a_streams_headers_come_with_its_first_answer_as_in_grpc_go() {
    use detcd::proto::etcdserverpb::{
        lease_client::LeaseClient, watch_client::WatchClient, watch_request::RequestUnion,
        LeaseKeepAliveRequest, WatchCreateRequest, WatchRequest,
    };
    use tokio_stream::wrappers::ReceiverStream;
    // Long enough for headers sent at once to arrive; a slow machine can
    // only make this pass wrongly, never fail wrongly.
    const EARLY: std::time::Duration = std::time::Duration::from_millis(500);
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let mut leases = LeaseClient::connect(url.clone()).await.unwrap();
        let (requests, receiver) = tokio::sync::mpsc::channel(1);
        let call = leases.lease_keep_alive(ReceiverStream::new(receiver));
        tokio::pin!(call);
        let early = tokio::time::timeout(EARLY, &mut call).await;
        assert!(early.is_err(), "keepalive headers before any message");
        // An unknown lease: answered with TTL 0.
        requests
            .send(LeaseKeepAliveRequest { id: 0x1234 })
            .await
            .unwrap();
        let mut answers = call.await.unwrap().into_inner();
        assert_eq!(answers.message().await.unwrap().unwrap().ttl, 0);

        let mut watches = WatchClient::connect(url).await.unwrap();
        let (requests, receiver) = tokio::sync::mpsc::channel(1);
        let call = watches.watch(ReceiverStream::new(receiver));
        tokio::pin!(call);
        let early = tokio::time::timeout(EARLY, &mut call).await;
        assert!(early.is_err(), "watch headers before any message");
        let create = WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .unwrap();
        let mut answers = call.await.unwrap().into_inner();
        assert!(answers.message().await.unwrap().unwrap().created);
    });
}

/// Opens a watch stream on `url`, creates a watch on `key` (with
/// `watch_id`, 0 for any) and waits for its created answer. Returns the
/// request sender and the answers.
async fn watching(
    url: &str,
    key: &[u8],
    watch_id: i64,
) -> (
    tokio::sync::mpsc::Sender<detcd::proto::etcdserverpb::WatchRequest>,
    tonic::Streaming<WatchResponse>,
) {
    use detcd::proto::etcdserverpb::{
        watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest, WatchRequest,
    };
    let mut watches = WatchClient::connect(url.to_string()).await.unwrap();
    let (requests, receiver) = tokio::sync::mpsc::channel(4);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            watch_id,
            ..Default::default()
        })),
    };
    requests.send(create).await.unwrap();
    let call = watches.watch(tokio_stream::wrappers::ReceiverStream::new(receiver));
    let mut answers = call.await.unwrap().into_inner();
    let created = answers.message().await.unwrap().unwrap();
    assert!(created.created && !created.canceled, "{created:?}");
    (requests, answers)
}

/// A client that closes its side of the stream after its requests (a
/// one-shot `grpcurl -d`) still gets its events: etcd keeps sending until
/// the client cancels the call.
#[test]
fn a_watch_stream_the_client_half_closed_still_delivers_events() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let (requests, mut answers) = watching(&url, b"half", 0).await;
        drop(requests);
        let mut kv = detcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .unwrap();
        kv.put(PutRequest {
            key: b"half".to_vec(),
            value: b"closed".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let answer = tokio::time::timeout(crate::support::STOP_TIMEOUT, answers.message())
            .await
            .expect("the event arrives")
            .expect("the stream stays up")
            .expect("the stream stays open");
        assert_eq!(answer.events.len(), 1, "{answer:?}");
        assert_eq!(answer.events[0].kv.as_ref().unwrap().value, b"closed");
    });
}

/// A watch id already in use on the stream is refused with watch id -1,
/// as etcd 3.4.23 answers (not with the id asked for, which names the
/// watch that holds it), and that watch stays.
#[test]
fn a_duplicate_watch_id_is_refused_with_id_minus_one() {
    use detcd::proto::etcdserverpb::{
        watch_request::RequestUnion, WatchCreateRequest, WatchRequest,
    };
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let (requests, mut answers) = watching(&url, b"dup", 7).await;
        let again = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"other".to_vec(),
                watch_id: 7,
                ..Default::default()
            })),
        };
        requests.send(again).await.unwrap();
        let refused = answers.message().await.unwrap().unwrap();
        assert!(refused.created && refused.canceled, "{refused:?}");
        assert_eq!(refused.watch_id, -1, "{refused:?}");
        assert_eq!(
            refused.cancel_reason,
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
        let mut kv = detcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .unwrap();
        kv.put(PutRequest {
            key: b"dup".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
        let event = answers.message().await.unwrap().unwrap();
        assert_eq!(event.watch_id, 7, "watch 7 stays: {event:?}");
        assert_eq!(event.events.len(), 1, "{event:?}");
    });
}

/// The server picks a new id for every watch on a stream, never one a
/// cancelled watch had, and a create whose range selects nothing (its end
/// at or before its key) is refused as etcd 3.4.23 refuses it.
#[test]
fn watch_ids_are_not_reused_and_an_empty_range_is_refused() {
    use detcd::proto::etcdserverpb::{
        watch_request::RequestUnion, WatchCancelRequest, WatchCreateRequest, WatchRequest,
    };
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let (requests, mut answers) = watching(&url, b"first", 0).await;
        let cancel = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 0,
            })),
        };
        requests.send(cancel).await.unwrap();
        let cancelled = within(answers.message()).await.unwrap().unwrap();
        assert!(
            cancelled.canceled && cancelled.watch_id == 0,
            "{cancelled:?}"
        );
        let create = |key: &[u8], range_end: &[u8]| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                ..Default::default()
            })),
        };
        requests.send(create(b"second", b"")).await.unwrap();
        let created = within(answers.message()).await.unwrap().unwrap();
        assert!(created.created && !created.canceled, "{created:?}");
        assert_eq!(created.watch_id, 1, "id 0 is not handed out again");
        for (key, range_end) in [(&b"b"[..], &b"a"[..]), (b"b", b"b")] {
            requests.send(create(key, range_end)).await.unwrap();
            let refused = within(answers.message()).await.unwrap().unwrap();
            assert!(refused.created && refused.canceled, "{refused:?}");
            assert_eq!(refused.watch_id, -1, "{refused:?}");
            assert_eq!(refused.cancel_reason, "mvcc: watcher range is empty");
        }
        // "\0" is not an end before the key: it means every key from it on.
        requests.send(create(b"b", b"\0")).await.unwrap();
        let created = within(answers.message()).await.unwrap().unwrap();
        assert!(created.created && !created.canceled, "{created:?}");
        assert_eq!(created.watch_id, 2, "a refused create used no id");
    });
}

/// `--max-concurrent-streams`: a connection holding as many streams as
/// the limit gets no other call through until one ends (etcd's default
/// is no limit short of 2^32-1, not hyper's 200).
#[test]
fn a_connection_at_the_stream_limit_waits_for_a_stream_to_end() {
    let server = ServerProcess::start(flavor_from_env(), &["--max-concurrent-streams=2"]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        use detcd::proto::etcdserverpb::kv_client::KvClient;
        let channel = within(
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect(),
        )
        .await
        .unwrap();
        phase!("two watch streams, each created, fill the connection's limit");
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(created_watch(channel.clone()).await);
        }
        phase!("a put on the same connection waits while both are open");
        let mut kv = KvClient::new(channel.clone());
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let blocked =
            tokio::time::timeout(std::time::Duration::from_secs(2), kv.put(put.clone())).await;
        assert!(blocked.is_err(), "a third stream got through: {blocked:?}");
        phase!("once one stream is cancelled, the put goes through");
        drop(held.pop());
        let put = within(kv.put(put)).await;
        assert!(put.is_ok(), "the put goes once a stream ended: {put:?}");
    });
}

/// A watch stream on `channel` whose watch on `w` the server has
/// created; dropping both halves cancels it.
async fn created_watch(
    channel: tonic::transport::Channel,
) -> (
    tokio::sync::mpsc::Sender<detcd::proto::etcdserverpb::WatchRequest>,
    tonic::Streaming<WatchResponse>,
) {
    use detcd::proto::etcdserverpb::{
        watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest, WatchRequest,
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut watch = WatchClient::new(channel);
    let mut responses = within(watch.watch(requests)).await.unwrap().into_inner();
    let created = within(responses.message()).await.unwrap();
    assert!(created.is_some_and(|response| response.created));
    (sender, responses)
}

/// Awaits `future`, failing the test if it takes longer than a server's
/// stop timeout.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(crate::support::STOP_TIMEOUT, future)
        .await
        .expect("answered in time")
}

/// A watch stream its client cancels is counted as handled with code
/// Canceled (grpc-go's interceptor does; etcd's e2e metrics test looks).
#[test]
fn a_cancelled_watch_stream_is_counted_as_canceled() {
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    let canceled = "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1";
    runtime().block_on(async {
        let channel = within(
            tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect(),
        )
        .await
        .unwrap();
        drop(created_watch(channel).await);
    });
    let counted = crate::support::eventually(crate::support::STOP_TIMEOUT, || {
        crate::operations::metrics(&url).contains(canceled)
    });
    assert!(counted, "{}", crate::operations::metrics(&url));
}

/// Every message `answers` brings within a stop timeout until `until`
/// holds for one, that one included.
async fn read_until(
    answers: &mut tonic::Streaming<WatchResponse>,
    until: impl Fn(&WatchResponse) -> bool,
) -> Vec<WatchResponse> {
    let mut seen = Vec::new();
    loop {
        let answer = within(answers.message())
            .await
            .expect("the stream stays up")
            .expect("the stream stays open");
        let done = until(&answer);
        seen.push(answer);
        if done {
            return seen;
        }
    }
}

/// A cancelled watch answers `canceled` once and hears nothing after,
/// while the other watch on the stream goes on; cancelling an id the
/// stream does not have answers nothing.
#[test]
fn a_cancelled_watch_hears_nothing_more() {
    use detcd::proto::etcdserverpb::{
        watch_request::RequestUnion, WatchCancelRequest, WatchCreateRequest, WatchRequest,
    };
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let (requests, mut answers) = watching(&url, b"c", 1).await;
        let create = |key: &[u8], watch_id| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.to_vec(),
                watch_id,
                ..Default::default()
            })),
        };
        let cancel = |watch_id| WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
        };
        requests.send(create(b"c", 2)).await.unwrap();
        let created = within(answers.message()).await.unwrap().unwrap();
        assert!(created.created && created.watch_id == 2, "{created:?}");
        phase!("cancel watch 1 (and 99, which the stream does not have)");
        requests.send(cancel(99)).await.unwrap();
        requests.send(cancel(1)).await.unwrap();
        let cancelled = within(answers.message()).await.unwrap().unwrap();
        assert!(
            cancelled.canceled && cancelled.watch_id == 1,
            "{cancelled:?}"
        );
        assert!(cancelled.events.is_empty(), "{cancelled:?}");
        phase!("a put on c, then watch 3 on d and a put on d");
        let mut kv = detcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .unwrap();
        let put = |key: &[u8]| PutRequest {
            key: key.to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        kv.put(put(b"c")).await.unwrap();
        requests.send(create(b"d", 3)).await.unwrap();
        // Watch 3 must exist before the put it is to see.
        let mut seen = read_until(&mut answers, |answer| {
            answer.watch_id == 3 && answer.created
        })
        .await;
        kv.put(put(b"d")).await.unwrap();
        // Events go out revision by revision: once watch 3 has the later
        // one, anything owed for the earlier one has been sent.
        seen.extend(
            read_until(&mut answers, |answer| {
                answer.watch_id == 3 && !answer.events.is_empty()
            })
            .await,
        );
        let ids: Vec<(i64, usize)> = (seen.iter())
            .map(|answer| (answer.watch_id, answer.events.len()))
            .collect();
        assert!(ids.contains(&(2, 1)), "watch 2 has the put on c: {ids:?}");
        assert!(
            seen.iter()
                .all(|answer| ![1, 99].contains(&answer.watch_id)),
            "nothing for watch 1 or 99: {seen:?}"
        );
    });
}

/// `--experimental-watch-progress-notify-interval`: a watch that asked
/// for progress hears the revision with no events when its keys are
/// quiet; a progress request answers for the whole stream (watch id -1).
#[test]
fn progress_notifications_come_at_the_configured_interval() {
    use detcd::proto::etcdserverpb::{
        watch_client::WatchClient, watch_request::RequestUnion, WatchCreateRequest,
        WatchProgressRequest, WatchRequest,
    };
    let server = ServerProcess::start(
        flavor_from_env(),
        &["--experimental-watch-progress-notify-interval=100ms"],
    );
    let url = server.client_url.clone();
    runtime().block_on(async {
        let mut watches = WatchClient::connect(url.clone()).await.unwrap();
        let (requests, receiver) = tokio::sync::mpsc::channel(4);
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"quiet".to_vec(),
                    progress_notify: true,
                    watch_id: 5,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        let call = watches.watch(tokio_stream::wrappers::ReceiverStream::new(receiver));
        let mut answers = within(call).await.unwrap().into_inner();
        let created = within(answers.message()).await.unwrap().unwrap();
        assert!(created.created && created.watch_id == 5, "{created:?}");
        let mut kv = detcd::proto::etcdserverpb::kv_client::KvClient::connect(url)
            .await
            .unwrap();
        let put = kv
            .put(PutRequest {
                key: b"elsewhere".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let revision = put.header.unwrap().revision;
        phase!("progress notifications reach the put's revision");
        let seen = read_until(&mut answers, |answer| {
            answer
                .header
                .as_ref()
                .is_some_and(|h| h.revision >= revision)
        })
        .await;
        for answer in &seen {
            assert_eq!(answer.watch_id, 5, "{answer:?}");
            assert!(answer.events.is_empty() && !answer.created, "{answer:?}");
        }
        phase!("a progress request answers with watch id -1");
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
            })
            .await
            .unwrap();
        let stream_wide = read_until(&mut answers, |answer| answer.watch_id == -1).await;
        let answer = stream_wide.last().unwrap();
        assert_eq!(answer.header.as_ref().unwrap().revision, revision);
        assert!(answer.events.is_empty() && !answer.canceled, "{answer:?}");
    });
}

/// MemberUpdate changes a member's peer URLs (an unknown id is not
/// found), and a second learner is refused, as etcd 3.4 allows one.
#[test]
fn member_update_and_the_learner_limit_answer_as_etcd() {
    use detcd::proto::etcdserverpb::{MemberAddRequest, MemberUpdateRequest};
    let server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    runtime().block_on(async {
        let mut cluster = ClusterClient::connect(url).await.unwrap();
        let list = |cluster: &mut ClusterClient<_>| {
            let mut cluster = cluster.clone();
            async move {
                (cluster.member_list(MemberListRequest::default()).await)
                    .unwrap()
                    .into_inner()
                    .members
            }
        };
        let me = list(&mut cluster).await[0].clone();
        let moved = vec!["http://127.0.0.1:1".to_string()];
        cluster
            .member_update(MemberUpdateRequest {
                id: me.id,
                peer_ur_ls: moved.clone(),
            })
            .await
            .unwrap();
        let after = list(&mut cluster).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].peer_ur_ls, moved, "{after:?}");
        assert_eq!(after[0].name, me.name);
        let unknown = cluster
            .member_update(MemberUpdateRequest {
                id: me.id ^ 1,
                peer_ur_ls: vec!["http://127.0.0.1:2".into()],
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(unknown.message(), "etcdserver: member not found");

        phase!("one learner is admitted, a second is refused");
        let learner = |port: u16| MemberAddRequest {
            peer_ur_ls: vec![format!("http://127.0.0.1:{port}")],
            is_learner: true,
        };
        cluster.member_add(learner(3)).await.unwrap();
        let second = cluster.member_add(learner(4)).await.unwrap_err();
        assert_eq!(second.code(), Code::FailedPrecondition);
        assert_eq!(
            second.message(),
            "etcdserver: too many learner members in cluster"
        );
        assert_eq!(list(&mut cluster).await.len(), 2);
    });
}

/// gRPC's health service, as etcd registers it: the server as a whole
/// (service "") is SERVING, any other name is unknown ("unknown service",
/// NotFound; SERVICE_UNKNOWN on a Watch, which stays open); a Watch ends
/// when the server stops.
#[test]
fn the_grpc_health_service_answers_as_etcds() {
    use detcd::proto::grpc_health_v1::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    use tokio_stream::StreamExt as _;
    let mut server = ServerProcess::start(flavor_from_env(), &[]);
    let url = server.client_url.clone();
    let runtime = runtime();
    let mut watching = runtime.block_on(async {
        let mut health = HealthClient::connect(url).await.unwrap();
        let ask = |service: &str| HealthCheckRequest {
            service: service.to_string(),
        };
        let whole = health.check(ask("")).await.unwrap().into_inner();
        assert_eq!(whole.status(), ServingStatus::Serving);
        let unknown = health.check(ask("etcdserverpb.KV")).await.unwrap_err();
        assert_eq!(
            (unknown.code(), unknown.message()),
            (Code::NotFound, "unknown service")
        );

        phase!("Watch: the status at once, and the stream stays open");
        let mut unknown = health.watch(ask("nothing")).await.unwrap().into_inner();
        let first = unknown.next().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::ServiceUnknown);
        let mut watching = health.watch(ask("")).await.unwrap().into_inner();
        let first = watching.next().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);
        let more = tokio::time::timeout(std::time::Duration::from_millis(500), watching.next());
        assert!(more.await.is_err(), "the Watch sent more or ended");
        watching
    });

    phase!("the server stops: the Watch ends");
    server.terminate();
    runtime.block_on(async {
        let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(Ok(_)) = watching.next().await {}
        });
        assert!(ended.await.is_ok(), "the Watch outlived its server");
    });
}
