//! Requests no workload sends, probed once per run on a member of the
//! healed cluster, each answer held to etcd 3.4.23's: watches from "now"
//! (start revision 0) and from a revision not yet written, over one key
//! and from a key on, a cancel, the ids a stream picks, an empty watch
//! range; HashKV at a past revision; a
//! compaction at the compact revision again, and at a future one; puts
//! and txns etcd refuses; a lease below the minimum TTL, and one through
//! its life. The
//! workloads judge the paths they use under faults; these run once, with
//! no fault, so that a bug on a path no workload takes is still seen.
//!
//! The probe writes keys under [`PREFIX`], which no workload reads or
//! watches, last in a run and only once every other check has passed:
//! what it finds never hides what they would.

use std::time::Duration;

use clap::Parser;
use detcd::client::{Client, ClientError};
use detcd::config::{Config, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, GRPC_OVERHEAD_BYTES};
use detcd::lease::MAX_LEASE_TTL;
use detcd::proto::authpb::{permission::Type as PermType, Permission};
use detcd::proto::etcdserverpb::alarm_request::AlarmAction;
use detcd::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op, watch_client::WatchClient, watch_request::RequestUnion, AlarmMember, AlarmRequest,
    AlarmType, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGrantRoleRequest,
    CompactionRequest, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use detcd::proto::mvccpb::{event::EventType, KeyValue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::etcd_workload::{COMPACTED, FUTURE_REVISION};

/// The probe's keys: outside every workload's range.
pub const PREFIX: &str = "zz-probe/";
/// How long the probe waits for one answer: far longer than a quiet
/// cluster takes.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// `Err` names what the member answered against etcd's behaviour; a
/// member that does not answer at all proves nothing and passes. With
/// `fragments`, also a fragmented watch catch-up (megabytes of puts).
pub async fn probe(endpoint: &str, fragments: bool) -> Result<(), String> {
    let Ok(mut kv) = KvClient::connect(endpoint.to_string()).await else {
        return Ok(());
    };
    let Ok(mut maintenance) = MaintenanceClient::connect(endpoint.to_string()).await else {
        return Ok(());
    };
    let Ok(mut watches) = WatchClient::connect(endpoint.to_string()).await else {
        return Ok(());
    };
    let key = |name: &str| format!("{PREFIX}{name}").into_bytes();
    // A member that takes no write proves nothing.
    if put(&mut kv, key("a")).await.is_none() {
        return Ok(());
    }
    // The store's hash now, to ask for again at this revision later.
    let Ok(hashed) = maintenance.hash_kv(HashKvRequest { revision: 0 }).await else {
        return Ok(());
    };
    let hashed = hashed.into_inner();
    let hashed_at = hashed.header.map_or(0, |header| header.revision);
    refusals(endpoint, &mut kv).await?;
    leases(endpoint).await?;
    no_space(endpoint, &mut kv, &mut maintenance).await?;

    // The current revision is a put of the one key, which a watch from
    // now must not hear.
    if put(&mut kv, key("a")).await.is_none() {
        return Ok(());
    }
    let (requests, outbound) = mpsc::channel(8);
    let Ok(answers) = watches.watch(ReceiverStream::new(outbound)).await else {
        return Ok(());
    };
    let mut stream = Stream {
        requests,
        answers: answers.into_inner(),
        malformed: Vec::new(),
    };
    let one_key = stream.create(key("a"), vec![]).await?;
    let from_key = stream.create(key("b"), vec![0]).await?;
    let created_at = one_key.1.max(from_key.1);
    if one_key.0 == from_key.0 {
        return Err(format!(
            "two watches on one stream got the same id {}",
            one_key.0
        ));
    }
    // Only "a" is the one key's; only "b" on (not "a0") is the other's.
    let (Some(_), Some(b), Some(a)) = (
        put(&mut kv, key("a0")).await,
        put(&mut kv, key("b")).await,
        put(&mut kv, key("a")).await,
    ) else {
        return Ok(());
    };
    let heard = stream.events_until_progress().await?;
    let expected = [(from_key.0, b, key("b")), (one_key.0, a, key("a"))];
    if heard != expected {
        return Err(format!(
            "watches from now (start revision 0, created at revision {created_at}) on the one \
             key {PREFIX}a (id {}) and from the key {PREFIX}b on (id {}) heard {} after puts \
             of {PREFIX}a0, then {PREFIX}b at {b}, then {PREFIX}a at {a}",
            one_key.0,
            from_key.0,
            describe(&heard)
        ));
    }

    // A cancelled watch hears nothing more, and its id is not picked again.
    stream.cancel(one_key.0).await?;
    let (Some(_), Some(b)) = (put(&mut kv, key("a")).await, put(&mut kv, key("b")).await) else {
        return Ok(());
    };
    let heard = stream.events_until_progress().await?;
    if heard != [(from_key.0, b, key("b"))] {
        return Err(format!(
            "after watch {} was cancelled, puts of {PREFIX}a, then {PREFIX}b at {b} were heard \
             as {}",
            one_key.0,
            describe(&heard)
        ));
    }
    // A watch from a revision not yet written hears from it on.
    let start = b + 2;
    let future = stream.create_from(key("f"), vec![], start).await?;
    if future.0 == one_key.0 {
        return Err(format!(
            "a new watch got the id {} of a cancelled one (etcd never picks an id twice on a \
             stream)",
            future.0
        ));
    }
    let (Some(first), Some(second)) = (put(&mut kv, key("f")).await, put(&mut kv, key("f")).await)
    else {
        return Ok(());
    };
    let heard = stream.events_until_progress().await?;
    let mut expected: Heard = vec![
        (from_key.0, first, key("f")),
        (from_key.0, second, key("f")),
    ];
    expected.extend(
        [first, second]
            .into_iter()
            .filter(|&revision| revision >= start)
            .map(|revision| (future.0, revision, key("f"))),
    );
    expected.sort_by_key(|(id, revision, _)| (*revision, *id));
    if heard != expected {
        return Err(format!(
            "a watch on {PREFIX}f from revision {start} (id {}), and one from {PREFIX}b on (id \
             {}), heard {} after puts of {PREFIX}f at {first} and {second}",
            future.0,
            from_key.0,
            describe(&heard)
        ));
    }
    // A delete's event is etcd's tombstone: the key and the delete's
    // revision, nothing else (`Stream::malformed`).
    let delete = DeleteRangeRequest {
        key: key("f"),
        ..DeleteRangeRequest::default()
    };
    let Ok(Ok(deleted)) = tokio::time::timeout(ANSWER_WAIT, kv.delete_range(delete)).await else {
        return Ok(());
    };
    let gone = deleted
        .into_inner()
        .header
        .map_or(0, |header| header.revision);
    let heard = stream.events_until_progress().await?;
    let expected = [(from_key.0, gone, key("f")), (future.0, gone, key("f"))];
    if heard != expected || !stream.malformed.is_empty() {
        return Err(format!(
            "watches on {PREFIX}f heard {} after its delete at {gone} {:?}",
            describe(&heard),
            stream.malformed
        ));
    }

    if fragments {
        fragmented(&mut kv, &mut stream).await?;
    }

    // A range that selects nothing is refused.
    stream.send(create_request(key("b"), key("a"), 0)).await?;
    let refused = stream.next().await?;
    let refused_as_etcd = refused.created
        && refused.canceled
        && refused.watch_id == -1
        && refused.cancel_reason == "mvcc: watcher range is empty";
    if !refused_as_etcd {
        return Err(format!(
            "a watch on [{PREFIX}b, {PREFIX}a) was answered {refused:?}, not refused as an \
             empty range"
        ));
    }

    // The hash at a past revision is the hash the store had then.
    let Ok(past) = maintenance
        .hash_kv(HashKvRequest {
            revision: hashed_at,
        })
        .await
    else {
        return Ok(());
    };
    let past = past.into_inner();
    if past.compact_revision == hashed.compact_revision && past.hash != hashed.hash {
        return Err(format!(
            "HashKV at revision {hashed_at} is {:#x}, but at that revision it was {:#x}",
            past.hash, hashed.hash
        ));
    }

    // Compacting at the head is allowed once; again, or past the head, it
    // is refused.
    let head = b;
    let compact = |revision| CompactionRequest {
        revision,
        physical: false,
    };
    let Ok(Ok(compacted)) = tokio::time::timeout(ANSWER_WAIT, kv.compact(compact(head))).await
    else {
        return Ok(());
    };
    let answered_at = compacted
        .into_inner()
        .header
        .map_or(0, |header| header.revision);
    if answered_at < head {
        return Err(format!(
            "a compaction at revision {head} was answered at header revision {answered_at}"
        ));
    }
    for (revision, refusal) in [(head, COMPACTED), (head + FUTURE, FUTURE_REVISION)] {
        match tokio::time::timeout(ANSWER_WAIT, kv.compact(compact(revision))).await {
            Ok(Err(status)) if status.message().contains(refusal) => {}
            // Not a refusal of the revision (a passing failure): proves nothing.
            Ok(Err(status)) if !status.message().contains("required revision") => {
                return Ok(());
            }
            Ok(answer) => {
                return Err(format!(
                    "a compaction at revision {revision}, after one at {head}, was answered \
                     {answer:?}, not refused with {refusal:?}"
                ))
            }
            Err(_) => return Ok(()),
        }
    }
    txn_reading_past_revisions(&mut kv, head).await
}

/// A txn that writes and reads at a revision compacted away, or not yet
/// written, is refused whole: its put does not happen either.
async fn txn_reading_past_revisions(
    kv: &mut KvClient<tonic::transport::Channel>,
    compacted_at: i64,
) -> Result<(), String> {
    let key = format!("{PREFIX}txn").into_bytes();
    for (revision, refusal) in [
        (compacted_at - 1, COMPACTED),
        (compacted_at + FUTURE, FUTURE_REVISION),
    ] {
        let range = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: format!("{PREFIX}a").into_bytes(),
                revision,
                ..RangeRequest::default()
            })),
        };
        let txn = txn(vec![put_op(&key), range]);
        let answer = match tokio::time::timeout(ANSWER_WAIT, kv.txn(txn)).await {
            Ok(Err(status)) if passing(&status) => return Ok(()),
            Ok(answer) => answer,
            Err(_) => return Ok(()),
        };
        let Some(written) = exists(kv, &key).await else {
            return Ok(());
        };
        let refused = matches!(&answer, Err(status) if status.message().contains(refusal));
        if written || !refused {
            return Err(format!(
                "a txn putting {} and reading at revision {revision} (compacted at \
                 {compacted_at}) was answered {answer:?}{}, not refused whole with {refusal:?}",
                String::from_utf8_lossy(&key),
                if written {
                    ", and its put happened"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

/// Requests etcd refuses before they reach raft, refused alike and
/// writing nothing, and a lease asked for with a TTL below the minimum,
/// granted with the minimum.
async fn refusals(
    endpoint: &str,
    kv: &mut KvClient<tonic::transport::Channel>,
) -> Result<(), String> {
    let key = format!("{PREFIX}refused").into_bytes();
    let refused = [
        (
            "a put of the empty key",
            kv.put(PutRequest::default()).await.map(|_| ()),
            "etcdserver: key is not provided",
        ),
        (
            "a txn putting one key twice",
            kv.txn(txn(vec![put_op(&key), put_op(&key)]))
                .await
                .map(|_| ()),
            "etcdserver: duplicate key given in txn request",
        ),
        (
            "a txn of one op more than --max-txn-ops",
            (kv.txn(txn(vec![put_op(&key); DEFAULT_MAX_TXN_OPS as usize + 1]))
                .await)
                .map(|_| ()),
            "etcdserver: too many operations in txn request",
        ),
    ];
    for (what, answer, refusal) in refused {
        match answer {
            Err(status) if status.message() == refusal => {}
            Err(status) if passing(&status) => return Ok(()),
            answer => {
                return Err(format!(
                    "{what} was answered {answer:?}, not refused with {refusal:?}"
                ))
            }
        }
    }
    let Ok(mut leases) = LeaseClient::connect(endpoint.to_string()).await else {
        return Ok(());
    };
    let minimum = Config::parse_from(["detcd"]).min_lease_ttl();
    let asked = LeaseGrantRequest { ttl: 1, id: 0 };
    let Ok(Ok(granted)) = tokio::time::timeout(ANSWER_WAIT, leases.lease_grant(asked)).await else {
        return Ok(());
    };
    let granted = granted.into_inner();
    let _ = leases
        .lease_revoke(LeaseRevokeRequest { id: granted.id })
        .await;
    if granted.ttl != minimum.max(1) {
        return Err(format!(
            "a lease asked for with a TTL of 1 s was granted {} s; the minimum is {minimum} s",
            granted.ttl
        ));
    }
    match exists(kv, &key).await {
        Some(true) => Err(format!(
            "the refused txns wrote {}",
            String::from_utf8_lossy(&key)
        )),
        _ => Ok(()),
    }
}

/// The values of the puts a fragmenting watch catches up on: together
/// past the largest message etcd sends (`--max-request-bytes` and gRPC's
/// overhead, 2 MiB by default), each well under a request's limit.
const FRAGMENT_VALUE_BYTES: usize = 800 * 1024;
const FRAGMENT_PUTS: usize = 3;

/// A watch with `fragment` set that catches up on more than one message
/// holds gets it in parts, each but the last marked as a fragment, each
/// under the limit unless one event alone is larger, together every
/// event once, in order.
async fn fragmented(
    kv: &mut KvClient<tonic::transport::Channel>,
    stream: &mut Stream,
) -> Result<(), String> {
    // Before "a": none of the stream's other watches hears it.
    let key = format!("{PREFIX}0big").into_bytes();
    let mut revisions = Vec::new();
    for _ in 0..FRAGMENT_PUTS {
        let request = PutRequest {
            key: key.clone(),
            value: vec![b'v'; FRAGMENT_VALUE_BYTES],
            ..PutRequest::default()
        };
        let Ok(Ok(answer)) = tokio::time::timeout(ANSWER_WAIT, kv.put(request)).await else {
            return Ok(());
        };
        revisions.push(
            answer
                .into_inner()
                .header
                .map_or(0, |header| header.revision),
        );
    }
    let mut create = create_request(key.clone(), vec![], revisions[0]);
    if let Some(RequestUnion::CreateRequest(request)) = &mut create.request_union {
        request.fragment = true;
    }
    stream.send(create).await?;
    let created = stream.next().await?;
    if !created.created || created.canceled {
        return Err(format!("a fragmenting watch was answered {created:?}"));
    }
    let max = DEFAULT_MAX_REQUEST_BYTES as usize + GRPC_OVERHEAD_BYTES;
    let mut parts = Vec::new();
    loop {
        let part = stream.next().await.map_err(|why| {
            format!(
                "a fragmenting watch catching up on puts at {revisions:?} got {} parts, then \
                 waited for the next: {why}",
                parts.len()
            )
        })?;
        if part.watch_id != created.watch_id || part.events.is_empty() {
            return Err(format!(
                "a fragmenting watch (id {}) catching up on {FRAGMENT_PUTS} puts of {} bytes \
                 got {part:?} between its parts",
                created.watch_id, FRAGMENT_VALUE_BYTES
            ));
        }
        let size = prost::Message::encoded_len(&part);
        let revisions: Vec<i64> = (part.events.iter())
            .map(|event| event.kv.as_ref().map_or(0, |kv| kv.mod_revision))
            .collect();
        parts.push((revisions, part.fragment, size));
        if !part.fragment {
            break;
        }
    }
    let heard: Vec<i64> = parts
        .iter()
        .flat_map(|(revisions, ..)| revisions.clone())
        .collect();
    let oversized = (parts.iter()).any(|(revisions, _, size)| revisions.len() > 1 && *size >= max);
    if parts.len() < 2 || heard != revisions || oversized {
        let described: Vec<String> = (parts.iter())
            .map(|(revisions, fragment, size)| {
                format!("{revisions:?} ({size} bytes, fragment {fragment})")
            })
            .collect();
        return Err(format!(
            "a fragmenting watch catching up on puts at {revisions:?} of {FRAGMENT_VALUE_BYTES} \
             bytes each got them as {}; parts must be under {max} bytes",
            described.join(", ")
        ));
    }
    Ok(())
}

/// etcd's refusal of a write under a NOSPACE alarm.
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A NOSPACE alarm, raised by hand as an operator may: listed; puts, txns
/// that put and lease grants refused, reads, deletes and txns that only
/// delete still served; disarmed, writes served again.
async fn no_space(
    endpoint: &str,
    kv: &mut KvClient<tonic::transport::Channel>,
    maintenance: &mut MaintenanceClient<tonic::transport::Channel>,
) -> Result<(), String> {
    let key = format!("{PREFIX}nospace").into_bytes();
    let Ok(mut leases) = LeaseClient::connect(endpoint.to_string()).await else {
        return Ok(());
    };
    let Some(revision) = put(kv, key.clone()).await else {
        return Ok(());
    };
    let Ok(Ok(member)) =
        tokio::time::timeout(ANSWER_WAIT, maintenance.status(StatusRequest {})).await
    else {
        return Ok(());
    };
    let member_id = member
        .into_inner()
        .header
        .map_or(0, |header| header.member_id);
    let alarm = |action: AlarmAction| AlarmRequest {
        action: action as i32,
        member_id,
        alarm: AlarmType::Nospace as i32,
    };
    let raised = tokio::time::timeout(ANSWER_WAIT, maintenance.alarm(alarm(AlarmAction::Activate)));
    let Ok(Ok(raised)) = raised.await else {
        return Ok(());
    };
    let listed = raised.into_inner().alarms;
    let nospace = AlarmMember {
        member_id,
        alarm: AlarmType::Nospace as i32,
    };
    if !listed.contains(&nospace) {
        return Err(format!(
            "a NOSPACE alarm raised for {member_id:x} was answered {listed:?}"
        ));
    }
    let delete_op = |key: &[u8]| RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..DeleteRangeRequest::default()
            },
        )),
    };
    let other = format!("{PREFIX}nospace-other").into_bytes();
    let asked = [
        (
            "a put",
            kv.put(PutRequest {
                key: other.clone(),
                ..PutRequest::default()
            })
            .await
            .map(|_| ()),
            false,
        ),
        (
            "a txn that puts",
            kv.txn(txn(vec![put_op(&other)])).await.map(|_| ()),
            false,
        ),
        (
            "a lease grant",
            leases
                .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
                .await
                .map(|_| ()),
            false,
        ),
        (
            "a read",
            kv.range(RangeRequest {
                key: key.clone(),
                ..RangeRequest::default()
            })
            .await
            .map(|_| ()),
            true,
        ),
        (
            "a txn that only deletes",
            kv.txn(txn(vec![delete_op(&key)])).await.map(|_| ()),
            true,
        ),
        (
            "a delete",
            kv.delete_range(DeleteRangeRequest {
                key: key.clone(),
                ..DeleteRangeRequest::default()
            })
            .await
            .map(|_| ()),
            true,
        ),
    ];
    let mut lowered = false;
    for _ in 0..DISARM_TRIES {
        let disarm = maintenance.alarm(alarm(AlarmAction::Deactivate));
        if matches!(tokio::time::timeout(ANSWER_WAIT, disarm).await, Ok(Ok(_))) {
            lowered = true;
            break;
        }
    }
    for (what, answer, served) in asked {
        match (answer, served) {
            (Ok(()), true) => {}
            (Err(status), false) if status.message() == NO_SPACE => {}
            (Err(status), _) if passing(&status) => return Ok(()),
            (answer, _) => {
                return Err(format!(
                    "under a NOSPACE alarm (raised at revision {revision}), {what} was answered \
                     {answer:?}; etcd {}",
                    if served {
                        "serves it"
                    } else {
                        "refuses it as out of space"
                    }
                ))
            }
        }
    }
    if !lowered {
        return Ok(());
    }
    let again = PutRequest {
        key: other,
        ..PutRequest::default()
    };
    match tokio::time::timeout(ANSWER_WAIT, kv.put(again)).await {
        Ok(Err(status)) if status.message() == NO_SPACE => {
            Err("a put after the NOSPACE alarm was disarmed was refused as out of space".into())
        }
        _ => Ok(()),
    }
}

/// Times the probe asks to disarm its alarm before it gives up.
const DISARM_TRIES: usize = 3;

/// A lease id no workload picks (the etcd workload's are small).
const PROBE_LEASE: i64 = 0x7a7a_7072_6f62;
/// The TTL the probe grants its lease: longer than the probe takes.
const PROBE_LEASE_TTL: i64 = 60;

/// Leases through their life, answered as etcd answers: an unknown one
/// has TTL -1, renews to TTL 0 and is not found to revoke; a granted one
/// cannot be granted again, renews to its TTL and reports it; once
/// revoked it is unknown again; a TTL past etcd's maximum is refused.
async fn leases(endpoint: &str) -> Result<(), String> {
    let mut client = Client::new(vec![endpoint.to_string()]).with_request_timeout(ANSWER_WAIT);
    let id = PROBE_LEASE;
    let unknown = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            let revoked = client.lease_revoke(id).await.map(|_| ());
            let ttl = client
                .lease_time_to_live(id, false)
                .await
                .map(|answer| answer.ttl);
            let renewed = client
                .lease_keep_alive_once(id)
                .await
                .map(|answer| answer.ttl);
            match (revoked, ttl, renewed) {
                (Err(ClientError::Server(status)), Ok(-1), Ok(0))
                    if status.message() == "etcdserver: requested lease not found" =>
                {
                    Ok(true)
                }
                (Err(error), ..) | (_, Err(error), _) | (.., Err(error)) if !matches!(&error, ClientError::Server(status) if !passing(status)) => {
                    Ok(false)
                }
                answers => Err(format!(
                    "an unknown lease was answered {answers:?}: etcd's are \
                     \"requested lease not found\" to a revoke, TTL -1 to TimeToLive and TTL 0 \
                     to a keepalive"
                )),
            }
        }
    };
    if !unknown(&mut client).await? {
        return Ok(());
    }
    let Ok(granted) = client.lease_grant(PROBE_LEASE_TTL, id).await else {
        return Ok(());
    };
    if (granted.id, granted.ttl) != (id, PROBE_LEASE_TTL) {
        return Err(format!(
            "a lease asked for as {id} with TTL {PROBE_LEASE_TTL} was granted as {} with TTL {}",
            granted.id, granted.ttl
        ));
    }
    match client.lease_grant(PROBE_LEASE_TTL, id).await {
        Err(ClientError::Server(status))
            if status.message() == "etcdserver: lease already exists" => {}
        Err(ClientError::Server(status)) if !passing(&status) => {
            return Err(format!(
                "a second grant of lease {id} was refused with {status:?}"
            ));
        }
        Ok(answer) => {
            return Err(format!(
                "a second grant of lease {id} was answered {answer:?}"
            ))
        }
        Err(_) => return Ok(()),
    }
    let (Ok(renewed), Ok(lives)) = (
        client.lease_keep_alive_once(id).await,
        client.lease_time_to_live(id, false).await,
    ) else {
        return Ok(());
    };
    let ttl_kept = renewed.ttl == PROBE_LEASE_TTL
        && lives.granted_ttl == PROBE_LEASE_TTL
        && (1..=PROBE_LEASE_TTL).contains(&lives.ttl);
    if !ttl_kept {
        return Err(format!(
            "lease {id}, granted with TTL {PROBE_LEASE_TTL}, renewed to TTL {} and then had TTL \
             {} of {}",
            renewed.ttl, lives.ttl, lives.granted_ttl
        ));
    }
    if client.lease_revoke(id).await.is_err() {
        return Ok(());
    }
    if !unknown(&mut client).await? {
        return Ok(());
    }
    match client.lease_grant(MAX_LEASE_TTL + 1, 0).await {
        Err(ClientError::Server(status))
            if status.message() == "etcdserver: too large lease TTL" =>
        {
            Ok(())
        }
        Err(ClientError::Server(status)) if passing(&status) => Ok(()),
        Err(ClientError::Lost | ClientError::Unreachable) => Ok(()),
        answer => Err(format!(
            "a lease with TTL {} was answered {answer:?}, not refused as too large",
            MAX_LEASE_TTL + 1
        )),
    }
}

/// How far past the head a compaction the probe expects refused asks for.
const FUTURE: i64 = 1000;

/// Whether `key` is in the store; `None` if the read failed.
async fn exists(kv: &mut KvClient<tonic::transport::Channel>, key: &[u8]) -> Option<bool> {
    let read = RangeRequest {
        key: key.to_vec(),
        count_only: true,
        ..RangeRequest::default()
    };
    let answer = tokio::time::timeout(ANSWER_WAIT, kv.range(read))
        .await
        .ok()?
        .ok()?;
    Some(answer.into_inner().count > 0)
}

/// Puts `key` (its value: the key again); returns the put's revision, or
/// `None` if it failed (a healed cluster may still change leaders).
async fn put(kv: &mut KvClient<tonic::transport::Channel>, key: Vec<u8>) -> Option<i64> {
    let request = PutRequest {
        value: key.clone(),
        key,
        ..PutRequest::default()
    };
    let answer = tokio::time::timeout(ANSWER_WAIT, kv.put(request))
        .await
        .ok()?
        .ok()?;
    Some(
        answer
            .into_inner()
            .header
            .map_or(0, |header| header.revision),
    )
}

fn create_request(key: Vec<u8>, range_end: Vec<u8>, start_revision: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            range_end,
            start_revision,
            ..WatchCreateRequest::default()
        })),
    }
}

/// Events heard, as (watch id, revision, key).
type Heard = Vec<(i64, i64, Vec<u8>)>;

fn describe(heard: &Heard) -> String {
    if heard.is_empty() {
        return "nothing".into();
    }
    let events: Vec<String> = (heard.iter())
        .map(|(id, revision, key)| {
            format!(
                "{} at {revision} on watch {id}",
                String::from_utf8_lossy(key)
            )
        })
        .collect();
    events.join(", ")
}

struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    answers: tonic::Streaming<WatchResponse>,
    /// Delete events heard that were more than etcd's tombstone.
    malformed: Vec<String>,
}

impl Stream {
    async fn send(&mut self, request: WatchRequest) -> Result<(), String> {
        (self.requests.send(request).await).map_err(|_| "the watch stream ended".to_string())
    }

    async fn next(&mut self) -> Result<WatchResponse, String> {
        tokio::time::timeout(ANSWER_WAIT, self.answers.message())
            .await
            .map_err(|_| "the watch stream fell silent".to_string())?
            .map_err(|status| format!("the watch stream failed: {}", status.message()))?
            .ok_or_else(|| "the watch stream was closed".to_string())
    }

    /// Creates a watch from now (start revision 0) with the server's
    /// choice of id; returns its id and the created answer's revision.
    async fn create(&mut self, key: Vec<u8>, range_end: Vec<u8>) -> Result<(i64, i64), String> {
        self.create_from(key, range_end, 0).await
    }

    /// Creates a watch from `start_revision` (0: now).
    async fn create_from(
        &mut self,
        key: Vec<u8>,
        range_end: Vec<u8>,
        start_revision: i64,
    ) -> Result<(i64, i64), String> {
        (self.send(create_request(key.clone(), range_end, start_revision))).await?;
        let created = self.next().await?;
        if !created.created || created.canceled || !created.events.is_empty() {
            return Err(format!(
                "a watch on {} from revision {start_revision} was answered {created:?}",
                String::from_utf8_lossy(&key)
            ));
        }
        let revision = created.header.map_or(0, |header| header.revision);
        Ok((created.watch_id, revision))
    }

    async fn cancel(&mut self, watch_id: i64) -> Result<(), String> {
        let cancel = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id })),
        };
        self.send(cancel).await?;
        let answer = self.next().await?;
        if !(answer.canceled && answer.watch_id == watch_id && answer.events.is_empty()) {
            return Err(format!("watch {watch_id}'s cancel was answered {answer:?}"));
        }
        Ok(())
    }

    /// Every event the stream delivers before the answer to a progress
    /// request, which detcd sends once everything owed has been sent (its
    /// own guarantee, which the watch consumers' coverage also takes:
    /// etcd 3.4.23 answers at once, possibly ahead of queued events); in
    /// revision order (watches' events may interleave either way).
    async fn events_until_progress(&mut self) -> Result<Heard, String> {
        let progress = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        self.send(progress).await?;
        let mut heard = Vec::new();
        loop {
            let answer = self.next().await?;
            if answer.events.is_empty() && answer.watch_id == -1 && !answer.canceled {
                heard.sort_by_key(|(id, revision, _)| (*revision, *id));
                return Ok(heard);
            }
            for event in &answer.events {
                let kv = event.kv.clone().unwrap_or_default();
                let tombstone = KeyValue {
                    key: kv.key.clone(),
                    mod_revision: kv.mod_revision,
                    ..KeyValue::default()
                };
                if event.r#type == EventType::Delete as i32 && kv != tombstone {
                    self.malformed
                        .push(format!("a delete event carried {kv:?}"));
                }
                heard.push((answer.watch_id, kv.mod_revision, kv.key));
            }
        }
    }
}

/// The auth probe's keys: a read-only one, a write-only one, and two
/// adjoining ranges granted apart that together span `[p/a, p0)`.
const AUTH_READ_KEY: &str = "zz-probe/auth/r";
const AUTH_WRITE_KEY: &str = "zz-probe/auth/w";
const AUTH_RANGES: [(&str, &str); 2] = [
    ("zz-probe/auth/p/a", "zz-probe/auth/p/m"),
    ("zz-probe/auth/p/m", "zz-probe/auth/p0"),
];
const AUTH_PASSWORD: &str = "probe-pw";
/// etcd's refusal of a request its user may not make.
const PERMISSION_DENIED: &str = "etcdserver: permission denied";

/// Auth, switched on for the probe and off again: each user may do what
/// its roles' permissions allow (read, write, or both; ranges granted
/// apart count together) and nothing else, revoking a lease takes write
/// permission on its keys, and a user's tokens stop working once its
/// password changes or it is deleted. Skipped where the cluster already
/// has users (the auth workload's).
pub async fn probe_auth(endpoint: &str) -> Result<(), String> {
    let endpoints = vec![endpoint.to_string()];
    let client = |user: &str| {
        Client::new(endpoints.clone())
            .with_request_timeout(ANSWER_WAIT)
            .with_credentials(user, AUTH_PASSWORD)
    };
    let mut root = client("root");
    let Some(()) = set_up_auth(&mut root).await else {
        return Ok(());
    };
    let judged = check_permissions(&mut root, client).await;
    // Whatever was found, auth goes off again (a failure to turn it off
    // leaves nothing later to read the store).
    let _ = root.auth_disable().await;
    judged
}

/// Users and roles, then auth on; `None` if the cluster did not take
/// them (the probe proves nothing then).
async fn set_up_auth(root: &mut Client) -> Option<()> {
    let roles = [
        ("probe-read", PermType::Read, vec![(AUTH_READ_KEY, "")]),
        ("probe-write", PermType::Write, vec![(AUTH_WRITE_KEY, "")]),
        ("probe-ranges", PermType::Readwrite, AUTH_RANGES.to_vec()),
    ];
    for (role, perm_type, ranges) in roles {
        root.role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .ok()?;
        for (key, range_end) in ranges {
            let perm = Permission {
                perm_type: perm_type as i32,
                key: key.into(),
                range_end: range_end.into(),
            };
            let grant = AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(perm),
            };
            root.role_grant_permission(grant).await.ok()?;
        }
    }
    for (user, role) in [
        ("root", "root"),
        ("probe-reader", "probe-read"),
        ("probe-writer", "probe-write"),
        ("probe-ranger", "probe-ranges"),
    ] {
        let add = AuthUserAddRequest {
            name: user.into(),
            password: AUTH_PASSWORD.into(),
            options: None,
        };
        root.user_add(add).await.ok()?;
        let grant = AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        root.user_grant_role(grant).await.ok()?;
    }
    root.auth_enable().await.ok().map(|_| ())
}

async fn check_permissions(
    root: &mut Client,
    client: impl Fn(&str) -> Client,
) -> Result<(), String> {
    let (mut reader, mut writer, mut ranger) = (
        client("probe-reader"),
        client("probe-writer"),
        client("probe-ranger"),
    );
    let read = |key: &str, range_end: &str| RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..RangeRequest::default()
    };
    let write = |key: &str| PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..PutRequest::default()
    };
    let (p_a, p0) = (AUTH_RANGES[0].0, AUTH_RANGES[1].1);
    let asked = [
        (
            "probe-reader reads its key",
            reader.range(read(AUTH_READ_KEY, "")).await.map(|_| ()),
            true,
        ),
        (
            "probe-reader writes its read-only key",
            reader.put(write(AUTH_READ_KEY)).await.map(|_| ()),
            false,
        ),
        (
            "probe-writer writes its key",
            writer.put(write(AUTH_WRITE_KEY)).await.map(|_| ()),
            true,
        ),
        (
            "probe-writer reads its write-only key",
            writer.range(read(AUTH_WRITE_KEY, "")).await.map(|_| ()),
            false,
        ),
        (
            "probe-ranger reads across its two adjoining ranges",
            ranger.range(read(p_a, p0)).await.map(|_| ()),
            true,
        ),
        (
            "probe-ranger writes in its second range",
            ranger.put(write("zz-probe/auth/p/z")).await.map(|_| ()),
            true,
        ),
        (
            "probe-ranger writes its ranges' end key",
            ranger.put(write(p0)).await.map(|_| ()),
            false,
        ),
        (
            "probe-ranger reads from before its ranges",
            (ranger.range(read("zz-probe/auth/p/", p0)).await).map(|_| ()),
            false,
        ),
        (
            "probe-ranger reads past its ranges",
            (ranger.range(read(p_a, "zz-probe/auth/p1")).await).map(|_| ()),
            false,
        ),
    ];
    for (what, answer, allowed) in asked {
        judge_access(what, answer, allowed)?;
    }
    // A lease whose key probe-writer may not write is not its to revoke.
    let Ok(lease) = root.lease_grant(60, 0).await else {
        return Ok(());
    };
    let attach = PutRequest {
        lease: lease.id,
        ..write(AUTH_READ_KEY)
    };
    if root.put(attach).await.is_err() {
        return Ok(());
    }
    let revoked = writer.lease_revoke(lease.id).await.map(|_| ());
    judge_access(
        "probe-writer revokes a lease attached to a key it may not write",
        revoked,
        false,
    )?;
    let _ = root.lease_revoke(lease.id).await;
    // A changed password, a deleted user: the tokens they had are void.
    let change = AuthUserChangePasswordRequest {
        name: "probe-reader".into(),
        password: "changed".into(),
    };
    if root.user_change_password(change).await.is_err() {
        return Ok(());
    }
    if reader.range(read(AUTH_READ_KEY, "")).await.is_ok() {
        return Err(
            "probe-reader still read with its old password after it was changed".to_string(),
        );
    }
    let delete = AuthUserDeleteRequest {
        name: "probe-writer".into(),
    };
    if root.user_delete(delete).await.is_err() {
        return Ok(());
    }
    if writer.put(write(AUTH_WRITE_KEY)).await.is_ok() {
        return Err("probe-writer still wrote after it was deleted".to_string());
    }
    Ok(())
}

/// A failure that says nothing of the request: no leader, a leader
/// change, a timeout, too many requests (not "database space exceeded",
/// whose code is the same).
fn passing(status: &tonic::Status) -> bool {
    // etcd sends "too many requests" with code Unknown (a client-side
    // error in its rpctypes), and detcd as etcd does.
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    ) || status.message() == "etcdserver: too many requests"
}

/// One access the probe asked for: `allowed` ones must succeed, the
/// others be refused as etcd refuses them. Any other failure proves
/// nothing (a healed cluster may still change leaders).
fn judge_access(what: &str, answer: Result<(), ClientError>, allowed: bool) -> Result<(), String> {
    match (answer, allowed) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(format!(
            "{what}: allowed, but its permissions do not allow it"
        )),
        (Err(ClientError::Server(status)), true) if status.message() == PERMISSION_DENIED => Err(
            format!("{what}: refused as not permitted, but its permissions allow it"),
        ),
        (Err(ClientError::Server(status)), false)
            if status.message() != PERMISSION_DENIED && !passing(&status) =>
        {
            Err(format!(
                "{what}: refused with {:?}, not {PERMISSION_DENIED:?}",
                status.message()
            ))
        }
        (Err(_), _) => Ok(()),
    }
}

/// A txn op that puts `key` with an empty value.
fn put_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            ..PutRequest::default()
        })),
    }
}

/// A txn with no compares that runs `ops`.
fn txn(ops: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        success: ops,
        ..TxnRequest::default()
    }
}
