//! Real processes for the integration tests: detcd (this build), the
//! reference etcd 3.4.23 and etcdctl 3.4 (Debian `etcd-server` and
//! `etcd-client`), each on its own loopback ports and temp data dir.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a freshly started server may take to answer. Generous: the CI
/// machine is shared and slow; this bounds a hang, it measures nothing.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A hang detector, not a speed check: etcd stops in well under a second
/// and detcd within about one; a member that ignores SIGTERM never does.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Lets the tests' phase logs (`tracing::info!`) show: nextest prints a
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
        sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM and waits for the exit, at most `bound`; a process still
/// running then is killed and reported.
pub fn terminate_within(
    child: &mut std::process::Child,
    bound: Duration,
) -> Result<std::process::ExitStatus, String> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
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
        sleep(Duration::from_millis(20));
    }
}

/// A port no one is listening on, for a server to bind next.
///
/// Not port 0's pick: that comes from the ephemeral range, where another
/// test's bind(0) or any outgoing connection may take it between our
/// check and the server's bind (CI saw etcd fail with "address already in
/// use" that way). Ports come from below the ephemeral range instead, in
/// a block of `PORT_BLOCK` per test process (nextest runs each test in a
/// process of its own), moving to the next block when one is used up.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST_PORT: u32 = 10_000;
    const PORT_BLOCK: u32 = 16;
    const BLOCKS: u32 = 1_400; // up to port 32_400, below Linux's 32_768
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let block = (std::process::id() + n / PORT_BLOCK) % BLOCKS;
        let port = FIRST_PORT + block * PORT_BLOCK + n % PORT_BLOCK;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// Which server binary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Detcd,
    Etcd,
}

impl Flavor {
    fn binary(self) -> PathBuf {
        match self {
            Flavor::Detcd => PathBuf::from(env!("CARGO_BIN_EXE_detcd")),
            Flavor::Etcd => which("etcd")
                .expect("the reference etcd 3.4.23 is missing: apt-get install etcd-server"),
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
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
    child: Option<Child>,
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
    /// for example with a restored backup.
    pub fn start_prepared(
        flavor: Flavor,
        extra_args: &[&str],
        prepare: impl FnOnce(&ServerProcess),
    ) -> ServerProcess {
        init_tracing();
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("member.etcd");
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let mut server = ServerProcess {
            flavor,
            name: "it".into(),
            advertised_client_url: client_url.clone(),
            client_url,
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            child: None,
            log_path: temp.path().join("server.log"),
            _temp: Some(temp),
        };
        prepare(&server);
        server.restart();
        server
    }

    /// Starts (again) on the same data dir and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = Command::new(self.flavor.binary());
        command
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.advertised_client_url,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
            ])
            .args(["--initial-cluster", &format!("it={}", self.peer_url)])
            .args(&self.extra_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().expect("server starts"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let probe = etcdctl(
                &self.client_url,
                &["get", "readiness-probe", "--command-timeout=2s"],
                None,
            );
            if probe.status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{:?} exited with {status} before serving:\n{}",
                    self.flavor,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not answer within {START_TIMEOUT:?}:\n{}",
                self.flavor,
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// kill -9: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code. Panics if
    /// the server is still running after `STOP_TIMEOUT`.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        terminate_within(&mut child, STOP_TIMEOUT)
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

    /// etcdctl, stopped after `seconds` (watch never ends by itself).
    pub fn ctl_for(&self, seconds: &str, args: &[&str]) -> Output {
        etcdctl_for(Some(seconds), &self.client_url, args, None)
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

pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    etcdctl_for(None, endpoint, args, stdin)
}

/// etcdctl under `timeout SECONDS` when given: for commands that never
/// end by themselves (watch).
pub fn etcdctl_for(
    seconds: Option<&str>,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut command = match seconds {
        Some(seconds) => {
            let mut command = Command::new("timeout");
            command.arg(seconds).arg("etcdctl");
            command
        }
        None => Command::new("etcdctl"),
    };
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
