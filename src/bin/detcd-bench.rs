//! detcd-bench: throughput and latency of detcd against the reference
//! etcd 3.4.23 on this machine, in the same run, reported as ratios
//! (non-negotiable 6: performance is measured here, never asserted in
//! tests). Each server runs as real processes on fresh data dirs; the
//! load comes from detcd's Rust client with many concurrent clients.
//!
//!     cargo run --release --bin detcd-bench -- --members 3 --ops 20000
//!
//! `--scale-keys N` runs the storage-at-scale measurements instead (issue
//! 11): load N keys, memory and data dir after it, a full read, steady
//! writes at `--scale-rate` (latency distribution, the slowest, leader
//! changes, peak memory), and the time a restart takes to serve again;
//! with `--scale-watchers N`, then N watchers (one stream each) on one
//! prefix while `--watch-rate` writes per second go to it (event latency
//! from each write's due time, events missing, peak memory). Between the
//! two, `--compact-seconds` of the same steady writes while the history
//! is compacted, then `--defrag-seconds` while each member is
//! defragmented in turn (the slowest write then, against the steady p99):
//!
//!     cargo run --release --bin detcd-bench -- --scale-keys 1000000 --scale-watchers 1000
//!
//! A tool, not the core: it starts processes, makes directories and reads
//! the wall clock, which the determinism seams forbid the server.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    eprintln!("detcd-bench drives real processes: build it without --cfg madsim");
    std::process::ExitCode::from(64)
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use clap::Parser;
    use detcd::client::Client;
    use detcd::proto::etcdserverpb::{
        compare, request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
    };

    /// How long a server may take to elect a leader and answer.
    const READY_TIMEOUT: Duration = Duration::from_secs(30);
    const POLL_INTERVAL: Duration = Duration::from_millis(100);
    /// A request that takes longer than this counts as failed.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    #[derive(Parser, Debug)]
    #[command(
        name = "detcd-bench",
        about = "Throughput and latency of detcd against etcd 3.4.23, same machine, same run"
    )]
    struct Args {
        /// Members per cluster (each a process on this machine).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=7))]
        members: u64,
        /// Concurrent clients, each with its own connection.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Operations per workload.
        #[arg(long, default_value_t = 10_000)]
        ops: usize,
        /// Bytes per value written.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// The reference server.
        #[arg(long, default_value = "etcd")]
        etcd: PathBuf,
        /// The detcd binary (default: the one next to this program).
        #[arg(long)]
        detcd: Option<PathBuf>,
        /// Run the scale measurements with this many keys instead of the
        /// workloads (0: off).
        #[arg(long, default_value_t = 0)]
        scale_keys: usize,
        /// Writes per second in the scale run's steady phase.
        #[arg(long, default_value_t = 500)]
        scale_rate: u64,
        /// Seconds of the scale run's steady phase.
        #[arg(long, default_value_t = 60)]
        scale_seconds: u64,
        /// Watchers on one prefix in the scale run's fan-out phase (0: no
        /// such phase).
        #[arg(long, default_value_t = 0)]
        scale_watchers: usize,
        /// Seconds of writes at `--scale-rate` while the history is
        /// compacted, after the steady phase (0: no such phase).
        #[arg(long, default_value_t = 30)]
        compact_seconds: u64,
        /// Seconds of writes at `--scale-rate` while each member in turn
        /// is defragmented, after the compaction (0: no such phase).
        #[arg(long, default_value_t = 30)]
        defrag_seconds: u64,
        /// Seconds of writes at `--scale-rate` while one follower is
        /// stopped, which then restarts and catches up, by a snapshot once
        /// the others' logs no longer reach back to it (3 or more members;
        /// 0: no such phase).
        #[arg(long, default_value_t = 0)]
        catch_up_seconds: u64,
        /// Writes per second under the watchers.
        #[arg(long, default_value_t = 20)]
        watch_rate: u64,
        /// Seconds of writes under the watchers.
        #[arg(long, default_value_t = 20)]
        watch_seconds: u64,
        /// Keep the servers' logs here (`<server>-<member>.log`), to match
        /// the slowest requests with what the servers did.
        #[arg(long)]
        logs_dir: Option<PathBuf>,
        /// Flags passed to both servers (e.g. `--snapshot-count=20000`).
        #[arg(long = "server-flag", allow_hyphen_values = true)]
        server_flags: Vec<String>,
    }

    /// One workload's numbers against one server.
    #[derive(Clone, Copy, Debug)]
    struct Measured {
        ops_per_sec: f64,
        p50: Duration,
        p99: Duration,
        failed: usize,
        /// CPU time (user and system) the servers' processes used per
        /// operation: what a machine shared with other work pays.
        server_cpu_per_op: Duration,
        /// The same for this program's clients.
        client_cpu_per_op: Duration,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Workload {
        Put,
        GetLinearizable,
        GetSerializable,
        CompareAndPut,
    }

    const WORKLOADS: [Workload; 4] = [
        Workload::Put,
        Workload::GetLinearizable,
        Workload::GetSerializable,
        Workload::CompareAndPut,
    ];

    impl Workload {
        fn name(self) -> &'static str {
            match self {
                Workload::Put => "put",
                Workload::GetLinearizable => "get (linearizable)",
                Workload::GetSerializable => "get (serializable)",
                Workload::CompareAndPut => "txn (compare, put)",
            }
        }
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        let detcd = args.detcd.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .expect("own path")
                .with_file_name("detcd")
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        if args.scale_keys > 0 {
            return scale::main(&args, &detcd, &runtime);
        }
        println!(
            "detcd-bench: {} member(s), {} clients, {} ops per workload, {}-byte values",
            args.members, args.clients, args.ops, args.value_bytes
        );
        let mut results = Vec::new();
        for (name, binary) in [("detcd", detcd), ("etcd", args.etcd.clone())] {
            let cluster = match Cluster::start(
                name,
                &binary,
                args.members,
                &args.server_flags,
                args.logs_dir.as_deref(),
            ) {
                Ok(cluster) => cluster,
                Err(error) => {
                    eprintln!(
                        "detcd-bench: cannot start {name} ({}): {error}",
                        binary.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            println!("{name}: {} ready", cluster.endpoints.join(","));
            let pids = cluster.pids();
            let measured = runtime.block_on(run_all(&args, &cluster.endpoints, &pids));
            for (workload, numbers) in &measured {
                println!(
                    "  {name:<6} {:<20} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU/op servers {:>5.0} µs, clients {:>4.0} µs{}",
                    workload.name(),
                    numbers.ops_per_sec,
                    ms(numbers.p50),
                    ms(numbers.p99),
                    micros(numbers.server_cpu_per_op),
                    micros(numbers.client_cpu_per_op),
                    failures(numbers.failed)
                );
            }
            results.push(measured);
            drop(cluster);
        }
        println!();
        println!(
            "{:<20} {:>12} {:>12} {:>14} {:>18} {:>18} {:>18}",
            "workload",
            "detcd ops/s",
            "etcd ops/s",
            "detcd / etcd",
            "detcd p50/p99 ms",
            "etcd p50/p99 ms",
            "server CPU/op"
        );
        for (index, workload) in WORKLOADS.iter().enumerate() {
            let (ours, theirs) = (results[0][index].1, results[1][index].1);
            println!(
                "{:<20} {:>12.0} {:>12.0} {:>13.2}x {:>8.2}/{:<9.2} {:>8.2}/{:<9.2} {:>17.2}x",
                workload.name(),
                ours.ops_per_sec,
                theirs.ops_per_sec,
                ours.ops_per_sec / theirs.ops_per_sec.max(f64::MIN_POSITIVE),
                ms(ours.p50),
                ms(ours.p99),
                ms(theirs.p50),
                ms(theirs.p99),
                ours.server_cpu_per_op.as_secs_f64()
                    / theirs
                        .server_cpu_per_op
                        .as_secs_f64()
                        .max(f64::MIN_POSITIVE)
            );
        }
        ExitCode::SUCCESS
    }

    fn ms(duration: Duration) -> f64 {
        duration.as_secs_f64() * 1000.0
    }

    fn micros(duration: Duration) -> f64 {
        duration.as_secs_f64() * 1_000_000.0
    }

    /// Linux reports CPU times in /proc in ticks of USER_HZ, which is 100
    /// on every architecture it exports to user space.
    const USER_HZ: u64 = 100;

    /// CPU time (user and system) the process `pid` (or "self") has used:
    /// fields 14 and 15 of /proc/<pid>/stat, counted after the command
    /// name's closing parenthesis (the name may hold spaces). Zero for a
    /// process that is gone.
    fn cpu_of(pid: &str) -> Duration {
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some(utime + stime)
            })
            .unwrap_or(0);
        Duration::from_millis(ticks * 1000 / USER_HZ)
    }

    fn cpu_of_all(pids: &[u32]) -> Duration {
        pids.iter().map(|pid| cpu_of(&pid.to_string())).sum()
    }

    fn failures(failed: usize) -> String {
        if failed == 0 {
            String::new()
        } else {
            format!("  ({failed} failed)")
        }
    }

    async fn run_all(args: &Args, endpoints: &[String], pids: &[u32]) -> Vec<(Workload, Measured)> {
        let mut measured = Vec::new();
        for workload in WORKLOADS {
            let (servers, clients) = (cpu_of_all(pids), cpu_of("self"));
            let mut numbers = run(args, endpoints, workload).await;
            let ops = (args.ops.max(1)) as u32;
            numbers.server_cpu_per_op = cpu_of_all(pids).saturating_sub(servers) / ops;
            numbers.client_cpu_per_op = cpu_of("self").saturating_sub(clients) / ops;
            measured.push((workload, numbers));
        }
        measured
    }

    fn key(index: usize) -> Vec<u8> {
        format!("bench/{index:08}").into_bytes()
    }

    /// Runs `args.ops` operations of one workload from `args.clients`
    /// concurrent clients, spread over the members.
    async fn run(args: &Args, endpoints: &[String], workload: Workload) -> Measured {
        let per_client = args.ops.div_ceil(args.clients);
        let value = vec![b'v'; args.value_bytes];
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client_index in 0..args.clients {
            // Each client starts at a different member, as a load balancer would spread them.
            let mut own: Vec<String> = endpoints.to_vec();
            own.rotate_left(client_index % endpoints.len());
            let (value, first) = (value.clone(), client_index * per_client);
            let count = per_client.min(args.ops.saturating_sub(first));
            tasks.push(tokio::spawn(async move {
                let mut client = Client::new(own).with_request_timeout(REQUEST_TIMEOUT);
                let mut latencies = Vec::with_capacity(count);
                let mut failed = 0;
                for index in first..first + count {
                    let began = Instant::now();
                    let ok = one(&mut client, workload, index, &value).await;
                    latencies.push(began.elapsed());
                    failed += usize::from(!ok);
                }
                (latencies, failed)
            }));
        }
        let mut latencies = Vec::with_capacity(args.ops);
        let mut failed = 0;
        for task in tasks {
            let (own, own_failed) = task.await.expect("bench client task");
            latencies.extend(own);
            failed += own_failed;
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let percentile = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Measured {
            ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(0.50),
            p99: percentile(0.99),
            failed,
            server_cpu_per_op: Duration::ZERO,
            client_cpu_per_op: Duration::ZERO,
        }
    }

    /// One operation on key `index` (written by the put workload first).
    async fn one(client: &mut Client, workload: Workload, index: usize, value: &[u8]) -> bool {
        match workload {
            Workload::Put => client
                .put(PutRequest {
                    key: key(index),
                    value: value.to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok(),
            Workload::GetLinearizable | Workload::GetSerializable => {
                let serializable = workload == Workload::GetSerializable;
                client
                    .range(RangeRequest {
                        key: key(index),
                        serializable,
                        ..Default::default()
                    })
                    .await
                    .is_ok_and(|response| response.count == 1)
            }
            Workload::CompareAndPut => {
                let exists = Compare {
                    key: key(index),
                    result: compare::CompareResult::Greater as i32,
                    target: compare::CompareTarget::Version as i32,
                    target_union: Some(compare::TargetUnion::Version(0)),
                    ..Default::default()
                };
                let put = PutRequest {
                    key: key(index),
                    value: value.to_vec(),
                    ..Default::default()
                };
                let request = TxnRequest {
                    compare: vec![exists],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(put)),
                    }],
                    failure: vec![],
                };
                client
                    .txn(request)
                    .await
                    .is_ok_and(|response| response.succeeded)
            }
        }
    }

    /// A cluster of real server processes on loopback ports and a fresh
    /// temporary data dir, started through the project's launcher; stopped
    /// and removed on drop.
    struct Cluster {
        name: String,
        logs_dir: Option<PathBuf>,
        servers: Vec<detcd_launch::Server>,
        dir: PathBuf,
        endpoints: Vec<String>,
        launch: detcd_launch::Launch,
        members: Vec<detcd_launch::Member>,
    }

    impl Cluster {
        fn start(
            name: &str,
            binary: &Path,
            members: u64,
            flags: &[String],
            logs_dir: Option<&Path>,
        ) -> std::io::Result<Cluster> {
            let dir =
                std::env::temp_dir().join(format!("detcd-bench-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let laid_out: Vec<detcd_launch::Member> = (0..members)
                .map(|index| detcd_launch::Member::on_loopback(&format!("m{index}"), "http", &dir))
                .collect();
            let launch = detcd_launch::Launch {
                initial_cluster: detcd_launch::initial_cluster(&laid_out),
                token: Some("detcd-bench".into()),
                args: std::iter::once("--log-level=warn".into())
                    .chain(flags.iter().map(Into::into))
                    .collect(),
                die_with_parent: true,
                ..detcd_launch::Launch::new(binary)
            };
            let mut cluster = Cluster {
                name: name.to_string(),
                logs_dir: logs_dir.map(Path::to_path_buf),
                servers: Vec::new(),
                dir: dir.clone(),
                endpoints: laid_out
                    .iter()
                    .map(|member| member.client_url.clone())
                    .collect(),
                launch: launch.clone(),
                members: laid_out.clone(),
            };
            for member in &laid_out {
                cluster.servers.push(launch.spawn(member)?);
            }
            cluster.wait_ready()?;
            Ok(cluster)
        }

        /// Stops every member (SIGTERM), starts them again on their data,
        /// and returns how long they took to serve.
        fn restart(&mut self) -> std::io::Result<Duration> {
            for server in self.servers.drain(..) {
                server
                    .terminate(Duration::from_secs(60))
                    .map_err(std::io::Error::other)?;
            }
            let started = Instant::now();
            for member in &self.members {
                self.servers.push(self.launch.spawn(member)?);
            }
            self.wait_ready()?;
            Ok(started.elapsed())
        }

        /// Stops member `index` (SIGTERM).
        fn stop(&mut self, index: usize) -> std::io::Result<()> {
            self.servers
                .remove(index)
                .terminate(Duration::from_secs(60))
                .map(|_| ())
                .map_err(std::io::Error::other)
        }

        /// Starts member `index` again on its data.
        fn start_again(&mut self, index: usize) -> std::io::Result<()> {
            let server = self.launch.spawn(&self.members[index])?;
            self.servers.insert(index, server);
            Ok(())
        }

        fn pids(&self) -> Vec<u32> {
            self.servers.iter().map(detcd_launch::Server::pid).collect()
        }

        /// Resident memory of every member, summed (bytes).
        fn rss_bytes(&self) -> u64 {
            scale::rss_of(&self.pids())
        }

        /// CPU time (user and system) every member has used, summed.
        fn cpu(&self) -> Duration {
            cpu_of_all(&self.pids())
        }

        /// Bytes the data dirs take on disk (allocated blocks).
        fn disk_bytes(&self) -> u64 {
            fn walk(path: &Path) -> u64 {
                use std::os::unix::fs::MetadataExt;
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
                        .map(|entries| entries.flatten().map(|entry| walk(&entry.path())).sum())
                        .unwrap_or(0),
                    Ok(meta) if path.extension().is_none_or(|ext| ext != "log") => {
                        meta.blocks() * 512
                    }
                    _ => 0,
                }
            }
            walk(&self.dir)
        }

        /// Every member answers Status and names a leader.
        fn wait_ready(&mut self) -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            for endpoint in self.endpoints.clone() {
                let mut exited = None;
                let ready = detcd_launch::eventually(READY_TIMEOUT, || {
                    let status = runtime.block_on(async {
                        Client::new(vec![endpoint.clone()])
                            .with_request_timeout(POLL_INTERVAL * 10)
                            .status()
                            .await
                    });
                    exited = self
                        .servers
                        .iter_mut()
                        .find_map(detcd_launch::Server::exited);
                    exited.is_some() || status.is_ok_and(|status| status.leader != 0)
                });
                if let Some(exited) = exited {
                    return Err(std::io::Error::other(format!(
                        "a member exited ({exited}); logs in {}",
                        self.dir.display()
                    )));
                }
                if !ready {
                    return Err(std::io::Error::other(format!(
                        "{endpoint} not ready in {READY_TIMEOUT:?}; logs in {}",
                        self.dir.display()
                    )));
                }
            }
            Ok(())
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            self.servers.clear();
            if let Some(logs) = &self.logs_dir {
                for member in &self.members {
                    let kept = logs.join(format!("{}-{}.log", self.name, member.name));
                    let _ = std::fs::copy(&member.log_path, kept);
                }
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The storage-at-scale measurements (`--scale-keys`), detcd then etcd.
    mod scale {
        use std::sync::{Arc, Mutex};

        use super::*;

        /// Puts per load transaction.
        const LOAD_TXN_PUTS: usize = 128;
        /// Keys per page of the full read.
        const READ_PAGE_KEYS: i64 = 10_000;
        /// ... fewer for large values: a page stays under this many bytes
        /// of values, within gRPC's default 4 MiB message.
        const READ_PAGE_BYTES: i64 = 3 * 1024 * 1024;
        /// How often memory is sampled during the steady phase.
        const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
        /// How long a compaction or a member's defragment may take.
        const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(600);
        /// The slowest writes of a phase whose due times are printed.
        const SLOWEST_SHOWN: usize = 5;
        /// A request slower than this is a stall.
        const SLOW: Duration = Duration::from_secs(1);
        /// The fan-out phase's watchers watch this prefix.
        const WATCH_PREFIX: &[u8] = b"watched/";
        /// How long after the last write the fan-out phase waits for events.
        const WATCH_GRACE: Duration = Duration::from_secs(5);

        /// Writes while a maintenance job runs: how long the job took, the
        /// writes' p99 and slowest, and the failed ones.
        #[derive(Clone, Debug, Default)]
        struct UnderLoad {
            took: Duration,
            p99: Duration,
            max: Duration,
            failed: usize,
        }

        impl UnderLoad {
            /// Report rows beside `theirs`: the job's time, the writes' p99
            /// and slowest, the failed writes, under these `names`.
            fn rows<'a>(
                &self,
                theirs: &UnderLoad,
                names: [&'a str; 4],
            ) -> [(&'a str, f64, f64); 4] {
                [
                    (names[0], self.took.as_secs_f64(), theirs.took.as_secs_f64()),
                    (names[1], ms(self.p99), ms(theirs.p99)),
                    (names[2], ms(self.max), ms(theirs.max)),
                    (names[3], self.failed as f64, theirs.failed as f64),
                ]
            }
        }

        #[derive(Clone, Debug, Default)]
        struct Scaled {
            load: Duration,
            /// The members' CPU time (user and system) during the load.
            load_cpu: Duration,
            load_failed: usize,
            rss_after_load: u64,
            disk_after_load: u64,
            full_read: Duration,
            read_keys: usize,
            steady_p50: Duration,
            steady_p99: Duration,
            steady_max: Duration,
            steady_slow: usize,
            steady_failed: usize,
            leader_changes: u64,
            peak_rss: u64,
            compaction: UnderLoad,
            defrag: UnderLoad,
            restart: Duration,
            watch_p50: Duration,
            watch_p99: Duration,
            watch_missing: usize,
            watch_peak_rss: u64,
            catch_up: Duration,
            catch_up_peak_rss: u64,
            catch_up_member_peak_rss: u64,
        }

        pub fn main(args: &Args, detcd: &Path, runtime: &tokio::runtime::Runtime) -> ExitCode {
            println!(
                "detcd-bench scale: {} member(s), {} keys of {} bytes, then {} writes/s for {} s",
                args.members,
                args.scale_keys,
                args.value_bytes,
                args.scale_rate,
                args.scale_seconds
            );
            let mut results = Vec::new();
            for (name, binary) in [("detcd", detcd.to_path_buf()), ("etcd", args.etcd.clone())] {
                let mut cluster = match Cluster::start(
                    name,
                    &binary,
                    args.members,
                    &args.server_flags,
                    args.logs_dir.as_deref(),
                ) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        eprintln!("detcd-bench: cannot start {name}: {error}");
                        return ExitCode::FAILURE;
                    }
                };
                match measure(args, &mut cluster, runtime, name) {
                    Ok(scaled) => results.push(scaled),
                    Err(error) => {
                        eprintln!("detcd-bench: {name}: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            report(&results[0], &results[1]);
            ExitCode::SUCCESS
        }

        fn measure(
            args: &Args,
            cluster: &mut Cluster,
            runtime: &tokio::runtime::Runtime,
            name: &str,
        ) -> std::io::Result<Scaled> {
            let mut scaled = Scaled::default();
            let endpoints = cluster.endpoints.clone();
            println!("{name}: loading {} keys", args.scale_keys);
            let started = Instant::now();
            let cpu_before = cluster.cpu();
            scaled.load_failed = runtime.block_on(load(args, &endpoints));
            scaled.load = started.elapsed();
            scaled.load_cpu = cluster.cpu().saturating_sub(cpu_before);
            scaled.rss_after_load = cluster.rss_bytes();
            scaled.disk_after_load = cluster.disk_bytes();
            println!("{name}: reading every key");
            let started = Instant::now();
            let page = (READ_PAGE_BYTES / args.value_bytes.max(1) as i64).clamp(1, READ_PAGE_KEYS);
            scaled.read_keys = runtime.block_on(read_all(&endpoints, page));
            scaled.full_read = started.elapsed();
            println!("{name}: steady writes");
            let term_before = runtime.block_on(term(&endpoints));
            let sampler = PeakRss::start(cluster);
            let (mut latencies, failed) =
                runtime.block_on(steady(args, &endpoints, args.scale_seconds));
            scaled.peak_rss = sampler.stop();
            latencies.sort_unstable();
            scaled.steady_p50 = percentile(&latencies, 0.50);
            scaled.steady_p99 = percentile(&latencies, 0.99);
            scaled.steady_max = latencies.last().copied().unwrap_or_default();
            scaled.steady_slow = latencies.iter().filter(|latency| **latency > SLOW).count();
            scaled.steady_failed = failed;
            scaled.leader_changes = runtime
                .block_on(term(&endpoints))
                .saturating_sub(term_before);
            if args.compact_seconds > 0 {
                println!("{name}: compacting the history under steady writes");
                scaled.compaction = runtime.block_on(under_load(
                    args,
                    args.compact_seconds,
                    &endpoints,
                    compact(&endpoints),
                ))?;
            }
            if args.defrag_seconds > 0 {
                println!("{name}: defragmenting each member under steady writes");
                scaled.defrag = runtime.block_on(under_load(
                    args,
                    args.defrag_seconds,
                    &endpoints,
                    defragment(&endpoints),
                ))?;
            }
            if args.scale_watchers > 0 {
                println!("{name}: {} watchers on one prefix", args.scale_watchers);
                let sampler = PeakRss::start(cluster);
                let (mut latencies, missing) = runtime.block_on(fan_out(args, &endpoints));
                scaled.watch_peak_rss = sampler.stop();
                latencies.sort_unstable();
                scaled.watch_p50 = percentile(&latencies, 0.50);
                scaled.watch_p99 = percentile(&latencies, 0.99);
                scaled.watch_missing = missing;
            }
            if args.catch_up_seconds > 0 && cluster.servers.len() >= 3 {
                catch_up(args, cluster, runtime, name, &mut scaled)?;
            }
            println!("{name}: restarting");
            scaled.restart = cluster.restart()?;
            println!("{name}: {scaled:?}");
            Ok(scaled)
        }

        /// The catch-up phase: a follower stops, the others take
        /// `catch_up_seconds` of writes, then it starts again; how long until
        /// it holds the revision the others reached, and the peak memory of
        /// all members and of it alone meanwhile.
        fn catch_up(
            args: &Args,
            cluster: &mut Cluster,
            runtime: &tokio::runtime::Runtime,
            name: &str,
            scaled: &mut Scaled,
        ) -> std::io::Result<()> {
            let endpoints = cluster.endpoints.clone();
            let statuses: Vec<_> = endpoints
                .iter()
                .map(|endpoint| {
                    runtime.block_on(async {
                        Client::new(vec![endpoint.clone()])
                            .with_request_timeout(REQUEST_TIMEOUT)
                            .status()
                            .await
                    })
                })
                .collect();
            let follower = statuses
                .iter()
                .rposition(|status| {
                    status.as_ref().is_ok_and(|status| {
                        status.leader != status.header.as_ref().map_or(0, |h| h.member_id)
                    })
                })
                .ok_or_else(|| std::io::Error::other("no follower answers Status"))?;
            println!(
                "{name}: stopping follower {follower}, {} s of writes without it",
                args.catch_up_seconds
            );
            cluster.stop(follower)?;
            let others: Vec<String> = (endpoints.iter().enumerate())
                .filter(|(index, _)| *index != follower)
                .map(|(_, endpoint)| endpoint.clone())
                .collect();
            runtime.block_on(steady(args, &others, args.catch_up_seconds));
            let target = runtime.block_on(async {
                Client::new(others.clone())
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .status()
                    .await
                    .map(|status| status.header.map_or(0, |header| header.revision))
            });
            let target = target.map_err(|error| std::io::Error::other(error.to_string()))?;
            println!("{name}: starting it again; it must reach revision {target}");
            let started = Instant::now();
            cluster.start_again(follower)?;
            let sampler = PeakRss::start(cluster);
            let member = PeakRss::of(vec![cluster.servers[follower].pid()]);
            let endpoint = endpoints[follower].clone();
            let caught_up = detcd_launch::eventually(MAINTENANCE_TIMEOUT, || {
                runtime.block_on(async {
                    Client::new(vec![endpoint.clone()])
                        .with_request_timeout(POLL_INTERVAL * 10)
                        .status()
                        .await
                        .is_ok_and(|status| {
                            status
                                .header
                                .is_some_and(|header| header.revision >= target)
                        })
                })
            });
            scaled.catch_up = started.elapsed();
            scaled.catch_up_peak_rss = sampler.stop();
            scaled.catch_up_member_peak_rss = member.stop();
            if !caught_up {
                return Err(std::io::Error::other(format!(
                    "member {follower} did not reach revision {target} in {MAINTENANCE_TIMEOUT:?}"
                )));
            }
            cluster.wait_ready()
        }

        /// The value at quantile `p` of sorted `latencies`.
        fn percentile(latencies: &[Duration], p: f64) -> Duration {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        }

        /// The servers' summed RSS sampled every `RSS_SAMPLE_INTERVAL` on a
        /// thread of its own, until `stop` returns the peak.
        struct PeakRss {
            peak: Arc<Mutex<u64>>,
            sampling: Arc<std::sync::atomic::AtomicBool>,
            thread: std::thread::JoinHandle<()>,
        }

        impl PeakRss {
            fn start(cluster: &Cluster) -> PeakRss {
                PeakRss::of(
                    cluster
                        .servers
                        .iter()
                        .map(detcd_launch::Server::pid)
                        .collect(),
                )
            }

            /// The peak of the processes `pids`' summed RSS.
            fn of(pids: Vec<u32>) -> PeakRss {
                let peak = Arc::new(Mutex::new(0u64));
                let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let (shared_peak, shared_sampling) = (peak.clone(), sampling.clone());
                let thread = std::thread::spawn(move || {
                    while shared_sampling.load(std::sync::atomic::Ordering::Relaxed) {
                        let rss = rss_of(&pids);
                        let mut peak = shared_peak.lock().expect("peak lock");
                        *peak = (*peak).max(rss);
                        drop(peak);
                        std::thread::sleep(RSS_SAMPLE_INTERVAL);
                    }
                });
                PeakRss {
                    peak,
                    sampling,
                    thread,
                }
            }

            fn stop(self) -> u64 {
                self.sampling
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                let _ = self.thread.join();
                let peak = *self.peak.lock().expect("peak lock");
                peak
            }
        }

        /// The fan-out phase: `scale_watchers` watch streams on
        /// `WATCH_PREFIX`, each with one watcher, then `watch_rate` writes
        /// per second there for `watch_seconds`. Each write's value is its
        /// sequence number, so a watcher knows when it was due; returns
        /// every event's latency from then, and the events that never came.
        async fn fan_out(args: &Args, endpoints: &[String]) -> (Vec<Duration>, usize) {
            use detcd::proto::etcdserverpb::{
                watch_client::WatchClient, watch_request, WatchCreateRequest, WatchRequest,
            };
            let total = (args.watch_rate * args.watch_seconds) as usize;
            let period = Duration::from_secs(1) / args.watch_rate.max(1) as u32;
            let (created_tx, mut created) = tokio::sync::mpsc::channel(args.scale_watchers);
            let (start_tx, start) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
            let received = Arc::new(Mutex::new(Vec::with_capacity(total * args.scale_watchers)));
            let mut watchers = Vec::with_capacity(args.scale_watchers);
            for index in 0..args.scale_watchers {
                let endpoint = endpoints[index % endpoints.len()].clone();
                let (created_tx, mut start) = (created_tx.clone(), start.clone());
                let received = received.clone();
                watchers.push(tokio::spawn(async move {
                    let Ok(mut client) = WatchClient::connect(endpoint).await else {
                        let _ = created_tx.send(()).await;
                        return;
                    };
                    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
                    let _ = requests
                        .send(WatchRequest {
                            request_union: Some(watch_request::RequestUnion::CreateRequest(
                                WatchCreateRequest {
                                    key: WATCH_PREFIX.to_vec(),
                                    range_end: b"watched0".to_vec(),
                                    ..Default::default()
                                },
                            )),
                        })
                        .await;
                    let stream = client
                        .watch(tokio_stream::wrappers::ReceiverStream::new(outgoing))
                        .await;
                    let _ = created_tx.send(()).await;
                    let Ok(stream) = stream else { return };
                    let mut stream = stream.into_inner();
                    let Ok(Some(due_from)) = start.wait_for(Option::is_some).await.map(|s| *s)
                    else {
                        return;
                    };
                    let mut seen = 0;
                    while let Ok(Some(response)) = stream.message().await {
                        let now = tokio::time::Instant::now();
                        let mut latencies = Vec::with_capacity(response.events.len());
                        for event in response.events {
                            let n: Option<u32> = event
                                .kv
                                .and_then(|kv| String::from_utf8(kv.value).ok())
                                .and_then(|value| value.trim().parse().ok());
                            if let Some(n) = n {
                                latencies
                                    .push(now.saturating_duration_since(due_from + period * n));
                            }
                        }
                        seen += latencies.len();
                        received.lock().expect("received lock").extend(latencies);
                        if seen >= total {
                            break;
                        }
                    }
                    drop(requests);
                }));
            }
            drop(created_tx);
            // Every stream is open (or failed) before the writes begin.
            for _ in 0..args.scale_watchers {
                let _ = created.recv().await;
            }
            let due_from = tokio::time::Instant::now() + Duration::from_millis(500);
            let _ = start_tx.send(Some(due_from));
            let mut client = Client::new(endpoints.to_vec()).with_request_timeout(REQUEST_TIMEOUT);
            for n in 0..total {
                tokio::time::sleep_until(due_from + period * n as u32).await;
                let _ = client
                    .put(PutRequest {
                        key: format!("watched/{:04}", n % 100).into_bytes(),
                        value: format!("{n:>width$}", width = args.value_bytes.max(8)).into_bytes(),
                        ..Default::default()
                    })
                    .await;
            }
            // Stragglers get a grace period, then count as missing.
            let deadline = tokio::time::Instant::now() + WATCH_GRACE;
            for watcher in watchers {
                let abort = watcher.abort_handle();
                if tokio::time::timeout_at(deadline, watcher).await.is_err() {
                    abort.abort();
                }
            }
            let latencies = std::mem::take(&mut *received.lock().expect("received lock"));
            let missing = (total * args.scale_watchers).saturating_sub(latencies.len());
            (latencies, missing)
        }

        /// Resident memory of these processes, summed (bytes).
        pub(super) fn rss_of(pids: &[u32]) -> u64 {
            pids.iter()
                .map(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|status| {
                            status
                                .lines()
                                .find(|line| line.starts_with("VmRSS:"))
                                .and_then(|line| line.split_whitespace().nth(1))
                                .and_then(|kb| kb.parse::<u64>().ok())
                        })
                        .unwrap_or(0)
                        * 1024
                })
                .sum()
        }

        /// The raft term the first member reports.
        async fn term(endpoints: &[String]) -> u64 {
            let mut client = Client::new(endpoints.to_vec()).with_request_timeout(REQUEST_TIMEOUT);
            client
                .status()
                .await
                .map(|status| status.raft_term)
                .unwrap_or(0)
        }

        /// Writes every key once, in transactions of `LOAD_TXN_PUTS` puts,
        /// from the clients at once. Returns the transactions that failed.
        async fn load(args: &Args, endpoints: &[String]) -> usize {
            let txns = args.scale_keys.div_ceil(LOAD_TXN_PUTS);
            let mut tasks = Vec::new();
            for client_index in 0..args.clients {
                let mut own = endpoints.to_vec();
                own.rotate_left(client_index % endpoints.len());
                let (keys, clients) = (args.scale_keys, args.clients);
                let value = vec![b'v'; args.value_bytes];
                tasks.push(tokio::spawn(async move {
                    let mut client = Client::new(own).with_request_timeout(REQUEST_TIMEOUT);
                    let mut failed = 0;
                    for txn in (client_index..txns).step_by(clients) {
                        let first = txn * LOAD_TXN_PUTS;
                        let puts = (first..(first + LOAD_TXN_PUTS).min(keys))
                            .map(|index| RequestOp {
                                request: Some(request_op::Request::RequestPut(PutRequest {
                                    key: key(index),
                                    value: value.clone(),
                                    ..Default::default()
                                })),
                            })
                            .collect();
                        let request = TxnRequest {
                            success: puts,
                            ..Default::default()
                        };
                        failed += usize::from(client.txn(request).await.is_err());
                    }
                    failed
                }));
            }
            let mut failed = 0;
            for task in tasks {
                failed += task.await.expect("load task");
            }
            failed
        }

        /// Reads every key, a page at a time; returns how many came back.
        async fn read_all(endpoints: &[String], page: i64) -> usize {
            let mut client = Client::new(endpoints.to_vec()).with_request_timeout(REQUEST_TIMEOUT);
            let mut from = b"bench/".to_vec();
            let mut read = 0;
            loop {
                let request = RangeRequest {
                    key: from.clone(),
                    range_end: b"bench0".to_vec(),
                    limit: page,
                    ..Default::default()
                };
                let Ok(response) = client.range(request).await else {
                    return read;
                };
                read += response.kvs.len();
                match response.kvs.last() {
                    Some(last) if response.more => {
                        from = last.key.clone();
                        from.push(0);
                    }
                    _ => return read,
                }
            }
        }

        /// Writes for `seconds` at the steady rate while, after the first
        /// `JOB_AFTER`, `job` runs.
        async fn under_load(
            args: &Args,
            seconds: u64,
            endpoints: &[String],
            job: impl std::future::Future<Output = std::io::Result<()>>,
        ) -> std::io::Result<UnderLoad> {
            /// Writes before the job starts, for a baseline.
            const JOB_AFTER: Duration = Duration::from_secs(2);
            let timed = async {
                tokio::time::sleep(JOB_AFTER).await;
                let started = Instant::now();
                tokio::time::timeout(MAINTENANCE_TIMEOUT, job)
                    .await
                    .map_err(std::io::Error::other)??;
                Ok::<_, std::io::Error>(started.elapsed())
            };
            let ((mut latencies, failed), took) =
                tokio::join!(steady(args, endpoints, seconds), timed);
            latencies.sort_unstable();
            Ok(UnderLoad {
                took: took?,
                p99: percentile(&latencies, 0.99),
                max: latencies.last().copied().unwrap_or_default(),
                failed,
            })
        }

        /// Compacts the history at the current revision: every revision
        /// the steady writes superseded goes.
        async fn compact(endpoints: &[String]) -> std::io::Result<()> {
            use detcd::proto::etcdserverpb::CompactionRequest;
            // etcd answers a physical compaction once it is done.
            let mut client =
                Client::new(endpoints.to_vec()).with_request_timeout(MAINTENANCE_TIMEOUT);
            let revision = client
                .status()
                .await
                .map_err(std::io::Error::other)?
                .header
                .map_or(0, |header| header.revision);
            client
                .compact(CompactionRequest {
                    revision,
                    physical: true,
                })
                .await
                .map_err(std::io::Error::other)?;
            Ok(())
        }

        /// Defragments each member in turn (one at a time, as etcd advises).
        async fn defragment(endpoints: &[String]) -> std::io::Result<()> {
            use detcd::proto::etcdserverpb::{
                maintenance_client::MaintenanceClient, DefragmentRequest,
            };
            for endpoint in endpoints {
                let mut client = MaintenanceClient::connect(endpoint.clone())
                    .await
                    .map_err(std::io::Error::other)?;
                client
                    .defragment(DefragmentRequest {})
                    .await
                    .map_err(std::io::Error::other)?;
            }
            Ok(())
        }

        /// Overwrites keys at `scale_rate` per second for `seconds`, open
        /// loop: each write's latency counts from when it was due, so a
        /// stall counts for every write it held up.
        async fn steady(args: &Args, endpoints: &[String], seconds: u64) -> (Vec<Duration>, usize) {
            let (pool, taken) = tokio::sync::mpsc::channel(args.clients);
            for client_index in 0..args.clients {
                let mut own = endpoints.to_vec();
                own.rotate_left(client_index % endpoints.len());
                let client = Client::new(own).with_request_timeout(REQUEST_TIMEOUT);
                pool.send(client).await.expect("the pool has room");
            }
            let taken = Arc::new(tokio::sync::Mutex::new(taken));
            let total = (args.scale_rate * seconds) as usize;
            let period = Duration::from_secs(1) / args.scale_rate.max(1) as u32;
            let start = tokio::time::Instant::now();
            let value = vec![b's'; args.value_bytes];
            let mut tasks = Vec::with_capacity(total);
            for n in 0..total {
                let due = start + period * n as u32;
                tokio::time::sleep_until(due).await;
                let (pool, taken, value) = (pool.clone(), taken.clone(), value.clone());
                let index = (n * 7919) % args.scale_keys;
                tasks.push(tokio::spawn(async move {
                    let mut client = taken.lock().await.recv().await.expect("a client");
                    let ok = client
                        .put(PutRequest {
                            key: key(index),
                            value,
                            ..Default::default()
                        })
                        .await
                        .is_ok();
                    let latency = due.elapsed();
                    let _ = pool.send(client).await;
                    (due - start, latency, ok)
                }));
            }
            let mut latencies = Vec::with_capacity(total);
            let mut slowest = Vec::with_capacity(total);
            let mut failed = 0;
            for task in tasks {
                let (due, latency, ok) = task.await.expect("steady task");
                latencies.push(latency);
                slowest.push((latency, due));
                failed += usize::from(!ok);
            }
            // When the slowest writes were due, to match with server logs.
            slowest.sort_unstable_by(|a, b| b.cmp(a));
            let slowest: Vec<String> = slowest
                .iter()
                .take(SLOWEST_SHOWN)
                .map(|(latency, due)| {
                    format!("{:.1} ms at {:.3} s", ms(*latency), due.as_secs_f64())
                })
                .collect();
            let started = std::time::SystemTime::now() - start.elapsed();
            let utc = started
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                % 86_400.0;
            println!(
                "  slowest writes (after the phase's start, {:02}:{:02}:{:06.3} UTC): {}",
                (utc / 3600.0) as u64,
                (utc % 3600.0 / 60.0) as u64,
                utc % 60.0,
                slowest.join(", ")
            );
            (latencies, failed)
        }

        fn report(ours: &Scaled, theirs: &Scaled) {
            let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
            let secs = |duration: Duration| duration.as_secs_f64();
            let mut rows: Vec<(&str, f64, f64)> = vec![
                ("load (s)", secs(ours.load), secs(theirs.load)),
                (
                    "load: servers' CPU (s)",
                    secs(ours.load_cpu),
                    secs(theirs.load_cpu),
                ),
                (
                    "load txns failed",
                    ours.load_failed as f64,
                    theirs.load_failed as f64,
                ),
                (
                    "RSS after load (MiB)",
                    mb(ours.rss_after_load),
                    mb(theirs.rss_after_load),
                ),
                (
                    "data dir after load (MiB)",
                    mb(ours.disk_after_load),
                    mb(theirs.disk_after_load),
                ),
                (
                    "full read (s)",
                    secs(ours.full_read),
                    secs(theirs.full_read),
                ),
                (
                    "full read keys",
                    ours.read_keys as f64,
                    theirs.read_keys as f64,
                ),
                (
                    "steady p50 (ms)",
                    ms(ours.steady_p50),
                    ms(theirs.steady_p50),
                ),
                (
                    "steady p99 (ms)",
                    ms(ours.steady_p99),
                    ms(theirs.steady_p99),
                ),
                (
                    "steady slowest (ms)",
                    ms(ours.steady_max),
                    ms(theirs.steady_max),
                ),
                (
                    "steady writes > 1 s",
                    ours.steady_slow as f64,
                    theirs.steady_slow as f64,
                ),
                (
                    "steady writes failed",
                    ours.steady_failed as f64,
                    theirs.steady_failed as f64,
                ),
                (
                    "leader changes",
                    ours.leader_changes as f64,
                    theirs.leader_changes as f64,
                ),
            ];
            rows.extend(ours.compaction.rows(
                &theirs.compaction,
                [
                    "compaction (s)",
                    "write p99 in compaction (ms)",
                    "slowest in compaction (ms)",
                    "failed in compaction",
                ],
            ));
            rows.extend(ours.defrag.rows(
                &theirs.defrag,
                [
                    "defragment, all members (s)",
                    "write p99 in defrag (ms)",
                    "slowest write in defrag (ms)",
                    "writes failed in defrag",
                ],
            ));
            rows.extend([
                (
                    "peak RSS steady (MiB)",
                    mb(ours.peak_rss),
                    mb(theirs.peak_rss),
                ),
                (
                    "restart to serving (s)",
                    secs(ours.restart),
                    secs(theirs.restart),
                ),
                (
                    "watch event p50 (ms)",
                    ms(ours.watch_p50),
                    ms(theirs.watch_p50),
                ),
                (
                    "watch event p99 (ms)",
                    ms(ours.watch_p99),
                    ms(theirs.watch_p99),
                ),
                (
                    "watch events missing",
                    ours.watch_missing as f64,
                    theirs.watch_missing as f64,
                ),
                (
                    "peak RSS watchers (MiB)",
                    mb(ours.watch_peak_rss),
                    mb(theirs.watch_peak_rss),
                ),
                (
                    "follower catch-up (s)",
                    secs(ours.catch_up),
                    secs(theirs.catch_up),
                ),
                (
                    "peak RSS catch-up (MiB)",
                    mb(ours.catch_up_peak_rss),
                    mb(theirs.catch_up_peak_rss),
                ),
                (
                    "peak RSS of it (MiB)",
                    mb(ours.catch_up_member_peak_rss),
                    mb(theirs.catch_up_member_peak_rss),
                ),
            ]);
            println!();
            println!(
                "{:<28} {:>12} {:>12} {:>14}",
                "measurement", "detcd", "etcd", "detcd / etcd"
            );
            for (name, ours, theirs) in rows {
                let ratio = if theirs > 0.0 {
                    format!("{:.2}x", ours / theirs)
                } else {
                    "-".to_string()
                };
                println!("{name:<28} {ours:>12.2} {theirs:>12.2} {ratio:>14}");
            }
        }
    }
}
