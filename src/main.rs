//! The `detcd` binary: parse etcd's flags, open the data dir, serve clients
//! until SIGINT/SIGTERM or a fatal storage error.

#[cfg(madsim)]
fn main() {
    eprintln!("detcd: this is a simulation build (--cfg madsim); run the server from a normal build, and simulations with `cargo sim`");
    std::process::exit(64);
}

#[cfg(not(madsim))]
use std::process::ExitCode;
#[cfg(not(madsim))]
use std::sync::Arc;

/// The server allocates small buffers per request and per raft message on
/// every thread; glibc's malloc took about a tenth of the CPU in a 3-member
/// put run (members and client). With mimalloc the put ran 9-11 % faster and
/// a 300k-key load 29 % faster, for about a quarter more RSS (README,
/// "Benchmarks"). The simulator keeps the system allocator: nothing
/// simulated depends on it.
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(madsim))]
use detcd::{
    clock::Clock,
    config::{parse_listen_address, Config, ListenAddress},
    rng::NodeRng,
    server::{Server, Started},
    storage::RealDisk,
    transport::DeliverAll,
};

#[cfg(not(madsim))]
fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "snapshot")
    {
        return snapshot_command();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "gateway")
    {
        return gateway_command();
    }
    // Only etcd's variables, and lossily: a variable that is not Unicode
    // must not stop the server (std::env::vars would panic on it).
    let variables = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_string_lossy().into_owned();
            name.starts_with("ETCD_")
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect();
    let read_file = |path: &std::path::Path| {
        use detcd::storage::Disk as _;
        let bytes = RealDisk::new().read(path).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    };
    let (config, warnings) =
        match detcd::config::load(std::env::args_os().collect(), &variables, read_file) {
            Ok(loaded) => loaded,
            // clap's own errors (and --help, --version) print themselves.
            Err(detcd::config::LoadError::Flags(error)) => error.exit(),
            Err(detcd::config::LoadError::Refused(message)) => {
                eprintln!("detcd: {message}");
                return ExitCode::from(2);
            }
        };
    if let Err(message) = init_logging(&config) {
        eprintln!("detcd: {message}");
        return ExitCode::from(2);
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let outcome = runtime.block_on(run(config));
    // Tasks still running (connections that did not drain in time) are
    // dropped here; only a WAL write in flight is waited for, briefly.
    runtime.shutdown_timeout(STOP_DRAIN_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("detcd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// etcd's logging flags: `--log-level`, `--logger` (zap: JSON lines) and
/// `--log-outputs`. Colour codes only on a terminal.
#[cfg(not(madsim))]
#[allow(clippy::disallowed_methods)] // Opening log files: the binary, not the core.
fn init_logging(config: &Config) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    // etcd's levels; panic and fatal log only errors here.
    let filter = match config.log_level.as_str() {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        _ => "error",
    };
    let mut writer: Option<BoxMakeWriter> = None;
    let mut terminal = true;
    for output in config.log_outputs.split(',').map(str::trim) {
        let next = match output {
            "default" | "stderr" => {
                terminal &= std::io::stderr().is_terminal();
                BoxMakeWriter::new(std::io::stderr)
            }
            "stdout" => {
                terminal &= std::io::stdout().is_terminal();
                BoxMakeWriter::new(std::io::stdout)
            }
            path => {
                terminal = false;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| format!("--log-outputs {path}: {error}"))?;
                BoxMakeWriter::new(std::sync::Mutex::new(file))
            }
        };
        writer = Some(match writer {
            None => next,
            Some(before) => BoxMakeWriter::new(before.and(next)),
        });
    }
    let writer = writer.ok_or("--log-outputs is empty")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(format!("detcd={filter},warn"))
        .with_target(false)
        .with_ansi(terminal)
        .with_writer(writer);
    // etcd 3.4's /config/local/log sets the level while it runs.
    fn reloads<S: 'static>(
        handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
    ) {
        detcd::api::set_log_level_handler(move |level| {
            let _ = handle.reload(format!("detcd={level},warn"));
        });
    }
    if config.logger == "zap" {
        let builder = builder.json().flatten_event(true).with_filter_reloading();
        reloads(builder.reload_handle());
        builder.init();
    } else {
        let builder = builder.with_filter_reloading();
        reloads(builder.reload_handle());
        builder.init();
    }
    Ok(())
}

#[cfg(not(madsim))]
async fn run(config: Config) -> Result<(), String> {
    config.validate()?;
    let client_listeners =
        bind_all(&config.listen_client_urls, "serving client requests on").await?;
    let peer_listeners = bind_all(&config.listen_peer_urls, "listening for peers on").await?;
    let metrics_listeners = if config.listen_metrics_urls.is_empty() {
        Vec::new()
    } else {
        bind_all(&config.listen_metrics_urls, "serving metrics on").await?
    };
    let data_dir = config.data_dir();
    let disk = RealDisk::new();
    let hosts = |urls: &str| -> Vec<String> {
        detcd::config::split_urls(urls)
            .iter()
            .filter_map(|url| url.parse::<http::Uri>().ok())
            .filter_map(|uri| {
                uri.host()
                    .map(|host| host.trim_matches(['[', ']']).to_string())
            })
            .collect()
    };
    let client_tls = detcd::tls::load(
        &config.client_tls()?,
        &disk,
        &hosts(&format!(
            "{},{}",
            config.listen_client_urls, config.advertise_client_urls
        )),
        &data_dir.join("fixtures").join("client"),
    )
    .map_err(|error| format!("client TLS: {error}"))?;
    let peer_tls = detcd::tls::load(
        &config.peer_tls()?,
        &disk,
        &hosts(&format!(
            "{},{}",
            config.listen_peer_urls, config.initial_advertise_peer_urls
        )),
        &data_dir.join("fixtures").join("peer"),
    )
    .map_err(|error| format!("peer TLS: {error}"))?;
    if let Some(tls) = &peer_tls {
        detcd::transport::set_peer_tls(tls.clone());
    }
    let Started {
        server,
        raft_loop,
        peer_service,
    } = Server::start(
        &config,
        Arc::new(disk),
        Clock::new(),
        NodeRng::from_os(),
        Arc::new(DeliverAll),
    )
    .await
    .map_err(|error| {
        format!(
            "cannot start member {:?} with data dir {}: {error}",
            config.name,
            data_dir.display()
        )
    })?;
    tracing::info!(
        name = %config.name,
        data_dir = %data_dir.display(),
        member = format_args!("{:x}", server.member_id()),
        cluster = format_args!("{:x}", server.cluster_id()),
        client_urls = %config.listen_client_urls,
        peer_urls = %config.listen_peer_urls,
        "serving client and peer requests"
    );
    let stop = detcd::published::Published::new(false);
    let shutdown = {
        let stop = stop.clone();
        move || {
            let mut stopped = stop.subscribe();
            async move {
                stopped.wait_for(|stop| *stop).await;
            }
        }
    };
    let mut serving = Vec::new();
    for (url, listener) in peer_listeners {
        let tls = peer_tls.clone().filter(|_| detcd::config::is_https(&url));
        serving.push(tokio::spawn(detcd::api::serve_peers(
            peer_service.clone(),
            listener,
            tls,
            shutdown(),
        )));
    }
    if config.experimental_initial_corrupt_check {
        // Peers are served first: members that start together answer each
        // other's checks.
        server.check_initial_hash_kv().await?;
    }
    for (url, listener) in client_listeners {
        let tls = client_tls.clone().filter(|_| detcd::config::is_https(&url));
        serving.push(tokio::spawn(detcd::api::serve(
            server.clone(),
            listener,
            tls,
            shutdown(),
        )));
    }
    for (url, listener) in metrics_listeners {
        if detcd::config::is_https(&url) && client_tls.is_none() {
            return Err(format!("{url} is https, but there are no client TLS flags"));
        }
        let tls = client_tls.clone().filter(|_| detcd::config::is_https(&url));
        serving.push(tokio::spawn(detcd::api::serve_metrics(
            server.clone(),
            listener,
            tls,
            shutdown(),
        )));
    }
    let mut raft_loop = raft_loop;
    let outcome = tokio::select! {
        biased;
        signal = shutdown_signal() => {
            tracing::info!("received {signal}, shutting down");
            // A second signal means now.
            tokio::spawn(async {
                let signal = shutdown_signal().await;
                eprintln!("detcd: received {signal} again, exiting at once");
                std::process::exit(1);
            });
            None
        }
        result = &mut raft_loop => Some(match result {
            Ok(Ok(())) => Ok(()),
            // etcd logs it and exits 0: a unit that restarts on failure
            // must not start a removed member again and again.
            Ok(Err(detcd::raft_node::FatalError::Removed)) => {
                tracing::error!(
                    "the member has been permanently removed from the cluster; \
                     the data-dir used by this member must be removed"
                );
                Ok(())
            }
            Ok(Err(fatal)) => Err(format!("stopping: {fatal}")),
            Err(panic) => Err(format!("raft loop crashed: {panic}")),
        }),
    };
    // Stop as etcd does: a leader hands over first; the raft loop stops,
    // so the member no longer votes; watch streams end with "server
    // stopped"; the listeners close and send GOAWAY; waiting requests are
    // answered with "server stopped". Connections get STOP_DRAIN_TIMEOUT
    // to finish, then they are closed.
    server.stop().await;
    stop.set(true);
    let drained = async {
        if outcome.is_none() {
            let _ = (&mut raft_loop).await;
        }
        for task in serving {
            let _ = task.await;
        }
    };
    tokio::select! {
        biased;
        () = drained => tracing::info!("stopped"),
        _ = tokio::time::sleep(STOP_DRAIN_TIMEOUT) => {
            tracing::info!("stopped; closing client connections that are still open");
        }
    }
    // As etcd's unix listener does on close.
    for url in [
        &config.listen_client_urls,
        &config.listen_peer_urls,
        &config.listen_metrics_urls,
    ]
    .into_iter()
    .flat_map(|urls| detcd::config::split_urls(urls))
    {
        if let Ok(ListenAddress::Unix(path)) = parse_listen_address(&url) {
            #[allow(clippy::disallowed_methods)] // The binary, not the core.
            let _ = std::fs::remove_file(path);
        }
    }
    outcome.unwrap_or(Ok(()))
}

/// How long a stopping member lets open connections finish. etcd stops in
/// well under a second; an idle connection or a client that never reads
/// must not keep the member running.
#[cfg(not(madsim))]
const STOP_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds every URL of a `--listen-*-urls` flag and logs the address each
/// listener got, as etcd does ("listening for peers on 127.0.0.1:2380"):
/// with port 0, the log is where the port shows.
#[cfg(not(madsim))]
async fn bind_all(
    urls: &str,
    what: &'static str,
) -> Result<Vec<(String, detcd::tls::Listener)>, String> {
    let mut listeners = Vec::new();
    for url in urls.split(',') {
        let listener = match parse_listen_address(url)? {
            ListenAddress::Tcp(address) => {
                let listener = detcd::api::bind(address)
                    .await
                    .map_err(|error| format!("listen tcp {address}: bind: {error}"))?;
                if let Ok(bound) = listener.local_addr() {
                    tracing::info!("{what} {bound}");
                }
                detcd::tls::Listener::Tcp(listener)
            }
            ListenAddress::Unix(path) => {
                // As etcd: a socket file left by an earlier run is replaced.
                if std::fs::symlink_metadata(&path)
                    .is_ok_and(|meta| std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()))
                {
                    #[allow(clippy::disallowed_methods)] // The binary, not the core.
                    std::fs::remove_file(&path)
                        .map_err(|error| format!("{}: {error}", path.display()))?;
                }
                let listener = tokio::net::UnixListener::bind(&path)
                    .map_err(|error| format!("listen unix {}: bind: {error}", path.display()))?;
                tracing::info!("{what} {}", path.display());
                detcd::tls::Listener::Unix(listener)
            }
        };
        listeners.push((url.trim().to_string(), listener));
    }
    Ok(listeners)
}

#[cfg(not(madsim))]
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// `detcd snapshot`: what `etcdctl snapshot restore` and `status` do, for
/// the files `etcdctl snapshot save` writes from detcd (`detcd::backup`).
#[cfg(not(madsim))]
#[derive(clap::Parser, Debug)]
#[command(
    name = "detcd snapshot",
    about = "Restore or inspect a backup saved with `etcdctl snapshot save`"
)]
enum SnapshotCommand {
    /// Builds a new member's data dir from a backup, for a new cluster.
    Restore {
        file: std::path::PathBuf,
        /// The data dir to create (default: NAME.etcd); it must not exist or be empty.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// A dedicated directory for the WAL (default: the data dir's
        /// member/wal); it must not exist or be empty.
        #[arg(long)]
        wal_dir: Option<std::path::PathBuf>,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
    },
    /// Prints a backup's hash, revision, key count and size.
    Status {
        file: std::path::PathBuf,
        /// simple, table or json, as etcdctl's -w.
        #[arg(long, short = 'w', default_value = "simple")]
        write_out: String,
    },
}

/// `detcd gateway start …`: etcd's TCP gateway (`detcd::tcp_proxy`),
/// logging to stderr at info.
#[cfg(not(madsim))]
fn gateway_command() -> ExitCode {
    use detcd::tcp_proxy;
    let args = match tcp_proxy::parse_args(std::env::args_os().skip(2).collect()) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter("detcd=info,warn")
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let outcome = runtime.block_on(async {
        let endpoints = tcp_proxy::endpoints(&args).await?;
        let listener = tokio::net::TcpListener::bind(&args.listen_addr)
            .await
            .map_err(|error| format!("{}: {error}", args.listen_addr))?;
        tokio::select! {
            biased;
            signal = shutdown_signal() => {
                tracing::info!("received {signal}, shutting down");
                Ok(())
            }
            served = tcp_proxy::TcpProxy::new(endpoints, args.retry_delay).run(listener) => {
                served.map_err(|error| format!("{}: {error}", args.listen_addr))
            }
        }
    });
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("detcd gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(madsim))]
fn snapshot_command() -> ExitCode {
    use clap::Parser as _;
    use detcd::storage::Disk as _;
    let command = SnapshotCommand::parse_from(std::env::args_os().skip(1));
    let read = |path: &std::path::Path| {
        RealDisk::new()
            .read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))
    };
    let outcome = match command {
        SnapshotCommand::Status { file, write_out } => read(&file).and_then(|bytes| {
            let status = detcd::backup::status(&bytes).map_err(|error| error.to_string())?;
            let size = human_bytes(status.total_size);
            match write_out.as_str() {
                "simple" => println!(
                    "{:x}, {}, {}, {size}",
                    status.hash, status.revision, status.total_keys
                ),
                "json" => println!(
                    "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
                    status.hash, status.revision, status.total_keys, status.total_size
                ),
                "table" => {
                    let row = [
                        format!("{:x}", status.hash),
                        status.revision.to_string(),
                        status.total_keys.to_string(),
                        size,
                    ];
                    let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
                    let widths: Vec<usize> = (0..4)
                        .map(|i| heads[i].len().max(row[i].len()) + 2)
                        .collect();
                    let rule: String = widths
                        .iter()
                        .map(|width| "-".repeat(*width))
                        .collect::<Vec<_>>()
                        .join("+");
                    // etcdctl's tablewriter: headings centred, cells right-aligned.
                    let line = |cells: &[String], centred: bool| {
                        cells
                            .iter()
                            .zip(&widths)
                            .map(|(cell, width)| {
                                let inner = width - 2;
                                if centred {
                                    format!("{cell:^width$}")
                                } else {
                                    format!(" {cell:>inner$} ")
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("|")
                    };
                    println!("+{rule}+");
                    println!("|{}|", line(&heads.map(String::from), true));
                    println!("+{rule}+");
                    println!("|{}|", line(&row, false));
                    println!("+{rule}+");
                }
                other => {
                    return Err(format!(
                        "unknown output format {other:?}: simple, table or json"
                    ))
                }
            }
            Ok(())
        }),
        SnapshotCommand::Restore {
            file,
            data_dir,
            wal_dir,
            name,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
        } => read(&file).and_then(|bytes| {
            let data_dir = data_dir.unwrap_or_else(|| format!("{name}.etcd").into());
            let wal_dir = detcd::storage::wal::dir(wal_dir.as_deref(), &data_dir);
            let target = detcd::backup::Target {
                data_dir,
                wal_dir,
                name,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
            };
            let restored = detcd::backup::restore(Arc::new(RealDisk::new()), &bytes, &target)
                .map_err(|error| error.to_string())?;
            println!(
                "restored snapshot {} into {} (member {:x} of cluster {:x}, revision {})",
                file.display(),
                target.data_dir.display(),
                restored.member_id,
                restored.cluster_id,
                restored.revision
            );
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sizes as etcdctl prints them (go-humanize's SI `Bytes`).
#[cfg(not(madsim))]
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = bytes as f64 / 1000f64.powi(exponent as i32);
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}
