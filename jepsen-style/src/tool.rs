//! The run: arguments, the cluster's life, the nemesis loop, convergence,
//! the checks and the report.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use detcd::client::Client;
use detcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use detcd_sim::check::{check, Budget, Verdict};
use detcd_sim::etcd_workload::{EtcdClient, EtcdLog};
use detcd_sim::history::History;
use detcd_sim::model::etcd::Etcd;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cluster::{Cluster, Target};
use crate::nemesis::{self, Fault, FaultKind, Step};
use crate::net::Net;
use crate::report::{self, Page, Stats, Window};

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
/// Lines of each member's log printed when a run crashes.
const LOG_TAIL_LINES: usize = 15;
/// A seed's clients draw from `seed * CLIENT_SEED_STRIDE + client`.
const CLIENT_SEED_STRIDE: u64 = 1_000;

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
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// `all`, `none`, or a comma-separated list of: kill, pause,
    /// partition, netem, leader.
    #[arg(long, default_value = "all")]
    nemesis: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Members on loopback ports, without namespaces: no partitions and no
    /// netem, but no root needed.
    #[arg(long)]
    no_netns: bool,
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
            "cargo run -p detcd-jepsen --release -- --target {target} --nodes {} --time {} --nemesis {} --seed {} --clients {} --keys {}",
            self.nodes, self.time, self.nemesis, self.seed, self.clients, self.keys
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
                .filter(|kind| kind.needs_netns())
                .map(|kind| format!("{kind:?}").to_lowercase())
                .collect();
            if !dropped.is_empty() {
                println!(
                    "--no-netns: without namespaces, skipping {}",
                    dropped.join(", ")
                );
            }
            kinds.retain(|kind| !kind.needs_netns());
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
        format!("{:.1}%", r.stats.availability() * 100.0)
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
    if candidate.exists() {
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
    let mut cluster = Cluster::new(binary.clone(), nodes, dir, net.as_ref(), &token)
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

    let log = EtcdLog::default();
    let started = tokio::time::Instant::now();
    let urls = cluster.client_urls();
    let mut clients = Vec::new();
    for id in 0..args.clients {
        // Each client starts at a different member, then fails over.
        let mut endpoints = urls.clone();
        endpoints.rotate_left(id as usize % urls.len());
        clients.push(tokio::spawn(detcd_sim::etcd_workload::client(EtcdClient {
            id,
            endpoints,
            keys: args.keys,
            log: log.clone(),
            rng: Box::new(ChaCha8Rng::seed_from_u64(
                args.seed.wrapping_mul(CLIENT_SEED_STRIDE).wrapping_add(id),
            )),
            request_timeout: REQUEST_TIMEOUT,
            started,
            run_for: time,
            note: Box::new(|_| {}),
        })));
    }

    let mut progress = Progress::new(time, started);
    let mut windows = Vec::new();
    let mut crashed = None;
    for step in &steps {
        if !progress.wait_until(started + step.at, &log, stop, "").await {
            break;
        }
        let start = started.elapsed();
        let what = apply(&mut cluster, net.as_mut(), &step.fault).await;
        println!("[{:>6.1}s] {what}", start.as_secs_f64());
        let held = progress
            .wait_until(started + step.at + step.hold, &log, stop, &what)
            .await;
        heal(&mut cluster, net.as_mut(), &step.fault)?;
        let end = started.elapsed();
        println!("[{:>6.1}s] healed: {what}", end.as_secs_f64());
        windows.push(Window { start, end, what });
        let exited = cluster.exited();
        if !exited.is_empty() {
            crashed = Some(exited);
            break;
        }
        if !held {
            break;
        }
    }
    if crashed.is_none() {
        progress.wait_until(started + time, &log, stop, "").await;
    }
    for client in clients {
        if stop.load(Ordering::SeqCst) {
            client.abort();
        }
        let _ = client.await;
    }
    if let Some(net) = net.as_mut() {
        net.heal()?;
    }
    if stop.load(Ordering::SeqCst) {
        return Ok(RunVerdict::Interrupted);
    }
    let record = log.take();
    let end = started.elapsed();
    *stats_out = Stats::of(&record.operations, &windows);
    println!(
        "workload done: {} operations ({} ok, {} failed, {} unknown), {} reads at a revision, {} compactions",
        stats_out.operations,
        stats_out.ok,
        stats_out.failed,
        stats_out.indeterminate,
        record.reads.len(),
        record.compactions.len()
    );

    let mut verdict = RunVerdict::Pass;
    let mut details = vec![
        format!(
            "target {}, {nodes} members, seed {}",
            target.name(),
            args.seed
        ),
        format!("reproduce: {}", args.reproduce(target.name())),
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
    } else {
        cluster
            .heal()
            .map_err(|error| format!("restarting members: {error}"))?;
        match converge(&cluster).await {
            Ok(line) => details.push(line),
            Err(Disagreement::Violation(why)) => verdict = RunVerdict::Violation(why),
            Err(Disagreement::Liveness(why)) => verdict = RunVerdict::Liveness(why),
        }
    }

    let model = Etcd::default();
    let history = History::new(record.operations.clone());
    let report = check(&model, &history, Budget::default());
    details.push(format!(
        "etcd model: {} operations, {}",
        history.len(),
        report.verdict
    ));
    let past = detcd_sim::properties::past_reads::check(
        &model,
        &record.operations,
        &record.reads,
        &record.compactions,
    );
    details.push(format!(
        "past reads: {} checked, {} violations",
        record.reads.len(),
        past.len()
    ));
    let mut timeline = None;
    match report.verdict {
        Verdict::NotLinearizable => {
            verdict = RunVerdict::Violation(
                "the history is not linearizable under the etcd model (revisions included)".into(),
            );
            let views = detcd_sim::report::operation_views(&history);
            let text = detcd_sim::report::text::render(&report, &views, "etcd");
            let page = detcd_sim::report::html::render("history.jsonl", &report, &views, &text);
            let _ = std::fs::write(dir.join("timeline.html"), page);
            let _ = std::fs::write(dir.join("explanation.txt"), text);
            timeline = Some("timeline.html");
        }
        Verdict::Unknown if matches!(verdict, RunVerdict::Pass) => {
            verdict = RunVerdict::Liveness("the checker gave up (step budget spent)".into());
        }
        _ => {}
    }
    if let (Some(first), RunVerdict::Pass | RunVerdict::Liveness(_)) = (past.first(), &verdict) {
        verdict = RunVerdict::Violation(format!("{first} ({} past-read violations)", past.len()));
    }

    let file = std::fs::File::create(dir.join("history.jsonl"))
        .map_err(|error| format!("history.jsonl: {error}"))?;
    detcd_sim::format::json::write(&model, &history, std::io::BufWriter::new(file))
        .map_err(|error| format!("history.jsonl: {error}"))?;
    let verdict_line = verdict.line();
    let page = Page {
        title: &format!("detcd-jepsen: {} seed {}", target.name(), args.seed),
        verdict: verdict_line.lines().next().unwrap_or_default(),
        details: &details,
        stats: stats_out,
        operations: &record.operations,
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
        log: &EtcdLog,
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
                    log.operation_count(),
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
            member.name,
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

/// Applies `fault`; returns what was done, in words.
async fn apply(cluster: &mut Cluster, net: Option<&mut Net>, fault: &Fault) -> String {
    let described = fault.to_string();
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
                net.shape(*member, *delay_ms, *jitter_ms, *loss_percent)?;
                Ok(described.clone())
            }
            Fault::MoveLeader(to) => {
                let (leader, ids) = leader(cluster).await.ok_or("no leader known")?;
                if leader == *to {
                    return Ok(format!("{described} (already leads)"));
                }
                let url = cluster.members[leader].client_url.clone();
                probe(&url)
                    .move_leader(ids[*to])
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(described.clone())
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
    outcome.unwrap_or_else(|why| format!("{described} (not applied: {why})"))
}

/// Undoes `fault`: restarts a killed member, resumes a paused one, removes
/// cuts and netem.
fn heal(cluster: &mut Cluster, net: Option<&mut Net>, fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Kill(m) => cluster
            .start(*m)
            .map_err(|error| format!("restarting m{}: {error}", m + 1)),
        Fault::Pause(m) => {
            cluster.resume(*m);
            Ok(())
        }
        Fault::MoveLeader(_) => Ok(()),
        _ => net.map_or(Ok(()), Net::heal),
    }
}

enum Disagreement {
    Violation(String),
    Liveness(String),
}

/// Waits for every member to give the same HashKV at the same revision.
/// Members at one revision with different hashes disagree on the data: a
/// violation. Members that never catch up: a liveness failure.
async fn converge(cluster: &Cluster) -> Result<String, Disagreement> {
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    // A write after the faults: the healed cluster must accept one.
    let mut writer = Client::new(cluster.client_urls()).with_request_timeout(PROBE_TIMEOUT);
    let mut wrote = false;
    while started.elapsed() < CONVERGE_TIMEOUT {
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
        let mut answers = Vec::new();
        for url in cluster.client_urls() {
            match probe(&url).hash_kv(0).await {
                Ok(answer) => answers.push((
                    answer.header.as_ref().map_or(0, |h| h.revision),
                    answer.compact_revision,
                    answer.hash,
                )),
                Err(error) => {
                    last = format!("{url}: {error}");
                    break;
                }
            }
        }
        if wrote && answers.len() == cluster.members.len() {
            let (revision, compacted, hash) = answers[0];
            if answers
                .iter()
                .all(|&answer| answer == (revision, compacted, hash))
            {
                return Ok(format!(
                    "converged after {:.1} s: HashKV {hash:#010x} at revision {revision} on every member",
                    started.elapsed().as_secs_f64()
                ));
            }
            // One revision and one compaction, yet other data.
            if answers
                .iter()
                .all(|&(r, c, _)| (r, c) == (revision, compacted))
            {
                return Err(Disagreement::Violation(format!(
                    "members disagree at revision {revision}: hashes {:?}",
                    answers.iter().map(|a| a.2).collect::<Vec<_>>()
                )));
            }
            last = format!("not caught up yet (revision, compacted, hash): {answers:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(Disagreement::Liveness(format!(
        "the healed members did not converge within {CONVERGE_TIMEOUT:?} (write after heal: {}; last: {last})",
        if wrote { "ok" } else { "failed" }
    )))
}
