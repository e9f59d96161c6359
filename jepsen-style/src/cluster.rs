//! A cluster of real server processes: detcd or etcd 3.4.23, started with
//! etcd's clustering flags (detcd takes the same ones), each member on its
//! own address inside its own network namespace, or on loopback ports.
//!
//! Members are killed with SIGKILL and restarted on the same data
//! directory, or paused with SIGSTOP and resumed with SIGCONT, exactly as
//! an operator's machine would see it.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::net::Net;

/// etcd's defaults are 100 ms and 1000 ms; halved, an election after a
/// kill takes well under a second on both servers.
const TIMING_ARGS: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];
/// Each member's data directory is a tmpfs of this size when the run can
/// fill disks: small, so filling it is quick.
pub const DISK_BYTES: u64 = 256 << 20;
/// The file that fills a member's disk.
const FILLER: &str = "jepsen-filler";
/// libfaketime for clock faults (Debian's faketime package), the
/// multi-threaded build, by architecture.
const FAKETIME_LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];
/// How often libfaketime rereads a member's clock file, in seconds.
const FAKETIME_REREAD_SECS: &str = "1";
/// The ports every member uses inside its own namespace.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Detcd,
    Etcd,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Detcd => "detcd",
            Target::Etcd => "etcd",
        }
    }
}

pub struct Member {
    pub name: String,
    /// The client URL, reachable from the tool's own namespace.
    pub client_url: String,
    pub peer_url: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// The namespace it runs in, when the run uses them.
    namespace: Option<String>,
    child: Option<Child>,
    paused: bool,
    /// Rejoined the cluster after being removed: starts as an existing
    /// cluster's new member.
    rejoined: bool,
    /// The clock offset libfaketime applies to it ("+5", "-3", "+0").
    clock_file: PathBuf,
}

pub struct Cluster {
    pub members: Vec<Member>,
    binary: PathBuf,
    initial_cluster: String,
    token: String,
    /// The data directories are tmpfs mounts (unmounted on drop).
    mounted: bool,
    /// libfaketime, preloaded into every member for clock faults.
    faketime: Option<PathBuf>,
    /// Members found exited on their own when the nemesis came to kill
    /// them (name, status): crashes, reported by `exited`.
    found_exited: Vec<(String, String)>,
}

/// libfaketime if it is installed; installed with apt when it is not and
/// this process may (root).
pub fn faketime_library() -> Option<PathBuf> {
    let found = || {
        FAKETIME_LIBRARIES
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
    };
    if let Some(path) = found() {
        return Some(path);
    }
    println!("clock faults need libfaketime: apt-get install faketime");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "faketime"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if installed {
        found()
    } else {
        None
    }
}

/// A free loopback port: bound, read back and released. Another process
/// may take it before the member binds it (rare; the run then fails to
/// start and says so).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Lays out `nodes` members under `dir` (data and logs), on the
    /// namespaces of `net` when given, with a small tmpfs for each
    /// member's data when `small_disks` (root), and `faketime` preloaded
    /// when given. Nothing runs until [`Cluster::start_all`].
    pub fn new(
        binary: PathBuf,
        nodes: usize,
        dir: &Path,
        net: Option<&Net>,
        token: &str,
        small_disks: bool,
        faketime: Option<PathBuf>,
    ) -> Result<Cluster, String> {
        let mut members = Vec::new();
        for index in 0..nodes {
            let name = format!("m{}", index + 1);
            let (host, client_port, peer_port, namespace) = match net {
                Some(net) => (
                    net.member_address(index).to_string(),
                    CLIENT_PORT,
                    PEER_PORT,
                    Some(net.namespace(index)),
                ),
                None => (
                    Ipv4Addr::LOCALHOST.to_string(),
                    free_port().map_err(|error| format!("a free port: {error}"))?,
                    free_port().map_err(|error| format!("a free port: {error}"))?,
                    None,
                ),
            };
            members.push(Member {
                client_url: format!("http://{host}:{client_port}"),
                peer_url: format!("http://{host}:{peer_port}"),
                data_dir: dir.join(format!("{name}.data")),
                log_path: dir.join(format!("{name}.log")),
                clock_file: dir.join(format!("{name}.clock")),
                name,
                namespace,
                child: None,
                paused: false,
                rejoined: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members,
            binary,
            initial_cluster,
            token: token.to_string(),
            mounted: false,
            faketime,
            found_exited: Vec::new(),
        };
        for index in 0..cluster.members.len() {
            cluster.set_clock(index, 0)?;
        }
        if small_disks {
            cluster.mounted = true;
            for member in &cluster.members {
                std::fs::create_dir_all(&member.data_dir)
                    .map_err(|error| format!("{}: {error}", member.data_dir.display()))?;
                let size = format!("size={DISK_BYTES}");
                let dir = member.data_dir.to_string_lossy().into_owned();
                crate::net::run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &dir])?;
            }
        }
        Ok(cluster)
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| member.client_url.clone())
            .collect()
    }

    /// Every member's client URL but member `index`'s.
    pub fn client_urls_except(&self, index: usize) -> Vec<String> {
        let mut urls = self.client_urls();
        urls.remove(index);
        urls
    }

    pub fn start_all(&mut self) -> std::io::Result<()> {
        for index in 0..self.members.len() {
            self.start(index)?;
        }
        Ok(())
    }

    /// Starts member `index` on its data directory (new or left by a
    /// kill), appending to its log.
    pub fn start(&mut self, index: usize) -> std::io::Result<()> {
        let member = &self.members[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log_path)?;
        let mut command = match &member.namespace {
            // `ip netns exec` enters the namespace and execs the server,
            // so the child's pid is the server's own.
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &member.client_url])
            .args(["--advertise-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-state",
                if member.rejoined { "existing" } else { "new" },
            ])
            .args(["--initial-cluster-token", &self.token])
            .args(TIMING_ARGS)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(library) = &self.faketime {
            command
                .env("LD_PRELOAD", library)
                .env("FAKETIME_TIMESTAMP_FILE", &member.clock_file)
                .env("FAKETIME_CACHE_DURATION", FAKETIME_REREAD_SECS)
                // A clock step moves the wall clock (as NTP does), never the
                // monotonic one timers run on (libfaketime would make
                // CLOCK_MONOTONIC the shifted wall clock). Both spellings:
                // libfaketime renamed it.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        // If this tool dies outright, its members die with it.
        // SAFETY: prctl in the child between fork and exec, async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn()?;
        let member = &mut self.members[index];
        member.child = Some(child);
        member.paused = false;
        Ok(())
    }

    /// SIGKILL, and reaps the process. A member that had already exited
    /// on its own is remembered as a crash (see `exited`).
    pub fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(mut child) = member.child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                self.found_exited
                    .push((member.name.clone(), status.to_string()));
            } else {
                if member.paused {
                    signal(&child, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        member.paused = false;
    }

    pub fn pause(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(child) = &member.child {
            signal(child, libc::SIGSTOP);
            member.paused = true;
        }
    }

    pub fn resume(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(child) = &member.child {
            signal(child, libc::SIGCONT);
            member.paused = false;
        }
    }

    /// Members whose process exited on its own (not killed by the
    /// nemesis), with the status: a crash.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut exited = std::mem::take(&mut self.found_exited);
        for member in &mut self.members {
            if let Some(child) = &mut member.child {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push((member.name.clone(), status.to_string()));
                    member.child = None;
                }
            }
        }
        exited
    }

    /// Sets member `index`'s clock `offset_secs` from the real one (it
    /// takes effect within `FAKETIME_REREAD_SECS`; only where libfaketime
    /// is preloaded and the server reads time through libc).
    pub fn set_clock(&self, index: usize, offset_secs: i32) -> Result<(), String> {
        let path = &self.members[index].clock_file;
        std::fs::write(path, format!("{offset_secs:+}\n"))
            .map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Empties member `index`'s data directory (stopped first), and marks
    /// it to start as a new member of the existing cluster.
    pub fn wipe(&mut self, index: usize) -> std::io::Result<()> {
        self.kill(index);
        let member = &mut self.members[index];
        for entry in std::fs::read_dir(&member.data_dir)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        member.rejoined = true;
        Ok(())
    }

    /// Fills member `index`'s tmpfs until no space is left.
    pub fn fill_disk(&self, index: usize) -> Result<(), String> {
        use std::io::Write;
        if !self.mounted {
            return Err("the data directories are not small disks".into());
        }
        let path = self.members[index].data_dir.join(FILLER);
        let mut file = File::create(&path).map_err(|error| format!("{error}"))?;
        let chunk = vec![0u8; 1 << 20];
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
                Err(error) => return Err(format!("filling {}: {error}", path.display())),
            }
        }
    }

    /// Frees member `index`'s disk; if the member exited while it was full
    /// (etcd does: it cannot write its WAL), restarts it and says how it
    /// had ended.
    pub fn free_disk(&mut self, index: usize) -> Result<Option<String>, String> {
        let path = self.members[index].data_dir.join(FILLER);
        std::fs::remove_file(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let exited = match &mut self.members[index].child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                _ => None,
            },
            None => None,
        };
        if exited.is_some() {
            self.members[index].child = None;
            self.start(index)
                .map_err(|error| format!("restarting: {error}"))?;
        }
        Ok(exited)
    }

    /// Resumes every paused member and starts every stopped one.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for index in 0..self.members.len() {
            if self.members[index].paused {
                self.resume(index);
            }
            if self.members[index].child.is_none() {
                self.start(index)?;
            }
        }
        Ok(())
    }

    /// The last `lines` lines of member `index`'s log.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[index].log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
            if self.mounted {
                let dir = self.members[index].data_dir.to_string_lossy().into_owned();
                let _ = crate::net::run("umount", &[&dir]);
            }
        }
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) on a pid this process spawned and has not reaped.
    unsafe {
        libc::kill(pid, signal);
    }
}
