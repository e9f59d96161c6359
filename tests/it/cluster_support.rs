//! A cluster of real server processes on loopback, started with etcd's
//! clustering flags, for the tests in `cluster.rs`. The harness runs this
//! build's detcd, or the reference etcd 3.4.23 when `DETCD_IT_FLAVOR=etcd`,
//! so every cluster test can be proved against etcd first.
//!
//! Members are addressed by their index in `Cluster::members` and named
//! `m1`, `m2`, … in that order. Everything is observed through etcdctl 3.4,
//! exactly as an operator would: `endpoint status -w json` for the leader,
//! `member list -w json` for membership, `get -w json` for the keyspace.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::{etcdctl, eventually, wait_serving, Flavor, NotServing, PROBE_TIMEOUT_ARG};

/// How long members may take to start serving, elect a leader or converge.
/// Generous: the machine is shared and slow; this bounds a hang, it
/// measures nothing.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// etcd's defaults are 100 ms and 1000 ms. Halving them makes the election
/// after a kill -9 take well under a second, and both servers accept them.
const TIMING_ARGS: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

/// Lines of each member's log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// Starts of a new cluster, counting those where a member lost a port to
/// another process before it bound it (laid out again on fresh ports).
const START_ATTEMPTS: usize = 3;

/// `DETCD_IT_FLAVOR=etcd` runs the cluster tests against the reference etcd;
/// unset (or `detcd`) runs them against this build.
pub fn flavor_from_env() -> Flavor {
    match std::env::var("DETCD_IT_FLAVOR").as_deref() {
        Err(_) | Ok("") | Ok("detcd") => Flavor::Detcd,
        Ok("etcd") => Flavor::Etcd,
        Ok(other) => panic!("DETCD_IT_FLAVOR={other:?}: expected `detcd` or `etcd`"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Through ReadIndex: the member confirms with a quorum first.
    Linearizable,
    /// From the member's own applied state, possibly stale.
    Serializable,
}

impl Consistency {
    pub fn arg(self) -> &'static str {
        match self {
            Consistency::Linearizable => "--consistency=l",
            Consistency::Serializable => "--consistency=s",
        }
    }
}

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<detcd_launch::Server>,
    /// For a member added at runtime: the `--initial-cluster` that
    /// `etcdctl member add` printed, used with `--initial-cluster-state existing`.
    joined_with: Option<String>,
}

impl From<detcd_launch::Member> for Member {
    /// A member laid out by the launcher, not started yet.
    fn from(laid_out: detcd_launch::Member) -> Member {
        Member {
            name: laid_out.name,
            client_url: laid_out.client_url,
            peer_url: laid_out.peer_url,
            data_dir: laid_out.data_dir,
            log_path: laid_out.log_path,
            child: None,
            joined_with: None,
        }
    }
}

/// One member's answer to `etcdctl endpoint status -w json`. etcdctl
/// omits zero fields (`leader` when there is none, `isLearner` when false,
/// `errors` when empty); they read as 0, false and empty here.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub header_raft_term: u64,
    pub version: String,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
    pub errors: Vec<String>,
}

/// One entry of `etcdctl member list -w json`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberInfo {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

pub struct MemberList {
    pub cluster_id: u64,
    pub members: Vec<MemberInfo>,
}

/// What a member serves for the whole keyspace: `get "" --from-key -w json`
/// without the per-member header fields. Two members that applied the same
/// log show equal keyspaces: same revision, and the same keys with the same
/// values, create/mod revisions and versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyspace {
    pub revision: i64,
    pub kvs: Value,
}

impl Keyspace {
    pub fn len(&self) -> usize {
        self.kvs.as_array().map_or(0, Vec::len)
    }
}

pub struct Cluster {
    pub flavor: Flavor,
    pub token: String,
    pub members: Vec<Member>,
    initial_cluster: String,
    extra_args: Vec<String>,
    _temp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` members of a new cluster, all at once (a lone member
    /// of a multi-member cluster cannot answer until a quorum is up), and
    /// waits until each serves a linearizable read. `name` makes the
    /// `--initial-cluster-token` unique to the test.
    pub fn start(name: &str, size: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_with_scheme(name, size, extra_args, "http")
    }

    /// `start`, with client and peer URLs of `scheme` (https: the TLS
    /// flags are in `extra_args`, etcdctl's in its ETCDCTL_* variables).
    pub fn start_with_scheme(
        name: &str,
        size: usize,
        extra_args: &[&str],
        scheme: &str,
    ) -> Cluster {
        crate::support::init_tracing();
        let flavor = flavor_from_env();
        let mut attempt = 1;
        loop {
            let temp = tempfile::tempdir().unwrap();
            let members: Vec<Member> = (0..size)
                .map(|index| {
                    Member::from(detcd_launch::Member::on_loopback(
                        &format!("m{}", index + 1),
                        scheme,
                        temp.path(),
                    ))
                })
                .collect();
            let initial_cluster = members
                .iter()
                .map(|member| format!("{}={}", member.name, member.peer_url))
                .collect::<Vec<_>>()
                .join(",");
            let mut cluster = Cluster {
                flavor,
                token: format!("{name}-{}", std::process::id()),
                members,
                initial_cluster,
                extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
                _temp: temp,
            };
            phase!(?flavor, size, "starting cluster {}", cluster.token);
            let all = cluster.all();
            match cluster.try_restart(&all) {
                Ok(()) => return cluster,
                Err(why)
                    if attempt < START_ATTEMPTS
                        && cluster
                            .members
                            .iter()
                            .any(|member| detcd_launch::bind_conflict(&member.log_path)) =>
                {
                    phase!("a port was taken before a member bound it ({why}); new ports");
                    drop(cluster);
                    attempt += 1;
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// `--initial-cluster` as the members were started with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// Adds a member the way an operator does: `etcdctl member add` through
    /// member `via`, then starts it with the `ETCD_INITIAL_CLUSTER` etcdctl
    /// printed and `--initial-cluster-state existing`. Waits until it serves
    /// a serializable read (a learner serves nothing else); returns its index.
    pub fn add_member(&mut self, via: usize, learner: bool) -> usize {
        let index = self.members.len();
        let name = format!("m{}", index + 1);
        let laid_out = detcd_launch::Member::on_loopback(&name, "http", self._temp.path());
        let peer_url = laid_out.peer_url.clone();
        let mut args = vec![
            "member".to_string(),
            "add".into(),
            name.clone(),
            format!("--peer-urls={peer_url}"),
        ];
        if learner {
            args.push("--learner".into());
        }
        let printed =
            self.ctl_retrying_unhealthy(via, &args.iter().map(String::as_str).collect::<Vec<_>>());
        let initial_cluster = printed
            .lines()
            .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
            .map(|rest| rest.trim_end_matches('"').to_string())
            .unwrap_or_else(|| panic!("member add printed no ETCD_INITIAL_CLUSTER:\n{printed}"));
        self.members.push(Member {
            joined_with: Some(initial_cluster),
            ..Member::from(laid_out)
        });
        self.spawn(index);
        let serving = eventually(CONVERGE_TIMEOUT, || {
            self.ctl(
                index,
                &[
                    "get",
                    "readiness-probe",
                    "--consistency=s",
                    PROBE_TIMEOUT_ARG,
                ],
            )
            .status
            .success()
        });
        assert!(
            serving,
            "the added member did not serve within {CONVERGE_TIMEOUT:?}"
        );
        index
    }

    /// Runs a membership change, retrying while etcd's strict
    /// reconfiguration check says "unhealthy cluster" (every voter must
    /// have been connected for 5 s first).
    pub fn ctl_retrying_unhealthy(&self, via: usize, args: &[&str]) -> String {
        let mut printed = None;
        let succeeded = eventually(CONVERGE_TIMEOUT, || {
            let output = self.ctl(via, args);
            if output.status.success() {
                printed = Some(String::from_utf8_lossy(&output.stdout).into_owned());
                return true;
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("etcdserver: unhealthy cluster"),
                "etcdctl {args:?} failed: {stderr}"
            );
            false
        });
        assert!(
            succeeded,
            "the cluster stayed unhealthy for {CONVERGE_TIMEOUT:?}"
        );
        printed.expect("set when etcdctl succeeded")
    }

    pub fn all(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    pub fn running(&self) -> Vec<usize> {
        self.all()
            .into_iter()
            .filter(|&index| self.members[index].child.is_some())
            .collect()
    }

    /// (Re)starts the given stopped members with the flags they were first
    /// started with, all at once, and waits until each serves a
    /// linearizable read. `--initial-cluster-state new` stays on the
    /// command line: with existing data it is ignored, as in etcd.
    pub fn restart(&mut self, indexes: &[usize]) {
        if let Err(why) = self.try_restart(indexes) {
            panic!("{why}");
        }
    }

    /// `restart`, with `flags` added to the members' command lines for
    /// this start only.
    pub fn restart_with_flags(&mut self, indexes: &[usize], flags: &[&str]) {
        let kept = self.extra_args.clone();
        (self.extra_args).extend(flags.iter().map(|flag| flag.to_string()));
        let restarted = self.try_restart(indexes);
        self.extra_args = kept;
        if let Err(why) = restarted {
            panic!("{why}");
        }
    }

    fn try_restart(&mut self, indexes: &[usize]) -> Result<(), String> {
        for &index in indexes {
            self.spawn(index);
        }
        for &index in indexes {
            self.wait_serving(index)?;
        }
        Ok(())
    }

    /// Starts a stopped member again without waiting for it to serve.
    pub fn respawn(&mut self, index: usize) {
        self.spawn(index);
    }

    /// Waits up to `timeout` for a member's process to exit by itself;
    /// its exit status, if it did.
    pub fn wait_exit(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let member = &mut self.members[index];
        let server = member.child.as_mut()?;
        let mut status = None;
        eventually(timeout, || {
            status = server.exited();
            status.is_some()
        });
        if status.is_some() {
            member.child = None;
        }
        status
    }

    fn spawn(&mut self, index: usize) {
        let member = &self.members[index];
        assert!(member.child.is_none(), "{} is already running", member.name);
        let (initial_cluster, state) = match &member.joined_with {
            Some(initial_cluster) => (
                initial_cluster.clone(),
                detcd_launch::ClusterState::Existing,
            ),
            None => (
                self.initial_cluster.clone(),
                detcd_launch::ClusterState::New,
            ),
        };
        let launch = detcd_launch::Launch {
            initial_cluster,
            state,
            token: Some(self.token.clone()),
            args: TIMING_ARGS
                .iter()
                .map(Into::into)
                .chain(self.extra_args.iter().map(Into::into))
                .collect(),
            ..detcd_launch::Launch::new(self.flavor.binary())
        };
        let launched = detcd_launch::Member {
            name: member.name.clone(),
            client_url: member.client_url.clone(),
            advertise_client_url: member.client_url.clone(),
            peer_url: member.peer_url.clone(),
            data_dir: member.data_dir.clone(),
            log_path: member.log_path.clone(),
        };
        let child = launch.spawn(&launched).unwrap_or_else(|error| {
            panic!(
                "cannot start {:?} for {}: {error}",
                self.flavor, member.name
            )
        });
        self.members[index].child = Some(child);
    }

    fn wait_serving(&mut self, index: usize) -> Result<(), String> {
        let member = &mut self.members[index];
        let server = member.child.as_mut().unwrap();
        match wait_serving(&member.client_url, server, CONVERGE_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(NotServing::Exited(status)) => {
                member.child = None;
                Err(format!(
                    "{} exited with {status} before serving",
                    member.name
                ))
            }
            Err(NotServing::TimedOut) => Err(format!(
                "{} did not serve a linearizable read within {CONVERGE_TIMEOUT:?}",
                member.name
            )),
        }
    }

    /// SIGTERM, as an operator stops a member; panics if it is still
    /// running after `STOP_TIMEOUT`. Returns the exit code.
    pub fn terminate(&mut self, index: usize) -> Option<i32> {
        let child = self.members[index]
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.members[index].name));
        phase!("SIGTERM {}", self.members[index].name);
        child
            .terminate(crate::support::STOP_TIMEOUT)
            .unwrap_or_else(|error| {
                panic!("{}: {error}\n{}", self.members[index].name, self.log(index))
            })
            .code()
    }

    /// kill -9: no shutdown path runs.
    pub fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        let child = member
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", member.name));
        phase!("kill -9 {}", member.name);
        child.kill();
    }

    pub fn endpoints(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|&index| self.members[index].client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn index_of_endpoint(&self, endpoint: &str) -> usize {
        self.members
            .iter()
            .position(|member| member.client_url == endpoint)
            .unwrap_or_else(|| panic!("no member serves {endpoint}"))
    }

    /// etcdctl against one member.
    pub fn ctl(&self, index: usize, args: &[&str]) -> Output {
        etcdctl(&self.members[index].client_url, args, None)
    }

    /// etcdctl against one member; insists it succeeded.
    pub fn ctl_ok(&self, index: usize, args: &[&str]) -> String {
        let output = self.ctl(index, args);
        assert!(
            output.status.success(),
            "etcdctl {args:?} via {} failed: {}",
            self.members[index].name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A put through one member that must be acknowledged.
    pub fn put(&self, index: usize, key: &str, value: &str) {
        let answer = self.ctl_ok(index, &["put", key, value]);
        assert_eq!(
            answer.trim(),
            "OK",
            "put {key} via {}",
            self.members[index].name
        );
    }

    /// One key's value as `index` serves it, or None if it has no such key.
    pub fn get(&self, index: usize, key: &str, consistency: Consistency) -> Option<String> {
        let answer = self.ctl_ok(index, &["get", key, consistency.arg()]);
        let mut lines = answer.lines();
        let found = lines.next()?;
        assert_eq!(found, key, "etcdctl prints the key, then its value");
        Some(
            lines
                .next()
                .expect("a value line follows the key")
                .to_string(),
        )
    }

    /// The whole keyspace as `index` serves it.
    pub fn keyspace(&self, index: usize, consistency: Consistency) -> Keyspace {
        parse_keyspace(&self.ctl_ok(
            index,
            &["get", "", "--from-key", "-w", "json", consistency.arg()],
        ))
    }

    /// Polls serializable reads until every member in `indexes` serves the
    /// same keyspace as `indexes[0]`, and `accept` holds for it; returns it.
    pub fn wait_converged(
        &self,
        indexes: &[usize],
        accept: impl Fn(&Keyspace) -> bool,
    ) -> Keyspace {
        let mut views: Vec<Option<Keyspace>> = Vec::new();
        let converged = eventually(CONVERGE_TIMEOUT, || {
            views = indexes
                .iter()
                .map(|&index| self.try_keyspace(index))
                .collect();
            match views.first() {
                Some(Some(first)) => {
                    accept(first) && views.iter().all(|view| view.as_ref() == Some(first))
                }
                _ => false,
            }
        });
        assert!(
            converged,
            "members {:?} did not converge within {CONVERGE_TIMEOUT:?}; revisions: {:?}",
            self.names(indexes),
            views
                .iter()
                .map(|view| view.as_ref().map(|view| view.revision))
                .collect::<Vec<_>>()
        );
        views
            .swap_remove(0)
            .expect("the first member served the keyspace")
    }

    fn try_keyspace(&self, index: usize) -> Option<Keyspace> {
        let output = self.ctl(
            index,
            &[
                "get",
                "",
                "--from-key",
                "-w",
                "json",
                "--consistency=s",
                PROBE_TIMEOUT_ARG,
            ],
        );
        output
            .status
            .success()
            .then(|| parse_keyspace(&String::from_utf8_lossy(&output.stdout)))
    }

    /// `endpoint status -w json` of the given members, in one etcdctl run,
    /// or etcdctl's complaint if any of them did not answer.
    pub fn try_statuses(&self, indexes: &[usize]) -> Result<Vec<EndpointStatus>, String> {
        let output = etcdctl(
            &self.endpoints(indexes),
            &["endpoint", "status", "-w", "json", PROBE_TIMEOUT_ARG],
            None,
        );
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let json: Value = serde_json::from_slice(&output.stdout)
            .map_err(|error| format!("endpoint status printed no JSON: {error}"))?;
        let statuses: Vec<EndpointStatus> = json
            .as_array()
            .ok_or("endpoint status printed no array")?
            .iter()
            .map(parse_endpoint_status)
            .collect();
        if statuses.len() != indexes.len() {
            return Err(format!(
                "{} statuses for {} endpoints",
                statuses.len(),
                indexes.len()
            ));
        }
        Ok(statuses)
    }

    /// Like `try_statuses`, but every member must answer.
    pub fn statuses(&self, indexes: &[usize]) -> Vec<EndpointStatus> {
        self.try_statuses(indexes).unwrap_or_else(|error| {
            panic!(
                "endpoint status of {:?} failed: {error}",
                self.names(indexes)
            )
        })
    }

    /// Polls `endpoint status` until every member in `among` answers and
    /// names the same leader, which is one of `among`; returns its index.
    pub fn wait_for_leader(&self, among: &[usize]) -> usize {
        let mut statuses: Result<Vec<EndpointStatus>, String> = Err(String::new());
        let mut leader = None;
        let agreed = eventually(CONVERGE_TIMEOUT, || {
            statuses = self.try_statuses(among);
            leader = statuses
                .as_ref()
                .ok()
                .and_then(|statuses| self.agreed_leader(statuses));
            leader.is_some()
        });
        assert!(
            agreed,
            "members {:?} agreed on no leader within {CONVERGE_TIMEOUT:?}; last endpoint status: {statuses:?}",
            self.names(among)
        );
        let leader = leader.expect("set when the members agreed");
        phase!(
            "{} leads {:?}",
            self.members[leader].name,
            self.names(among)
        );
        leader
    }

    fn agreed_leader(&self, statuses: &[EndpointStatus]) -> Option<usize> {
        let leader_id = statuses.first()?.leader;
        if leader_id == 0
            || statuses
                .iter()
                .any(|status| status.leader != leader_id || !status.errors.is_empty())
        {
            return None;
        }
        let leader = statuses
            .iter()
            .find(|status| status.member_id == leader_id)?;
        Some(self.index_of_endpoint(&leader.endpoint))
    }

    /// A member's id as it reports it in its status header.
    pub fn member_id(&self, index: usize) -> u64 {
        self.statuses(&[index])[0].member_id
    }

    /// `member list -w json` through one member.
    pub fn member_list(&self, index: usize) -> MemberList {
        let json: Value =
            serde_json::from_str(&self.ctl_ok(index, &["member", "list", "-w", "json"]))
                .expect("member list -w json prints JSON");
        let members = json["members"]
            .as_array()
            .expect("a members array")
            .iter()
            .map(parse_member_info)
            .collect();
        MemberList {
            cluster_id: json["header"]["cluster_id"]
                .as_u64()
                .expect("header.cluster_id"),
            members,
        }
    }

    /// `move-leader` through the given member(s); the output is the caller's
    /// to judge.
    pub fn move_leader(&self, via: &[usize], target_id: u64) -> Output {
        etcdctl(
            &self.endpoints(via),
            &["move-leader", &format!("{target_id:x}")],
            None,
        )
    }

    pub fn names(&self, indexes: &[usize]) -> Vec<&str> {
        indexes
            .iter()
            .map(|&index| self.members[index].name.as_str())
            .collect()
    }

    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.members[index].log_path).unwrap_or_default()
    }

    fn log_tails(&self) -> String {
        let mut tails = String::new();
        for member in &self.members {
            tails.push_str(&format!(
                "----- {} ({:?}) last {LOG_TAIL_LINES} log lines -----\n{}\n",
                member.name,
                self.flavor,
                detcd_launch::log_tail(&member.log_path, LOG_TAIL_LINES)
            ));
        }
        tails
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(child) = member.child.take() {
                child.kill();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}

pub fn parse_keyspace(json: &str) -> Keyspace {
    let json: Value = serde_json::from_str(json).expect("get -w json prints JSON");
    Keyspace {
        revision: json["header"]["revision"]
            .as_i64()
            .expect("header.revision"),
        // etcdctl omits `kvs` when there are none.
        kvs: json.get("kvs").cloned().unwrap_or(Value::Array(Vec::new())),
    }
}

fn parse_endpoint_status(json: &Value) -> EndpointStatus {
    let status = &json["Status"];
    let header = &status["header"];
    let unsigned = |value: &Value| value.as_u64().unwrap_or(0);
    let signed = |value: &Value| value.as_i64().unwrap_or(0);
    EndpointStatus {
        endpoint: json["Endpoint"].as_str().expect("Endpoint").to_string(),
        cluster_id: unsigned(&header["cluster_id"]),
        member_id: unsigned(&header["member_id"]),
        revision: signed(&header["revision"]),
        header_raft_term: unsigned(&header["raft_term"]),
        version: status["version"].as_str().unwrap_or_default().to_string(),
        db_size: signed(&status["dbSize"]),
        db_size_in_use: signed(&status["dbSizeInUse"]),
        leader: unsigned(&status["leader"]),
        raft_index: unsigned(&status["raftIndex"]),
        raft_term: unsigned(&status["raftTerm"]),
        raft_applied_index: unsigned(&status["raftAppliedIndex"]),
        is_learner: status["isLearner"].as_bool().unwrap_or(false),
        errors: status["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|error| error.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn parse_member_info(json: &Value) -> MemberInfo {
    let urls = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .map(|urls| {
                urls.iter()
                    .map(|url| url.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    MemberInfo {
        name: json["name"].as_str().unwrap_or_default().to_string(),
        id: json["ID"].as_u64().expect("member ID"),
        peer_urls: urls(&json["peerURLs"]),
        client_urls: urls(&json["clientURLs"]),
        is_learner: json["isLearner"].as_bool().unwrap_or(false),
    }
}
