//! Server configuration: etcd's flag names and defaults, also read from
//! `ETCD_*` environment variables and from a YAML `--config-file` with
//! etcd's keys, as etcd does.
//!
//! A setting etcd has and detcd does not implement is refused at start,
//! whether it comes as a flag, a variable or a config-file key, unless it
//! asks for what detcd does anyway or is etcd's default (`NOT_IMPLEMENTED`):
//! a member must not serve plaintext while its operator believes TLS is on.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

/// etcd's default for --max-request-bytes: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1536 * 1024;
/// Slack gRPC is given over --max-request-bytes for message framing
/// (etcd `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default for --max-txn-ops.
pub const DEFAULT_MAX_TXN_OPS: u32 = 128;
/// etcd's default for --snapshot-count.
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// etcd's watch progress notification interval by default, 10 minutes.
pub const WATCH_PROGRESS_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);
/// etcd's `minWatchProgressInterval`: shorter intervals are raised to it.
pub const WATCH_PROGRESS_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// A flag given twice takes its last value, as etcd's (Go's `flag`) do.
#[derive(Clone, Debug, Parser)]
#[command(name = "detcd", version, about = "An etcd v3 compatible key-value store", long_about = None)]
#[command(args_override_self = true)]
pub struct Config {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ${name}.etcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated directory for the WAL [default: the data dir's
    /// member/wal].
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = DEFAULT_SNAPSHOT_COUNT, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_timeout: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB; negative disables).
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = DEFAULT_MAX_TXN_OPS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_txn_ops: u32,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_request_bytes: u32,
    /// Maximum concurrent gRPC streams on one client connection (etcd's
    /// default: no limit short of 2^32-1).
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// How often the leader checks its members' HashKV against its own
    /// (Go's duration syntax; 0s: never).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s",
          value_parser = parse_go_duration)]
    pub experimental_corrupt_check_time: Duration,
    /// Duration of periodic watch progress notifications (Go's duration
    /// syntax; raised to 100ms at least; 0 means the default).
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m",
          value_parser = parse_go_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// How long a client connection may stay silent before the server
    /// pings it (Go's duration syntax; 0 turns the pings off).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h",
          value_parser = parse_go_duration)]
    pub grpc_keepalive_interval: Duration,
    /// How long the server waits for a client to answer its ping before it
    /// closes the connection (Go's duration syntax).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s",
          value_parser = parse_go_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// Path to the server configuration file (YAML, etcd's keys). etcd
    /// ignores every other flag and ETCD_* variable when given one; detcd
    /// refuses the mix instead.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info", value_parser = ["debug", "info", "warn", "error", "panic", "fatal"])]
    pub log_level: String,
    /// `periodic` (keep a duration of history) or `revision` (keep a
    /// number of revisions).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// For periodic: a duration (5m, 1h) or a number of hours; for
    /// revision: a number of revisions. 0 turns auto-compaction off.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Extra URLs to serve /metrics and /health on (plain HTTP, no gRPC).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// `zap` writes JSON lines, as etcd's zap logger does; `capnslog`
    /// (etcd 3.4's default) writes text.
    #[arg(long, env = "ETCD_LOGGER", default_value = "capnslog", value_parser = ["zap", "capnslog"])]
    pub logger: String,
    /// Where logs go, comma-separated: `default` or `stderr`, `stdout`,
    /// or file paths (appended to).
    #[arg(long, env = "ETCD_LOG_OUTPUTS", default_value = "default")]
    pub log_outputs: String,
    /// Login tokens: `simple` (etcd's default), or
    /// `jwt,pub-key=…,priv-key=…,sign-method=RS256|ES256|HS256|…,ttl=5m`.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// bcrypt cost of password hashes (etcd's default; 4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = crate::auth::password::BCRYPT_COST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(crate::auth::password::BCRYPT_COST_MIN as i64..=crate::auth::password::BCRYPT_COST_MAX as i64))]
    pub bcrypt_cost: u32,
    /// Client TLS: the server certificate (PEM).
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,
    /// Client TLS: the server certificate's key (PEM).
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,
    /// Before serving clients, compare this member's HashKV with its
    /// peers' and refuse to start on a mismatch (etcd's flag).
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,
    /// Refuse membership changes that could cost the cluster its quorum:
    /// adding or promoting a voter while members are unstarted or
    /// unreachable, removing one a connected quorum needs (etcd's
    /// default, true).
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Once this member of a cluster of several reaches its peers, count
    /// all but two ticks of its election timeout as passed, so a cluster
    /// without a leader elects one soon (etcd's default, true).
    #[arg(long, env = "ETCD_INITIAL_ELECTION_TICK_ADVANCE", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub initial_election_tick_advance: bool,
    /// How long the backend gathers changes before it commits them (Go's
    /// duration syntax; 0 means etcd's default, 100ms).
    #[arg(long, env = "ETCD_BACKEND_BATCH_INTERVAL", default_value = "0",
          value_parser = parse_go_duration)]
    pub backend_batch_interval: Duration,
    /// How many changed revisions make the backend commit before the
    /// interval is up (0 means etcd's default, 10000).
    #[arg(long, env = "ETCD_BACKEND_BATCH_LIMIT", default_value_t = 0)]
    pub backend_batch_limit: u64,
    /// How many revisions a compaction deletes from the backend in one
    /// transaction (0 means etcd's default, 1000).
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT",
        default_value_t = 0
    )]
    pub experimental_compaction_batch_limit: u64,
    /// How long applying a request, or serving a read-only range or
    /// transaction, may take before it is logged and counted in
    /// `etcd_server_slow_apply_total` (Go's duration syntax).
    #[arg(long, env = "ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION", default_value = "100ms",
          value_parser = parse_go_duration)]
    pub experimental_warning_apply_duration: Duration,
    /// Restart this member as the only member of its cluster, keeping its
    /// data: what it knows to be committed stays, the other members are
    /// removed (etcd's disaster recovery after a lost quorum). Ignored on
    /// a first start, as etcd's is.
    #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub force_new_cluster: bool,
    /// Client TLS: require client certificates the trusted CA signed.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Client TLS: the CA that signs client certificates (PEM).
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,
    /// Client TLS: certificate revocation lists (PEM); a client
    /// certificate they revoke is refused.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE", default_value = "")]
    pub client_crl_file: String,
    /// Client TLS: a client certificate must be valid for this host name
    /// or IP address (on top of the CA's signature).
    #[arg(long, env = "ETCD_CLIENT_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub client_cert_allowed_hostname: String,
    /// The TLS 1.2 cipher suites both sides offer, Go's names, comma
    /// separated (empty: all that detcd has; TLS 1.3 keeps its own).
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
    /// Client TLS with a generated self-signed certificate.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,
    /// Peer TLS: this member's certificate, as server and as client (PEM).
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    pub peer_cert_file: String,
    /// Peer TLS: the key of --peer-cert-file (PEM).
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,
    /// Peer TLS: require peers to present certificates the peer CA signed.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Peer TLS: the CA that signs the members' certificates (PEM).
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    pub peer_trusted_ca_file: String,
    /// Peer TLS: certificate revocation lists (PEM); a member certificate
    /// they revoke is refused.
    #[arg(long, env = "ETCD_PEER_CRL_FILE", default_value = "")]
    pub peer_crl_file: String,
    /// Peer TLS: a member's certificate must have this common name (on
    /// top of the peer CA's signature), checked on both ends of a peer
    /// connection.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,
    /// Peer TLS: a member's certificate must be valid for this host name or
    /// IP address; excludes --peer-cert-allowed-cn.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub peer_cert_allowed_hostname: String,
    /// Snapshot files to keep at most (0: no limit). detcd keeps the
    /// newest `SNAPSHOTS_KEPT` (2: one to fall back on), so it refuses a
    /// smaller limit rather than keep more than asked.
    #[arg(long, env = "ETCD_MAX_SNAPSHOTS", default_value_t = 5, value_parser = parse_max_snapshots)]
    pub max_snapshots: u32,
    /// WAL files to keep at most (0: no limit). detcd removes a WAL
    /// segment as soon as a snapshot covers it, never later than this limit
    /// would; as in etcd, segments the last snapshot does not cover stay.
    #[arg(long, env = "ETCD_MAX_WALS", default_value_t = 5)]
    pub max_wals: u32,
    /// Peer TLS: do not check that a member's certificate names the
    /// address it connects from.
    #[arg(long, env = "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_peer_skip_client_san_verification: bool,
    /// Peer TLS with a generated self-signed certificate.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,
    /// How long a simple token lives unused, in seconds.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = crate::auth::tokens::SIMPLE_TOKEN_TTL_DEFAULT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_token_ttl: u64,
}

impl Config {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// Where the WAL lives: `--wal-dir`, or the data dir's member/wal.
    pub fn wal_dir(&self) -> PathBuf {
        crate::storage::wal::dir(self.wal_dir.as_deref(), &self.data_dir())
    }

    pub fn initial_cluster(&self) -> String {
        self.initial_cluster.clone().unwrap_or_else(|| {
            let urls = self
                .initial_advertise_peer_urls
                .split(',')
                .map(|url| format!("{}={}", self.name, url.trim()));
            urls.collect::<Vec<_>>().join(",")
        })
    }

    /// Raft ticks once per heartbeat interval; the election timeout is a
    /// whole number of ticks (etcd: election-timeout / heartbeat-interval).
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval)
    }

    pub fn election_ticks(&self) -> usize {
        (self.election_timeout / self.heartbeat_interval).max(1) as usize
    }

    /// The shortest lease TTL in seconds (etcd: 1.5 election timeouts,
    /// counted in whole ticks, rounded up to a second).
    pub fn min_lease_ttl(&self) -> i64 {
        let ticks = (3 * self.election_ticks() / 2) as u64;
        (ticks * self.heartbeat_interval).div_ceil(1000) as i64
    }

    /// When the backend commits its batch: etcd's defaults for 0.
    pub fn backend_batch(&self) -> (Duration, usize) {
        let interval = match self.backend_batch_interval {
            Duration::ZERO => crate::backend::writer::COMMIT_INTERVAL,
            interval => interval,
        };
        let limit = count_or(
            self.backend_batch_limit,
            crate::backend::writer::COMMIT_LIMIT,
        );
        (interval, limit)
    }

    /// Revisions a compaction deletes per backend transaction: etcd's
    /// default for 0.
    pub fn compaction_batch_limit(&self) -> usize {
        count_or(
            self.experimental_compaction_batch_limit,
            crate::backend::writer::COMPACTION_BATCH_LIMIT,
        )
    }

    /// How often watchers that asked for progress hear the revision:
    /// etcd's default for 0, never under etcd's 100 ms minimum.
    pub fn watch_progress_interval(&self) -> Duration {
        match self.experimental_watch_progress_notify_interval {
            Duration::ZERO => WATCH_PROGRESS_INTERVAL_DEFAULT,
            interval => interval.max(WATCH_PROGRESS_INTERVAL_MIN),
        }
    }

    /// How long a request waits for raft before "request timed out"
    /// (etcd `ReqTimeout`: 5 s plus two election timeouts).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * Duration::from_millis(self.election_timeout)
    }

    /// Checks cross-flag rules etcd checks at start.
    pub fn validate(&self) -> Result<(), String> {
        parse_auto_compaction(&self.auto_compaction_mode, &self.auto_compaction_retention)?;
        crate::auth::tokens::parse_auth_token(&self.auth_token)?;
        self.check_tls_urls()?;
        if self.heartbeat_interval * 5 > self.election_timeout {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        for url in self
            .listen_client_urls
            .split(',')
            .chain(self.listen_peer_urls.split(','))
            .chain(
                self.listen_metrics_urls
                    .split(',')
                    .filter(|url| !url.trim().is_empty()),
            )
        {
            parse_listen_address(url)?;
            if url.trim().starts_with("unixs://") {
                return Err(format!(
                    "{}: TLS over a unix socket is not served: Go's clients (etcdctl, \
                     clientv3) send the socket's path as the TLS server name, which \
                     rustls refuses; use unix:// (the socket file's permissions guard it) \
                     or https://",
                    url.trim()
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The client side's TLS flags.
    pub fn client_tls(&self) -> Result<crate::tls::TlsFlags, String> {
        Ok(crate::tls::TlsFlags {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            crl_file: self.client_crl_file.clone(),
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
            allowed: crate::tls::Allowed::from_flags("", &self.client_cert_allowed_hostname)?,
            cipher_suites: crate::tls::cipher_suites(&self.cipher_suites)?,
            verify_client_san: false,
        })
    }

    /// The peer side's TLS flags.
    pub fn peer_tls(&self) -> Result<crate::tls::TlsFlags, String> {
        Ok(crate::tls::TlsFlags {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            crl_file: self.peer_crl_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
            allowed: crate::tls::Allowed::from_flags(
                &self.peer_cert_allowed_cn,
                &self.peer_cert_allowed_hostname,
            )?,
            cipher_suites: crate::tls::cipher_suites(&self.cipher_suites)?,
            verify_client_san: !self.experimental_peer_skip_client_san_verification,
        })
    }

    /// etcd's rules for https URLs: one needs a certificate (a file pair,
    /// or auto TLS); certificates without any https URL are an error here
    /// (etcd ignores them with a warning; detcd never serves plaintext
    /// while TLS flags are set).
    fn check_tls_urls(&self) -> Result<(), String> {
        let sides = [
            ("client", self.client_tls()?, vec![&self.listen_client_urls]),
            ("peer", self.peer_tls()?, vec![&self.listen_peer_urls]),
        ];
        for (side, flags, urls) in sides {
            let https: Vec<&str> = urls
                .iter()
                .flat_map(|list| list.split(','))
                .map(str::trim)
                .filter(|url| is_https(url))
                .collect();
            let plain: Vec<&str> = urls
                .iter()
                .flat_map(|list| list.split(','))
                .map(str::trim)
                .filter(|url| is_plain(url))
                .collect();
            if let Some(url) = https.first() {
                if !flags.has_certificate() {
                    return Err(format!(
                        "TLS key/cert (--{p}cert-file, --{p}key-file) must be provided for {side} url {url} with HTTPS scheme",
                        p = if side == "peer" { "peer-" } else { "" }
                    ));
                }
            }
            if flags.has_certificate() {
                if let Some(url) = plain.first() {
                    return Err(format!(
                        "{side} TLS is configured but {side} url {url} is plain http: \
                         use https, or drop the TLS flags (detcd does not serve plaintext beside them)"
                    ));
                }
            }
            if flags.client_cert_auth && flags.trusted_ca_file.is_empty() {
                return Err(format!(
                    "{side} certificate authentication needs --{}trusted-ca-file",
                    if side == "peer" { "peer-" } else { "" }
                ));
            }
        }
        Ok(())
    }
}

/// `--max-snapshots`: 0 (no limit) or at least what detcd always keeps.
fn parse_max_snapshots(text: &str) -> Result<u32, String> {
    let kept = crate::storage::snapshot::SNAPSHOTS_KEPT;
    let limit: u32 = text.parse().map_err(|error| format!("{text:?}: {error}"))?;
    if limit != 0 && (limit as usize) < kept {
        return Err(format!(
            "detcd always keeps the {kept} newest snapshot files (one to fall back on \
             if the newest is damaged): use {kept} or more, or 0 for no limit"
        ));
    }
    Ok(limit)
}

/// Whether a URL asks for TLS: https, or a unix socket as unixs.
pub fn is_https(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("https://") || url.starts_with("unixs://")
}

/// Whether a URL is plaintext: http, or a unix socket as unix.
fn is_plain(url: &str) -> bool {
    let url = url.trim();
    url.starts_with("http://") || url.starts_with("unix://")
}

/// Where a listen URL binds: a TCP address, or (etcd's `unix://` and
/// `unixs://`) a unix socket's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

/// Parses a listen or peer URL: `http[s]://host:port`, or
/// `unix[s]://path`, host and path together: `unix://etcd.sock:1` (etcd's
/// form) is the file `etcd.sock:1` in the working directory, and
/// `unix:///run/etcd.sock` an absolute path (etcd takes that for client
/// URLs only).
pub fn parse_listen_address(url: &str) -> Result<ListenAddress, String> {
    let trimmed = url.trim();
    match trimmed.split_once("://") {
        Some(("unix" | "unixs", path)) if !path.is_empty() => {
            Ok(ListenAddress::Unix(std::path::PathBuf::from(path)))
        }
        Some(("unix" | "unixs", _)) => Err(format!("{trimmed}: no socket path")),
        _ => parse_listen_url(url).map(ListenAddress::Tcp),
    }
}

/// A Go duration as etcd's flags take it: "1m0s", "500ms", "2h".
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{text:?}: {error}"))
}

/// Splits a comma-separated URL flag.
pub fn split_urls(flag: &str) -> Vec<String> {
    flag.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses one of `--listen-client-urls` (`http://host:port`) into an address.
pub fn parse_listen_url(url: &str) -> Result<std::net::SocketAddr, String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{url}: URL scheme must be http, https, unix, or unixs, not {scheme:?}"
            ))
        }
        None => return Err(format!("{url}: URL must be of the form http://host:port")),
    };
    let host_port = rest.trim_end_matches('/');
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: missing port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" | "" => std::net::IpAddr::from([127, 0, 0, 1]),
        host => host
            .parse()
            .map_err(|_| format!("{url}: host must be an IP address or localhost"))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask
/// for (`server::compactor` does it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    Off,
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

/// Parses etcd's flags: for `periodic`, a duration (`5m`, `1h30m`) or a
/// bare number of hours; for `revision`, a number. A retention of 0 turns
/// auto-compaction off.
pub fn parse_auto_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
    let retention = retention.trim();
    match mode {
        "periodic" => {
            let period = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => humantime::parse_duration(retention).map_err(|error| {
                    format!("--auto-compaction-retention {retention:?}: {error}")
                })?,
            };
            Ok(if period.is_zero() {
                AutoCompaction::Off
            } else {
                AutoCompaction::Periodic(period)
            })
        }
        "revision" => {
            let revisions: i64 = retention.parse().map_err(|_| {
                format!("--auto-compaction-retention {retention:?}: not a number of revisions")
            })?;
            Ok(if revisions <= 0 {
                AutoCompaction::Off
            } else {
                AutoCompaction::Revision(revisions)
            })
        }
        other => Err(format!(
            "--auto-compaction-mode {other:?}: must be periodic or revision"
        )),
    }
}

/// A count flag where 0 means etcd's default.
fn count_or(value: u64, default: usize) -> usize {
    match value {
        0 => default,
        value => usize::try_from(value).unwrap_or(usize::MAX),
    }
}

/// etcd 3.4 settings (flag names) that detcd does not implement, each with
/// the values accepted anyway: what detcd does, and etcd's own default
/// (so etcd's sample config file loads; retention counts and gRPC
/// keepalive details are detcd's own). Any other value is refused.
const NOT_IMPLEMENTED: &[(&str, &[&str])] = &[
    ("grpc-keepalive-min-time", &["5s"]),
    ("discovery", &[""]),
    ("discovery-fallback", &["proxy"]),
    ("discovery-proxy", &[""]),
    ("discovery-srv", &[""]),
    ("discovery-srv-name", &[""]),
    // detcd always runs raft with pre-vote (etcd 3.4 defaults to off).
    ("pre-vote", &["true"]),
    ("enable-v2", &["false"]),
    // Only etcd's v2 HTTP API and gateway use these.
    ("cors", &["*", ""]),
    ("host-whitelist", &["*", ""]),
    ("enable-pprof", &["false"]),
    // The JSON gateway (api/gateway.rs) is always on, etcd 3.4's default.
    ("enable-grpc-gateway", &["true"]),
    ("metrics", &["basic"]),
    // detcd logs through tracing in one format whichever logger is named.
    ("log-package-levels", &[""]),
    ("debug", &["false"]),
    ("proxy", &["off"]),
    ("proxy-failure-wait", &["5000"]),
    ("proxy-refresh-interval", &["30000"]),
    ("proxy-dial-timeout", &["1000"]),
    ("proxy-write-timeout", &["5000"]),
    ("proxy-read-timeout", &["0"]),
    ("experimental-enable-v2v3", &[""]),
    // How bbolt keeps its free pages in memory (a speed trade, either way
    // the same data): redb, detcd's backend, has one way of its own.
    (
        "experimental-backend-bbolt-freelist-type",
        &["array", "map"],
    ),
    // detcd always checkpoints leases' remaining TTLs (ARCHITECTURE.md,
    // Leases): what etcd's flag turns on, and better than its default.
    ("experimental-enable-lease-checkpoint", &["false", "true"]),
];

/// `ETCD_*` variables etcd reads that are not flags.
const NON_FLAG_VARIABLES: &[&str] = &["ETCD_UNSUPPORTED_ARCH"];

/// The flag an `ETCD_*` variable sets (etcd: upper case, `-` as `_`).
fn flag_of_variable(variable: &str) -> Option<String> {
    let rest = variable.strip_prefix("ETCD_")?;
    Some(rest.to_ascii_lowercase().replace('_', "-"))
}

/// Whether detcd implements `flag` (a clap argument of `Config`).
fn implemented(flag: &str) -> bool {
    Config::command()
        .get_arguments()
        .any(|arg| arg.get_long() == Some(flag))
}

/// Refuses a setting detcd does not implement, unless `value` asks for
/// what detcd does anyway. `Ok(false)`: etcd has no such setting either.
fn check_not_implemented(flag: &str, value: &str, origin: &str) -> Result<bool, String> {
    let Some((_, accepted)) = NOT_IMPLEMENTED.iter().find(|(name, _)| *name == flag) else {
        return Ok(false);
    };
    let value = value.trim();
    let same_duration = |ok: &str| {
        DURATION_KEYS.contains(&flag)
            && matches!((parse_go_duration(ok), parse_go_duration(value)), (Ok(a), Ok(b)) if a == b)
    };
    if (accepted.iter()).any(|ok| ok.eq_ignore_ascii_case(value) || same_duration(ok)) {
        return Ok(true);
    }
    Err(format!(
        "{origin} sets etcd's --{flag} to {value:?}, which detcd does not implement; \
         refusing to start rather than ignore it"
    ))
}

/// Checks every `ETCD_*` variable: the ones detcd implements are read by
/// the flag parser; one for a setting detcd lacks is refused (see
/// `NOT_IMPLEMENTED`). Returns warnings for variables etcd would not
/// recognize either (etcd warns about them too).
pub fn check_environment(variables: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for (variable, value) in variables {
        let Some(flag) = flag_of_variable(variable) else {
            continue;
        };
        if implemented(&flag) || NON_FLAG_VARIABLES.contains(&variable.as_str()) {
            continue;
        }
        if !check_not_implemented(&flag, value, variable)? {
            warnings.push(format!(
                "unrecognized environment variable {variable}={value}"
            ));
        }
    }
    Ok(warnings)
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The flag parser's own answer (bad flags, but also --help and
    /// --version), which prints itself with the right exit code.
    Flags(clap::Error),
    Refused(String),
}

impl From<String> for LoadError {
    fn from(message: String) -> LoadError {
        LoadError::Refused(message)
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Flags(error) => write!(f, "{error}"),
            LoadError::Refused(message) => write!(f, "{message}"),
        }
    }
}

/// Parses the command line (and the `ETCD_*` variables clap reads), then,
/// with `--config-file`, the file `read` returns. Settings detcd does not
/// implement are refused wherever they come from.
pub fn load(
    args: Vec<OsString>,
    variables: &BTreeMap<String, String>,
    read: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<(Config, Vec<String>), LoadError> {
    let args = accept_unimplemented_flags(args)?;
    let matches = Config::command()
        .try_get_matches_from(&args)
        .map_err(LoadError::Flags)?;
    let warnings = check_environment(variables)?;
    let config = Config::from_arg_matches(&matches).map_err(LoadError::Flags)?;
    let Some(path) = config.config_file.clone() else {
        return Ok((config, warnings));
    };
    let command = Config::command();
    let mixed: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id())
        .filter(|id| id.as_str() != "config_file")
        .filter(|id| {
            matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| format!("--{}", id.as_str().replace('_', "-")))
        .collect();
    if !mixed.is_empty() {
        return Err(LoadError::Refused(format!(
            "--config-file is given together with {}: etcd ignores every other flag and \
             ETCD_* variable when given a config file; put all settings in the file",
            mixed.join(", ")
        )));
    }
    let text = read(&path).map_err(|error| format!("--config-file {}: {error}", path.display()))?;
    let file_args = config_file_args(&text)
        .map_err(|error| format!("--config-file {}: {error}", path.display()))?;
    let config = Config::try_parse_from(
        std::iter::once("detcd".to_string())
            .chain(file_args)
            .chain(["--config-file".to_string(), path.display().to_string()]),
    )
    .map_err(|error| format!("--config-file {}: {}", path.display(), error.render()))?;
    Ok((config, warnings))
}

/// Takes the flags for settings detcd does not implement out of `args`:
/// accepted when their value asks for what detcd does (or is etcd's
/// default), refused otherwise, as their `ETCD_*` variables are. The rest
/// is clap's to parse.
fn accept_unimplemented_flags(args: Vec<OsString>) -> Result<Vec<OsString>, LoadError> {
    let mut kept = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str().and_then(|text| text.strip_prefix("--")) else {
            kept.push(arg);
            continue;
        };
        let (flag, inline) = match text.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (text.to_string(), None),
        };
        if !NOT_IMPLEMENTED.iter().any(|(name, _)| *name == flag) {
            kept.push(arg);
            continue;
        }
        // `--flag value`, or a bare boolean `--flag` (etcd: true).
        let value = match inline {
            Some(value) => value,
            None => match args.peek().and_then(|next| next.to_str()) {
                Some(next) if !next.starts_with("--") => {
                    let value = next.to_string();
                    args.next();
                    value
                }
                _ => "true".to_string(),
            },
        };
        check_not_implemented(&flag, &value, &format!("--{flag}"))?;
    }
    Ok(kept)
}

/// The keys of a config file's `client-transport-security` and
/// `peer-transport-security` (etcd 3.4's `securityConfig`).
const TRANSPORT_SECURITY_KEYS: &[&str] = &[
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
];

/// etcd's `time.Duration` settings: a YAML file gives them as integers,
/// in nanoseconds.
const DURATION_KEYS: &[&str] = &[
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "backend-batch-interval",
    "experimental-watch-progress-notify-interval",
    "experimental-corrupt-check-time",
    "experimental-warning-apply-duration",
];

/// The flags a YAML config file with etcd's keys stands for.
fn config_file_args(text: &str) -> Result<Vec<String>, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    let documents = YamlLoader::load_from_str(text).map_err(|error| error.to_string())?;
    let root = match documents.as_slice() {
        [] => return Ok(Vec::new()),
        [root] => root,
        _ => return Err("expected one YAML document".into()),
    };
    let Yaml::Hash(entries) = root else {
        return Err("expected a mapping of etcd's setting names to values".into());
    };
    let mut args = Vec::new();
    for (key, value) in entries {
        let Yaml::String(key) = key else {
            return Err(format!("a key is not a string: {key:?}"));
        };
        let origin = format!("key {key:?}");
        if let Yaml::Hash(inner) = value {
            // client-transport-security / peer-transport-security: TLS.
            for (inner_key, inner_value) in inner {
                let Yaml::String(inner_key) = inner_key else {
                    return Err(format!("{origin}: a key is not a string"));
                };
                // etcd 3.4's securityConfig has these five keys only.
                if !TRANSPORT_SECURITY_KEYS.contains(&inner_key.as_str()) {
                    return Err(format!("{origin}: unknown key {inner_key:?}"));
                }
                let flag = match key.as_str() {
                    "peer-transport-security" => format!("peer-{inner_key}"),
                    _ => inner_key.clone(),
                };
                if implemented(&flag) {
                    if !matches!(inner_value, Yaml::Null) {
                        let value = scalar(inner_value)
                            .ok_or_else(|| format!("{origin}: {inner_key} is not a value"))?;
                        args.push(format!("--{flag}={value}"));
                    }
                    continue;
                }
                let value = scalar(inner_value)
                    .ok_or_else(|| format!("{origin}: {inner_key} is not a value"))?;
                if !check_not_implemented(&flag, &value, &format!("{origin}.{inner_key}"))? {
                    return Err(format!("{origin}: unknown key {inner_key:?}"));
                }
            }
            continue;
        }
        if key == "config-file" {
            return Err("a config file cannot name another config file".into());
        }
        let known = implemented(key) || NOT_IMPLEMENTED.iter().any(|(name, _)| name == key);
        if !known {
            return Err(format!("unknown key {key:?}: etcd 3.4 has no such setting"));
        }
        if matches!(value, Yaml::Null) {
            continue; // etcd: the default
        }
        let value_yaml = value;
        let mut value = scalar(value).ok_or_else(|| format!("{origin}: not a value"))?;
        if let (Yaml::Integer(_), true) = (value_yaml, DURATION_KEYS.contains(&key.as_str())) {
            value.push_str("ns"); // Go's time.Duration in JSON: nanoseconds
        }
        if implemented(key) {
            args.push(format!("--{key}={value}"));
        } else if !check_not_implemented(key, &value, &origin)? {
            return Err(format!("unknown key {key:?}: etcd 3.4 has no such setting"));
        }
    }
    Ok(args)
}

/// A YAML value as the flag's text; a list becomes etcd's comma list.
fn scalar(value: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    Some(match value {
        Yaml::String(text) | Yaml::Real(text) => text.clone(),
        Yaml::Integer(number) => number.to_string(),
        Yaml::Boolean(flag) => flag.to_string(),
        Yaml::Null => String::new(),
        Yaml::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn listen_urls_may_name_unix_sockets() {
        assert_eq!(
            parse_listen_address("unix://etcd.sock:1"),
            Ok(ListenAddress::Unix("etcd.sock:1".into()))
        );
        assert_eq!(
            parse_listen_address(" unix:///run/etcd.sock"),
            Ok(ListenAddress::Unix("/run/etcd.sock".into()))
        );
        assert!(parse_listen_address("unix://").is_err());
        assert_eq!(
            parse_listen_address("http://127.0.0.1:2379"),
            Ok(ListenAddress::Tcp(([127, 0, 0, 1], 2379).into()))
        );
        assert!(parse_listen_address("ftp://127.0.0.1:1")
            .unwrap_err()
            .contains("must be http, https, unix, or unixs"));
        assert!(is_https("unixs://x:1") && !is_https("unix://x:1"));
        assert!(is_plain("unix://x:1") && !is_plain("unixs://x:1"));
    }

    #[test]
    fn variables_for_settings_detcd_lacks_are_refused() {
        for (variable, value) in [
            ("ETCD_ENABLE_PPROF", "true"),
            ("ETCD_DISCOVERY", "https://discovery.etcd.io/x"),
        ] {
            let error = check_environment(&variables(&[(variable, value)])).unwrap_err();
            assert!(error.contains(variable), "{error}");
        }
    }

    #[test]
    fn variables_asking_for_what_detcd_does_are_accepted() {
        let accepted = variables(&[
            ("ETCD_ENABLE_V2", "false"),
            ("ETCD_AUTO_TLS", "false"),
            ("ETCD_CERT_FILE", ""),
            ("ETCD_LOGGER", "zap"),
            ("ETCD_NAME", "m1"),
            ("ETCD_UNSUPPORTED_ARCH", "arm"),
            ("ETCDCTL_API", "3"),
        ]);
        assert_eq!(check_environment(&accepted), Ok(vec![]));
        let unknown = variables(&[("ETCD_NO_SUCH_THING", "1")]);
        assert_eq!(
            check_environment(&unknown),
            Ok(vec![
                "unrecognized environment variable ETCD_NO_SUCH_THING=1".into()
            ])
        );
    }

    #[test]
    fn flags_parse_as_etcds() {
        assert_eq!(
            parse_auto_compaction("periodic", "0"),
            Ok(AutoCompaction::Off)
        );
        assert_eq!(
            parse_auto_compaction("periodic", "1"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        assert_eq!(
            parse_auto_compaction("periodic", "5m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(300)))
        );
        assert_eq!(
            parse_auto_compaction("periodic", "1h30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_auto_compaction("revision", "1000"),
            Ok(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            parse_auto_compaction("revision", "0"),
            Ok(AutoCompaction::Off)
        );
        assert!(parse_auto_compaction("revision", "5m").is_err());
        assert!(parse_auto_compaction("periodic", "soon").is_err());
        assert!(parse_auto_compaction("daily", "1").is_err());
    }

    #[test]
    fn a_flag_given_twice_takes_its_last_value_as_etcds_do() {
        let args = [
            "detcd",
            "--log-level=warn",
            "--name",
            "a",
            "--log-level",
            "debug",
        ];
        let (config, _) = load(
            args.iter().map(OsString::from).collect(),
            &BTreeMap::new(),
            |_| Err("no file".into()),
        )
        .expect("parses");
        assert_eq!(config.log_level, "debug");
        assert_eq!(config.name, "a");
    }

    #[test]
    fn retention_limits_take_any_count_as_etcd_does() {
        let load_args = |args: &[&str], environment: &[(&str, &str)]| {
            load(
                args.iter().map(OsString::from).collect(),
                &variables(environment),
                |_| Err("no file".into()),
            )
        };
        let (config, _) = load_args(
            &["detcd", "--max-wals=10", "--max-snapshots=0"],
            &[("ETCD_MAX_WALS", "3")],
        )
        .expect("parses");
        assert_eq!((config.max_wals, config.max_snapshots), (10, 0));
        assert!(
            load_args(&["detcd", "--max-snapshots=1"], &[]).is_err(),
            "detcd keeps two snapshot files"
        );
        assert!(load_args(&["detcd", "--max-wals=-1"], &[]).is_err());
    }

    #[test]
    fn every_flag_detcd_implements_is_not_in_the_refused_table() {
        for (flag, _) in NOT_IMPLEMENTED {
            assert!(
                !implemented(flag),
                "--{flag} is implemented: remove it from NOT_IMPLEMENTED"
            );
        }
    }

    #[test]
    fn a_config_file_with_etcds_keys_sets_the_flags() {
        let yaml = "name: m1\ndata-dir: /var/lib/m1\nsnapshot-count: 5000\n\
                    initial-cluster: m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380\n\
                    log-outputs: [stderr]\nenable-v2: false\n\
                    client-transport-security:\n  cert-file:\n  auto-tls: false\n";
        let args = config_file_args(yaml).unwrap();
        assert_eq!(
            args,
            [
                "--name=m1",
                "--data-dir=/var/lib/m1",
                "--snapshot-count=5000",
                "--initial-cluster=m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380",
                "--log-outputs=stderr",
                "--auto-tls=false",
            ]
        );
        let refused = config_file_args("peer-transport-security:\n  cert-allowed-cn: m1\n");
        assert!(refused.unwrap_err().contains("cert-allowed-cn"));
        let unknown = config_file_args("nmae: typo\n");
        assert!(unknown.unwrap_err().contains("nmae"));
    }

    #[test]
    fn flags_for_settings_detcd_lacks_follow_the_same_rule() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let accepted = accept_unimplemented_flags(args(&[
            "detcd",
            "--logger=zap",
            "--enable-v2",
            "false",
            "--name",
            "m1",
            "--grpc-keepalive-min-time=5s",
            "--experimental-enable-lease-checkpoint=true",
        ]))
        .unwrap();
        assert_eq!(accepted, args(&["detcd", "--logger=zap", "--name", "m1"]));
        let refused = accept_unimplemented_flags(args(&["detcd", "--discovery", "https://d"]));
        assert!(refused.unwrap_err().to_string().contains("--discovery"));
        let bare = accept_unimplemented_flags(args(&["detcd", "--enable-pprof"]));
        assert!(bare.is_err(), "a bare boolean flag means true");
    }

    #[test]
    fn etcds_sample_config_defaults_load_and_typos_do_not() {
        let yaml = "max-snapshots: 5\nmax-wals: 5\ndiscovery-fallback: 'proxy'\n\
                    proxy-failure-wait: 5000\nenable-grpc-gateway: true\nwal-dir:\n";
        assert_eq!(
            config_file_args(yaml),
            Ok(vec!["--max-snapshots=5".into(), "--max-wals=5".into()])
        );
        assert!(config_file_args("nmae:\n").unwrap_err().contains("nmae"));
    }

    #[test]
    fn durations_come_as_go_text_in_flags_and_nanoseconds_in_a_config_file() {
        let yaml = "experimental-watch-progress-notify-interval: 5000000000\n\
                    experimental-warning-apply-duration: 100000000\n\
                    experimental-corrupt-check-time: 0\n\
                    grpc-keepalive-timeout: 20000000000\n\
                    grpc-keepalive-interval: 7200000000000\n\
                    backend-batch-interval: 0\n";
        assert_eq!(
            config_file_args(yaml),
            Ok(vec![
                "--experimental-watch-progress-notify-interval=5000000000ns".into(),
                "--experimental-warning-apply-duration=100000000ns".into(),
                "--experimental-corrupt-check-time=0ns".into(),
                "--grpc-keepalive-timeout=20000000000ns".into(),
                "--grpc-keepalive-interval=7200000000000ns".into(),
                "--backend-batch-interval=0ns".into(),
            ])
        );
        let load_args = |args: &[&str]| {
            load(
                args.iter().map(OsString::from).collect(),
                &variables(&[]),
                |_| Err("no file".into()),
            )
        };
        let interval = |flag: &str| {
            load_args(&["detcd", flag])
                .unwrap()
                .0
                .watch_progress_interval()
        };
        assert_eq!(
            interval("--experimental-watch-progress-notify-interval=5000000000ns"),
            Duration::from_secs(5)
        );
        assert_eq!(
            interval("--experimental-watch-progress-notify-interval=1m30s"),
            Duration::from_secs(90)
        );
        assert_eq!(
            interval("--experimental-watch-progress-notify-interval=1ms"),
            WATCH_PROGRESS_INTERVAL_MIN
        );
        assert_eq!(
            interval("--experimental-watch-progress-notify-interval=0s"),
            WATCH_PROGRESS_INTERVAL_DEFAULT
        );
        let refused = load_args(&["detcd", "--experimental-watch-progress-notify-interval=5"]);
        assert!(refused.is_err(), "Go wants a unit");
        let batching = |args: &[&str]| load_args(args).unwrap().0.backend_batch();
        assert_eq!(
            batching(&["detcd"]),
            (
                crate::backend::writer::COMMIT_INTERVAL,
                crate::backend::writer::COMMIT_LIMIT
            ),
            "0 means etcd's defaults"
        );
        assert_eq!(
            batching(&[
                "detcd",
                "--backend-batch-interval=10ms",
                "--backend-batch-limit=100"
            ]),
            (Duration::from_millis(10), 100)
        );
        let slow_apply = |args: &[&str]| {
            load_args(args)
                .unwrap()
                .0
                .experimental_warning_apply_duration
        };
        assert_eq!(slow_apply(&["detcd"]), crate::raft_node::SLOW_APPLY);
        let compaction = |args: &[&str]| load_args(args).unwrap().0.compaction_batch_limit();
        assert_eq!(
            compaction(&["detcd"]),
            crate::backend::writer::COMPACTION_BATCH_LIMIT
        );
        assert_eq!(
            compaction(&["detcd", "--experimental-compaction-batch-limit=7"]),
            7
        );
        assert!(load_args(&["detcd", "--experimental-compaction-batch-limit=-1"]).is_err());
        assert_eq!(
            slow_apply(&["detcd", "--experimental-warning-apply-duration=1s"]),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_config_file_is_not_mixed_with_flags() {
        let args: Vec<OsString> = ["detcd", "--config-file", "/c.yaml", "--name", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let error = load(args, &BTreeMap::new(), |_| Ok(String::new())).unwrap_err();
        assert!(error.to_string().contains("--name"), "{error}");
    }
}
