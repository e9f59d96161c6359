//! Real processes for the integration tests: detcd (this build), the
//! reference etcd 3.4.23 and etcdctl 3.4 (Debian `etcd-server` and
//! `etcd-client`), each on its own loopback ports and temp data dir.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

/// How long a freshly started server may take to answer. Generous: the CI
/// machine is shared and slow; this bounds a hang, it measures nothing.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A hang detector, not a speed check: etcd stops in well under a second
/// and detcd within about one; a member that ignores SIGTERM never does.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts of a single server, counting those that lost a port to another
/// process before the server bound it.
const START_ATTEMPTS: usize = 3;

/// Lets the tests' phase logs (`phase!`) show: nextest prints a
/// failing test's output, so a failure says which phase it was in.
pub fn init_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .with_env_filter("info")
            .try_init();
    });
}

pub use detcd_launch::{eventually, free_port};

/// etcdctl's deadline inside a poll: short, so a member that cannot answer
/// yet gives up quickly and the poll tries again.
pub const PROBE_TIMEOUT_ARG: &str = "--command-timeout=2s";

/// Why a started server did not come to serve.
pub enum NotServing {
    Exited(std::process::ExitStatus),
    TimedOut,
}

/// Waits until the server at `client_url` answers a linearizable read, or
/// its process exits, or `timeout` passes.
pub fn wait_serving(
    client_url: &str,
    server: &mut detcd_launch::Server,
    timeout: Duration,
) -> Result<(), NotServing> {
    let mut exited = None;
    let serving = eventually(timeout, || {
        let probe = etcdctl(
            client_url,
            &["get", "readiness-probe", PROBE_TIMEOUT_ARG],
            None,
        );
        if probe.status.success() {
            return true;
        }
        exited = server.exited();
        exited.is_some()
    });
    match exited {
        Some(status) => Err(NotServing::Exited(status)),
        None if serving => Ok(()),
        None => Err(NotServing::TimedOut),
    }
}

/// Which server binary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Detcd,
    Etcd,
}

impl Flavor {
    pub fn binary(self) -> PathBuf {
        match self {
            Flavor::Detcd => PathBuf::from(env!("CARGO_BIN_EXE_detcd")),
            Flavor::Etcd => detcd_launch::which("etcd")
                .expect("the reference etcd 3.4.23 is missing: apt-get install etcd-server"),
        }
    }
}

pub struct ServerProcess {
    pub flavor: Flavor,
    pub client_url: String,
    /// `--name`; a restart may change it, as an operator may.
    pub name: String,
    /// `--advertise-client-urls`, the client URL by default.
    pub advertised_client_url: String,
    pub data_dir: PathBuf,
    pub peer_url: String,
    extra_args: Vec<String>,
    child: Option<detcd_launch::Server>,
    log_path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts a single-member server with a fresh data dir and waits until
    /// it answers a linearizable read.
    pub fn start(flavor: Flavor, extra_args: &[&str]) -> ServerProcess {
        Self::start_prepared(flavor, extra_args, |_| {})
    }

    /// `start`, after `prepare` has filled the (still absent) data dir,
    /// for example with a restored backup. A start that lost a port to
    /// another process is tried again on fresh ports, on a data dir
    /// emptied and prepared again (it may name the ports).
    pub fn start_prepared(
        flavor: Flavor,
        extra_args: &[&str],
        prepare: impl Fn(&ServerProcess),
    ) -> ServerProcess {
        init_tracing();
        let temp = tempfile::tempdir().unwrap();
        let member = detcd_launch::Member::on_loopback("it", "http", temp.path());
        let mut server = ServerProcess {
            flavor,
            name: member.name,
            advertised_client_url: member.client_url.clone(),
            client_url: member.client_url,
            peer_url: member.peer_url,
            data_dir: temp.path().join("member.etcd"),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            child: None,
            log_path: member.log_path,
            _temp: Some(temp),
        };
        prepare(&server);
        for _ in 1..START_ATTEMPTS {
            match server.try_restart() {
                Ok(()) => return server,
                Err(_) if detcd_launch::bind_conflict(&server.log_path) => {
                    phase!("a port was taken before the server bound it; new ports");
                    server.kill();
                    let _ = std::fs::remove_file(&server.log_path);
                    let _ = std::fs::remove_dir_all(&server.data_dir);
                    let fresh = server.member().with_fresh_ports();
                    server.advertised_client_url = fresh.client_url.clone();
                    server.client_url = fresh.client_url;
                    server.peer_url = fresh.peer_url;
                    prepare(&server);
                }
                Err(why) => panic!("{why}"),
            }
        }
        server.restart();
        server
    }

    /// The launcher's view of this server.
    fn member(&self) -> detcd_launch::Member {
        detcd_launch::Member {
            name: self.name.clone(),
            client_url: self.client_url.clone(),
            advertise_client_url: self.advertised_client_url.clone(),
            peer_url: self.peer_url.clone(),
            data_dir: self.data_dir.clone(),
            log_path: self.log_path.clone(),
        }
    }

    /// Starts (again) on the same data dir and ports.
    pub fn restart(&mut self) {
        if let Err(why) = self.try_restart() {
            panic!("{why}");
        }
    }

    fn try_restart(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let launch = detcd_launch::Launch {
            args: self.extra_args.iter().map(Into::into).collect(),
            ..detcd_launch::Launch::new(self.flavor.binary())
        };
        self.child = Some(
            launch
                .spawn(&self.member())
                .map_err(|error| format!("{:?} does not start: {error}", self.flavor))?,
        );
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let server = self.child.as_mut().unwrap();
        match wait_serving(&self.client_url, server, START_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(NotServing::Exited(status)) => {
                self.child = None;
                Err(format!(
                    "{:?} exited with {status} before serving:\n{}",
                    self.flavor,
                    self.log()
                ))
            }
            Err(NotServing::TimedOut) => Err(format!(
                "{:?} did not answer within {START_TIMEOUT:?}:\n{}",
                self.flavor,
                self.log()
            )),
        }
    }

    /// kill -9: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code. Panics if
    /// the server is still running after `STOP_TIMEOUT`.
    pub fn terminate(&mut self) -> Option<i32> {
        let child = self.child.take()?;
        child
            .terminate(STOP_TIMEOUT)
            .unwrap_or_else(|error| panic!("{error}\n{}", self.log()))
            .code()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.client_url, args, None)
    }

    /// The store's current revision, as `endpoint status` reports it.
    pub fn revision(&self) -> i64 {
        let status = self.ctl_ok(&["endpoint", "status", "-w", "json"]);
        let field = status
            .split("\"revision\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next());
        field
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {status}"))
    }

    pub fn ctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        etcdctl(&self.client_url, args, Some(stdin))
    }

    /// Runs etcdctl and insists it succeeded.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let output = self.ctl(args);
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// etcdctl for a command that ends by itself (`etcdctl_until` for one
/// that does not).
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new("etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("etcdctl is missing: apt-get install etcd-client");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// etcdctl running a command that never ends by itself (watch), stopped
/// once what it printed satisfies `done` (or it exited, or after
/// `timeout`, which bounds a hang), plus `GRACE` for anything it should
/// not have printed. Waits for the events rather than for a fixed window.
pub fn etcdctl_until(
    endpoint: &str,
    args: &[&str],
    timeout: Duration,
    mut done: impl FnMut(&str) -> bool,
) -> Output {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    /// How long etcdctl keeps running after `done`: extra output shows.
    const GRACE: Duration = Duration::from_millis(300);
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is missing: apt-get install etcd-client");
    // stderr drains in its own thread, so a chatty etcdctl never blocks.
    let errors = {
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            bytes
        })
    };
    let printed = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let printed = printed.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read) = stdout.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                printed.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        })
    };
    eventually(timeout, || {
        matches!(child.try_wait(), Ok(Some(_)))
            || done(&String::from_utf8_lossy(&printed.lock().unwrap()))
    });
    sleep(GRACE);
    let _ = child.kill();
    let status = child.wait().unwrap();
    let stderr = errors.join().unwrap();
    reader.join().unwrap();
    let stdout = std::mem::take(&mut *printed.lock().unwrap());
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs the detcd binary with `args` and no server expected to stay up.
/// Peers listen on a free port unless `args` say otherwise, so parallel
/// tests never fight over etcd's default 2380.
pub fn detcd_once(args: &[&str], cwd: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_detcd"));
    if !args.iter().any(|arg| arg.starts_with("--listen-peer-urls")) {
        command.arg(format!(
            "--listen-peer-urls=http://127.0.0.1:{}",
            free_port()
        ));
    }
    command.args(args).current_dir(cwd).output().unwrap()
}

/// Runs the detcd binary as a tool (`detcd snapshot ...`), nothing added.
pub fn detcd_tool(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// `--auth-token jwt` with a fresh ES256 key pair written into `dir`, and
/// `extra` options (",ttl=10m") appended.
pub fn jwt_auth_token_flag(dir: &std::path::Path, extra: &str) -> String {
    let pair = rcgen::KeyPair::generate().unwrap();
    let private = dir.join("jwt.key");
    let public = dir.join("jwt.pub");
    std::fs::write(&private, pair.serialize_pem()).unwrap();
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256{extra}",
        public.display(),
        private.display()
    )
}
