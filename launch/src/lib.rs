//! detcd-launch: the one place the project starts server processes, detcd
//! or the reference etcd 3.4.23, with etcd's clustering flags. The
//! integration tests (`tests/it/support.rs`, `tests/it/cluster_support.rs`),
//! `detcd-bench` and `detcd-jepsen` all lay out members, pick ports, spawn,
//! signal and stop servers through it; what each does with a running
//! server (etcdctl, the gRPC client, a nemesis) stays with it.
//!
//! - [`Member`]: a member's name, URLs, data dir and log file;
//!   [`initial_cluster`] joins members into `--initial-cluster`.
//! - [`Launch`]: how to run one: the binary, `--initial-cluster` and its
//!   state and token, extra flags and environment, a network namespace,
//!   dying with the parent. [`Launch::spawn`] starts it, stdout and stderr
//!   appended to the member's log.
//! - [`Server`]: the running process: pause, resume, SIGTERM with a bound
//!   ([`terminate_within`]), kill -9 (also on drop).
//! - [`free_port`], [`bind_conflict`]: ports, and telling a start that
//!   lost its port to another process (the caller lays out again).
//! - [`eventually`], [`log_tail`], [`which`]: waiting, logs, binaries.
//!
//! Ports: members are started on ports picked before the start, not on
//! port 0. A member's URLs must be known before it runs: they go into
//! `--initial-cluster` and `--advertise-client-urls` (and so into
//! `member list`), and a member restarts on the same URLs, as an
//! operator's does. Ports are picked below Linux's ephemeral range (where
//! port 0's picks and outgoing connections live), in a block per process,
//! so the window in which another process can take one is small; when it
//! happens anyway, the member exits with "address already in use",
//! [`bind_conflict`] says so, and the caller lays out again on fresh ports.
//! Both servers log the address each listener bound ("serving client
//! requests on …", "listening for peers on …"), port 0 included.
//!
//! A tool, not the core: it uses processes, files and wall time, so its
//! lib.rs opts out of the clippy bans (tidy lists it).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often `eventually` and `Server::terminate` look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One member: its name and where it listens, keeps data and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// `--listen-client-urls`.
    pub client_url: String,
    /// `--advertise-client-urls`: the client URL unless changed.
    pub advertise_client_url: String,
    /// `--listen-peer-urls` and `--initial-advertise-peer-urls`.
    pub peer_url: String,
    pub data_dir: PathBuf,
    /// stdout and stderr, appended to across restarts.
    pub log_path: PathBuf,
}

impl Member {
    /// Member `name` on `host` with the given ports, its data dir
    /// `<dir>/<name>.etcd` and log `<dir>/<name>.log`.
    pub fn at(name: &str, scheme: &str, host: &str, ports: (u16, u16), dir: &Path) -> Member {
        let client_url = format!("{scheme}://{host}:{}", ports.0);
        Member {
            name: name.to_string(),
            advertise_client_url: client_url.clone(),
            client_url,
            peer_url: format!("{scheme}://{host}:{}", ports.1),
            data_dir: dir.join(format!("{name}.etcd")),
            log_path: dir.join(format!("{name}.log")),
        }
    }

    /// Member `name` on loopback, on two fresh ports (see [`free_port`]).
    pub fn on_loopback(name: &str, scheme: &str, dir: &Path) -> Member {
        Member::at(name, scheme, "127.0.0.1", (free_port(), free_port()), dir)
    }

    /// The same member, scheme and host on two fresh loopback ports
    /// (advertising the new client URL): after a [`bind_conflict`].
    pub fn with_fresh_ports(&self) -> Member {
        let (scheme, rest) = self
            .client_url
            .split_once("://")
            .unwrap_or(("http", &self.client_url));
        let host = rest.rsplit_once(':').map_or(rest, |(host, _)| host);
        let fresh = Member::at(
            &self.name,
            scheme,
            host,
            (free_port(), free_port()),
            Path::new(""),
        );
        Member {
            name: self.name.clone(),
            advertise_client_url: fresh.client_url.clone(),
            client_url: fresh.client_url,
            peer_url: fresh.peer_url,
            data_dir: self.data_dir.clone(),
            log_path: self.log_path.clone(),
        }
    }

    /// The last `lines` lines of the member's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// The member's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// `--initial-cluster` for `members`: `m1=http://…,m2=http://…`.
pub fn initial_cluster(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| format!("{}={}", member.name, member.peer_url))
        .collect::<Vec<_>>()
        .join(",")
}

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrapping a new cluster (ignored on a member with data).
    #[default]
    New,
    /// Joining one that exists, after `member add`.
    Existing,
}

/// How to run a member: everything but the member itself.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    pub binary: PathBuf,
    /// `--initial-cluster`; empty: the member alone.
    pub initial_cluster: String,
    pub state: ClusterState,
    /// `--initial-cluster-token`, when given.
    pub token: Option<String>,
    /// Flags after the clustering ones (timing, TLS, auth, logging).
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Run inside this network namespace (`ip netns exec`, root), which
    /// execs the server, so the child's pid is the server's own.
    pub namespace: Option<String>,
    /// The server takes its settings from `env` or a `--config-file` in
    /// `args` alone: no clustering flags from the member (whose log is
    /// still where the output goes).
    pub configured_elsewhere: bool,
    /// The server's working directory (where etcd's default data dir,
    /// `${name}.etcd`, lands); the launcher's own when unset.
    pub current_dir: Option<PathBuf>,
    /// SIGKILL the server if the launching thread dies (Linux's parent
    /// death signal follows the thread that spawned the child), however it
    /// dies: spawn from a thread that lives as long as the server should.
    pub die_with_parent: bool,
}

impl Launch {
    /// Runs `binary` with nothing else set yet.
    pub fn new(binary: impl Into<PathBuf>) -> Launch {
        Launch {
            binary: binary.into(),
            ..Launch::default()
        }
    }

    /// The command line for `member`: etcd's clustering flags, then
    /// `args`.
    pub fn command_line(&self, member: &Member) -> Vec<OsString> {
        if self.configured_elsewhere {
            return self.args.clone();
        }
        let initial_cluster = if self.initial_cluster.is_empty() {
            initial_cluster(std::slice::from_ref(member))
        } else {
            self.initial_cluster.clone()
        };
        let mut line: Vec<OsString> = vec!["--name".into(), member.name.clone().into()];
        line.push("--data-dir".into());
        line.push(member.data_dir.clone().into());
        for (flag, value) in [
            ("--listen-client-urls", &member.client_url),
            ("--advertise-client-urls", &member.advertise_client_url),
            ("--listen-peer-urls", &member.peer_url),
            ("--initial-advertise-peer-urls", &member.peer_url),
            ("--initial-cluster", &initial_cluster),
        ] {
            line.push(flag.into());
            line.push(value.into());
        }
        line.push("--initial-cluster-state".into());
        line.push(match self.state {
            ClusterState::New => "new".into(),
            ClusterState::Existing => "existing".into(),
        });
        if let Some(token) = &self.token {
            line.push("--initial-cluster-token".into());
            line.push(token.into());
        }
        line.extend(self.args.iter().cloned());
        line
    }

    /// Starts `member`, its output appended to its log.
    pub fn spawn(&self, member: &Member) -> io::Result<Server> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log_path)?;
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        // etcd and detcd read every flag from an `ETCD_` variable too: one
        // left in the caller's shell (an operator's auto-compaction, say)
        // would change the servers under test without a word. Only the
        // launch's own environment reaches them.
        for name in etcd_variables(std::env::vars_os().map(|(name, _)| name)) {
            command.env_remove(name);
        }
        command
            .args(self.command_line(member))
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if self.die_with_parent {
            // SAFETY: prctl in the child between fork and exec is
            // async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("starting {}: {error}", self.binary.display()),
            )
        })?;
        Ok(Server {
            child,
            paused: false,
            exited: None,
        })
    }
}

/// A running server process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    paused: bool,
    /// How it ended, once seen: the child is reaped then, so its pid may
    /// belong to another process and is never signalled again.
    exited: Option<ExitStatus>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// kill -9, no shutdown path runs; reaps it. `Some` if it had already
    /// exited on its own, with how.
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        if self.paused {
            self.signal(libc::SIGCONT);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// SIGSTOP: frozen until `resume`.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// SIGTERM, as an operator stops a server, then waits at most `bound`
    /// for the exit. Still running then: killed, and an error.
    pub fn terminate(mut self, bound: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        if self.paused {
            self.resume();
        }
        let status = terminate_within(&mut self.child, bound);
        if let Ok(status) = status {
            self.exited = Some(status);
        }
        status
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet
        // (`exited` just found it running), so it cannot have been reused.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// SIGTERM to `child`, then waits at most `bound` for its exit; still
/// running then: killed, and an error. For servers started with
/// [`Launch::spawn`] ([`Server::terminate`]) and for the flag tests' own
/// command lines.
pub fn terminate_within(child: &mut Child, bound: Duration) -> Result<ExitStatus, String> {
    // SAFETY: kill(2) on our own child's pid; it is not reaped until
    // `wait`, so the pid cannot have been reused.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running {bound:?} after SIGTERM"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether the log at `path` says a listener could not bind because
/// another process holds its port (etcd's and detcd's wording both): the
/// caller should lay out again on fresh ports.
pub fn bind_conflict(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| {
        log.contains("address already in use") || log.contains("Address already in use")
    })
}

/// A loopback port no one listens on, for a server to bind next.
///
/// Not port 0's pick: that comes from the ephemeral range, where another
/// process's bind(0) or any outgoing connection may take it between our
/// check and the server's bind (CI saw etcd fail with "address already in
/// use" that way). Ports come from below the ephemeral range instead, in a
/// block of `PORT_BLOCK` per process (nextest runs each test in a process
/// of its own), moving to the next block when one is used up.
///
/// A process's blocks are spread by a multiplier, so consecutive pids
/// (nextest's) do not take each other's next block. Panics when no port
/// in the whole range can be bound (loopback down?).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST_PORT: u32 = 10_000;
    const PORT_BLOCK: u32 = 16;
    const BLOCKS: u32 = 1_400; // up to port 32_400, below Linux's 32_768
    /// Coprime with `BLOCKS`: pid p's blocks start at p * SPREAD.
    const SPREAD: u32 = 331;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % BLOCKS) * SPREAD;
    for _ in 0..BLOCKS * PORT_BLOCK {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let block = (start + n / PORT_BLOCK) % BLOCKS;
        let port = FIRST_PORT + block * PORT_BLOCK + n % PORT_BLOCK;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port on 127.0.0.1 between {FIRST_PORT} and 32400: is loopback up?");
}

/// Polls `condition` until it holds or `timeout` passes; whether it held.
/// For waiting on a server, never for timing one.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// The names among `names` that etcd would read as flags (`ETCD_` and an
/// upper-case flag name; `ETCDCTL_` is etcdctl's).
fn etcd_variables(names: impl Iterator<Item = OsString>) -> Vec<OsString> {
    names
        .filter(|name| {
            name.to_str()
                .is_some_and(|name| name.starts_with("ETCD_") && name.len() > "ETCD_".len())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callers_etcd_flag_variables_are_kept_from_the_servers() {
        let names = [
            "ETCD_AUTO_COMPACTION_RETENTION",
            "ETCD_NAME",
            "ETCDCTL_API",
            "ETCD_",
            "PATH",
            "DETCD_IT_FLAVOR",
        ];
        let removed = etcd_variables(names.into_iter().map(OsString::from));
        assert_eq!(removed, ["ETCD_AUTO_COMPACTION_RETENTION", "ETCD_NAME"]);
    }

    #[test]
    fn the_command_line_carries_etcds_clustering_flags() {
        let dir = Path::new("/data");
        let members = [
            Member::at("m1", "http", "127.0.0.1", (11, 12), dir),
            Member::at("m2", "http", "127.0.0.1", (21, 22), dir),
        ];
        let launch = Launch {
            initial_cluster: initial_cluster(&members),
            state: ClusterState::Existing,
            token: Some("t".into()),
            args: vec!["--log-level".into(), "warn".into()],
            ..Launch::new("detcd")
        };
        let line: Vec<String> = launch
            .command_line(&members[1])
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(
            line.join(" "),
            "--name m2 --data-dir /data/m2.etcd \
             --listen-client-urls http://127.0.0.1:21 --advertise-client-urls http://127.0.0.1:21 \
             --listen-peer-urls http://127.0.0.1:22 --initial-advertise-peer-urls http://127.0.0.1:22 \
             --initial-cluster m1=http://127.0.0.1:12,m2=http://127.0.0.1:22 \
             --initial-cluster-state existing --initial-cluster-token t --log-level warn"
        );
        // Alone: the member's own --initial-cluster.
        let alone = Launch::new("etcd").command_line(&members[0]);
        assert!(alone.contains(&"m1=http://127.0.0.1:12".into()));
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_distinct() {
        let ports: Vec<u16> = (0..40).map(|_| free_port()).collect();
        assert!(ports.iter().all(|&port| (10_000..32_768).contains(&port)));
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    /// A script that prints its arguments, then sleeps (or exits with
    /// `code`), stands in for a server.
    fn fake_server(dir: &Path, name: &str, then: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho started \"$@\"\n{then}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_server_is_paused_terminated_and_killed() {
        let dir = std::env::temp_dir().join(format!("detcd-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let member = Member::at("m1", "http", "127.0.0.1", (1, 2), &dir);
        let sleeper = fake_server(&dir, "sleeper", "exec sleep 30");
        let mut server = Launch::new(sleeper).spawn(&member).unwrap();
        assert!(eventually(Duration::from_secs(10), || member
            .log()
            .contains("started --name m1 --data-dir")));
        server.pause();
        assert!(server.exited().is_none());
        let status = server.terminate(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), None, "ended by SIGTERM: {status}");

        let failing = fake_server(&dir, "failing", "exit 3");
        let mut server = Launch::new(failing).spawn(&member).unwrap();
        assert!(eventually(Duration::from_secs(10), || server
            .exited()
            .is_some()));
        assert_eq!(server.kill().and_then(|status| status.code()), Some(3));

        assert!(!bind_conflict(&member.log_path));
        std::fs::write(
            &member.log_path,
            "listen tcp 127.0.0.1:1: bind: address already in use",
        )
        .unwrap();
        assert!(bind_conflict(&member.log_path));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
