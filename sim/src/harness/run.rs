//! One simulation run: start the cluster, run clients and the nemesis for
//! the safety phase, heal, require liveness and convergence, then check the
//! recorded history for linearizability.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, HashKvRequest, RangeRequest,
};
use detcd::rng::stable_hash;
use madsim::runtime::Handle;

use crate::check::{check, Budget, CheckReport, Verdict};
use crate::history::History;
use crate::model::kv::{Kv, KvInput, KvOutput};
use crate::properties::convergence::{self, Judgement, MemberView};
use crate::properties::watch::{self, CompactionSent, Filter};

use super::api_probe;
use super::auth::{self, AuthLog};
use super::cluster::{client_url, SimCluster};
use super::hostile;
use super::invariants::Invariants;
use super::monitor::Monitor;
use super::nemesis;
use super::options::{RunOptions, SwarmOptions};
use super::trace::Trace;
use crate::lease_workload::{self as leases, LeaseLog};
use crate::lock_workload::{self as locks, LockLog};
use crate::watcher;
use crate::workload::{self, Recorder, Worker, REQUEST_TIMEOUT};

/// After healing, the cluster must serve a write and a linearizable read
/// within this much simulated time, or the run is a liveness failure.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// And every member must hold the same data within this much more.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How a run ended.
pub enum Outcome {
    Pass,
    /// The checker's step budget ran out: neither pass nor violation. Long
    /// single-key histories with many indeterminate appends are the hard
    /// case (the problem is NP-complete); reported and counted apart.
    Unknown,
    /// The history is not linearizable, or the checker could not decide.
    Violation(String),
    /// The healed cluster did not serve or converge in time.
    Liveness(String),
}

pub struct RunReport {
    pub swarm: SwarmOptions,
    pub outcome: Outcome,
    pub trace_hash: u64,
    pub history: History<KvInput, KvOutput>,
    pub check: Option<CheckReport>,
    /// The etcd workload's history and its check under the etcd model.
    pub etcd: Option<EtcdCheck>,
    pub simulated: Duration,
}

pub type EtcdCheck = (
    History<crate::model::etcd::EtcdInput, crate::model::etcd::EtcdOutput>,
    CheckReport,
);

/// The whole run, inside a madsim runtime already seeded by the caller.
pub async fn run(options: &RunOptions, echo: bool) -> RunReport {
    let started = tokio::time::Instant::now();
    let swarm = SwarmOptions::draw(&mut madsim::rand::thread_rng());
    let trace = Trace::new(echo);
    trace.record(format!("swarm: {swarm}"));
    let invariants = Invariants::install();
    let mut cluster = SimCluster::start(options.nodes);
    // The observer's node: the monitor and the final checks, never cut off.
    let observer = Handle::current()
        .create_node()
        .name("observer")
        .ip(IpAddr::from([10, 0, 2, 1]))
        .build();

    // Safety phase: clients and faults together, watched by the monitor.
    let monitor = Monitor::default();
    let monitor_task = observer.spawn(monitor.clone().watch(options.nodes));
    let recorder = Recorder::new(tokio::time::Instant::now());
    IN_PROGRESS.with(|slot| *slot.borrow_mut() = Some((swarm.clone(), recorder.clone())));
    let deadline = tokio::time::Instant::now() + options.duration;
    let mut clients = Vec::new();
    if options.workload.key_value() {
        for client in 0..swarm.clients {
            let (node, endpoints) = cluster.add_client(client);
            cluster.served_clients.push(client);
            let worker = Worker::new(
                client as u64,
                endpoints,
                recorder.clone(),
                trace_note(&trace),
                sim_rng(),
            );
            clients.push(node.spawn(worker.run(options.workload, swarm.keys, deadline)));
        }
    }
    // Lease and lock clients live on client nodes after the watcher's and
    // the hostile client's.
    let lease_log = LeaseLog::new(started);
    let lock_log = LockLog::new(started);
    let mut next_node = swarm.clients + 2;
    for client in 0..options.workload.lease_clients(swarm.clients) {
        let (node, endpoints) = cluster.add_client(next_node);
        next_node += 1;
        clients.push(node.spawn(leases::client(
            client as u64,
            endpoints,
            lease_log.clone(),
            sim_rng(),
            trace_note(&trace),
            deadline,
        )));
    }
    for client in 0..options.workload.lock_clients(swarm.clients) {
        let (node, endpoints) = cluster.add_client(next_node);
        next_node += 1;
        clients.push(node.spawn(locks::client(
            client as u64,
            endpoints,
            lock_log.clone(),
            sim_rng(),
            trace_note(&trace),
            deadline,
        )));
    }
    let etcd_log = crate::etcd_workload::EtcdLog::default();
    for client in 0..options.workload.etcd_clients(swarm.clients) {
        let (node, endpoints) = cluster.add_client(next_node);
        cluster.served_clients.push(next_node);
        next_node += 1;
        let trace = trace.clone();
        clients.push(node.spawn(crate::etcd_workload::client(
            crate::etcd_workload::EtcdClient {
                id: client as u64,
                endpoints,
                keys: swarm.keys,
                log: etcd_log.clone(),
                rng: Box::new(madsim::rand::thread_rng()),
                request_timeout: workload::REQUEST_TIMEOUT,
                started,
                run_for: deadline - started,
                compacts: true,
                note: Box::new(move |line| trace.record(line)),
            },
        )));
    }
    let auth_log = AuthLog::new(started);
    let auth_users = options.workload.auth_users(swarm.clients);
    if auth_users > 0 {
        let (node, endpoints) = cluster.add_client(next_node);
        next_node += 1;
        clients.push(node.spawn(auth::admin(
            endpoints,
            auth_users as u64,
            auth_log.clone(),
            trace.clone(),
            deadline,
        )));
    }
    for client in 0..auth_users {
        let (node, endpoints) = cluster.add_client(next_node);
        next_node += 1;
        clients.push(node.spawn(auth::user(
            client as u64,
            endpoints,
            auth_log.clone(),
            trace.clone(),
            deadline,
        )));
    }
    // The watch consumers live next to a member too: one asks for previous
    // key-values, one filters puts or deletes.
    let watched = if options.workload == crate::options::Workload::Etcd {
        watcher::Watched::ETCD
    } else {
        watcher::Watched::KV
    };
    let watch_log = watcher::SharedLog::default();
    let (watch_node, watch_endpoints) = cluster.add_client(swarm.clients);
    let main_watch = watcher::Spec {
        key: watched.key,
        range_end: watched.range_end,
        prev_kv: true,
        filter: None,
    };
    let note = trace.clone();
    watch_node.spawn(watcher::consume(
        watch_endpoints,
        main_watch,
        (watch_log.clone(), started),
        move |line| note.record(line),
    ));
    let filtered_log = watcher::SharedLog::default();
    let filter = if madsim::rand::Rng::gen_bool(&mut madsim::rand::thread_rng(), 0.5) {
        Filter::NoPut
    } else {
        Filter::NoDelete
    };
    // The last client node: the ones before it are numbered up to here.
    let (filtered_node, filtered_endpoints) = cluster.add_client(next_node);
    let note = trace.clone();
    filtered_node.spawn(watcher::consume(
        filtered_endpoints,
        watcher::Spec {
            key: watched.key,
            range_end: watched.range_end,
            prev_kv: false,
            filter: Some(filter),
        },
        (filtered_log.clone(), started),
        move |line| note.record(line),
    ));
    // The etcd workload's clients compact themselves, and record it.
    let compactor =
        (swarm.compaction && options.workload != crate::options::Workload::Etcd).then(|| {
            let endpoints = (0..options.nodes).map(client_url).collect();
            observer.spawn(workload::compactor(
                endpoints,
                started,
                deadline,
                trace_note(&trace),
            ))
        });
    // The etcd model holds the whole store: its clients are the only writers.
    let hostile =
        (swarm.hostile && options.workload != crate::options::Workload::Etcd).then(|| {
            let (node, endpoints) = cluster.add_client(swarm.clients + 1);
            node.spawn(hostile::run(endpoints, deadline, trace.clone()))
        });
    let churn = nemesis::run(
        &mut cluster,
        &swarm,
        options.duration,
        &trace,
        &monitor,
        &invariants,
        &observer,
    )
    .await;
    if let Some(hostile) = hostile {
        let sent = hostile.await.expect("hostile client task");
        trace.record(format!("hostile: {sent} requests"));
    }
    for client in clients {
        client.await.expect("client task");
    }
    let mut compactions_asked = Vec::new();
    if let Some(compactor) = compactor {
        let compactions = compactor.await.expect("compactor task");
        let acknowledged = compactions.iter().filter(|(_, ok)| *ok).count();
        trace.record(format!("compactor: {acknowledged} compactions"));
        compactions_asked = compactions.into_iter().map(|(sent, _)| sent).collect();
    }

    // Liveness phase: every fault healed. The heal restarts members: the
    // availability record ends here.
    cluster.faults.end_stretches();
    // Paused members resume first and get a moment before the members
    // that are down restart (the artifact at `nemesis::resume_paused`).
    if crate::harness::nemesis::resume_paused(&mut cluster, &trace, "healing") {
        tokio::time::sleep(crate::harness::nemesis::RESUME_SETTLE).await;
    }
    cluster.heal_all();
    invariants.set_slow_disk(None);
    trace.record("nemesis: healed everything".into());
    let churn_failure = match churn {
        Some(churn) => {
            crate::harness::churn::finish(churn, &mut cluster, &monitor, &observer, &trace)
                .await
                .err()
        }
        None => None,
    };
    if auth_users > 0 {
        let endpoints = (0..options.nodes).map(client_url).collect();
        observer
            .spawn(auth::disable(endpoints, trace.clone()))
            .await
            .expect("auth disable task");
    }
    let worker = Worker::new(
        swarm.clients as u64,
        (0..options.nodes).map(client_url).collect(),
        recorder.clone(),
        trace_note(&trace),
        sim_rng(),
    );
    let liveness = match churn_failure {
        Some(failure) => Err(failure),
        None => observer
            .spawn(liveness(worker, swarm.keys))
            .await
            .expect("liveness task"),
    };
    let outcome = match liveness {
        Err(message) => Outcome::Liveness(message),
        Ok(()) => observer
            .spawn(convergence(
                options.nodes,
                [cluster.refused.clone(), cluster.stopped.clone()],
                swarm.keys,
            ))
            .await
            .expect("convergence task"),
    };
    // Faults that follow the state: a member that has just caught up is
    // crashed once more (losing what it had not synced), its disk rotted
    // too if this run rots disks and none was yet, and must come back to
    // what the others hold (or, rotted, refuse to start). Then come more
    // writes, so that it reports the state hash of what it recovered,
    // compared with the others' (a state it kept only in memory shows).
    let outcome = match outcome {
        Outcome::Pass
            if (swarm.crash || swarm.disk_corruption) && !cluster.running().is_empty() =>
        {
            let running = cluster.running();
            let (member, down_for) = {
                let mut rng = madsim::rand::thread_rng();
                (
                    running[madsim::rand::Rng::gen_range(&mut rng, 0..running.len())],
                    Duration::from_millis(madsim::rand::Rng::gen_range(&mut rng, 10..500)),
                )
            };
            trace.record(format!(
                "nemesis: crash member {member} once it caught up, for {down_for:?}"
            ));
            cluster.crash(member);
            if swarm.disk_corruption && cluster.corrupted.is_empty() {
                if let Some(flipped) = cluster.corrupt_disk(member) {
                    trace.record(format!("nemesis: disk of m{member} corrupted: {flipped}"));
                }
            }
            tokio::time::sleep(down_for).await;
            cluster.restart(member);
            let worker = Worker::new(
                swarm.clients as u64 + 1,
                (0..options.nodes).map(client_url).collect(),
                recorder.clone(),
                trace_note(&trace),
                sim_rng(),
            );
            match observer
                .spawn(self::liveness(worker, swarm.keys))
                .await
                .expect("liveness task")
            {
                Err(message) => Outcome::Liveness(message),
                Ok(()) => observer
                    .spawn(convergence(
                        options.nodes,
                        [cluster.refused.clone(), cluster.stopped.clone()],
                        swarm.keys,
                    ))
                    .await
                    .expect("convergence task"),
            }
        }
        other => other,
    };
    // The healed cluster holds no expiry up: the lease workload's last
    // check is a lease granted now, gone in time (a skewed clock may
    // stretch a TTL past the bound: then it is not asked).
    let outcome = match outcome {
        Outcome::Pass
            if options.workload == crate::options::Workload::Lease
                && cluster.faults.summary(started).skewed_at.is_none() =>
        {
            let endpoints = (0..options.nodes).map(client_url).collect();
            let probe = observer
                .spawn(leases::probe_expiry(
                    endpoints,
                    lease_log.clone(),
                    trace_note(&trace),
                ))
                .await
                .expect("lease probe task");
            probe.map_or_else(Outcome::Violation, |()| Outcome::Pass)
        }
        other => other,
    };
    let outcome = match outcome {
        Outcome::Pass => {
            let serving = cluster.serving();
            let acknowledged = if watched == watcher::Watched::ETCD {
                watch::acknowledged_etcd_puts(&etcd_log.operations())
            } else {
                watch::acknowledged_kv_writes(&recorder.snapshot())
            };
            // The etcd workload's clients compact too (without the
            // swarm's compactor).
            compactions_asked.extend(etcd_log.compactions_sent());
            observer
                .spawn(check_watch(
                    (serving[0], watched),
                    (watch_log.clone(), filtered_log.clone(), filter),
                    compactions_asked,
                    acknowledged,
                    trace.clone(),
                ))
                .await
                .expect("watch check task")
        }
        other => other,
    };
    watch_log.lock().unwrap().stop = true;
    filtered_log.lock().unwrap().stop = true;
    let outcome = match (outcome, refused_without_cause(&cluster, &trace)) {
        (Outcome::Pass | Outcome::Liveness(_), Some(violation)) => Outcome::Violation(violation),
        (outcome, _) => outcome,
    };
    monitor.stop();
    monitor_task.await.expect("monitor task");
    invariants.uninstall();
    trace.record(format!("monitor: {}", monitor.summary()));
    trace.record(format!("invariants: {}", invariants.summary()));
    // An invariant broken online is the root cause: it comes first.
    let outcome = match (
        outcome,
        monitor.violation().or_else(|| invariants.violation()),
    ) {
        (Outcome::Violation(later), Some(violation)) => {
            Outcome::Violation(format!("{violation}; later: {later}"))
        }
        (_, Some(violation)) => Outcome::Violation(violation),
        (outcome, None) => outcome,
    };
    let mut history = History::new(recorder.take());
    let patched = drop_unobserved_writes(&mut history);
    trace.record(format!(
        "history: {patched} indeterminate writes never observed, treated as not applied"
    ));
    // Checked whatever happened before: the report is also the timeline
    // saved with any failure.
    let report = check(&Kv, &history, Budget::default());
    let outcome = match (outcome, report.verdict) {
        (Outcome::Pass, Verdict::Linearizable) => Outcome::Pass,
        (Outcome::Pass | Outcome::Liveness(_), Verdict::NotLinearizable) => {
            Outcome::Violation("the history is not linearizable".into())
        }
        (Outcome::Pass, Verdict::Unknown) => Outcome::Unknown,
        (outcome, _) => outcome,
    };
    let etcd_record = etcd_log.take();
    let past_read_violations = crate::properties::past_reads::check(
        &crate::model::etcd::Etcd::default(),
        &etcd_record.operations,
        &etcd_record.reads,
        &etcd_record.compactions,
    );
    let watch_event_violations = if watched == watcher::Watched::ETCD {
        let checked = watcher::check_etcd_events(
            &watch_log.lock().unwrap(),
            &etcd_record.operations,
            &crate::etcd_workload::compactions_sent(&etcd_record.compactions),
        );
        if let Ok(covered) = &checked {
            trace.record(format!(
                "watch events against the replayed store: {covered}"
            ));
        }
        checked.err().into_iter().collect()
    } else {
        Vec::new()
    };
    // Which member ids each client URL ever served.
    let ids_served: BTreeMap<String, std::collections::BTreeSet<u64>> = (cluster.ids_served.iter())
        .map(|(&index, ids)| (client_url(index), ids.clone()))
        .collect();
    let header_violations: Vec<String> =
        crate::properties::headers::check(&etcd_record.heard, Some(&ids_served))
            .err()
            .into_iter()
            .collect();
    if !etcd_record.reads.is_empty() {
        trace.record(format!(
            "past reads: {} reads at a revision or serializable, {} compactions checked",
            etcd_record.reads.len(),
            etcd_record.compactions.len()
        ));
    }
    let etcd_history = History::new(etcd_record.operations);
    // Only workloads with key-value clients in the safety phase: the
    // others' histories hold only the liveness phase's operations.
    let clients_ran =
        options.workload.key_value() || options.workload.etcd_clients(swarm.clients) > 0;
    let served_at = clients_ran.then(|| {
        served(&history, KvInput::function)
            .chain(served(
                &etcd_history,
                crate::model::etcd::EtcdInput::function,
            ))
            .collect()
    });
    let outcome = with_availability(outcome, &cluster, started, deadline, served_at);
    let mut etcd = None;
    let outcome = with_violations(outcome, &past_read_violations, "past-read");
    let outcome = with_violations(outcome, &watch_event_violations, "watch event");
    let outcome = with_violations(outcome, &header_violations, "response header");
    let outcome = if etcd_history.is_empty() {
        outcome
    } else {
        let etcd_report = check(
            &crate::model::etcd::Etcd::default(),
            &etcd_history,
            Budget::default(),
        );
        trace.record(format!(
            "etcd model: {} operations, {}",
            etcd_history.len(),
            etcd_report.verdict
        ));
        let verdict = etcd_report.verdict;
        etcd = Some((etcd_history, etcd_report));
        match (outcome, verdict) {
            (Outcome::Pass | Outcome::Liveness(_) | Outcome::Unknown, Verdict::NotLinearizable) => {
                Outcome::Violation(
                    "the etcd workload's history is not linearizable under the etcd model (revisions included)"
                        .into(),
                )
            }
            (Outcome::Pass, Verdict::Unknown) => Outcome::Unknown,
            (outcome, _) => outcome,
        }
    };
    let revision_violations = crate::properties::revisions::check(&recorder.take_revisions());
    let outcome = with_violations(outcome, &revision_violations, "revision");
    let outcome = match (
        outcome,
        check_properties(&cluster, &lease_log, &lock_log, &auth_log, started, &trace),
    ) {
        (Outcome::Pass | Outcome::Unknown | Outcome::Liveness(_), Some(violation)) => {
            Outcome::Violation(violation)
        }
        (outcome, _) => outcome,
    };
    // Last, once everything else passed, as it writes: paths no workload
    // takes, once. The auth workload's cluster has users of its own.
    let outcome = match outcome {
        Outcome::Pass if options.workload != crate::options::Workload::Auth => {
            let endpoint = client_url(cluster.serving()[0]);
            trace.record(format!("probing requests no workload sends on {endpoint}"));
            // Megabytes through raft: in the etcd workload's runs only,
            // the fewest in CI.
            let fragments = options.workload == crate::options::Workload::Etcd;
            let probed = observer
                .spawn(async move {
                    api_probe::probe(&endpoint, fragments).await?;
                    api_probe::probe_auth(&endpoint).await
                })
                .await
                .expect("api probe task");
            probed.map_or_else(Outcome::Violation, |()| Outcome::Pass)
        }
        other => other,
    };
    trace.record(format!("history: {} operations", history.len()));
    IN_PROGRESS.with(|slot| slot.borrow_mut().take());
    // madsim draws from its one seeded generator for every scheduling
    // decision, timer jitter and link latency, so the next draw depends on
    // every one before it: folding it in makes the hash cover the whole
    // schedule, not only the events recorded above.
    let schedule: u64 = madsim::rand::Rng::gen(&mut madsim::rand::thread_rng());
    let trace_hash = trace.hash(stable_hash(&[cluster.filter.digest(), schedule]));
    RunReport {
        swarm,
        outcome,
        trace_hash,
        history,
        check: Some(report),
        etcd,
        simulated: started.elapsed(),
    }
}

/// A workload's note taker: the run's trace.
fn trace_note(trace: &Trace) -> workload::Note {
    let trace = trace.clone();
    Arc::new(move |line| trace.record(line))
}

/// The simulation's seeded generator, as a workload client draws from it.
fn sim_rng() -> workload::SharedRng {
    Arc::new(Mutex::new(Box::new(madsim::rand::thread_rng())))
}

/// `outcome`, or a violation naming the first of `violations` (of the
/// kind `what`) when the run had not already failed harder.
fn with_violations(outcome: Outcome, violations: &[String], what: &str) -> Outcome {
    match (outcome, violations.first()) {
        (Outcome::Pass | Outcome::Unknown | Outcome::Liveness(_), Some(first)) => {
            Outcome::Violation(format!(
                "{first} ({} {what} violations in all)",
                violations.len()
            ))
        }
        (outcome, _) => outcome,
    }
}

/// When each operation of `history` that succeeded completed, and what
/// it was (`function`).
fn served<'h, I, O>(
    history: &'h History<I, O>,
    function: impl Fn(&I) -> &'static str + 'h,
) -> impl Iterator<Item = (Duration, &'static str)> + 'h {
    history
        .operations
        .iter()
        .filter(|operation| matches!(operation.outcome, crate::history::Outcome::Ok(_)))
        .filter_map(move |operation| {
            let at = Duration::from_nanos(operation.complete_ns?);
            Some((at, function(&operation.input)))
        })
}

/// `outcome`, or a liveness failure if the key-value clients (if any ran)
/// went without a read or without a write served while a quorum was
/// healthy (`properties::availability`).
fn with_availability(
    outcome: Outcome,
    cluster: &SimCluster,
    started: tokio::time::Instant,
    clients_stopped: tokio::time::Instant,
    served: Option<Vec<(Duration, &'static str)>>,
) -> Outcome {
    use crate::properties::availability;
    let Some(served) = served else {
        return outcome;
    };
    let stretches = cluster.faults.summary(started).stretches;
    let (reads, writes): (Vec<_>, Vec<_>) = served
        .into_iter()
        .partition(|(_, function)| matches!(*function, "get" | "get_all" | "range"));
    let mut violations = Vec::new();
    // A kind no client ever got served (a workload without reads) owes
    // nothing: the liveness phase's own reads and writes are in the
    // history, so a cluster that serves neither fails there.
    for (what, served) in [("read", reads), ("write", writes)] {
        if served.is_empty() {
            continue;
        }
        let served: Vec<Duration> = served.into_iter().map(|(at, _)| at).collect();
        violations.extend(availability::check(
            what,
            &stretches,
            clients_stopped - started,
            &served,
            availability::RECOVERY,
            availability::GAP,
        ));
    }
    match (outcome, violations.first()) {
        (Outcome::Pass | Outcome::Unknown, Some(first)) => Outcome::Liveness(format!(
            "{first} ({} availability failures in all)",
            violations.len()
        )),
        (outcome, _) => outcome,
    }
}

/// The lease and lock guarantees over what their clients recorded; the
/// first violation, with how many there were. Lease anomalies a skewed
/// clock explains go to the trace only.
fn check_properties(
    cluster: &SimCluster,
    lease_log: &LeaseLog,
    lock_log: &LockLog,
    auth_log: &AuthLog,
    started: tokio::time::Instant,
    trace: &Trace,
) -> Option<String> {
    let leases = lease_log.take();
    let writes = lock_log.take();
    let (changes, accesses) = auth_log.take();
    let auth_violations = crate::properties::auth::check(&changes, &accesses);
    if !changes.is_empty() {
        trace.record(format!(
            "properties: {} permission changes, {} secret-key requests checked",
            changes.len(),
            accesses.len()
        ));
    }
    let faults = cluster.faults.summary(started);
    let lease_verdict = crate::properties::leases::judge(&leases, &faults);
    if lease_verdict.budget_ran_out {
        trace.record("keys and leases: the checker's budget ran out".into());
    }
    let lock_violations = crate::properties::locks::check(&writes);
    if !leases.is_empty() || !writes.is_empty() {
        trace.record(format!(
            "properties: {} leases, {} fenced lock writes checked",
            leases.len(),
            writes.len()
        ));
    }
    for explained in &lease_verdict.clock_explained {
        trace.record(format!(
            "lease anomaly explained by clock skew past the bound: {explained}"
        ));
    }
    let violations: Vec<String> = lease_verdict
        .violations
        .into_iter()
        .chain(lock_violations)
        .chain(auth_violations)
        .collect();
    let first = violations.first()?;
    Some(format!(
        "{first} ({} property violations in all)",
        violations.len()
    ))
}

thread_local! {
    /// The run in progress on this thread: what a run cut short by a panic
    /// leaves behind for its failure report.
    static IN_PROGRESS: std::cell::RefCell<Option<(SwarmOptions, Recorder)>> = const { std::cell::RefCell::new(None) };
}

/// The drawn options and the operations completed so far of the run on
/// this thread that a panic interrupted.
pub fn take_interrupted() -> Option<(SwarmOptions, History<KvInput, KvOutput>)> {
    let (swarm, recorder) = IN_PROGRESS.with(|slot| slot.borrow_mut().take())?;
    Some((swarm, History::new(recorder.take())))
}

/// An indeterminate put or append whose (unique) value no successful read
/// ever returned is recorded as not applied. Sound: had it been applied,
/// no read would have run between it and the put that overwrote it (any
/// such read would contain its value), so dropping it changes no read's
/// answer. This is etcd's robustness-test "history patching", and it keeps
/// the checker out of its exponential case (every unobserved write free to
/// take effect anywhere, or never). Returns how many were patched.
fn drop_unobserved_writes(history: &mut History<KvInput, KvOutput>) -> usize {
    use std::collections::BTreeSet;
    let mut observed: BTreeSet<&str> = BTreeSet::new();
    for operation in &history.operations {
        if let crate::history::Outcome::Ok(output) = &operation.outcome {
            observed.extend(
                output
                    .read_values()
                    .iter()
                    .flat_map(|value| value.split_inclusive(';')),
            );
        }
    }
    let unobserved: Vec<usize> = (history.operations.iter().enumerate())
        .filter(|(_, operation)| operation.outcome == crate::history::Outcome::Indeterminate)
        .filter(|(_, operation)| {
            operation
                .input
                .written()
                .is_some_and(|value| !observed.contains(value))
        })
        .map(|(index, _)| index)
        .collect();
    for &index in &unobserved {
        history.operations[index].outcome = crate::history::Outcome::Fail;
    }
    unobserved.len()
}

/// The key the liveness phase writes, which convergence compares too.
const LIVENESS_KEY: &str = "liveness";

/// A write and a linearizable read of it must succeed within the bound,
/// then a read of each workload key. They join the history (as one more
/// client), so the final state is checked too: an acknowledged write that
/// was lost shows up there. Last come `STATE_HASH_EVERY` more writes, so
/// that every member, once converged, has applied an index whose state
/// hash it reports after all faults healed (a member restarted at the
/// heal would otherwise often apply too little to be compared).
async fn liveness(mut worker: Worker, keys: usize) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + LIVENESS_BOUND;
    let key = LIVENESS_KEY.to_string();
    let (mut live, mut all_read, mut settled) = (false, false, 0);
    let settle = detcd::probe::STATE_HASH_EVERY;
    loop {
        if !live {
            let value = worker.unique_value();
            let put = worker
                .perform(KvInput::Put {
                    key: key.clone(),
                    value: value.clone(),
                })
                .await;
            if matches!(put, crate::history::Outcome::Ok(_)) {
                let read = worker.perform(KvInput::Get { key: key.clone() }).await;
                live = read == crate::history::Outcome::Ok(KvOutput::Get { value });
            }
        }
        if live && !all_read {
            // One get per key: a multi-key read would link every key into
            // one partition and make the check needlessly hard.
            all_read = true;
            for key in (0..keys).map(|k| format!("k{k}")) {
                all_read &= matches!(
                    worker.perform(KvInput::Get { key }).await,
                    crate::history::Outcome::Ok(_)
                );
            }
        }
        while all_read && settled < settle {
            let value = worker.unique_value();
            if !matches!(
                worker
                    .perform(KvInput::Put {
                        key: key.clone(),
                        value
                    })
                    .await,
                crate::history::Outcome::Ok(_)
            ) {
                break;
            }
            settled += 1;
        }
        if settled == settle {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let what = match (live, all_read) {
                (false, _) => "a write and a read of it",
                (true, false) => "reading every key",
                (true, true) => "the settling writes",
            };
            return Err(format!(
                "{what} did not succeed within {LIVENESS_BOUND:?} after healing"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Every serving member's local (serializable) view — its HashKV and the
/// workload keys' values and mod revisions — must become identical
/// (`properties::convergence` judges). Members that refused to start or
/// stopped on a storage failure (`out`) are not asked.
async fn convergence(
    members: usize,
    out: [Arc<Mutex<BTreeMap<usize, String>>>; 2],
    keys: usize,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + CONVERGENCE_BOUND;
    loop {
        let serving: Vec<usize> = (0..members)
            .filter(|member| {
                !out.iter()
                    .any(|out| out.lock().unwrap().contains_key(member))
            })
            .collect();
        let mut views = Vec::new();
        for &member in &serving {
            views.push((format!("m{member}"), local_view(member, keys).await));
        }
        let judgement = convergence::judge(&views);
        if matches!(judgement, Judgement::Converged { .. }) {
            return Outcome::Pass;
        }
        if matches!(judgement, Judgement::Diverged(_)) || tokio::time::Instant::now() >= deadline {
            return match convergence::give_up(&judgement, CONVERGENCE_BOUND) {
                Ok(()) => Outcome::Pass,
                Err(convergence::Failure::Violation(why)) => Outcome::Violation(why),
                Err(convergence::Failure::Liveness(why)) => Outcome::Liveness(why),
            };
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The watch guarantees, once the members have converged: the consumer
/// must reach their revision in time, in order, and (unless compaction
/// cut it off) its events must replay to what they hold.
async fn check_watch(
    (member, watched): (usize, watcher::Watched),
    (log, filtered_log, filter): (watcher::SharedLog, watcher::SharedLog, Filter),
    compactions_asked: Vec<CompactionSent>,
    acknowledged: Vec<(String, String)>,
    trace: Trace,
) -> Outcome {
    // Checked first: a false "compacted" can keep a watch from catching
    // up, which would otherwise end the run as a liveness failure.
    let compactions_checked = |log: &watcher::SharedLog| {
        watcher::check_compactions(&log.lock().unwrap(), &compactions_asked)
    };
    if let Err(violation) =
        compactions_checked(&log).and_then(|()| compactions_checked(&filtered_log))
    {
        return Outcome::Violation(violation);
    }
    if !compactions_asked.is_empty() {
        let compacted = local_compact_revision(member).await;
        if let Some(compact_revision) = compacted.filter(|&revision| revision > 1) {
            trace.record(format!(
                "probing compacted watches at compact revision {compact_revision}"
            ));
            let probed = watcher::probe_compaction(&client_url(member), compact_revision).await;
            if let Err(violation) = probed {
                return Outcome::Violation(violation);
            }
        }
    }
    let Some((view, revision)) = watched_view(member, watched).await else {
        return Outcome::Liveness(format!("m{member} stopped answering after convergence"));
    };
    let deadline = tokio::time::Instant::now() + CONVERGENCE_BOUND;
    for (name, log) in [("the watch", &log), ("the filtered watch", &filtered_log)] {
        while log.lock().unwrap().caught_up_to < revision {
            if tokio::time::Instant::now() >= deadline {
                let reached = log.lock().unwrap().caught_up_to;
                return Outcome::Liveness(format!(
                    "{name} reached revision {reached}, not {revision}, within {CONVERGENCE_BOUND:?}"
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    let log = log.lock().unwrap();
    let filtered = filtered_log.lock().unwrap();
    for (name, log) in [("watcher", &*log), ("filtered watcher", &*filtered)] {
        trace.record(format!(
            "{name}: {} events over {} streams, caught up to {}{}",
            watch::events(&log.responses).count(),
            log.streams,
            log.caught_up_to,
            if log.compacted {
                ", cut off by compaction once"
            } else {
                ""
            }
        ));
    }
    let writes = acknowledged
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()));
    let checked = watcher::check_compactions(&log, &compactions_asked)
        .and_then(|()| watcher::check_compactions(&filtered, &compactions_asked))
        .and_then(|()| {
            watcher::check(
                (&log, &filtered, filter),
                &view,
                revision,
                writes,
                |key| watched.contains(key),
                &compactions_asked,
            )
        });
    match checked {
        Ok(()) => Outcome::Pass,
        Err(violation) => Outcome::Violation(violation),
    }
}

/// A member may refuse to start (or stop on a storage failure) only if its
/// disk was corrupted: one that was merely crashed, paused or filled must
/// come back. And even then not
/// because its WAL ends before its backend's state: that WAL silently
/// lost entries it had synced (`WAL_BEHIND_BACKEND`). Records the
/// refusals in the trace.
fn refused_without_cause(cluster: &SimCluster, trace: &Trace) -> Option<String> {
    let mut refused = cluster.refused.lock().unwrap().clone();
    refused.extend(cluster.stopped.lock().unwrap().clone());
    for (member, reason) in &refused {
        trace.record(format!("m{member} is out: {reason}"));
    }
    if let Some((member, reason)) = refused
        .iter()
        .find(|(_, reason)| reason.contains(detcd::raft_node::WAL_BEHIND_BACKEND))
    {
        return Some(format!(
            "durability: m{member}'s WAL lost entries its backend had applied: {reason}"
        ));
    }
    refused
        .iter()
        .find(|(member, _)| !cluster.corrupted.contains(member))
        .map(|(member, reason)| {
            format!("m{member} is out though its disk was never corrupted: {reason}")
        })
}

/// The watched range on one member, read at once (one serializable
/// range), with the revision the read saw.
async fn watched_view(
    member: usize,
    watched: watcher::Watched,
) -> Option<(BTreeMap<String, (String, i64)>, i64)> {
    let call = async {
        let mut client = KvClient::connect(client_url(member)).await.ok()?;
        let request = RangeRequest {
            key: watched.key.to_vec(),
            range_end: watched.range_end.to_vec(),
            serializable: true,
            ..Default::default()
        };
        let response = client.range(request).await.ok()?.into_inner();
        let view = response
            .kvs
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                (key, (value, kv.mod_revision))
            })
            .collect();
        Some((view, response.header.map_or(0, |header| header.revision)))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}

/// A member's compact revision, from its HashKV.
async fn local_compact_revision(member: usize) -> Option<i64> {
    tokio::time::timeout(REQUEST_TIMEOUT, hash_kv(member))
        .await
        .ok()
        .flatten()
        .map(|hash| hash.compact_revision)
}

/// A member's HashKV of its whole key-value history.
async fn hash_kv(member: usize) -> Option<detcd::proto::etcdserverpb::HashKvResponse> {
    let mut maintenance = MaintenanceClient::connect(client_url(member)).await.ok()?;
    let hash = maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .ok()?;
    Some(hash.into_inner())
}

/// One member's HashKV, and key → (value, mod revision) as it holds them.
async fn local_view(member: usize, keys: usize) -> Option<MemberView> {
    let call = async {
        let mut client = KvClient::connect(client_url(member)).await.ok()?;
        let mut view = BTreeMap::new();
        for key in (0..keys)
            .map(|k| format!("k{k}"))
            .chain([LIVENESS_KEY.to_string()])
        {
            let request = RangeRequest {
                key: key.clone().into_bytes(),
                serializable: true,
                ..Default::default()
            };
            let response = client.range(request).await.ok()?.into_inner();
            let entry = response.kvs.first().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                )
            });
            view.insert(key, entry.unwrap_or_default());
        }
        // etcd's HashKV covers the whole key-value history, every key and
        // revision, not only the workload keys' latest values.
        let hash = hash_kv(member).await?;
        Some(MemberView {
            revision: hash.header.map_or(0, |header| header.revision),
            compact_revision: hash.compact_revision,
            hash: hash.hash,
            keys: view,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}
