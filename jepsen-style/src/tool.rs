//! The run: arguments, the cluster's life, the nemesis loop, convergence,
//! the checks and the report.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use detcd::client::Client;
use detcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use detcd_sim::check::{check, Budget, Verdict};
use detcd_sim::etcd_workload::{self, EtcdClient, EtcdLog, EtcdRecord};
use detcd_sim::format::json::JsonModel;
use detcd_sim::history::{History, Operation};
use detcd_sim::lease_workload::{self, LeaseLog};
use detcd_sim::lock_workload::{self, LockLog};
use detcd_sim::model::etcd::Etcd;
use detcd_sim::model::kv::Kv;
use detcd_sim::options::Workload;
use detcd_sim::properties::convergence::{self, MemberView};
use detcd_sim::properties::watch::{self, CompactionSent, Filter};
use detcd_sim::watcher::{self, SharedLog};
use detcd_sim::workload::{self, KvOperation, Recorder, Worker};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cluster::{self, Cluster, Target};
use crate::nemesis::{self, Fault, FaultKind, Step};
use crate::net::Net;
use crate::report::{self, Page, Sample, Stats, Window};

/// The simulator's exit codes.
const EXIT_PASS: u8 = 0;
const EXIT_VIOLATION: u8 = 1;
const EXIT_LIVENESS: u8 = 2;
const EXIT_CRASH: u8 = 3;
/// Ctrl-C, as shells report it.
const EXIT_INTERRUPTED: u8 = 130;

/// A client request's deadline; past it the outcome is unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the members may take to answer a first read.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the healed members may take to agree.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// A status or hash question to one member during setup and convergence.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long the watchers may take to reach the converged revision.
const WATCH_CATCH_UP: Duration = Duration::from_secs(30);
/// Lines of each member's log printed when a run crashes.
const LOG_TAIL_LINES: usize = 15;
/// A seed's clients draw from `seed * CLIENT_SEED_STRIDE + client`.
const CLIENT_SEED_STRIDE: u64 = 1_000;
/// How long after being started a member may take to recover and resume
/// its leases, for the lease check's allowance for restarts: generous,
/// for a debug build on a loaded machine.
const RECOVERY_ALLOWANCE: Duration = Duration::from_secs(5);
/// Lease and lock clients draw as clients numbered from here and
/// `LOCK_CLIENT_SEEDS` (the kv and etcd clients number from 0).
const LEASE_CLIENT_SEEDS: u64 = 300;
const LOCK_CLIENT_SEEDS: u64 = 600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Targets {
    Detcd,
    Etcd,
    /// The same seed against detcd, then etcd, and a table of both.
    Both,
}

#[derive(Parser, Debug)]
#[command(
    name = "detcd-jepsen",
    about = "Run detcd or etcd 3.4.23 as real processes under a seeded nemesis and check the history"
)]
struct Args {
    #[arg(long, value_enum, default_value = "detcd")]
    target: Targets,
    /// Members in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=9))]
    nodes: u16,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// `all`, `none`, or a comma-separated list of: kill, pause,
    /// partition, netem, leader, churn, disk, clock.
    #[arg(long, default_value = "all")]
    nemesis: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Members on loopback ports, without namespaces: no partitions, no
    /// netem and no full disks, but no root needed.
    #[arg(long)]
    no_netns: bool,
    /// What the clients do: etcd (ranges, txns, past reads; the etcd
    /// model), register or append (the kv model), mixed (both of those,
    /// with a lease client and two lock clients alongside), lease (leases
    /// granted, kept alive, lapsed, revoked) or lock (v3lock and fenced
    /// writes).
    #[arg(long, value_enum, default_value = "etcd")]
    workload: Workload,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 4)]
    clients: u64,
    /// Hot keys the clients share.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Where each run's directory goes.
    #[arg(long, default_value = "jepsen-runs")]
    out: PathBuf,
    /// The detcd server (default: next to this tool, built if missing).
    #[arg(long)]
    detcd_bin: Option<PathBuf>,
    /// The etcd server (default: Debian's etcd-server on PATH).
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
}

impl Args {
    /// The command that reproduces this run's schedule against `target`.
    fn reproduce(&self, target: &str) -> String {
        let mut command = format!(
            "cargo run -p detcd-jepsen --release -- --target {target} --nodes {} --time {} --nemesis {} --seed {} --workload {} --clients {} --keys {}",
            self.nodes,
            self.time,
            self.nemesis,
            self.seed,
            format!("{:?}", self.workload).to_lowercase(),
            self.clients,
            self.keys
        );
        if self.no_netns {
            command.push_str(" --no-netns");
        }
        command
    }

    fn kinds(&self) -> Result<Vec<FaultKind>, String> {
        let mut kinds = match self.nemesis.as_str() {
            "all" => FaultKind::ALL.to_vec(),
            "none" => Vec::new(),
            list => list
                .split(',')
                .map(|name| {
                    <FaultKind as clap::ValueEnum>::from_str(name.trim(), true)
                        .map_err(|_| format!("--nemesis: unknown fault kind {name:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        kinds.sort();
        kinds.dedup();
        if self.no_netns {
            let dropped: Vec<String> = kinds
                .iter()
                .filter(|kind| kind.needs_root())
                .map(|kind| format!("{kind:?}").to_lowercase())
                .collect();
            if !dropped.is_empty() {
                println!(
                    "--no-netns: without namespaces, skipping {}",
                    dropped.join(", ")
                );
            }
            kinds.retain(|kind| !kind.needs_root());
        }
        Ok(kinds)
    }
}

enum RunVerdict {
    Pass,
    Violation(String),
    Liveness(String),
    Crash(String),
    Interrupted,
}

impl RunVerdict {
    fn code(&self) -> u8 {
        match self {
            RunVerdict::Pass => EXIT_PASS,
            RunVerdict::Violation(_) => EXIT_VIOLATION,
            RunVerdict::Liveness(_) => EXIT_LIVENESS,
            RunVerdict::Crash(_) => EXIT_CRASH,
            RunVerdict::Interrupted => EXIT_INTERRUPTED,
        }
    }

    fn line(&self) -> String {
        match self {
            RunVerdict::Pass => "PASS".to_string(),
            RunVerdict::Violation(why) => format!("VIOLATION: {why}"),
            RunVerdict::Liveness(why) => format!("LIVENESS: {why}"),
            RunVerdict::Crash(why) => format!("CRASH: {why}"),
            RunVerdict::Interrupted => "INTERRUPTED".to_string(),
        }
    }
}

struct RunResult {
    verdict: RunVerdict,
    stats: Stats,
    dir: PathBuf,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let keys_needed = if args.workload == Workload::Etcd {
        1
    } else {
        2
    };
    if args.keys < keys_needed {
        eprintln!("--keys: at least {keys_needed} for this workload");
        return ExitCode::from(64);
    }
    if args.workload == Workload::Auth {
        eprintln!(
            "--workload: etcd, register, append, mixed, lease or lock (auth is the simulator's)"
        );
        return ExitCode::from(64);
    }
    let kinds = match args.kinds() {
        Ok(kinds) => kinds,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(64);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("interrupted: stopping the members and removing the namespaces");
                flag.store(true, Ordering::SeqCst);
            }
        });
        let targets: &[Target] = match args.target {
            Targets::Detcd => &[Target::Detcd],
            Targets::Etcd => &[Target::Etcd],
            Targets::Both => &[Target::Detcd, Target::Etcd],
        };
        let mut results = Vec::new();
        for &target in targets {
            let result = run(&args, target, &kinds, &stop).await;
            println!(
                "{}: {} (report: {})",
                target.name(),
                result.verdict.line(),
                result.dir.join("report.html").display()
            );
            let interrupted = matches!(result.verdict, RunVerdict::Interrupted);
            results.push((target, result));
            if interrupted {
                break;
            }
        }
        if results.len() > 1 {
            print_comparison(&results);
        }
        let code = results
            .iter()
            .map(|(_, result)| result.verdict.code())
            .max()
            .unwrap_or(EXIT_PASS);
        for (target, result) in &results {
            if result.verdict.code() != EXIT_PASS {
                println!("reproduce: {}", args.reproduce(target.name()));
            }
        }
        if code == EXIT_PASS {
            println!(
                "reproduce: {}",
                args.reproduce(match args.target {
                    Targets::Detcd => "detcd",
                    Targets::Etcd => "etcd",
                    Targets::Both => "both",
                })
            );
        }
        code
    });
    ExitCode::from(code)
}

fn print_comparison(results: &[(Target, RunResult)]) {
    let row = |name: &str, cell: &dyn Fn(&RunResult) -> String| {
        let mut line = format!("{name:<28}");
        for (_, result) in results {
            line.push_str(&format!("{:>22}", cell(result)));
        }
        println!("{line}");
    };
    let mut header = format!("{:<28}", "");
    for (target, _) in results {
        header.push_str(&format!("{:>22}", target.name()));
    }
    println!("\n{header}");
    row("availability", &|r| {
        if r.stats.operations == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", r.stats.availability() * 100.0)
        }
    });
    row("operations ok / all", &|r| {
        format!("{} / {}", r.stats.ok, r.stats.operations)
    });
    row("p50 / p99 ms, in faults", &|r| {
        report::millis(r.stats.during_faults)
    });
    row("p50 / p99 ms, outside", &|r| {
        report::millis(r.stats.outside_faults)
    });
    row("worst recovery ms", &|r| {
        r.stats
            .worst_recovery()
            .map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1e3))
    });
    row("members exited, disk full", &|r| {
        r.stats.exits_on_full_disk.to_string()
    });
    row("verdict", &|r| match &r.verdict {
        RunVerdict::Pass => "pass".to_string(),
        RunVerdict::Violation(_) => "VIOLATION".to_string(),
        RunVerdict::Liveness(_) => "liveness".to_string(),
        RunVerdict::Crash(_) => "crash".to_string(),
        RunVerdict::Interrupted => "interrupted".to_string(),
    });
}

/// The detcd server: `--detcd-bin`, or the one cargo builds next to this
/// tool (built now when missing, in the same profile).
fn detcd_binary(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let exe = std::env::current_exe().map_err(|error| format!("this tool's path: {error}"))?;
    let dir = exe.parent().ok_or("this tool has no directory")?;
    let candidate = dir.join("detcd");
    // Run through cargo (`cargo run -p detcd-jepsen`): build the server
    // too, so a change to it is never tested stale (a no-op when fresh).
    if candidate.exists() && std::env::var_os("CARGO").is_none() {
        return Ok(candidate);
    }
    let target_dir = dir
        .parent()
        .ok_or("this tool is not in a cargo target dir")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", "detcd", "--bin", "detcd", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if dir.ends_with("release") {
        command.arg("--release");
    }
    println!("building the detcd server: {command:?}");
    let status = command
        .status()
        .map_err(|error| format!("cargo: {error}"))?;
    if status.success() && candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "no detcd server at {}: build it or pass --detcd-bin",
            candidate.display()
        ))
    }
}

async fn run(args: &Args, target: Target, kinds: &[FaultKind], stop: &AtomicBool) -> RunResult {
    let dir = args
        .out
        .join(format!("{}-seed{}", target.name(), args.seed));
    let mut stats = Stats::default();
    let result = run_in(args, target, kinds, stop, &dir, &mut stats).await;
    let verdict = match result {
        Ok(verdict) => verdict,
        Err(why) => RunVerdict::Crash(why),
    };
    let _ = std::fs::write(dir.join("verdict.txt"), format!("{}\n", verdict.line()));
    RunResult {
        verdict,
        stats,
        dir,
    }
}

async fn run_in(
    args: &Args,
    target: Target,
    kinds: &[FaultKind],
    stop: &AtomicBool,
    dir: &Path,
    stats_out: &mut Stats,
) -> Result<RunVerdict, String> {
    let nodes = usize::from(args.nodes);
    let time = Duration::from_secs(args.time);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let binary = match target {
        Target::Detcd => detcd_binary(args.detcd_bin.as_deref())?,
        Target::Etcd => args.etcd_bin.clone(),
    };
    println!(
        "{}: {nodes} members ({}), {} s, seed {}, {} clients on {} keys",
        target.name(),
        if args.no_netns {
            "loopback"
        } else {
            "a network namespace each"
        },
        args.time,
        args.seed,
        args.clients,
        args.keys
    );
    // Declared before the cluster so it drops after it: the processes go
    // first, then their namespaces.
    let mut net = if args.no_netns {
        None
    } else {
        Some(Net::create(nodes).map_err(|error| {
            format!("setting up namespaces (root and iproute2 needed; or pass --no-netns): {error}")
        })?)
    };
    let token = format!("jepsen-{}", args.seed);
    let small_disks = kinds.contains(&FaultKind::Disk);
    let faketime = if kinds.contains(&FaultKind::Clock) {
        let library = cluster::faketime_library();
        if library.is_none() {
            println!("no libfaketime (Debian's faketime) and it could not be installed: skipping clock faults");
        }
        library
    } else {
        None
    };
    let kinds: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|kind| *kind != FaultKind::Clock || faketime.is_some())
        .collect();
    let kinds = kinds.as_slice();
    let mut cluster = Cluster::new(
        binary.clone(),
        nodes,
        dir,
        net.as_ref(),
        &token,
        small_disks,
        faketime,
    )
    .map_err(|error| format!("laying out the members: {error}"))?;
    cluster
        .start_all()
        .map_err(|error| format!("starting {}: {error}", binary.display()))?;
    if let Err(why) = wait_ready(&cluster).await {
        return Ok(RunVerdict::Crash(format!("{why}\n{}", tails(&cluster))));
    }

    let steps = nemesis::schedule(args.seed, nodes, kinds, time);
    let schedule: Vec<String> = steps.iter().map(Step::to_string).collect();
    println!("schedule ({} faults of {:?}):", steps.len(), kinds);
    for line in &schedule {
        println!("  {line}");
    }
    let _ = std::fs::write(dir.join("schedule.txt"), schedule.join("\n") + "\n");

    let etcd_log = EtcdLog::default();
    // Odd seeds compact (past reads meet compacted revisions); even seeds
    // do not, so the watches stay whole and their replay is checked.
    let compacts = args.seed % 2 == 1;
    let started = tokio::time::Instant::now();
    let urls = cluster.client_urls();
    let urls_for_compactor = urls.clone();
    // Every compaction the kv workloads' compactor asked for, answered or
    // not (the etcd workload's clients keep their own in `etcd_log`).
    let compactor_asked: Arc<Mutex<Vec<CompactionSent>>> = Arc::default();
    let recorder = Recorder::new(started);
    let etcd = args.workload == Workload::Etcd;
    let mut clients = Vec::new();
    // Each client starts at a different member, then fails over.
    let endpoints_from = |n: u64| {
        let mut endpoints = urls.clone();
        endpoints.rotate_left(n as usize % urls.len());
        endpoints
    };
    let client_rng = |n: u64| {
        ChaCha8Rng::seed_from_u64(args.seed.wrapping_mul(CLIENT_SEED_STRIDE).wrapping_add(n))
    };
    let shared_rng =
        |n: u64| -> workload::SharedRng { Arc::new(Mutex::new(Box::new(client_rng(n)))) };
    let kv_clients = if etcd || args.workload.key_value() {
        args.clients
    } else {
        0
    };
    for id in 0..kv_clients {
        let endpoints = endpoints_from(id);
        if etcd {
            clients.push(tokio::spawn(detcd_sim::etcd_workload::client(EtcdClient {
                id,
                endpoints,
                keys: args.keys,
                log: etcd_log.clone(),
                rng: Box::new(client_rng(id)),
                request_timeout: REQUEST_TIMEOUT,
                started,
                run_for: time,
                compacts,
                note: Box::new(|_| {}),
            })));
        } else {
            let worker = Worker::new(
                id,
                endpoints,
                recorder.clone(),
                Arc::new(|_| {}),
                shared_rng(id),
            );
            clients.push(tokio::spawn(worker.run(
                args.workload,
                args.keys,
                started + time,
            )));
        }
    }
    let lease_log = LeaseLog::new(started);
    let lock_log = LockLog::new(started);
    for n in 0..args.workload.lease_clients(args.clients as usize) as u64 {
        clients.push(tokio::spawn(lease_workload::client(
            n,
            endpoints_from(n),
            lease_log.clone(),
            shared_rng(LEASE_CLIENT_SEEDS + n),
            Arc::new(|_| {}),
            started + time,
        )));
    }
    for n in 0..args.workload.lock_clients(args.clients as usize) as u64 {
        clients.push(tokio::spawn(lock_workload::client(
            n,
            endpoints_from(n + 1),
            lock_log.clone(),
            shared_rng(LOCK_CLIENT_SEEDS + n),
            Arc::new(|_| {}),
            started + time,
        )));
    }
    if !etcd && compacts {
        let asked = compactor_asked.clone();
        clients.push(tokio::spawn(async move {
            let done = workload::compactor(
                urls_for_compactor,
                started,
                started + time,
                Arc::new(|_| {}),
            )
            .await;
            asked
                .lock()
                .unwrap()
                .extend(done.iter().map(|&(sent, _)| sent));
        }));
    }
    let count = || {
        if etcd {
            etcd_log.operation_count()
        } else {
            recorder.snapshot().len()
        }
    };
    let watched = if etcd {
        watcher::Watched::ETCD
    } else {
        watcher::Watched::KV
    };

    // Two watchers through all the faults: one with previous key-values,
    // one filtering puts or deletes (by the seed's parity).
    let watch_log = SharedLog::default();
    let filtered_log = SharedLog::default();
    // Another bit of the seed than the one that decides compaction, so
    // each filter also runs on seeds whose watches are checked whole.
    let filter = if (args.seed / 2).is_multiple_of(2) {
        Filter::NoPut
    } else {
        Filter::NoDelete
    };
    for (log, prev_kv, filter, skip) in [
        (&watch_log, true, None, 0),
        (&filtered_log, false, Some(filter), 1),
    ] {
        let mut endpoints = urls.clone();
        endpoints.rotate_left(skip % urls.len());
        let spec = watcher::Spec {
            key: watched.key,
            range_end: watched.range_end,
            prev_kv,
            filter,
        };
        tokio::spawn(watcher::consume(
            endpoints,
            spec,
            (log.clone(), started),
            |_| {},
        ));
    }
    let stop_watchers = || {
        watch_log.lock().unwrap().stop = true;
        filtered_log.lock().unwrap().stop = true;
    };

    let mut progress = Progress::new(time, started);
    let mut windows = Vec::new();
    // When a member was down (killed, churned, or on a full disk), for
    // the lease checks' allowance for restarts.
    let mut outages = Vec::new();
    let mut crashed = None;
    // A fault the cluster could not recover from (churn that never
    // completes): a liveness failure.
    let mut broken: Option<String> = None;
    let mut exits_on_full_disk = 0;
    let mut not_applied = 0;
    // How far a slow fault (churn waits for the cluster) pushed the
    // schedule back: later faults keep their quiet gap.
    let mut slip = Duration::ZERO;
    for step in &steps {
        if step.at + slip + step.hold > time {
            println!("the schedule slipped by {slip:?}: no time left for the remaining faults");
            break;
        }
        if !progress
            .wait_until(started + step.at + slip, &count, stop, "")
            .await
        {
            break;
        }
        let start = started.elapsed();
        let applied = apply(&mut cluster, net.as_mut(), &step.fault, target).await;
        let what = applied.what;
        not_applied += usize::from(applied.failed);
        println!("[{:>6.1}s] {what}", start.as_secs_f64());
        let held = progress
            .wait_until(started + step.at + slip + step.hold, &count, stop, &what)
            .await;
        let healed = heal(&mut cluster, net.as_mut(), &step.fault, applied.learner).await;
        let end = started.elapsed();
        if matches!(step.fault, Fault::DiskFull(_)) && matches!(healed, Ok(Some(_))) {
            exits_on_full_disk += 1;
        }
        match &healed {
            Ok(Some(note)) => println!("[{:>6.1}s] healed: {what} ({note})", end.as_secs_f64()),
            Ok(None) => println!("[{:>6.1}s] healed: {what}", end.as_secs_f64()),
            Err(why) => println!("[{:>6.1}s] not healed: {what}: {why}", end.as_secs_f64()),
        }
        slip = slip.max(end.saturating_sub(step.at + step.hold));
        if matches!(
            step.fault,
            Fault::Kill(_) | Fault::Churn(_) | Fault::DiskFull(_)
        ) {
            // The member resumes its leases once it has recovered, some
            // time after the heal started it.
            outages.push((start, end + RECOVERY_ALLOWANCE));
        }
        windows.push(Window { start, end, what });
        if let Some(why) = applied.broken.or(healed.err()) {
            broken = Some(why);
            break;
        }
        let exited = cluster.exited();
        if !exited.is_empty() {
            crashed = Some(exited);
            break;
        }
        if !held {
            break;
        }
    }
    if crashed.is_none() && broken.is_none() {
        progress.wait_until(started + time, &count, stop, "").await;
        let exited = cluster.exited();
        if !exited.is_empty() {
            crashed = Some(exited);
        }
    }
    let mut panicked = None;
    for client in clients {
        if stop.load(Ordering::SeqCst) {
            client.abort();
        }
        if let Err(error) = client.await {
            if error.is_panic() {
                panicked = Some(format!("a workload client panicked: {error}"));
            }
        }
    }
    if let Some(why) = panicked {
        stop_watchers();
        return Ok(RunVerdict::Crash(why));
    }
    if let Some(net) = net.as_mut() {
        net.heal()?;
    }
    if stop.load(Ordering::SeqCst) {
        stop_watchers();
        return Ok(RunVerdict::Interrupted);
    }
    let recorded = if etcd {
        Recorded::Etcd(etcd_log.take())
    } else {
        Recorded::Kv {
            operations: recorder.take(),
            revisions: recorder.take_revisions(),
        }
    };
    let end = started.elapsed();
    let samples = recorded.samples();
    *stats_out = Stats {
        exits_on_full_disk,
        ..Stats::of(&samples, &windows)
    };
    println!(
        "workload done: {} operations ({} ok, {} failed, {} unknown){}",
        stats_out.operations,
        stats_out.ok,
        stats_out.failed,
        stats_out.indeterminate,
        match &recorded {
            Recorded::Etcd(record) => format!(
                ", {} reads at a revision, {} compactions",
                record.reads.len(),
                record.compactions.len()
            ),
            Recorded::Kv { .. } => String::new(),
        }
    );

    let mut verdict = RunVerdict::Pass;
    let mut details = vec![
        format!(
            "target {}, {nodes} members, seed {} ({})",
            target.name(),
            args.seed,
            if compacts {
                "clients compact"
            } else {
                "no compaction: watches checked whole"
            }
        ),
        format!("reproduce: {}", args.reproduce(target.name())),
        format!(
            "{} faults applied, {not_applied} could not be (see the fault table)",
            windows.len() - not_applied
        ),
    ];
    if let Some(exited) = crashed {
        let names: Vec<String> = exited
            .iter()
            .map(|(name, status)| format!("{name} ({status})"))
            .collect();
        verdict = RunVerdict::Crash(format!(
            "member exited on its own: {}\n{}",
            names.join(", "),
            tails(&cluster)
        ));
    } else if let Some(why) = broken {
        verdict = RunVerdict::Liveness(why);
    } else {
        cluster
            .heal()
            .map_err(|error| format!("restarting members: {error}"))?;
        let checked = match converge(&cluster, stop).await {
            Ok((line, revision)) => {
                details.push(line);
                let logs = (&watch_log, &filtered_log, filter);
                let writes = recorded.acknowledged_writes();
                let asked = match &recorded {
                    Recorded::Etcd(record) => etcd_workload::compactions_sent(&record.compactions),
                    Recorded::Kv { .. } => compactor_asked.lock().unwrap().clone(),
                };
                let compactions = asked.as_slice();
                check_watches(
                    &cluster,
                    logs,
                    watched,
                    revision,
                    &writes,
                    compactions,
                    stop,
                )
                .await
            }
            Err(disagreement) => Err(disagreement),
        };
        match checked {
            Ok(line) => details.push(line),
            Err(Disagreement::Violation(why)) => verdict = RunVerdict::Violation(why),
            Err(Disagreement::Liveness(why)) => verdict = RunVerdict::Liveness(why),
            Err(Disagreement::Interrupted) => {
                stop_watchers();
                return Ok(RunVerdict::Interrupted);
            }
        }
    }

    stop_watchers();
    let (judged, violations) = match recorded {
        Recorded::Etcd(record) => {
            let model = Etcd::default();
            let past = detcd_sim::properties::past_reads::check(
                &model,
                &record.operations,
                &record.reads,
                &record.compactions,
            );
            let events = watcher::check_etcd_events(
                &watch_log.lock().unwrap(),
                &record.operations,
                &etcd_workload::compactions_sent(&record.compactions),
            );
            let headers = detcd_sim::properties::headers::check(&record.heard, None);
            details.push(format!("response headers: {} checked", record.heard.len()));
            if let Ok(covered) = &events {
                details.push(format!("watch events: {covered}"));
            }
            let judged = judge(&model, record.operations, dir)?;
            details.push(format!(
                "past reads: {} checked, {} violations",
                record.reads.len(),
                past.len()
            ));
            let violations = past.into_iter().chain(events.err()).chain(headers.err());
            (judged, violations.collect())
        }
        Recorded::Kv {
            operations,
            revisions,
        } => {
            let found = detcd_sim::properties::revisions::check(&revisions);
            details.push(format!(
                "revisions: {} records checked, {} violations",
                revisions.len(),
                found.len()
            ));
            (judge(&Kv, operations, dir)?, found)
        }
    };
    details.push(judged.line);
    let timeline = match judged.verdict {
        Verdict::NotLinearizable => {
            verdict = RunVerdict::Violation(judged.violation);
            Some("timeline.html")
        }
        Verdict::Unknown if matches!(verdict, RunVerdict::Pass) => {
            verdict = RunVerdict::Liveness("the checker gave up (step budget spent)".into());
            None
        }
        _ => None,
    };
    let leases = lease_log.take();
    let fenced = lock_log.take();
    let mut violations = violations;
    if !leases.is_empty() {
        let judged = detcd_sim::properties::leases::judge(&leases, &faults_of(&outages));
        details.push(format!(
            "leases: {} checked, {} violations{}",
            leases.len(),
            judged.violations.len(),
            if judged.budget_ran_out {
                " (the checker's budget ran out on keys and leases together)"
            } else {
                ""
            }
        ));
        violations.extend(judged.violations);
    }
    if !fenced.is_empty() {
        let found = detcd_sim::properties::locks::check(&fenced);
        details.push(format!(
            "locks: {} fenced writes checked, {} violations",
            fenced.len(),
            found.len()
        ));
        violations.extend(found);
    }
    if let (Some(first), RunVerdict::Pass | RunVerdict::Liveness(_)) =
        (violations.first(), &verdict)
    {
        verdict =
            RunVerdict::Violation(format!("{first} ({} violations in all)", violations.len()));
    }

    let verdict_line = verdict.line();
    let page = Page {
        title: &format!("detcd-jepsen: {} seed {}", target.name(), args.seed),
        verdict: verdict_line.lines().next().unwrap_or_default(),
        details: &details,
        stats: stats_out,
        operations: &samples,
        windows: &windows,
        end,
        timeline,
    };
    let _ = std::fs::write(dir.join("report.html"), page.render());
    for line in &details {
        println!("  {line}");
    }
    Ok(verdict)
}

/// The faults the lease checks allow for: members down over `outages`
/// (start, end). Clock faults are left out: libfaketime here moves only
/// the wall clock (monotonic time, which lease timers use, is not faked),
/// so a lease anomaly under a clock step is a real one.
fn faults_of(outages: &[(Duration, Duration)]) -> detcd_sim::properties::Faults {
    let mut changes: Vec<(Duration, i64)> = outages
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    changes.sort();
    let mut out = 0i64;
    let out = changes
        .into_iter()
        .map(|(at, change)| {
            out += change;
            (at, out.max(0) as usize)
        })
        .collect();
    // No availability stretches: jepsen-style reports availability (its
    // comparison table) rather than judging it on a shared, noisy machine.
    detcd_sim::properties::Faults {
        skewed_at: None,
        out,
        stretches: Vec::new(),
    }
}

/// Prints progress every few seconds while waiting.
struct Progress {
    time: Duration,
    started: tokio::time::Instant,
    printed: tokio::time::Instant,
}

impl Progress {
    fn new(time: Duration, started: tokio::time::Instant) -> Progress {
        Progress {
            time,
            started,
            printed: started,
        }
    }

    /// Waits until `deadline`; false if interrupted.
    async fn wait_until(
        &mut self,
        deadline: tokio::time::Instant,
        count: &dyn Fn() -> usize,
        stop: &AtomicBool,
        fault: &str,
    ) -> bool {
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return true;
            }
            if now.duration_since(self.printed) >= PROGRESS_EVERY {
                self.printed = now;
                println!(
                    "[{:>6.1}s of {}s] {} operations{}",
                    now.duration_since(self.started).as_secs_f64(),
                    self.time.as_secs(),
                    count(),
                    if fault.is_empty() {
                        String::new()
                    } else {
                        format!(", during: {fault}")
                    }
                );
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }
}

fn tails(cluster: &Cluster) -> String {
    let mut text = String::new();
    for (index, member) in cluster.members.iter().enumerate() {
        text.push_str(&format!(
            "--- {} log (last lines) ---\n{}\n",
            member.spec.name,
            cluster.log_tail(index, LOG_TAIL_LINES)
        ));
    }
    text
}

fn probe(url: &str) -> Client {
    Client::new(vec![url.to_string()]).with_request_timeout(PROBE_TIMEOUT)
}

/// Until a linearizable read succeeds (it changes nothing: the model starts
/// from a fresh cluster's revision).
async fn wait_ready(cluster: &Cluster) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut client = Client::new(cluster.client_urls()).with_request_timeout(PROBE_TIMEOUT);
    loop {
        let read = client
            .range(RangeRequest {
                key: b"jepsen-ready".to_vec(),
                ..Default::default()
            })
            .await;
        match read {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "the cluster did not answer within {READY_TIMEOUT:?}: {error}"
                ))
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// Member ids and the leader's index, as the members report them.
async fn leader(cluster: &Cluster) -> Option<(usize, Vec<u64>)> {
    let mut ids = Vec::new();
    let mut leader = None;
    for url in cluster.client_urls() {
        let status = probe(&url).status().await.ok()?;
        ids.push(status.header.as_ref().map_or(0, |h| h.member_id));
        leader = leader.or(Some(status.leader));
    }
    let leader = leader?;
    let index = ids.iter().position(|&id| id == leader)?;
    Some((index, ids))
}

/// What applying a fault did.
struct Applied {
    /// In words, with the member the fault found (the leader) or why it
    /// could not be applied.
    what: String,
    /// The learner churn added, to promote at heal.
    learner: Option<u64>,
    /// Churn left the cluster without the member: a liveness failure.
    broken: Option<String>,
    /// The fault could not be applied (no leader known, a command failed).
    failed: bool,
}

/// How long a churned member may take to be added back, and a learner to
/// catch up and be promoted.
const CHURN_TIMEOUT: Duration = Duration::from_secs(20);

/// Applies `fault`.
async fn apply(
    cluster: &mut Cluster,
    net: Option<&mut Net>,
    fault: &Fault,
    target: Target,
) -> Applied {
    let described = fault.to_string();
    let mut learner = None;
    let outcome: Result<String, String> = async {
        match fault {
            Fault::Kill(m) => {
                cluster.kill(*m);
                Ok(described.clone())
            }
            Fault::Pause(m) => {
                cluster.pause(*m);
                Ok(described.clone())
            }
            Fault::IsolateLeader => {
                let net = net.ok_or("no namespaces")?;
                let (leader, ids) = leader(cluster).await.ok_or("no leader known")?;
                for other in (0..ids.len()).filter(|&o| o != leader) {
                    net.cut(leader, other)?;
                    net.cut(other, leader)?;
                }
                Ok(format!("isolate the leader m{}", leader + 1))
            }
            Fault::Netem {
                member,
                delay_ms,
                jitter_ms,
                loss_percent,
            } => {
                let net = net.ok_or("no namespaces")?;
                match net.shape(*member, *delay_ms, *jitter_ms, *loss_percent)? {
                    Some(stand_in) => Ok(format!("{described} ({stand_in})")),
                    None => Ok(described.clone()),
                }
            }
            Fault::MoveLeader(to) => {
                let (leader, ids) = leader(cluster).await.ok_or("no leader known")?;
                if leader == *to {
                    return Ok(format!("{described} (already leads)"));
                }
                let url = cluster.members[leader].spec.client_url.clone();
                probe(&url)
                    .move_leader(ids[*to])
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(described.clone())
            }
            Fault::Churn(m) => {
                learner = Some(churn(cluster, *m).await?);
                Ok(described.clone())
            }
            Fault::DiskFull(m) => {
                cluster.fill_disk(*m)?;
                Ok(described.clone())
            }
            Fault::Clock {
                member,
                offset_secs,
            } => {
                cluster.set_clock(*member, *offset_secs)?;
                Ok(match target {
                    Target::Etcd => format!(
                        "{described} (etcd is Go: it reads the clock through the vDSO, not libc, so libfaketime leaves it alone)"
                    ),
                    Target::Detcd => described.clone(),
                })
            }
            partition => {
                let net = net.ok_or("no namespaces")?;
                for (from, to) in partition.cuts() {
                    net.cut(from, to)?;
                }
                Ok(described.clone())
            }
        }
    }
    .await;
    match outcome {
        Ok(what) => Applied {
            what,
            learner,
            broken: None,
            failed: false,
        },
        Err(why) => Applied {
            what: format!("{described} (not applied: {why})"),
            learner: None,
            broken: matches!(fault, Fault::Churn(_))
                .then(|| format!("churn of {described} failed: {why}")),
            failed: true,
        },
    }
}

/// Removes member `m` through the others, wipes it, adds it back as a
/// learner and starts it; returns the learner's id.
async fn churn(cluster: &mut Cluster, m: usize) -> Result<u64, String> {
    let mut client = Client::new(cluster.client_urls_except(m)).with_request_timeout(PROBE_TIMEOUT);
    let name = cluster.members[m].spec.name.clone();
    let peer_url = cluster.members[m].spec.peer_url.clone();
    let list = client
        .member_list()
        .await
        .map_err(|error| format!("member list: {error}"))?;
    let id = list
        .members
        .iter()
        .find(|member| member.name == name || member.peer_ur_ls.contains(&peer_url))
        .map(|member| member.id)
        .ok_or_else(|| format!("{name} is not in the member list"))?;
    // Strict reconfiguration refuses while the rest has not been
    // connected for a while (etcd's "unhealthy cluster", as after a
    // restart): ask again until it is.
    let started = tokio::time::Instant::now();
    let mut sent = false;
    loop {
        match client.member_remove(id).await {
            Ok(_) => break,
            // An earlier attempt that timed out went through.
            Err(error) if sent && error.to_string().contains("member not found") => break,
            Err(error) if started.elapsed() >= CHURN_TIMEOUT => {
                return Err(format!("member remove: {error}"))
            }
            Err(error) => {
                sent |= error.may_have_applied();
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
    cluster
        .wipe(m)
        .map_err(|error| format!("wiping {name}: {error}"))?;
    let started = tokio::time::Instant::now();
    let learner = loop {
        match client.member_add(vec![peer_url.clone()], true).await {
            Ok(added) => {
                break added
                    .member
                    .map(|member| member.id)
                    .ok_or("member add answered no member")?
            }
            // An earlier attempt that timed out went through.
            Err(_) if member_with(&mut client, &peer_url).await.is_some() => {
                break member_with(&mut client, &peer_url)
                    .await
                    .map(|member| member.id)
                    .ok_or("the added member vanished")?
            }
            Err(error) if started.elapsed() >= CHURN_TIMEOUT => {
                return Err(format!("member add: {error}"))
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    };
    cluster
        .start(m)
        .map_err(|error| format!("starting {name}: {error}"))?;
    Ok(learner)
}

/// The member at `peer_url`, as the cluster lists it now.
async fn member_with(
    client: &mut Client,
    peer_url: &str,
) -> Option<detcd::proto::etcdserverpb::Member> {
    let list = client.member_list().await.ok()?;
    list.members
        .into_iter()
        .find(|member| member.peer_ur_ls.iter().any(|url| url == peer_url))
}

/// Undoes `fault`: restarts a killed member, resumes a paused one, removes
/// cuts and netem, frees a disk, promotes a churned learner. Returns a note
/// on anything worth saying; an error when the cluster could not be
/// brought back (a liveness failure).
async fn heal(
    cluster: &mut Cluster,
    net: Option<&mut Net>,
    fault: &Fault,
    learner: Option<u64>,
) -> Result<Option<String>, String> {
    match fault {
        Fault::Kill(m) => cluster
            .start(*m)
            .map(|()| None)
            .map_err(|error| format!("restarting m{}: {error}", m + 1)),
        Fault::Pause(m) => {
            cluster.resume(*m);
            Ok(None)
        }
        Fault::MoveLeader(_) => Ok(None),
        Fault::Clock { member, .. } => cluster.set_clock(*member, 0).map(|()| None),
        Fault::DiskFull(m) => Ok(cluster
            .free_disk(*m)?
            .map(|status| format!("m{} had exited ({status}); restarted", m + 1))),
        Fault::Churn(m) => {
            let Some(learner) = learner else {
                return Ok(None);
            };
            // Through the others: a learner refuses the request itself.
            let mut client =
                Client::new(cluster.client_urls_except(*m)).with_request_timeout(PROBE_TIMEOUT);
            let started = tokio::time::Instant::now();
            let peer_url = cluster.members[*m].spec.peer_url.clone();
            loop {
                let attempt = client.member_promote(learner).await;
                // An error may follow an earlier attempt that went through.
                let promoted = attempt.is_ok()
                    || member_with(&mut client, &peer_url)
                        .await
                        .is_some_and(|member| !member.is_learner);
                if promoted {
                    return Ok(Some(format!(
                        "m{} promoted after {:.1} s",
                        m + 1,
                        started.elapsed().as_secs_f64()
                    )));
                }
                if started.elapsed() >= CHURN_TIMEOUT {
                    let error = attempt
                        .err()
                        .map(|error| error.to_string())
                        .unwrap_or_default();
                    return Err(format!(
                        "learner m{} not promoted within {CHURN_TIMEOUT:?}: {error}",
                        m + 1
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        _ => net.map_or(Ok(None), |net| net.heal().map(|()| None)),
    }
}

enum Disagreement {
    Violation(String),
    Liveness(String),
    /// Ctrl-C while waiting.
    Interrupted,
}

/// Waits for every member to give the same HashKV at the same revision,
/// after one write the healed cluster must accept;
/// `properties::convergence` judges each poll and the last one.
async fn converge(cluster: &Cluster, stop: &AtomicBool) -> Result<(String, i64), Disagreement> {
    let started = tokio::time::Instant::now();
    // A write after the faults: the healed cluster must accept one.
    let mut writer = Client::new(cluster.client_urls()).with_request_timeout(PROBE_TIMEOUT);
    let mut wrote = false;
    let mut judgement = convergence::Judgement::Pending {
        all_answered: false,
        why: "not polled yet".into(),
    };
    while started.elapsed() < CONVERGE_TIMEOUT {
        if stop.load(Ordering::SeqCst) {
            return Err(Disagreement::Interrupted);
        }
        if !wrote {
            wrote = writer
                .put(PutRequest {
                    key: b"jepsen-healed".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok();
        }
        let mut views = Vec::new();
        for (member, url) in cluster.members.iter().zip(cluster.client_urls()) {
            let view = probe(&url).hash_kv(0).await.ok().map(|answer| MemberView {
                revision: answer.header.as_ref().map_or(0, |h| h.revision),
                compact_revision: answer.compact_revision,
                hash: answer.hash,
                keys: Default::default(),
            });
            views.push((member.spec.name.clone(), view));
        }
        judgement = convergence::judge(&views);
        match &judgement {
            convergence::Judgement::Converged { revision, hash } if wrote => {
                let line = format!(
                    "converged after {:.1} s: HashKV {hash:#010x} at revision {revision} on every member",
                    started.elapsed().as_secs_f64()
                );
                return Ok((line, *revision));
            }
            convergence::Judgement::Diverged(why) => {
                return Err(Disagreement::Violation(why.clone()))
            }
            _ => {}
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    match convergence::give_up(&judgement, CONVERGE_TIMEOUT) {
        // Converged, but the write after the heal never went through.
        Ok(()) => Err(Disagreement::Liveness(format!(
            "no write succeeded within {CONVERGE_TIMEOUT:?} after the heal"
        ))),
        Err(convergence::Failure::Violation(why)) => Err(Disagreement::Violation(why)),
        Err(convergence::Failure::Liveness(why)) => Err(Disagreement::Liveness(why)),
    }
}

/// etcd's watch guarantees over what the two watchers received: each must
/// reach the converged `revision`, then `watcher::check` judges them
/// against what the members hold and the acknowledged writes. A watch
/// told it was compacted must have been told a revision a compaction
/// asked for (`asked`), past what it needed (`watcher::check_compactions`).
async fn check_watches(
    cluster: &Cluster,
    (log, filtered_log, filter): (&SharedLog, &SharedLog, Filter),
    watched: watcher::Watched,
    revision: i64,
    writes: &[(String, String)],
    asked: &[CompactionSent],
    stop: &AtomicBool,
) -> Result<String, Disagreement> {
    for log in [log, filtered_log] {
        watcher::check_compactions(&log.lock().unwrap(), asked).map_err(Disagreement::Violation)?;
    }
    let started = tokio::time::Instant::now();
    for (name, log) in [("the watch", log), ("the filtered watch", filtered_log)] {
        while log.lock().unwrap().caught_up_to < revision {
            if stop.load(Ordering::SeqCst) {
                return Err(Disagreement::Interrupted);
            }
            if started.elapsed() >= WATCH_CATCH_UP {
                let reached = log.lock().unwrap().caught_up_to;
                return Err(Disagreement::Liveness(format!(
                    "{name} reached revision {reached}, not {revision}, within {WATCH_CATCH_UP:?}"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    // What the members hold, read once from one of them (they agree).
    let view_read = probe(&cluster.members[0].spec.client_url)
        .range(RangeRequest {
            key: watched.key.to_vec(),
            range_end: watched.range_end.to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .map_err(|error| {
            Disagreement::Liveness(format!("reading m1 after convergence: {error}"))
        })?;
    let view_revision = view_read.header.as_ref().map_or(0, |h| h.revision);
    let view: std::collections::BTreeMap<String, (String, i64)> = view_read
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                ),
            )
        })
        .collect();
    let watched = |key: &str| watched.contains(key);
    let writes = writes
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()));
    let log = log.lock().unwrap();
    let filtered = filtered_log.lock().unwrap();
    watcher::check(
        (&log, &filtered, filter),
        &view,
        view_revision,
        writes,
        watched,
        asked,
    )
    .map_err(Disagreement::Violation)?;
    let summary = |log: &watcher::WatchLog| {
        format!(
            "{} events over {} streams{}",
            watch::events(&log.responses).count(),
            log.streams,
            if log.compacted {
                " (cut off by compaction: replay checks skipped)"
            } else {
                ""
            }
        )
    };
    Ok(format!(
        "watches: {}; filtered ({filter:?}): {}",
        summary(&log),
        summary(&filtered)
    ))
}

/// What the clients recorded, by workload.
enum Recorded {
    Etcd(EtcdRecord),
    Kv {
        operations: Vec<KvOperation>,
        revisions: Vec<detcd_sim::properties::revisions::Record>,
    },
}

impl Recorded {
    fn samples(&self) -> Vec<Sample> {
        match self {
            Recorded::Etcd(record) => record.operations.iter().map(Sample::of).collect(),
            Recorded::Kv { operations, .. } => operations.iter().map(Sample::of).collect(),
        }
    }

    /// (key, value) of every acknowledged write whose value is its own
    /// (plain puts in the etcd workload; puts, appends and successful cas
    /// in the kv workloads): each must show up in a watch event.
    fn acknowledged_writes(&self) -> Vec<(String, String)> {
        match self {
            Recorded::Etcd(record) => watch::acknowledged_etcd_puts(&record.operations),
            Recorded::Kv { operations, .. } => watch::acknowledged_kv_writes(operations),
        }
    }
}

/// The checker's verdict on a history, in words.
struct Judged {
    verdict: Verdict,
    line: String,
    violation: String,
}

/// Checks `operations` with `model`, writes them as history.jsonl, and
/// the checker's timeline and explanation when they are not linearizable.
fn judge<M: JsonModel>(
    model: &M,
    operations: Vec<Operation<M::Input, M::Output>>,
    dir: &Path,
) -> Result<Judged, String> {
    let history = History::new(operations);
    let report = check(model, &history, Budget::default());
    let file = std::fs::File::create(dir.join("history.jsonl"))
        .map_err(|error| format!("history.jsonl: {error}"))?;
    detcd_sim::format::json::write(model, &history, std::io::BufWriter::new(file))
        .map_err(|error| format!("history.jsonl: {error}"))?;
    if report.verdict == Verdict::NotLinearizable {
        let views = detcd_sim::report::operation_views(&history);
        let text = detcd_sim::report::text::render(&report, &views, M::NAME);
        let page = detcd_sim::report::html::render("history.jsonl", &report, &views, &text);
        let _ = std::fs::write(dir.join("timeline.html"), page);
        let _ = std::fs::write(dir.join("explanation.txt"), text);
    }
    Ok(Judged {
        verdict: report.verdict,
        line: format!(
            "{} model: {} operations, {}",
            M::NAME,
            history.len(),
            report.verdict
        ),
        violation: format!(
            "the history is not linearizable under the {} model{}",
            M::NAME,
            if M::NAME == "etcd" {
                " (revisions included)"
            } else {
                ""
            }
        ),
    })
}
