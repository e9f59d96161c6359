//! A cluster of real server processes: detcd or etcd 3.4.23, started with
//! etcd's clustering flags (detcd takes the same ones), each member on its
//! own address inside its own network namespace, or on loopback ports.
//!
//! Members are killed with SIGKILL and restarted on the same data
//! directory, or paused with SIGSTOP and resumed with SIGCONT, exactly as
//! an operator's machine would see it. Processes start, stop and take
//! signals through the project's launcher (`detcd_launch`), as the tests'
//! and the benchmark's do.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Stdio;

use detcd_launch::{ClusterState, Launch, Server};

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
    /// Name, URLs (the client URL is reachable from the tool's own
    /// namespace), data directory and log.
    pub spec: detcd_launch::Member,
    /// The namespace it runs in, when the run uses them.
    namespace: Option<String>,
    server: Option<Server>,
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
            let (host, ports, namespace) = match net {
                Some(net) => (
                    net.member_address(index).to_string(),
                    (CLIENT_PORT, PEER_PORT),
                    Some(net.namespace(index)),
                ),
                None => (
                    Ipv4Addr::LOCALHOST.to_string(),
                    (detcd_launch::free_port(), detcd_launch::free_port()),
                    None,
                ),
            };
            let mut spec = detcd_launch::Member::at(&name, "http", &host, ports, dir);
            spec.data_dir = dir.join(format!("{name}.data"));
            members.push(Member {
                spec,
                clock_file: dir.join(format!("{name}.clock")),
                namespace,
                server: None,
                rejoined: false,
            });
        }
        let specs: Vec<detcd_launch::Member> =
            members.iter().map(|member| member.spec.clone()).collect();
        let initial_cluster = detcd_launch::initial_cluster(&specs);
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
                std::fs::create_dir_all(&member.spec.data_dir)
                    .map_err(|error| format!("{}: {error}", member.spec.data_dir.display()))?;
                let size = format!("size={DISK_BYTES}");
                let dir = member.spec.data_dir.to_string_lossy().into_owned();
                crate::net::run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &dir])?;
            }
        }
        Ok(cluster)
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|member| member.spec.client_url.clone())
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
        let mut env = Vec::new();
        if let Some(library) = &self.faketime {
            env.extend([
                ("LD_PRELOAD".into(), library.into()),
                (
                    "FAKETIME_TIMESTAMP_FILE".into(),
                    member.clock_file.clone().into(),
                ),
                (
                    "FAKETIME_CACHE_DURATION".into(),
                    FAKETIME_REREAD_SECS.into(),
                ),
                // A clock step moves the wall clock (as NTP does), never the
                // monotonic one timers run on (libfaketime would make
                // CLOCK_MONOTONIC the shifted wall clock). Both spellings:
                // libfaketime renamed it.
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
                ("DONT_FAKE_MONOTONIC".into(), "1".into()),
            ]);
        }
        let launch = Launch {
            initial_cluster: self.initial_cluster.clone(),
            state: if member.rejoined {
                ClusterState::Existing
            } else {
                ClusterState::New
            },
            token: Some(self.token.clone()),
            args: TIMING_ARGS.iter().map(Into::into).collect(),
            env,
            namespace: member.namespace.clone(),
            // If this tool dies outright, its members die with it.
            die_with_parent: true,
            ..Launch::new(&self.binary)
        };
        let server = launch.spawn(&member.spec)?;
        self.members[index].server = Some(server);
        Ok(())
    }

    /// SIGKILL, and reaps the process. A member that had already exited
    /// on its own is remembered as a crash (see `exited`).
    pub fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let Some(server) = member.server.take() {
            if let Some(status) = server.kill() {
                self.found_exited
                    .push((member.spec.name.clone(), status.to_string()));
            }
        }
    }

    pub fn pause(&mut self, index: usize) {
        if let Some(server) = &mut self.members[index].server {
            server.pause();
        }
    }

    pub fn resume(&mut self, index: usize) {
        if let Some(server) = &mut self.members[index].server {
            server.resume();
        }
    }

    /// Members whose process exited on its own (not killed by the
    /// nemesis), with the status: a crash.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut exited = std::mem::take(&mut self.found_exited);
        for member in &mut self.members {
            if let Some(status) = member.server.as_mut().and_then(Server::exited) {
                exited.push((member.spec.name.clone(), status.to_string()));
                member.server = None;
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
    /// it to start as a new member of the existing cluster. Called once the
    /// member is removed: a removed member stops by itself (etcd and detcd
    /// both exit with "the member has been permanently removed from the
    /// cluster"), so an exit before the kill is no crash.
    pub fn wipe(&mut self, index: usize) -> std::io::Result<()> {
        let member = &mut self.members[index];
        if let Some(server) = member.server.take() {
            let _removed_and_stopped = server.kill();
        }
        for entry in std::fs::read_dir(&member.spec.data_dir)? {
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
        let path = self.members[index].spec.data_dir.join(FILLER);
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
        let path = self.members[index].spec.data_dir.join(FILLER);
        std::fs::remove_file(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let exited = self.members[index]
            .server
            .as_mut()
            .and_then(Server::exited)
            .map(|status| status.to_string());
        if exited.is_some() {
            self.members[index].server = None;
            self.start(index)
                .map_err(|error| format!("restarting: {error}"))?;
        }
        Ok(exited)
    }

    /// Resumes every paused member and starts every stopped one.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for index in 0..self.members.len() {
            match &mut self.members[index].server {
                Some(server) => server.resume(),
                None => self.start(index)?,
            }
        }
        Ok(())
    }

    /// The last `lines` lines of member `index`'s log.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        self.members[index].spec.log_tail(lines)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
            if self.mounted {
                let dir = self.members[index]
                    .spec
                    .data_dir
                    .to_string_lossy()
                    .into_owned();
                let _ = crate::net::run("umount", &[&dir]);
            }
        }
    }
}
