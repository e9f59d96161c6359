//! The etcd workload (`--workload etcd`): clients use more of the KV API
//! than the register and append workloads — ranges over a prefix and from
//! a key with limits, every sort order and target, count-only and
//! keys-only, bounds on mod and create revisions; puts and deletes of
//! ranges with prev_kv; txns comparing value, version, create and mod
//! revision with every result, reads with those options and writes with
//! prev_kv inside txns, nested txns — and the history is
//! checked with the revision-aware etcd model (`model::etcd`): header,
//! create and mod revisions and versions included, not just values.
//!
//! Leases too: clients grant and revoke leases from a shared few ids (for
//! an hour: none expires in a run), attach keys to them (in txns as
//! well), keep a key's lease with `ignore_lease` and compare on it; etcd's
//! refusals that depend on the store (a lease missing or in use, a key
//! missing for `ignore_value`/`ignore_lease`) are recorded as answers the
//! model checks.
//!
//! Clients also read at past revisions (just behind the head and far
//! behind it), read serializably from whichever member they reach, and
//! compact, just behind the head and far behind it; some puts go to cold
//! keys, written once and never again, and some keep the value
//! (`ignore_value`). Those reads answer from the store
//! as it was, which `properties::past_reads` checks against the store the
//! acknowledged writes rebuild at each revision.
//!
//! The model holds the whole store (revisions are global), so in this
//! workload these clients are the only writers and compactors: the
//! hostile client and the general compactor are off.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::client::{Client, ClientError};
use detcd::proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare as ProtoCompare,
    DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest,
};
use rand::{Rng, RngCore};

use crate::history::{Operation, Outcome};
use crate::model::etcd::{
    Compare, CompareResult, CompareTarget, EtcdInput, EtcdOutput, KeyValue, RangeOptions,
    SortOrder, SortTarget, TxnOp, TxnOpResponse, KEY_NOT_FOUND, LEASE_EXISTS, LEASE_NOT_FOUND,
};
use crate::properties::headers::Heard;
use crate::properties::past_reads::{Compaction, CompactionOutcome, ReadOutcome, RevisionRead};
use crate::properties::watch::CompactionSent;

/// Every key of the workload is under this prefix.
pub const PREFIX: &str = "etcd/";
/// The lease ids clients share: they grant, revoke and attach keys to
/// these, so one client's revoke meets another's put and grants collide.
const LEASE_IDS: std::ops::RangeInclusive<i64> = 1..=3;
/// Leases live far longer than a run: the model has no expiry.
const LEASE_TTL_SECONDS: i64 = 3600;
/// Pause between two requests of a client, at most.
const THINK_TIME_MAX: Duration = Duration::from_millis(40);

pub type EtcdOperation = Operation<EtcdInput, EtcdOutput>;

#[derive(Clone, Default)]
pub struct EtcdLog {
    operations: Arc<Mutex<Vec<EtcdOperation>>>,
    reads: Arc<Mutex<Vec<RevisionRead>>>,
    compactions: Arc<Mutex<Vec<Compaction>>>,
    heard: Arc<Mutex<Vec<Heard>>>,
}

/// What the etcd workload's clients recorded.
pub struct EtcdRecord {
    /// Checked with the etcd model.
    pub operations: Vec<EtcdOperation>,
    /// Reads at a revision and serializable reads (`properties::past_reads`).
    pub reads: Vec<RevisionRead>,
    pub compactions: Vec<Compaction>,
    /// Every answer's header (`properties::headers`).
    pub heard: Vec<Heard>,
}

impl EtcdLog {
    /// How many operations the model checks have been recorded so far.
    pub fn operation_count(&self) -> usize {
        self.operations.lock().unwrap().len()
    }

    /// The operations recorded so far.
    pub fn operations(&self) -> Vec<EtcdOperation> {
        self.operations.lock().unwrap().clone()
    }

    /// Every compaction asked for so far, answered or not.
    pub fn compactions_sent(&self) -> Vec<CompactionSent> {
        compactions_sent(&self.compactions.lock().unwrap())
    }

    /// Keeps an answer's header, from the endpoint that gave it (the
    /// client's preferred one once it answered); `serializable`: the
    /// answer to a serializable read.
    fn hear(
        &self,
        client_id: u64,
        (invoke_ns, complete_ns): (u64, u64),
        (client, serializable): (&Client, bool),
        header: Option<ResponseHeader>,
    ) {
        let Some(header) = header else { return };
        self.heard.lock().unwrap().push(Heard {
            client: client_id,
            invoke_ns,
            complete_ns,
            endpoint: client.endpoint().to_string(),
            serializable,
            cluster_id: header.cluster_id,
            member_id: header.member_id,
            raft_term: header.raft_term,
            revision: header.revision,
        });
    }

    pub fn take(&self) -> EtcdRecord {
        EtcdRecord {
            operations: std::mem::take(&mut self.operations.lock().unwrap()),
            reads: std::mem::take(&mut self.reads.lock().unwrap()),
            compactions: std::mem::take(&mut self.compactions.lock().unwrap()),
            heard: std::mem::take(&mut self.heard.lock().unwrap()),
        }
    }
}

/// The compactions of a record that may have applied, as the watch
/// checks take them.
pub fn compactions_sent(compactions: &[Compaction]) -> Vec<CompactionSent> {
    (compactions.iter())
        .filter(|compaction| compaction.outcome.may_have_applied())
        .map(|compaction| CompactionSent {
            revision: compaction.revision,
            sent_ns: compaction.invoke_ns,
        })
        .collect()
}

/// Revisions behind the newest one seen that a "just behind" past read or
/// compaction picks from; far-behind ones pick from the whole history.
const JUST_BEHIND: i64 = 3;

/// What a client does besides the requests the etcd model checks.
enum Side {
    /// A range at `revision` (0: the member's current one).
    Read {
        key: String,
        range_end: Option<String>,
        options: RangeOptions,
        revision: i64,
        serializable: bool,
    },
    Compact(i64),
}

/// etcd's prefix end: the prefix with its last byte raised.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("a non-empty prefix") += 1;
    String::from_utf8(end).expect("ASCII")
}

fn key_value(kv: &detcd::proto::mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn kvs(response: &RangeResponse) -> Vec<KeyValue> {
    response.kvs.iter().map(key_value).collect()
}

/// Options for half of the ranges: limits, every sort order and target,
/// count-only and keys-only, and bounds on the mod and create revisions
/// around `seen_revision` (the newest revision the client has seen).
fn range_options(rng: &mut dyn RngCore, seen_revision: i64) -> RangeOptions {
    if rng.gen_bool(0.5) {
        return RangeOptions::default();
    }
    let bound = |rng: &mut dyn RngCore| {
        if rng.gen_ratio(1, 6) {
            rng.gen_range(1..=seen_revision.max(1))
        } else {
            0
        }
    };
    RangeOptions {
        limit: rng.gen_range(0..4),
        sort_order: [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][rng.gen_range(0..3)],
        sort_target: [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ][rng.gen_range(0..5)],
        count_only: rng.gen_ratio(1, 10),
        keys_only: rng.gen_ratio(1, 6),
        min_mod_revision: bound(rng),
        max_mod_revision: bound(rng),
        min_create_revision: bound(rng),
        max_create_revision: bound(rng),
    }
}

fn range_request(key: &str, range_end: &Option<String>, options: &RangeOptions) -> RangeRequest {
    use detcd::proto::etcdserverpb::range_request::{SortOrder as Order, SortTarget as Target};
    RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: range_end_bytes(range_end),
        limit: options.limit,
        sort_order: match options.sort_order {
            SortOrder::None => Order::None,
            SortOrder::Ascend => Order::Ascend,
            SortOrder::Descend => Order::Descend,
        } as i32,
        sort_target: match options.sort_target {
            SortTarget::Key => Target::Key,
            SortTarget::Version => Target::Version,
            SortTarget::Create => Target::Create,
            SortTarget::Mod => Target::Mod,
            SortTarget::Value => Target::Value,
        } as i32,
        count_only: options.count_only,
        keys_only: options.keys_only,
        min_mod_revision: options.min_mod_revision,
        max_mod_revision: options.max_mod_revision,
        min_create_revision: options.min_create_revision,
        max_create_revision: options.max_create_revision,
        ..Default::default()
    }
}

fn range_end_bytes(range_end: &Option<String>) -> Vec<u8> {
    range_end
        .as_deref()
        .map(|end| end.as_bytes().to_vec())
        .unwrap_or_default()
}

fn proto_compare(compare: &Compare) -> ProtoCompare {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let (target, union) = match &compare.target {
        CompareTarget::Value(value) => (T::Value, U::Value(value.as_bytes().to_vec())),
        CompareTarget::Version(version) => (T::Version, U::Version(*version)),
        CompareTarget::CreateRevision(revision) => (T::Create, U::CreateRevision(*revision)),
        CompareTarget::ModRevision(revision) => (T::Mod, U::ModRevision(*revision)),
        CompareTarget::Lease(lease) => (T::Lease, U::Lease(*lease)),
    };
    let result = match compare.result {
        CompareResult::Equal => R::Equal,
        CompareResult::NotEqual => R::NotEqual,
        CompareResult::Greater => R::Greater,
        CompareResult::Less => R::Less,
    };
    ProtoCompare {
        key: compare.key.as_bytes().to_vec(),
        range_end: range_end_bytes(&compare.range_end),
        result: result as i32,
        target: target as i32,
        target_union: Some(union),
    }
}

fn op_responses(responses: &[detcd::proto::etcdserverpb::ResponseOp]) -> Vec<TxnOpResponse> {
    responses
        .iter()
        .map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(range)) => TxnOpResponse::Range {
                kvs: kvs(range),
                count: Some(range.count),
                more: Some(range.more),
            },
            Some(response_op::Response::ResponseDeleteRange(delete)) => TxnOpResponse::Delete {
                deleted: delete.deleted,
                prev_kvs: delete.prev_kvs.iter().map(key_value).collect(),
            },
            Some(response_op::Response::ResponseTxn(txn)) => TxnOpResponse::Txn {
                succeeded: txn.succeeded,
                responses: op_responses(&txn.responses),
            },
            Some(response_op::Response::ResponsePut(put)) => TxnOpResponse::Put {
                prev_kv: put.prev_kv.as_ref().map(key_value),
            },
            // No answer where one was due: nothing the model answers.
            None => TxnOpResponse::Txn {
                succeeded: false,
                responses: Vec::new(),
            },
        })
        .collect()
}

fn proto_txn(compare: &[Compare], success: &[TxnOp], failure: &[TxnOp]) -> TxnRequest {
    TxnRequest {
        compare: compare.iter().map(proto_compare).collect(),
        success: success.iter().map(proto_op).collect(),
        failure: failure.iter().map(proto_op).collect(),
    }
}

fn proto_op(op: &TxnOp) -> RequestOp {
    let request = match op {
        TxnOp::Txn {
            compare,
            success,
            failure,
        } => request_op::Request::RequestTxn(proto_txn(compare, success, failure)),
        TxnOp::Range {
            key,
            range_end,
            options,
        } => request_op::Request::RequestRange(range_request(key, range_end, options)),
        TxnOp::Put {
            key,
            value,
            prev_kv,
            lease,
        } => request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: *prev_kv,
            lease: *lease,
            ..Default::default()
        }),
        TxnOp::Delete {
            key,
            range_end,
            prev_kv,
        } => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: range_end_bytes(range_end),
            prev_kv: *prev_kv,
        }),
    };
    RequestOp {
        request: Some(request),
    }
}

/// One client of the workload: who it is, where it goes, what it draws
/// from and for how long.
pub struct EtcdClient {
    pub id: u64,
    pub endpoints: Vec<String>,
    /// How many hot keys it picks from.
    pub keys: usize,
    pub log: EtcdLog,
    /// Its draws: the simulation's seeded generator, or the jepsen-style
    /// tool's per-client one.
    pub rng: Box<dyn RngCore + Send>,
    pub request_timeout: Duration,
    /// Times in the history count from here.
    pub started: tokio::time::Instant,
    pub run_for: Duration,
    /// Whether it compacts (a watch that falls behind a compaction can no
    /// longer be checked whole).
    pub compacts: bool,
    /// Told of each write that may have applied.
    pub note: Box<dyn Fn(String) + Send + Sync>,
}

/// Runs one client until `run_for` after `started`, recording into its log.
pub async fn client(setup: EtcdClient) {
    let EtcdClient {
        id,
        endpoints,
        keys,
        log,
        rng: mut rng_box,
        request_timeout,
        started,
        run_for,
        compacts,
        note,
    } = setup;
    let mut client = Client::new(endpoints).with_request_timeout(request_timeout);
    let now = || started.elapsed().as_nanos() as u64;
    let mut sequence = 0u64;
    // What this client last saw of revisions: operands its compares use,
    // so some of them hold.
    let mut seen_revision = 1i64;
    while started.elapsed() < run_for {
        sequence += 1;
        let side = {
            let mut rng = &mut *rng_box;
            let behind = |rng: &mut dyn RngCore| {
                if rng.gen_bool(0.5) {
                    rng.gen_range((seen_revision - JUST_BEHIND).max(1)..=seen_revision)
                } else {
                    rng.gen_range(1..=seen_revision)
                }
            };
            let (key, range_end) = if rng.gen_bool(0.5) {
                (PREFIX.to_string(), Some(prefix_end(PREFIX)))
            } else {
                (format!("{PREFIX}{}", rng.gen_range(0..keys)), None)
            };
            match rng.gen_range(0..100) {
                0..=7 => Some(Side::Read {
                    key,
                    range_end,
                    options: range_options(&mut rng, seen_revision),
                    revision: behind(&mut rng),
                    serializable: rng.gen_bool(0.3),
                }),
                8..=13 => Some(Side::Read {
                    key,
                    range_end,
                    options: range_options(&mut rng, seen_revision),
                    revision: 0,
                    serializable: true,
                }),
                14..=15 if compacts => Some(Side::Compact(behind(&mut rng))),
                _ => None,
            }
        };
        if let Some(side) = side {
            perform_side(&mut client, id, side, &log, started).await;
            tokio::time::sleep(think(&mut *rng_box)).await;
            continue;
        }
        let input = {
            let mut rng = &mut *rng_box;
            let key = |rng: &mut dyn RngCore| format!("{PREFIX}{}", rng.gen_range(0..keys));
            let value = format!("{id}.{sequence}");
            // A quarter of the puts attach their key to a shared lease.
            let lease = |rng: &mut dyn RngCore| {
                if rng.gen_ratio(1, 4) {
                    rng.gen_range(LEASE_IDS)
                } else {
                    0
                }
            };
            // From a key on, or up to another key (excluded; perhaps
            // before the first, which selects nothing).
            let from_key = |rng: &mut dyn RngCore| {
                let start = key(rng);
                if rng.gen_bool(0.5) {
                    (start, Some("\0".to_string()))
                } else {
                    (start, Some(key(rng)))
                }
            };
            match rng.gen_range(0..100) {
                0..=19 => EtcdInput::Range {
                    key: key(&mut rng),
                    range_end: None,
                    options: RangeOptions::default(),
                },
                20..=29 => EtcdInput::Range {
                    key: PREFIX.to_string(),
                    range_end: Some(prefix_end(PREFIX)),
                    options: range_options(&mut rng, seen_revision),
                },
                30..=34 => {
                    let (key, range_end) = from_key(&mut rng);
                    let options = range_options(&mut rng, seen_revision);
                    EtcdInput::Range {
                        key,
                        range_end,
                        options,
                    }
                }
                // A cold key: written once, never again.
                35..=37 => EtcdInput::Put {
                    key: format!("{PREFIX}cold/{id}.{sequence}"),
                    value,
                    prev_kv: false,
                    ignore_value: false,
                    lease: 0,
                    ignore_lease: false,
                },
                // Keep the value: a new version of what is there.
                38..=40 => EtcdInput::Put {
                    key: key(&mut rng),
                    value: String::new(),
                    prev_kv: rng.gen_ratio(1, 3),
                    ignore_value: true,
                    lease: lease(&mut rng),
                    ignore_lease: false,
                },
                // Keep the lease.
                41..=42 => EtcdInput::Put {
                    key: key(&mut rng),
                    value,
                    prev_kv: rng.gen_ratio(1, 3),
                    ignore_value: false,
                    lease: 0,
                    ignore_lease: true,
                },
                43..=59 => EtcdInput::Put {
                    key: key(&mut rng),
                    value,
                    prev_kv: rng.gen_ratio(1, 3),
                    ignore_value: false,
                    lease: lease(&mut rng),
                    ignore_lease: false,
                },
                60..=66 => EtcdInput::Delete {
                    key: key(&mut rng),
                    range_end: None,
                    prev_kv: rng.gen_ratio(1, 3),
                },
                67..=69 => {
                    let (key, range_end) = from_key(&mut rng);
                    let prev_kv = rng.gen_ratio(1, 3);
                    EtcdInput::Delete {
                        key,
                        range_end,
                        prev_kv,
                    }
                }
                // Grants and revokes change no revision, which pins the
                // checker's search: few of them.
                70..=71 => EtcdInput::LeaseGrant {
                    id: rng.gen_range(LEASE_IDS),
                },
                72..=73 => EtcdInput::LeaseRevoke {
                    id: rng.gen_range(LEASE_IDS),
                },
                _ => {
                    let compare_on = |rng: &mut dyn RngCore, key: String| {
                        let target = match rng.gen_range(0..5) {
                            4 => CompareTarget::Lease(rng.gen_range(0..=*LEASE_IDS.end())),
                            0 => CompareTarget::Value(format!(
                                "{}.{}",
                                rng.gen_range(0..5),
                                rng.gen_range(0..sequence.max(1))
                            )),
                            1 => CompareTarget::Version(rng.gen_range(0..4)),
                            2 => CompareTarget::CreateRevision(rng.gen_range(0..=seen_revision)),
                            _ => CompareTarget::ModRevision(rng.gen_range(0..=seen_revision)),
                        };
                        let result = [
                            CompareResult::Equal,
                            CompareResult::NotEqual,
                            CompareResult::Greater,
                            CompareResult::Less,
                        ][rng.gen_range(0..4)];
                        // A quarter compare every key under the prefix, or
                        // from the key on.
                        let (key, range_end) = match rng.gen_range(0..8) {
                            0 => (PREFIX.to_string(), Some(prefix_end(PREFIX))),
                            1 => (key, Some("\0".to_string())),
                            _ => (key, None),
                        };
                        Compare {
                            key,
                            range_end,
                            result,
                            target,
                        }
                    };
                    let compared = key(&mut rng);
                    let written = key(&mut rng);
                    let outer = compare_on(&mut rng, compared.clone());
                    let mut success = vec![
                        TxnOp::Put {
                            key: written,
                            value: value.clone(),
                            prev_kv: rng.gen_ratio(1, 3),
                            lease: lease(&mut rng),
                        },
                        TxnOp::Range {
                            key: PREFIX.to_string(),
                            range_end: Some(prefix_end(PREFIX)),
                            options: range_options(&mut rng, seen_revision),
                        },
                    ];
                    let mut failure = vec![TxnOp::Range {
                        key: compared,
                        range_end: None,
                        options: RangeOptions::default(),
                    }];
                    // Half the txns nest one: read-only where the outer
                    // branch puts, writing where it only reads. Its compare
                    // sees the store as before the request, not the outer
                    // put.
                    if rng.gen_bool(0.5) {
                        let inner_key = key(&mut rng);
                        let inner = compare_on(&mut rng, inner_key.clone());
                        success.push(TxnOp::Txn {
                            compare: vec![inner],
                            success: vec![TxnOp::Range {
                                key: inner_key.clone(),
                                range_end: None,
                                options: RangeOptions::default(),
                            }],
                            failure: vec![TxnOp::Range {
                                key: PREFIX.to_string(),
                                range_end: Some(prefix_end(PREFIX)),
                                options: range_options(&mut rng, seen_revision),
                            }],
                        });
                        let other = compare_on(&mut rng, inner_key.clone());
                        failure.push(TxnOp::Txn {
                            compare: vec![other],
                            success: vec![TxnOp::Put {
                                key: inner_key.clone(),
                                value: format!("{value}n"),
                                prev_kv: rng.gen_ratio(1, 3),
                                lease: lease(&mut rng),
                            }],
                            failure: vec![TxnOp::Delete {
                                key: inner_key,
                                range_end: None,
                                prev_kv: rng.gen_ratio(1, 3),
                            }],
                        });
                    }
                    EtcdInput::Txn {
                        compare: vec![outer],
                        success,
                        failure,
                    }
                }
            }
        };
        let invoked = now();
        let (outcome, header) = perform(&mut client, &input).await;
        log.hear(id, (invoked, now()), (&client, false), header);
        if let Some(revision) = outcome.output().and_then(EtcdOutput::header_revision) {
            seen_revision = seen_revision.max(revision);
        }
        if let Outcome::Indeterminate = outcome {
            note(format!("etcd client {id}: {input:?} may have applied"));
        }
        log.operations.lock().unwrap().push(Operation {
            client: id,
            invoke_ns: invoked,
            complete_ns: Some(now()),
            input,
            outcome,
            source_line: None,
        });
        tokio::time::sleep(think(&mut *rng_box)).await;
    }
}

/// etcd's refusal of a revision compacted away, and of one not yet written.
pub(crate) const COMPACTED: &str = "required revision has been compacted";
pub(crate) const FUTURE_REVISION: &str = "required revision is a future revision";

/// Runs and records a read at a revision, a serializable read or a
/// compaction.
async fn perform_side(
    client: &mut Client,
    id: u64,
    side: Side,
    log: &EtcdLog,
    started: tokio::time::Instant,
) {
    let now = || started.elapsed().as_nanos() as u64;
    let invoke_ns = now();
    match side {
        Side::Read {
            key,
            range_end,
            options,
            revision,
            serializable,
        } => {
            let request = RangeRequest {
                revision,
                serializable,
                ..range_request(&key, &range_end, &options)
            };
            let answer = client.range(request).await;
            let header = answer.as_ref().ok().and_then(|response| response.header);
            log.hear(id, (invoke_ns, now()), (client, serializable), header);
            let outcome = match answer {
                Ok(response) => ReadOutcome::Ok {
                    header_revision: response.header.as_ref().map_or(0, |h| h.revision),
                    kvs: kvs(&response),
                    count: response.count,
                    more: response.more,
                },
                Err(ClientError::Server(status)) if status.message().contains(COMPACTED) => {
                    ReadOutcome::Compacted
                }
                Err(ClientError::Server(status)) if status.message().contains(FUTURE_REVISION) => {
                    ReadOutcome::FutureRevision
                }
                Err(_) => ReadOutcome::Failed,
            };
            log.reads.lock().unwrap().push(RevisionRead {
                client: id,
                invoke_ns,
                complete_ns: now(),
                key,
                range_end,
                options,
                revision,
                serializable,
                outcome,
            });
        }
        Side::Compact(revision) => {
            let request = CompactionRequest {
                revision,
                physical: false,
            };
            let outcome = match client.compact(request).await {
                Ok(response) => {
                    log.hear(id, (invoke_ns, now()), (client, false), response.header);
                    CompactionOutcome::Acknowledged {
                        header_revision: response.header.map_or(0, |header| header.revision),
                    }
                }
                Err(error) if error.may_have_applied() => CompactionOutcome::Unknown,
                Err(ClientError::Server(status)) if status.message().contains(COMPACTED) => {
                    CompactionOutcome::RefusedCompacted
                }
                Err(ClientError::Server(status)) if status.message().contains(FUTURE_REVISION) => {
                    CompactionOutcome::RefusedFuture
                }
                Err(_) => CompactionOutcome::Refused,
            };
            log.compactions.lock().unwrap().push(Compaction {
                invoke_ns,
                complete_ns: now(),
                revision,
                outcome,
            });
        }
    }
}

/// A client's pause between operations: a seeded draw below
/// `THINK_TIME_MAX`.
fn think(rng: &mut dyn RngCore) -> Duration {
    Duration::from_millis(rng.gen_range(0..THINK_TIME_MAX.as_millis() as u64))
}

/// A request's outcome when it failed with `error`. etcd's refusals that
/// depend on the store (a missing or existing lease, a missing key) are
/// answers the model checks: the one attempt was refused, changing nothing.
fn failed(error: &ClientError, read_only: bool) -> Outcome<EtcdOutput> {
    if let ClientError::Server(status) = error {
        let refusal = [LEASE_NOT_FOUND, LEASE_EXISTS, KEY_NOT_FOUND]
            .into_iter()
            .find(|refusal| status.message() == *refusal);
        // Their codes (NotFound, FailedPrecondition, InvalidArgument) are
        // all definite; checked in case a code ever says otherwise.
        if let Some(refusal) = refusal.filter(|_| !error.may_have_applied()) {
            return Outcome::Ok(EtcdOutput::Refused {
                error: refusal.to_string(),
            });
        }
    }
    if read_only || !error.may_have_applied() {
        Outcome::Fail
    } else {
        Outcome::Indeterminate
    }
}

/// Runs `input`, with the answer's header if one came.
async fn perform(
    client: &mut Client,
    input: &EtcdInput,
) -> (Outcome<EtcdOutput>, Option<ResponseHeader>) {
    let mut heard = None;
    let mut revision_of = |header: &Option<ResponseHeader>| {
        heard = *header;
        header.as_ref().map_or(0, |header| header.revision)
    };
    let outcome = match input {
        EtcdInput::Range {
            key,
            range_end,
            options,
        } => match client.range(range_request(key, range_end, options)).await {
            Ok(response) => Outcome::Ok(EtcdOutput::Range {
                header_revision: revision_of(&response.header),
                kvs: kvs(&response),
                count: Some(response.count),
                more: Some(response.more),
            }),
            Err(error) => failed(&error, true),
        },
        EtcdInput::Put {
            key,
            value,
            prev_kv,
            ignore_value,
            lease,
            ignore_lease,
        } => {
            let request = PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                prev_kv: *prev_kv,
                ignore_value: *ignore_value,
                lease: *lease,
                ignore_lease: *ignore_lease,
            };
            match client.put(request).await {
                Ok(response) => Outcome::Ok(EtcdOutput::Put {
                    header_revision: revision_of(&response.header),
                    prev_kv: response.prev_kv.as_ref().map(key_value),
                }),
                Err(error) => failed(&error, false),
            }
        }
        EtcdInput::Delete {
            key,
            range_end,
            prev_kv,
        } => {
            let request = DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: range_end_bytes(range_end),
                prev_kv: *prev_kv,
            };
            match client.delete_range(request).await {
                Ok(response) => Outcome::Ok(EtcdOutput::Delete {
                    header_revision: revision_of(&response.header),
                    deleted: response.deleted,
                    prev_kvs: response.prev_kvs.iter().map(key_value).collect(),
                }),
                Err(error) => failed(&error, false),
            }
        }
        EtcdInput::Txn {
            compare,
            success,
            failure,
        } => {
            let request = proto_txn(compare, success, failure);
            match client.txn(request).await {
                Ok(response) => Outcome::Ok(EtcdOutput::Txn {
                    header_revision: revision_of(&response.header),
                    succeeded: response.succeeded,
                    responses: op_responses(&response.responses),
                }),
                Err(error) => failed(&error, false),
            }
        }
        EtcdInput::LeaseGrant { id } => match client.lease_grant(LEASE_TTL_SECONDS, *id).await {
            Ok(response) => Outcome::Ok(EtcdOutput::LeaseGrant {
                header_revision: revision_of(&response.header),
                id: response.id,
            }),
            Err(error) => failed(&error, false),
        },
        EtcdInput::LeaseRevoke { id } => match client.lease_revoke(*id).await {
            Ok(response) => Outcome::Ok(EtcdOutput::LeaseRevoke {
                header_revision: revision_of(&response.header),
            }),
            Err(error) => failed(&error, false),
        },
    };
    (outcome, heard)
}
