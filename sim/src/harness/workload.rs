//! Workloads: clients on their own simulated node issue get / put / append
//! through our gRPC client stack and record every invocation and completion
//! in the checker's history format. Values are unique per operation, so a
//! read pins down which write it saw.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{
    compare, kv_client::KvClient, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use madsim::rand::Rng;
use tonic::transport::Channel;

use crate::history::{ClientId, Operation, Outcome};
use crate::model::kv::{KvInput, KvOutput};

use super::cluster::client_url;
use super::options::Workload;
use super::run::Trace;

/// A client's deadline for one request (virtual time). Longer than an
/// election, so a healthy cluster answers within it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between a client's operations, at most.
const THINK_TIME_MAX: Duration = Duration::from_millis(50);

pub type KvOperation = Operation<KvInput, KvOutput>;

/// The shared record of a run; clients append as operations complete.
#[derive(Clone)]
pub struct Recorder {
    operations: Arc<Mutex<Vec<KvOperation>>>,
    started: tokio::time::Instant,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { operations: Arc::default(), started: tokio::time::Instant::now() }
    }

    /// Virtual nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn push(&self, operation: KvOperation) {
        self.operations.lock().unwrap().push(operation);
    }

    pub fn take(&self) -> Vec<KvOperation> {
        std::mem::take(&mut self.operations.lock().unwrap())
    }
}

/// One client: until `deadline`, pick an operation and a member, run it,
/// record it. Reconnects after any failure (the member may be gone).
pub async fn client_loop(
    client: ClientId,
    workload: Workload,
    keys: usize,
    members: usize,
    deadline: tokio::time::Instant,
    recorder: Recorder,
    trace: Trace,
) {
    let mut sequence = 0u64;
    while tokio::time::Instant::now() < deadline {
        let member = madsim::rand::thread_rng().gen_range(0..members);
        let key = format!("k{}", madsim::rand::thread_rng().gen_range(0..keys));
        sequence += 1;
        let value = format!("{client}.{sequence};");
        let input = pick(workload, key, value);
        let invoke_ns = recorder.now_ns();
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, execute(member, &input)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Indeterminate,
        };
        let complete_ns = recorder.now_ns();
        trace.record(format!("client {client} m{member} {input:?} -> {}", outcome.label()));
        recorder.push(Operation { client, invoke_ns, complete_ns: Some(complete_ns), input, outcome, source_line: None });
        let think = madsim::rand::thread_rng().gen_range(0..THINK_TIME_MAX.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

fn pick(workload: Workload, key: String, value: String) -> KvInput {
    let roll = madsim::rand::thread_rng().gen_range(0..100);
    let append_share = match workload {
        Workload::Register => 0,
        Workload::Append => 60,
        Workload::Mixed => 30,
    };
    if roll < 40 {
        KvInput::Get { key }
    } else if roll < 40 + append_share {
        KvInput::Append { key, value }
    } else {
        KvInput::Put { key, value }
    }
}

async fn connect(member: usize) -> Option<KvClient<Channel>> {
    KvClient::connect(client_url(member)).await.ok()
}

/// Runs one operation. A failed write is indeterminate (the server may
/// have applied it before the error); a failed read constrains nothing.
pub async fn execute(member: usize, input: &KvInput) -> Outcome<KvOutput> {
    let Some(mut client) = connect(member).await else {
        // Never reached the server: definitely not applied.
        return Outcome::Fail;
    };
    match input {
        KvInput::Get { key } => match get(&mut client, key).await {
            Some((value, _)) => Outcome::Ok(KvOutput::Get { value }),
            None => Outcome::Fail,
        },
        KvInput::Put { key, value } => {
            let request = PutRequest { key: key.clone().into_bytes(), value: value.clone().into_bytes(), ..Default::default() };
            match client.put(request).await {
                Ok(_) => Outcome::Ok(KvOutput::Put),
                Err(_) => Outcome::Indeterminate,
            }
        }
        KvInput::Append { key, value } => append(&mut client, key, value).await,
    }
}

/// A linearizable get: the value ("" when missing) and its mod revision.
async fn get(client: &mut KvClient<Channel>, key: &str) -> Option<(String, i64)> {
    let response = client.range(RangeRequest { key: key.as_bytes().to_vec(), ..Default::default() }).await.ok()?;
    let kv = response.into_inner().kvs.into_iter().next();
    Some(kv.map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision)).unwrap_or_default())
}

/// Append as read, then a txn that writes the longer value only if the key
/// is unchanged (mod revision, or absence). A compare that fails wrote
/// nothing: a definite failure.
async fn append(client: &mut KvClient<Channel>, key: &str, suffix: &str) -> Outcome<KvOutput> {
    let Some((current, mod_revision)) = get(client, key).await else { return Outcome::Fail };
    let unchanged = Compare {
        key: key.as_bytes().to_vec(),
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        target_union: Some(compare::TargetUnion::ModRevision(mod_revision)),
        ..Default::default()
    };
    let put = PutRequest { key: key.as_bytes().to_vec(), value: format!("{current}{suffix}").into_bytes(), ..Default::default() };
    let request = TxnRequest {
        compare: vec![unchanged],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(put)) }],
        failure: vec![],
    };
    match client.txn(request).await {
        Ok(response) if response.get_ref().succeeded => Outcome::Ok(KvOutput::Append),
        Ok(_) => Outcome::Fail,
        Err(_) => Outcome::Indeterminate,
    }
}
