//! The lease workload: each lease client grants short leases one after
//! another, attaches two or three keys of its own to each, and then keeps
//! the lease alive for a while, lets it lapse, or revokes it, reading its
//! keys and asking its TTL all along. Everything it sees is recorded with
//! time since the run started for `properties::leases::check`. It runs on
//! either runtime: the simulator's nodes or the jepsen-style tool's tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::client::Client;
use detcd::proto::etcdserverpb::{
    request_op, response_op, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::Rng;
use tokio::time::Instant;

use crate::properties::leases::{KeepAlive, LeaseRecord, Listing, Look, Span};
use crate::workload::{Note, SharedRng, REQUEST_TIMEOUT};

/// TTLs the workload grants, in seconds: over the minimum (2 s with the
/// default election timeout) and long against a leader change, so a TTL
/// restarted by one shows.
/// TTLs asked for, in seconds: above the shortest a member grants (2 s
/// at the simulator's 1 s election timeout), so each is granted as asked.
const TTL_SECONDS: std::ops::RangeInclusive<i64> = 3..=8;
/// Keys attached to each lease.
const KEYS_PER_LEASE: std::ops::RangeInclusive<usize> = 2..=3;
/// Pause between two looks at a lease, at most.
const OBSERVE_EVERY_MAX: Duration = Duration::from_millis(400);
/// How long past its TTL a lapsed lease is watched for its end.
const LAPSE_WATCH: Duration = Duration::from_secs(6);

/// The lease records of a run, with times since its start.
#[derive(Clone)]
pub struct LeaseLog {
    records: Arc<Mutex<Vec<LeaseRecord>>>,
    started: Instant,
}

impl LeaseLog {
    pub fn new(started: Instant) -> LeaseLog {
        LeaseLog {
            records: Arc::default(),
            started,
        }
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn push(&self, record: LeaseRecord) {
        self.records.lock().unwrap().push(record);
    }

    pub fn take(&self) -> Vec<LeaseRecord> {
        std::mem::take(&mut self.records.lock().unwrap())
    }
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Keepalives every third of the TTL for this long, then lapse.
    KeepFor(Duration),
    Lapse,
    RevokeAfter(Duration),
}

/// One lease client, until `deadline`.
pub async fn client(
    id: u64,
    endpoints: Vec<String>,
    log: LeaseLog,
    rng: SharedRng,
    note: Note,
    deadline: Instant,
) {
    let mut client = Client::new(endpoints).with_request_timeout(REQUEST_TIMEOUT);
    let mut sequence = 0;
    let until = deadline.duration_since(log.started);
    while log.now() < until {
        sequence += 1;
        let (ttl, plan, keys) = {
            let mut rng = rng.lock().unwrap();
            let ttl = rng.gen_range(TTL_SECONDS);
            let plan = match rng.gen_range(0..3) {
                0 => Plan::KeepFor(Duration::from_millis(
                    rng.gen_range(0..3 * ttl as u64 * 1000),
                )),
                1 => Plan::Lapse,
                _ => Plan::RevokeAfter(Duration::from_millis(rng.gen_range(0..ttl as u64 * 1000))),
            };
            (ttl, plan, rng.gen_range(KEYS_PER_LEASE))
        };
        let invoked = log.now();
        let granted = client.lease_grant(ttl, 0).await;
        let grant = Span {
            invoked,
            completed: log.now(),
        };
        let granted = match granted {
            Ok(granted) => granted,
            Err(error) => {
                note(format!("lease client {id}: grant failed: {error}"));
                tokio::time::sleep(OBSERVE_EVERY_MAX).await;
                continue;
            }
        };
        note(format!(
            "lease client {id}: lease {:x} granted, ttl {}s, {plan:?}",
            granted.id, granted.ttl
        ));
        let mut record = LeaseRecord {
            client: id,
            id: granted.id,
            requested_ttl: ttl,
            ttl: Duration::from_secs(granted.ttl as u64),
            grant,
            keys: Vec::new(),
            unacknowledged_keys: Vec::new(),
            keep_alives: Vec::new(),
            revoked: None,
            looks: Vec::new(),
            listings: Vec::new(),
            lease_lists: Vec::new(),
        };
        for n in 0..keys {
            let key = format!("lease/{id}/{sequence}/{n}");
            let put = PutRequest {
                key: key.clone().into_bytes(),
                value: b"leased".to_vec(),
                lease: granted.id,
                ..Default::default()
            };
            if client.put(put).await.is_ok() {
                record.keys.push((key, log.now()));
            } else {
                record.unacknowledged_keys.push(key);
            }
        }
        follow(&mut client, &log, &rng, &mut record, plan, deadline).await;
        note(format!(
            "lease client {id}: lease {:x} done: {} keepalives, {} looks",
            record.id,
            record.keep_alives.len(),
            record.looks.len()
        ));
        log.push(record);
    }
}

/// Keeps the lease alive, lets it lapse or revokes it, per `plan`, looking
/// at it in between, until it is seen gone (and once more after that) or
/// the run's deadline.
async fn follow(
    client: &mut Client,
    log: &LeaseLog,
    rng: &SharedRng,
    record: &mut LeaseRecord,
    plan: Plan,
    deadline: Instant,
) {
    let until = deadline.duration_since(log.started);
    let start = log.now();
    let mut next_keep_alive = start + record.ttl / 3;
    let mut last_effect = record.grant.invoked;
    let mut gone_looks = 0;
    while log.now() < until && gone_looks < 2 {
        let now = log.now();
        match plan {
            Plan::KeepFor(period) if now < start + period && now >= next_keep_alive => {
                let invoked = log.now();
                let answer = match client.lease_keep_alive_once(record.id).await {
                    Ok(answer) => KeepAlive::Answered(answer.ttl),
                    Err(_) => KeepAlive::Unknown,
                };
                let span = Span {
                    invoked,
                    completed: log.now(),
                };
                record.keep_alives.push((span, answer));
                if answer == KeepAlive::Answered(0) {
                    gone_looks += 1;
                }
                last_effect = invoked;
                next_keep_alive = invoked + record.ttl / 3;
            }
            Plan::RevokeAfter(after) if record.revoked.is_none() && now >= start + after => {
                record.revoked = Some(log.now());
                let _ = client.lease_revoke(record.id).await;
            }
            _ => {}
        }
        if log.now() > last_effect + record.ttl + LAPSE_WATCH {
            break;
        }
        let (look_ttl, with_keys, list) = {
            let mut rng = rng.lock().unwrap();
            (rng.gen_bool(0.3), rng.gen_bool(0.5), rng.gen_bool(0.2))
        };
        if list {
            let invoked = log.now();
            if let Ok(answer) = client.lease_leases().await {
                let span = Span {
                    invoked,
                    completed: log.now(),
                };
                let ids = answer.leases.iter().map(|lease| lease.id).collect();
                record.lease_lists.push((span, ids));
            }
        }
        let invoked = log.now();
        let look = if look_ttl {
            let answer = client.lease_time_to_live(record.id, with_keys).await.ok();
            if let Some(answer) = answer.as_ref().filter(|_| with_keys) {
                let listing = Listing {
                    ttl: answer.ttl,
                    granted_ttl: answer.granted_ttl,
                    keys: (answer.keys.iter())
                        .map(|key| String::from_utf8_lossy(key).into_owned())
                        .collect(),
                };
                let span = Span {
                    invoked,
                    completed: log.now(),
                };
                record.listings.push((span, listing));
            }
            answer.map(|answer| Look::Ttl(answer.ttl))
        } else {
            read_keys(client, record, invoked).await.map(Look::Keys)
        };
        if let Some(look) = look {
            let gone = match &look {
                Look::Ttl(ttl) => *ttl < 0,
                Look::Keys(present) => !present.is_empty() && present.iter().all(|p| !p),
            };
            gone_looks += usize::from(gone);
            let span = Span {
                invoked,
                completed: log.now(),
            };
            record.looks.push((span, look));
        }
        let pause = rng
            .lock()
            .unwrap()
            .gen_range(1..OBSERVE_EVERY_MAX.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One linearizable read (a txn of ranges) of the keys attached before
/// `invoked`: which are there.
async fn read_keys(
    client: &mut Client,
    record: &LeaseRecord,
    invoked: Duration,
) -> Option<Vec<bool>> {
    let keys: Vec<&String> = record
        .keys
        .iter()
        .filter(|(_, attached)| *attached <= invoked)
        .map(|(key, _)| key)
        .collect();
    if keys.is_empty() {
        return None;
    }
    let success = keys
        .iter()
        .map(|key| RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        })
        .collect();
    let response = client
        .txn(TxnRequest {
            success,
            ..Default::default()
        })
        .await
        .ok()?;
    Some(
        response
            .responses
            .iter()
            .map(|op| {
                matches!(&op.response, Some(response_op::Response::ResponseRange(range)) if !range.kvs.is_empty())
            })
            .collect(),
    )
}

/// TTL of the lease the run's end grants to the healed cluster, in
/// seconds (over the 2 s minimum).
const PROBE_TTL: i64 = 3;
/// How often the probe asks whether its lease is gone.
const PROBE_POLL: Duration = Duration::from_millis(100);
/// How long the probe tries to have its lease granted, or an answer.
const PROBE_GRANT_BOUND: Duration = Duration::from_secs(10);
/// How long past its deadline the probe's lease may still be seen: the
/// leader's expiry scan (500 ms) and the commit of the expiry, with room
/// to spare. During faults a lease may outlive its TTL by far more (an
/// election, an expiry proposal lost and retried, a member behind a
/// partition holding a later deadline), so this is asked of the healed
/// cluster only.
pub const PROBE_LATE_ALLOWED: Duration = Duration::from_secs(3);

/// The end of a run, once every fault is healed: nothing may hold an
/// expiry up now, so a lease granted and never kept alive must be gone
/// within its TTL and `PROBE_LATE_ALLOWED` of the answer to its grant: a
/// TimeToLive sent later than that must not find it. `log` is the run's
/// lease log, for its clock.
pub async fn probe_expiry(endpoints: Vec<String>, log: LeaseLog, note: Note) -> Result<(), String> {
    let mut client = Client::new(endpoints).with_request_timeout(REQUEST_TIMEOUT);
    let give_up = log.now() + PROBE_GRANT_BOUND;
    let granted = loop {
        match client.lease_grant(PROBE_TTL, 0).await {
            Ok(granted) => break granted,
            Err(error) if log.now() >= give_up => {
                return Err(format!(
                    "lease probe: the healed cluster granted no lease in {PROBE_GRANT_BOUND:?}: {error}"
                ))
            }
            Err(_) => tokio::time::sleep(PROBE_POLL).await,
        }
    };
    let answered = log.now();
    let ttl = Duration::from_secs(granted.ttl as u64);
    let owed = answered + ttl + PROBE_LATE_ALLOWED;
    let put = PutRequest {
        key: b"lease/probe".to_vec(),
        value: b"leased".to_vec(),
        lease: granted.id,
        ..Default::default()
    };
    let _ = client.put(put).await;
    loop {
        tokio::time::sleep(PROBE_POLL).await;
        let asked = log.now();
        match client.lease_time_to_live(granted.id, false).await {
            Ok(answer) if answer.ttl < 0 => {
                note(format!(
                    "lease probe: lease {:x} ({}s) gone {:?} after its grant",
                    granted.id,
                    granted.ttl,
                    log.now() - answered
                ));
                return Ok(());
            }
            Ok(answer) if asked > owed => {
                return Err(format!(
                    "lease probe: lease {:x} ({}s), granted to the healed cluster, still had {}s left when asked {:?} after its grant was answered (TTL + {PROBE_LATE_ALLOWED:?}): it expired late or never",
                    granted.id,
                    granted.ttl,
                    answer.ttl,
                    asked - answered
                ))
            }
            Ok(_) => {}
            Err(error) if log.now() > owed + PROBE_GRANT_BOUND => {
                return Err(format!(
                    "lease probe: the healed cluster answered no TimeToLive for {PROBE_GRANT_BOUND:?} past the lease's end: {error}"
                ))
            }
            Err(_) => {}
        }
    }
}
