//! `detcd gateway start`: etcd 3.4's gateway, a plain TCP proxy in front
//! of a cluster's client URLs (etcd's `proxy/tcpproxy`), for clients that
//! can be given only one address.
//!
//! Each accepted connection goes to the next endpoint in turn (round
//! robin). An endpoint that refuses a dial is set aside ("deactivated")
//! and the next one is tried; every `--retry-delay` the set-aside ones are
//! dialed again and come back once one answers. The proxy never reads the
//! bytes it carries: TLS and HTTP/2 pass through untouched.
//!
//! etcd finds endpoints by DNS SRV records too (`--discovery-srv`); detcd
//! does not, and refuses those flags rather than ignore them. Real build
//! only: the simulator has no use for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// `detcd gateway start`'s flags, etcd's names and defaults.
#[derive(clap::Parser, Debug)]
#[command(
    name = "detcd gateway start",
    about = "A TCP proxy to a cluster's client URLs (etcd's gateway)"
)]
pub struct GatewayArgs {
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub listen_addr: String,
    /// The cluster's client endpoints, comma-separated (a scheme is
    /// stripped: the gateway proxies TCP).
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// How long a failed endpoint is set aside before it is dialed again
    /// (Go's durations: 1m0s, 500ms).
    #[arg(long, default_value = "1m", value_parser = crate::config::parse_go_duration)]
    pub retry_delay: Duration,
    /// DNS SRV discovery (not implemented: must be empty).
    #[arg(long, default_value = "")]
    pub discovery_srv: String,
    /// DNS SRV discovery's service name (not implemented: must be empty).
    #[arg(long, default_value = "")]
    pub discovery_srv_name: String,
    /// DNS SRV discovery's insecure records (not implemented).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub insecure_discovery: bool,
    /// The CA for discovered endpoints (not implemented: must be empty).
    #[arg(long, default_value = "")]
    pub trusted_ca_file: String,
}

/// `--retry-delay=0` means this (etcd's tcpproxy default), not a busy loop.
pub const RETRY_DELAY_FOR_ZERO: Duration = Duration::from_secs(5 * 60);
/// A dial to an endpoint that takes longer is a failed one: a member cut
/// off by a partition must not hold a client (or the monitor) forever.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive on both sides of a proxied connection (Go's default for
/// the sockets etcd's gateway dials and accepts): a peer that vanished
/// without a FIN is noticed and its connection freed.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

fn keep_alive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Dials `address` within `DIAL_TIMEOUT`.
async fn dial(address: &str) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(address)).await {
        Ok(dialed) => dialed,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {DIAL_TIMEOUT:?}"),
        )),
    }
}

/// The gateway's command line after `gateway`: etcd's cobra takes the
/// subcommand `start` before or after the flags.
pub fn parse_args(args: Vec<std::ffi::OsString>) -> Result<GatewayArgs, clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut rest = Vec::with_capacity(args.len());
    let mut started = false;
    for arg in args {
        if !started && arg == "start" {
            started = true;
        } else {
            rest.push(arg);
        }
    }
    let mut command = GatewayArgs::command();
    if !started {
        let wants_help = rest.iter().any(|arg| arg == "--help" || arg == "-h");
        return Err(command.error(
            if wants_help {
                clap::error::ErrorKind::DisplayHelp
            } else {
                clap::error::ErrorKind::MissingSubcommand
            },
            "usage: detcd gateway start [--listen-addr ADDR] [--endpoints A,B,…] [--retry-delay D]",
        ));
    }
    let matches = command.try_get_matches_from_mut(
        std::iter::once(std::ffi::OsString::from("detcd gateway start")).chain(rest),
    )?;
    GatewayArgs::from_arg_matches(&matches)
}

/// An endpoint as the gateway dials it: `host:port`, the scheme gone.
fn strip_scheme(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.trim_end_matches('/').to_string()
}

/// The endpoints to proxy to, checked as etcd checks them: each is
/// `host:port`, and none resolves to the gateway's own listen address (a
/// loop).
pub async fn endpoints(args: &GatewayArgs) -> Result<Vec<String>, String> {
    for (flag, value) in [
        ("--discovery-srv", args.discovery_srv.as_str()),
        ("--discovery-srv-name", args.discovery_srv_name.as_str()),
        ("--trusted-ca-file", args.trusted_ca_file.as_str()),
    ] {
        if !value.is_empty() {
            return Err(format!(
                "{flag}: DNS SRV discovery is not implemented in detcd; \
                 list the members with --endpoints"
            ));
        }
    }
    if args.insecure_discovery {
        return Err("--insecure-discovery: DNS SRV discovery is not implemented in detcd".into());
    }
    let (listen_host, listen_port) = args
        .listen_addr
        .rsplit_once(':')
        .ok_or_else(|| format!("failed to validate listen address: {}", args.listen_addr))?;
    let listen_addresses = resolve(listen_host, listen_port)
        .await
        .map_err(|_| format!("failed to resolve listen host: {listen_host}"))?;
    let mut endpoints = Vec::new();
    for endpoint in args.endpoints.iter().map(|e| strip_scheme(e)) {
        if endpoint.is_empty() {
            continue;
        }
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| format!("error parsing endpoint {endpoint:?}"))?;
        let resolved = resolve(host, port)
            .await
            .map_err(|_| format!("failed to resolve endpoint host: {host}"))?;
        if port == listen_port {
            if let Some(address) = resolved
                .iter()
                .find(|address| listen_addresses.iter().any(|l| l.ip() == address.ip()))
            {
                return Err(format!(
                    "SRV or endpoint ({endpoint}->{address}) should not resolve to the gateway listen addr ({})",
                    args.listen_addr
                ));
            }
        }
        endpoints.push(endpoint);
    }
    if endpoints.is_empty() {
        return Err("no endpoints found".into());
    }
    Ok(endpoints)
}

async fn resolve(host: &str, port: &str) -> std::io::Result<Vec<SocketAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad port {port:?}")))?;
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// One endpoint and whether it is set aside.
#[derive(Debug)]
struct Remote {
    address: String,
    inactive: AtomicBool,
}

/// The proxy: endpoints taken in turn, failed ones set aside for
/// `retry_delay`.
#[derive(Debug)]
pub struct TcpProxy {
    remotes: Vec<Remote>,
    retry_delay: Duration,
    picks: AtomicUsize,
}

impl TcpProxy {
    pub fn new(endpoints: Vec<String>, retry_delay: Duration) -> Arc<TcpProxy> {
        Arc::new(TcpProxy {
            remotes: endpoints
                .into_iter()
                .map(|address| Remote {
                    address,
                    inactive: AtomicBool::new(false),
                })
                .collect(),
            retry_delay: if retry_delay.is_zero() {
                RETRY_DELAY_FOR_ZERO
            } else {
                retry_delay
            },
            picks: AtomicUsize::new(0),
        })
    }

    /// Serves `listener` until accepting fails.
    pub async fn run(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        let endpoints: Vec<&str> = self.remotes.iter().map(|r| r.address.as_str()).collect();
        tracing::info!(?endpoints, "ready to proxy client requests");
        let monitor = tokio::spawn(self.clone().monitor());
        // The monitor ends with the proxy, however `run` ends.
        let _monitor = AbortOnDrop(monitor);
        loop {
            let (inbound, _) = listener.accept().await?;
            let _ = inbound.set_nodelay(true);
            keep_alive(&inbound);
            tokio::spawn(self.clone().serve(inbound));
        }
    }

    /// The next active endpoint in turn, if any is active.
    fn pick(&self) -> Option<&Remote> {
        (0..self.remotes.len())
            .map(|_| {
                let turn = self.picks.fetch_add(1, Ordering::Relaxed);
                &self.remotes[turn % self.remotes.len()]
            })
            .find(|remote| !remote.inactive.load(Ordering::Relaxed))
    }

    /// Carries one client connection to an endpoint that takes it; closes
    /// it if none does.
    async fn serve(self: Arc<Self>, mut inbound: TcpStream) {
        while let Some(remote) = self.pick() {
            match dial(&remote.address).await {
                Ok(mut outbound) => {
                    let _ = outbound.set_nodelay(true);
                    keep_alive(&outbound);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
                Err(error) => {
                    remote.inactive.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        address = %remote.address,
                        interval = ?self.retry_delay,
                        %error,
                        "deactivated endpoint"
                    );
                }
            }
        }
        tracing::warn!("no endpoint is active: closed a client connection");
    }

    /// Every `retry_delay`, dials the set-aside endpoints, all at once;
    /// one that answers is taken again.
    async fn monitor(self: Arc<Self>) {
        let interval = self.retry_delay;
        loop {
            tokio::time::sleep(interval).await;
            let redials = self
                .remotes
                .iter()
                .filter(|remote| remote.inactive.load(Ordering::Relaxed))
                .map(|remote| async move {
                    match dial(&remote.address).await {
                        Ok(_) => {
                            remote.inactive.store(false, Ordering::Relaxed);
                            tracing::info!(address = %remote.address, "activated");
                        }
                        Err(error) => tracing::warn!(
                            address = %remote.address,
                            ?interval,
                            %error,
                            "failed to activate endpoint (stay inactive for another interval)"
                        ),
                    }
                });
            futures::future::join_all(redials).await;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn start_may_come_before_or_after_the_flags() {
        for line in [
            &["start", "--endpoints=http://127.0.0.1:1,127.0.0.1:2"][..],
            &["--endpoints=http://127.0.0.1:1,127.0.0.1:2", "start"],
        ] {
            let parsed = parse_args(args(line)).unwrap();
            assert_eq!(parsed.endpoints, ["http://127.0.0.1:1", "127.0.0.1:2"]);
            assert_eq!(parsed.listen_addr, "127.0.0.1:23790");
            assert_eq!(parsed.retry_delay, Duration::from_secs(60));
        }
        let parsed = parse_args(args(&["start", "--retry-delay=1m30s"])).unwrap();
        assert_eq!(parsed.retry_delay, Duration::from_secs(90));
        assert!(parse_args(args(&["--endpoints=a:1"])).is_err(), "no start");
        assert!(parse_args(args(&["start", "--no-such-flag"])).is_err());
    }

    #[tokio::test]
    async fn endpoints_lose_their_scheme_and_may_not_loop_back() {
        let parse = |line: &[&str]| parse_args(args(line)).unwrap();
        let listed = endpoints(&parse(&[
            "start",
            "--endpoints=http://127.0.0.1:2379,https://localhost:22379/",
        ]))
        .await;
        assert_eq!(
            listed,
            Ok(vec!["127.0.0.1:2379".into(), "localhost:22379".into()])
        );
        let looped = endpoints(&parse(&[
            "start",
            "--listen-addr=127.0.0.1:23790",
            "--endpoints=localhost:23790",
        ]))
        .await
        .unwrap_err();
        assert!(
            looped.contains("should not resolve to the gateway listen addr"),
            "{looped}"
        );
        let srv = endpoints(&parse(&["start", "--discovery-srv=example.com"]))
            .await
            .unwrap_err();
        assert!(srv.contains("not implemented"), "{srv}");
    }

    #[tokio::test]
    async fn a_refused_endpoint_is_set_aside_and_the_next_one_taken() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_address = dead.local_addr().unwrap().to_string();
        drop(dead);
        let proxy = TcpProxy::new(
            vec![dead_address, live.local_addr().unwrap().to_string()],
            Duration::from_secs(3600),
        );
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_address = front.local_addr().unwrap();
        tokio::spawn(proxy.clone().run(front));
        for _ in 0..3 {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut client = TcpStream::connect(front_address).await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let (mut accepted, _) = live.accept().await.unwrap();
            let mut buffer = [0u8; 4];
            accepted.read_exact(&mut buffer).await.unwrap();
            assert_eq!(&buffer, b"ping");
            accepted.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buffer).await.unwrap();
            assert_eq!(&buffer, b"pong");
        }
        assert!(proxy.remotes[0].inactive.load(Ordering::Relaxed));
        assert!(!proxy.remotes[1].inactive.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_set_aside_endpoint_comes_back_once_it_answers() {
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = back.local_addr().unwrap().to_string();
        let proxy = TcpProxy::new(vec![address], Duration::from_millis(20));
        proxy.remotes[0].inactive.store(true, Ordering::Relaxed);
        let monitor = tokio::spawn(proxy.clone().monitor());
        let mut waited = 0;
        while proxy.remotes[0].inactive.load(Ordering::Relaxed) && waited < 500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        monitor.abort();
        assert!(!proxy.remotes[0].inactive.load(Ordering::Relaxed));
        assert_eq!(
            TcpProxy::new(vec![], Duration::ZERO).retry_delay,
            RETRY_DELAY_FOR_ZERO,
            "0 is etcd's default, not a busy loop"
        );
    }
}
