//! The lock workload: each client grants a short lease, takes the lock
//! `LOCK_NAME` with it through v3lock's Lock, reads its lock key's create
//! revision (its fencing token), writes the shared register once or twice
//! in txns fenced on that revision, then unlocks, revokes the lease, or
//! walks away and lets the lease lapse. Committed fenced writes are
//! recorded for `properties::locks::check`. It runs on either runtime: the
//! simulator's nodes or the jepsen-style tool's tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::client::Client;
use detcd::proto::etcdserverpb::{
    compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use tokio::time::Instant;

use crate::properties::locks::FencedWrite;
use crate::workload::{Note, SharedRng, REQUEST_TIMEOUT};

pub const LOCK_NAME: &[u8] = b"sim-lock";
/// The register the holders write.
const REGISTER: &[u8] = b"sim-lock-register";
/// The lease TTLs lockers use, in seconds.
const TTL_SECONDS: std::ops::RangeInclusive<i64> = 2..=4;
/// How long a client waits for the lock before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(8);
/// How long a holder keeps the lock between its writes, at most.
const HOLD_MAX: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct LockLog {
    writes: Arc<Mutex<Vec<FencedWrite>>>,
    started: Instant,
}

impl LockLog {
    /// A run's log; its clients run until a deadline counted from `started`.
    pub fn new(started: Instant) -> LockLog {
        LockLog {
            writes: Arc::default(),
            started,
        }
    }

    pub fn take(&self) -> Vec<FencedWrite> {
        std::mem::take(&mut self.writes.lock().unwrap())
    }
}

/// One locking client, until `deadline`.
pub async fn client(
    id: u64,
    endpoints: Vec<String>,
    log: LockLog,
    rng: SharedRng,
    note: Note,
    deadline: Instant,
) {
    let mut client = Client::new(endpoints.clone()).with_request_timeout(REQUEST_TIMEOUT);
    let mut waiter = Client::new(endpoints).with_request_timeout(LOCK_WAIT);
    let mut sequence = 0;
    let until = deadline.duration_since(log.started);
    while log.started.elapsed() < until {
        sequence += 1;
        let ttl = rng.lock().unwrap().gen_range(TTL_SECONDS);
        let Ok(lease) = client.lease_grant(ttl, 0).await else {
            tokio::time::sleep(HOLD_MAX).await;
            continue;
        };
        let key = match waiter.lock(LOCK_NAME, lease.id).await {
            Ok(locked) => locked.key,
            Err(error) => {
                note(format!("lock client {id}: lock failed: {error}"));
                let _ = client.lease_revoke(lease.id).await;
                continue;
            }
        };
        // The token: the lock key's create revision (0 if the lease ran
        // out while the client waited, and with it the key).
        let token = match client
            .range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(read) => read.kvs.first().map_or(0, |kv| kv.create_revision),
            Err(_) => 0,
        };
        note(format!(
            "lock client {id}: holds {} with token {token}",
            String::from_utf8_lossy(&key)
        ));
        let writes = rng.lock().unwrap().gen_range(1..=2);
        for n in 0..writes {
            if token == 0 {
                break;
            }
            let fenced = TxnRequest {
                compare: vec![Compare {
                    key: key.clone(),
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    target_union: Some(compare::TargetUnion::CreateRevision(token)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: REGISTER.to_vec(),
                        value: format!("{id}.{sequence}.{n}").into_bytes(),
                        ..Default::default()
                    })),
                }],
                failure: Vec::new(),
            };
            match client.txn(fenced).await {
                Ok(answer) if answer.succeeded => {
                    let revision = answer.header.map_or(0, |header| header.revision);
                    log.writes.lock().unwrap().push(FencedWrite {
                        client: id,
                        token,
                        revision,
                    });
                }
                Ok(_) => {
                    note(format!("lock client {id}: fenced write refused: lock lost"));
                    break;
                }
                Err(_) => {}
            }
            let hold = rng
                .lock()
                .unwrap()
                .gen_range(0..HOLD_MAX.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(hold)).await;
        }
        let ending = rng.lock().unwrap().gen_range(0..10);
        match ending {
            0 => {
                let _ = client.lease_revoke(lease.id).await;
            }
            // Walk away: the lease lapses and takes the key along.
            1 => {}
            _ => {
                let _ = client.unlock(&key).await;
                let _ = client.lease_revoke(lease.id).await;
            }
        }
    }
}
