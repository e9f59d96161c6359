//! detcd-bench: throughput and latency of detcd against the reference
//! etcd 3.4.23 on this machine, in the same run, reported as ratios
//! (non-negotiable 6: performance is measured here, never asserted in
//! tests). Each server runs as real processes on fresh data dirs; the
//! load comes from detcd's Rust client with many concurrent clients.
//!
//!     cargo run --release --bin detcd-bench -- --members 3 --ops 20000
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
    }

    /// One workload's numbers against one server.
    #[derive(Clone, Copy, Debug)]
    struct Measured {
        ops_per_sec: f64,
        p50: Duration,
        p99: Duration,
        failed: usize,
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
        println!(
            "detcd-bench: {} member(s), {} clients, {} ops per workload, {}-byte values",
            args.members, args.clients, args.ops, args.value_bytes
        );
        let mut results = Vec::new();
        for (name, binary) in [("detcd", detcd), ("etcd", args.etcd.clone())] {
            let cluster = match Cluster::start(name, &binary, args.members) {
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
            let measured = runtime.block_on(run_all(&args, &cluster.endpoints));
            for (workload, numbers) in &measured {
                println!(
                    "  {name:<6} {:<20} {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms{}",
                    workload.name(),
                    numbers.ops_per_sec,
                    ms(numbers.p50),
                    ms(numbers.p99),
                    failures(numbers.failed)
                );
            }
            results.push(measured);
            drop(cluster);
        }
        println!();
        println!(
            "{:<20} {:>12} {:>12} {:>14} {:>18} {:>18}",
            "workload",
            "detcd ops/s",
            "etcd ops/s",
            "detcd / etcd",
            "detcd p50/p99 ms",
            "etcd p50/p99 ms"
        );
        for (index, workload) in WORKLOADS.iter().enumerate() {
            let (ours, theirs) = (results[0][index].1, results[1][index].1);
            println!(
                "{:<20} {:>12.0} {:>12.0} {:>13.2}x {:>8.2}/{:<9.2} {:>8.2}/{:<9.2}",
                workload.name(),
                ours.ops_per_sec,
                theirs.ops_per_sec,
                ours.ops_per_sec / theirs.ops_per_sec.max(f64::MIN_POSITIVE),
                ms(ours.p50),
                ms(ours.p99),
                ms(theirs.p50),
                ms(theirs.p99)
            );
        }
        ExitCode::SUCCESS
    }

    fn ms(duration: Duration) -> f64 {
        duration.as_secs_f64() * 1000.0
    }

    fn failures(failed: usize) -> String {
        if failed == 0 {
            String::new()
        } else {
            format!("  ({failed} failed)")
        }
    }

    async fn run_all(args: &Args, endpoints: &[String]) -> Vec<(Workload, Measured)> {
        let mut measured = Vec::new();
        for workload in WORKLOADS {
            measured.push((workload, run(args, endpoints, workload).await));
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
        servers: Vec<detcd_launch::Server>,
        dir: PathBuf,
        endpoints: Vec<String>,
    }

    impl Cluster {
        fn start(name: &str, binary: &Path, members: u64) -> std::io::Result<Cluster> {
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
                args: vec!["--log-level=warn".into()],
                die_with_parent: true,
                ..detcd_launch::Launch::new(binary)
            };
            let mut cluster = Cluster {
                servers: Vec::new(),
                dir: dir.clone(),
                endpoints: laid_out
                    .iter()
                    .map(|member| member.client_url.clone())
                    .collect(),
            };
            for member in &laid_out {
                cluster.servers.push(launch.spawn(member)?);
            }
            cluster.wait_ready()?;
            Ok(cluster)
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
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
