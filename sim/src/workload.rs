//! Workloads: clients (on their own simulated nodes, or the jepsen-style
//! tool's tasks) issue register
//! (get / put / cas) and append (single- and multi-key, by txn) operations
//! through detcd's Rust client, and record every invocation and completion
//! in the checker's history format. Values are unique per operation, so a
//! read pins down which writes it saw.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::client::{Client, ClientError};
use detcd::proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use crate::history::{ClientId, Operation, Outcome};
use crate::model::kv::{KvInput, KvOutput};
use crate::properties::revisions::{self, Record, Seen};
use crate::properties::watch::CompactionSent;

use crate::options::Workload;

/// A client's deadline for one attempt at one member (virtual time).
/// Longer than an election, so a healthy cluster answers within it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between a client's operations, at most.
const THINK_TIME_MAX: Duration = Duration::from_millis(50);
/// Keys one multi-key operation touches, at most.
const MULTI_KEY_MAX: usize = 3;

pub type KvOperation = Operation<KvInput, KvOutput>;

/// Where a client's draws come from: the simulation's seeded generator,
/// or the jepsen-style tool's per-client one.
pub type SharedRng = Arc<Mutex<Box<dyn RngCore + Send>>>;
/// Told what each operation did (the simulator's trace).
pub type Note = Arc<dyn Fn(String) + Send + Sync>;

/// The shared record of a run; clients append as operations complete.
#[derive(Clone)]
pub struct Recorder {
    operations: Arc<Mutex<Vec<KvOperation>>>,
    /// The same operations as far as revisions go, for
    /// `properties::revisions`.
    revisions: Arc<Mutex<Vec<Record>>>,
    started: tokio::time::Instant,
}

impl Recorder {
    /// Times in the history count from `started`.
    pub fn new(started: tokio::time::Instant) -> Recorder {
        Recorder {
            operations: Arc::default(),
            revisions: Arc::default(),
            started,
        }
    }

    /// Virtual nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn push(&self, operation: KvOperation) {
        self.operations.lock().unwrap().push(operation);
    }

    /// A copy of what has been recorded so far.
    pub fn snapshot(&self) -> Vec<KvOperation> {
        self.operations.lock().unwrap().clone()
    }

    pub fn take(&self) -> Vec<KvOperation> {
        std::mem::take(&mut self.operations.lock().unwrap())
    }

    pub fn push_revisions(&self, record: Record) {
        self.revisions.lock().unwrap().push(record);
    }

    pub fn take_revisions(&self) -> Vec<Record> {
        std::mem::take(&mut self.revisions.lock().unwrap())
    }
}

/// One client of the workload, with what it last saw of each key (a cas
/// usually expects the value it last read, so some succeed).
pub struct Worker {
    pub id: ClientId,
    client: Client,
    recorder: Recorder,
    note: Note,
    rng: SharedRng,
    last_seen: BTreeMap<String, String>,
    sequence: u64,
    /// One client per member, for the reads pinned to a member: the
    /// failover client stays on whichever member answered last, so without
    /// these a member that lags (a learner catching up, a slow follower)
    /// would rarely be read from.
    pinned: Vec<Client>,
}

/// One read in this many goes to a member drawn at random, whatever state
/// it is in, as etcd's round-robin client balancer sends them.
const PINNED_READ_ONE_IN: u32 = 3;

impl Worker {
    pub fn new(
        id: ClientId,
        endpoints: Vec<String>,
        recorder: Recorder,
        note: Note,
        rng: SharedRng,
    ) -> Worker {
        let pinned = endpoints
            .iter()
            .map(|endpoint| {
                Client::new(vec![endpoint.clone()]).with_request_timeout(REQUEST_TIMEOUT)
            })
            .collect();
        let client = Client::new(endpoints).with_request_timeout(REQUEST_TIMEOUT);
        Worker {
            id,
            client,
            recorder,
            note,
            rng,
            last_seen: BTreeMap::new(),
            sequence: 0,
            pinned,
        }
    }

    /// A value no other operation of the run writes.
    pub fn unique_value(&mut self) -> String {
        self.sequence += 1;
        format!("{}.{};", self.id, self.sequence)
    }

    /// Until `deadline`: pick an operation, run it, record it, think.
    pub async fn run(mut self, workload: Workload, keys: usize, deadline: tokio::time::Instant) {
        let started = self.recorder.started;
        while started.elapsed() < deadline.duration_since(started) {
            let input = self.pick(workload, keys);
            self.perform(input).await;
            let think = self
                .rng
                .lock()
                .unwrap()
                .gen_range(0..THINK_TIME_MAX.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
    }

    fn pick(&mut self, workload: Workload, keys: usize) -> KvInput {
        let shared = self.rng.clone();
        let mut guard = shared.lock().unwrap();
        let mut rng = &mut **guard;
        let names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
        let key = names[rng.gen_range(0..keys)].clone();
        let count = rng.gen_range(2..=MULTI_KEY_MAX.min(keys));
        let mut several: Vec<String> = names.choose_multiple(&mut rng, count).cloned().collect();
        several.sort();
        // Shares in percent: get, get_all, put, cas, append, append_all, delete.
        let shares: [u32; 7] = match workload {
            // Deletes stay rare: an indeterminate delete writes no value a
            // read could pin, so the history patching cannot drop it, and
            // each one left open widens the checker's search.
            Workload::Register => [38, 0, 26, 26, 0, 0, 10],
            Workload::Append => [30, 10, 0, 0, 30, 30, 0],
            Workload::Mixed
            | Workload::Lease
            | Workload::Lock
            | Workload::Auth
            | Workload::Etcd => [30, 5, 17, 13, 15, 15, 5],
        };
        let mut roll = rng.gen_range(0..100u32);
        let mut choice = 0;
        for (index, share) in shares.into_iter().enumerate() {
            if roll < share {
                choice = index;
                break;
            }
            roll -= share;
        }
        match choice {
            0 => KvInput::Get { key },
            1 => KvInput::GetAll { keys: several },
            2 => KvInput::Put {
                key,
                value: self.unique_value(),
            },
            3 => {
                let from = self.last_seen.get(&key).cloned().unwrap_or_default();
                KvInput::Cas {
                    key,
                    from,
                    to: self.unique_value(),
                }
            }
            4 => KvInput::Append {
                key,
                value: self.unique_value(),
            },
            5 => KvInput::AppendAll {
                keys: several,
                value: self.unique_value(),
            },
            _ => KvInput::Delete { key },
        }
    }

    /// Runs one operation and records it. Returns the recorded outcome.
    pub async fn perform(&mut self, input: KvInput) -> Outcome<KvOutput> {
        let invoke_ns = self.recorder.now_ns();
        let (input, outcome) = self.execute(input).await;
        let complete_ns = self.recorder.now_ns();
        if let Outcome::Ok(output) = &outcome {
            for (key, value) in input.keys().iter().zip(output.read_values()) {
                self.last_seen.insert(key.to_string(), value.clone());
            }
        }
        (self.note)(format!(
            "client {} via {} {input} -> {}",
            self.id,
            self.client.endpoint(),
            outcome.label()
        ));
        self.recorder.push(Operation {
            client: self.id,
            invoke_ns,
            complete_ns: Some(complete_ns),
            input,
            outcome: outcome.clone(),
            source_line: None,
        });
        outcome
    }

    /// Runs one operation; returns what to record. A failed cas is recorded
    /// as the read it amounts to (its failure branch reads the key), which
    /// is what lets the history patching stay sound with cas in the mix.
    async fn execute(&mut self, input: KvInput) -> (KvInput, Outcome<KvOutput>) {
        let outcome = match &input {
            KvInput::Get { key } => match self.read(std::slice::from_ref(key)).await {
                Some(mut read) => Outcome::Ok(KvOutput::Get {
                    value: read.remove(0).0,
                }),
                None => Outcome::Fail,
            },
            KvInput::GetAll { keys } => match self.read(keys).await {
                Some(read) => Outcome::Ok(KvOutput::GetAll {
                    values: read.into_iter().map(|(value, _)| value).collect(),
                }),
                None => Outcome::Fail,
            },
            KvInput::Put { key, value } => {
                let request = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                let invoked = self.recorder.now_ns();
                let answer = self.client.put(request).await;
                let header = answer
                    .as_ref()
                    .ok()
                    .and_then(|put| put.header)
                    .map(|h| h.revision);
                self.record_write(
                    invoked,
                    &answer,
                    header,
                    vec![(key.clone(), Some(value.clone()))],
                    true,
                );
                written(answer.map(|_| KvOutput::Put))
            }
            KvInput::Cas { key, from, to } => {
                let expected = if from.is_empty() {
                    absent(key)
                } else {
                    value_equals(key, from)
                };
                let invoked = self.recorder.now_ns();
                let answer = self
                    .client
                    .txn(txn(vec![expected], &[(key, to)], vec![range_op(key)]))
                    .await;
                let swapped = answer.as_ref().is_ok_and(|response| response.succeeded);
                if swapped || answer.is_err() {
                    let header = answer
                        .as_ref()
                        .ok()
                        .and_then(|r| r.header)
                        .map(|h| h.revision);
                    self.record_write(
                        invoked,
                        &answer,
                        header,
                        vec![(key.clone(), Some(to.clone()))],
                        true,
                    );
                } else if let Ok(response) = &answer {
                    self.record_read(invoked, std::slice::from_ref(key), response);
                }
                match answer {
                    Ok(response) if response.succeeded => {
                        Outcome::Ok(KvOutput::Cas { swapped: true })
                    }
                    Ok(response) => {
                        let value = first_range(&response).map(|kv| kv.0).unwrap_or_default();
                        if value == *from {
                            // The compare failed on the value it compared: record
                            // the cas as is, and let the checker reject it.
                            Outcome::Ok(KvOutput::Cas { swapped: false })
                        } else {
                            return (
                                KvInput::Get { key: key.clone() },
                                Outcome::Ok(KvOutput::Get { value }),
                            );
                        }
                    }
                    Err(error) => failed_write(&error),
                }
            }
            KvInput::Append { key, value } => {
                self.append(std::slice::from_ref(key), value, KvOutput::Append)
                    .await
            }
            KvInput::Delete { key } => {
                let request = DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                };
                let invoked = self.recorder.now_ns();
                let answer = self.client.delete_range(request).await;
                let header = answer
                    .as_ref()
                    .ok()
                    .and_then(|r| r.header)
                    .map(|h| h.revision);
                let changed = answer.as_ref().map_or(true, |r| r.deleted > 0);
                self.record_write(invoked, &answer, header, vec![(key.clone(), None)], changed);
                written(answer.map(|_| KvOutput::Delete))
            }
            KvInput::AppendAll { keys, value } => {
                self.append(keys, value, KvOutput::AppendAll).await
            }
        };
        (input, outcome)
    }

    /// Linearizable read of several keys at one revision: (value, mod
    /// revision) per key, `("", 0)` when missing.
    async fn read(&mut self, keys: &[String]) -> Option<Vec<(String, i64)>> {
        let pinned = {
            let mut rng = self.rng.lock().unwrap();
            rng.gen_ratio(1, PINNED_READ_ONE_IN)
                .then(|| rng.gen_range(0..self.pinned.len()))
        };
        let client = match pinned {
            Some(member) => &mut self.pinned[member],
            None => &mut self.client,
        };
        let invoked = self.recorder.now_ns();
        let response = client
            .txn(txn(
                vec![],
                &[],
                keys.iter().map(|key| range_op(key)).collect(),
            ))
            .await
            .ok()?;
        self.record_read(invoked, keys, &response);
        Some(ranges(&response))
    }

    /// A read for the revision checks: what each key held at the
    /// response's revision.
    fn record_read(&self, invoked: u64, keys: &[String], response: &TxnResponse) {
        let reads = keys.iter().cloned().zip(seen_ranges(response)).collect();
        self.recorder.push_revisions(Record {
            client: self.id,
            invoked_ns: invoked,
            completed_ns: self.recorder.now_ns(),
            outcome: revisions::Outcome::Ok,
            header_revision: response.header.map_or(0, |header| header.revision),
            reads,
            writes: Vec::new(),
            changed: false,
        });
    }

    /// A write for the revision checks: answered (with its revision), or
    /// unknown if it may have applied; a definite failure is left out.
    fn record_write<T>(
        &self,
        invoked: u64,
        answer: &Result<T, ClientError>,
        header_revision: Option<i64>,
        writes: Vec<(String, Option<String>)>,
        changed: bool,
    ) {
        let outcome = match answer {
            Ok(_) => revisions::Outcome::Ok,
            Err(error) if error.may_have_applied() => revisions::Outcome::Unknown,
            Err(_) => return,
        };
        self.recorder.push_revisions(Record {
            client: self.id,
            invoked_ns: invoked,
            completed_ns: self.recorder.now_ns(),
            outcome,
            header_revision: header_revision.unwrap_or(0),
            reads: Vec::new(),
            writes,
            changed,
        });
    }

    /// Append as a read, then a txn that writes the longer values only if
    /// no key changed since (mod revision, or absence). A compare that
    /// fails wrote nothing: a definite failure.
    async fn append(
        &mut self,
        keys: &[String],
        suffix: &str,
        output: KvOutput,
    ) -> Outcome<KvOutput> {
        let Some(current) = self.read(keys).await else {
            return Outcome::Fail;
        };
        let unchanged = keys
            .iter()
            .zip(&current)
            .map(|(key, (_, revision))| mod_revision_equals(key, *revision))
            .collect();
        let values: Vec<String> = current
            .iter()
            .map(|(value, _)| format!("{value}{suffix}"))
            .collect();
        let puts: Vec<(&String, &String)> = keys.iter().zip(&values).collect();
        let invoked = self.recorder.now_ns();
        let answer = self.client.txn(txn(unchanged, &puts, vec![])).await;
        if answer.as_ref().map_or(true, |response| response.succeeded) {
            let header = answer
                .as_ref()
                .ok()
                .and_then(|r| r.header)
                .map(|h| h.revision);
            let writes = keys
                .iter()
                .cloned()
                .zip(values.iter().cloned().map(Some))
                .collect();
            self.record_write(invoked, &answer, header, writes, true);
        }
        match answer {
            Ok(response) if response.succeeded => Outcome::Ok(output),
            Ok(_) => Outcome::Fail,
            Err(error) => failed_write(&error),
        }
    }
}

/// Revisions of history the compactor leaves behind the current one.
const COMPACTION_LAG: i64 = 50;
/// Pause between two compactions.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(2);

/// Compacts the store now and then, `COMPACTION_LAG` revisions behind, as
/// an operator's periodic compaction would: no client reads old
/// revisions, but compaction runs through raft, shapes snapshots and the
/// HashKV every member must agree on. Returns the revision of each
/// compaction it asked for, and whether it was acknowledged.
pub async fn compactor(
    endpoints: Vec<String>,
    started: tokio::time::Instant,
    deadline: tokio::time::Instant,
    note: Note,
) -> Vec<(CompactionSent, bool)> {
    let mut client = Client::new(endpoints).with_request_timeout(REQUEST_TIMEOUT);
    let mut done = Vec::new();
    while started.elapsed() + COMPACTION_INTERVAL < deadline.duration_since(started) {
        tokio::time::sleep(COMPACTION_INTERVAL).await;
        let probe = RangeRequest {
            key: b"k0".to_vec(),
            serializable: true,
            ..Default::default()
        };
        let Ok(current) = client.range(probe).await else {
            continue;
        };
        let revision = current.header.map_or(0, |header| header.revision) - COMPACTION_LAG;
        if revision <= 1 {
            continue;
        }
        let sent = CompactionSent {
            revision,
            sent_ns: started.elapsed().as_nanos() as u64,
        };
        let outcome = client
            .compact(CompactionRequest {
                revision,
                physical: false,
            })
            .await;
        note(format!(
            "compactor: compact at {revision}: {}",
            outcome
                .as_ref()
                .map_or_else(ToString::to_string, |_| "ok".into())
        ));
        done.push((sent, outcome.is_ok()));
    }
    done
}

fn written(result: Result<KvOutput, ClientError>) -> Outcome<KvOutput> {
    match result {
        Ok(output) => Outcome::Ok(output),
        Err(error) => failed_write(&error),
    }
}

/// A write that failed after it may have reached the cluster is
/// indeterminate; one that never did is a definite failure.
fn failed_write(error: &ClientError) -> Outcome<KvOutput> {
    if error.may_have_applied() {
        Outcome::Indeterminate
    } else {
        Outcome::Fail
    }
}

fn txn(compare: Vec<Compare>, puts: &[(&String, &String)], failure: Vec<RequestOp>) -> TxnRequest {
    let success = puts
        .iter()
        .map(|(key, value)| {
            let put = PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            };
            RequestOp {
                request: Some(request_op::Request::RequestPut(put)),
            }
        })
        .collect::<Vec<_>>();
    // A txn without compares takes the success branch: put the reads there.
    if compare.is_empty() && puts.is_empty() {
        return TxnRequest {
            compare,
            success: failure,
            failure: vec![],
        };
    }
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn range_op(key: &str) -> RequestOp {
    let range = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    RequestOp {
        request: Some(request_op::Request::RequestRange(range)),
    }
}

fn ranges(response: &TxnResponse) -> Vec<(String, i64)> {
    response
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(range)) => range
                .kvs
                .first()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.value).into_owned(),
                        kv.mod_revision,
                    )
                })
                .unwrap_or_default(),
            _ => Default::default(),
        })
        .collect()
}

/// Every range response of a txn, as the revision checks see a key.
fn seen_ranges(response: &TxnResponse) -> Vec<Option<Seen>> {
    response
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(range)) => range.kvs.first().map(|kv| Seen {
                value: String::from_utf8_lossy(&kv.value).into_owned(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
            }),
            _ => None,
        })
        .collect()
}

fn first_range(response: &TxnResponse) -> Option<(String, i64)> {
    ranges(response).into_iter().next()
}

fn compare(
    key: &str,
    result: compare::CompareResult,
    target: compare::CompareTarget,
    operand: compare::TargetUnion,
) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result: result as i32,
        target: target as i32,
        target_union: Some(operand),
        ..Default::default()
    }
}

fn mod_revision_equals(key: &str, revision: i64) -> Compare {
    compare(
        key,
        compare::CompareResult::Equal,
        compare::CompareTarget::Mod,
        compare::TargetUnion::ModRevision(revision),
    )
}

fn absent(key: &str) -> Compare {
    compare(
        key,
        compare::CompareResult::Equal,
        compare::CompareTarget::Create,
        compare::TargetUnion::CreateRevision(0),
    )
}

fn value_equals(key: &str, value: &str) -> Compare {
    compare(
        key,
        compare::CompareResult::Equal,
        compare::CompareTarget::Value,
        compare::TargetUnion::Value(value.as_bytes().to_vec()),
    )
}
