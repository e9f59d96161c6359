//! Scripted scenarios on the simulator's cluster (madsim build only): the
//! production server on simulated nodes, through one crash at a
//! seed-drawn moment, leader crashes, a partitioned leader, a learner that
//! joins and a removed leader. Every acknowledged write must be on every
//! member afterwards. The swarm runs (`harness.rs`) explore at random;
//! these pin the paths that must always work.
#![cfg(madsim)]
#![allow(clippy::disallowed_methods)] // The tests read virtual time for their deadlines.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use detcd::client::Client;
use detcd::proto::etcdserverpb::{
    cluster_client::ClusterClient, maintenance_client::MaintenanceClient, MemberAddRequest,
    MemberPromoteRequest, MemberRemoveRequest, PutRequest, RangeRequest, StatusRequest,
};
use detcd_sim::harness::cluster::{client_url, SimCluster};
use detcd_sim::harness::trace::Trace;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle, Runtime};

/// Lets the phase logs show in a failing scenario's output: this file's
/// events only (the servers' own would drown them), without timestamps.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .without_time()
        .with_env_filter("scenarios=info")
        .try_init();
}

/// The one way these scenarios wait: `attempt` again every
/// `POLL_INTERVAL` until it succeeds, failing with `what` and the latest
/// reason once `CONVERGE_TIMEOUT` (virtual time) has passed.
async fn eventually<T>(what: &str, mut attempt: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(why) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what} within {CONVERGE_TIMEOUT:?}: {why}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A client call's deadline (virtual time): longer than an election.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the cluster may take to agree on a leader or converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Attempts per write (each over every endpoint) before it counts as not acknowledged.
const WRITE_ATTEMPTS: usize = 3;

/// The cluster and a tester node the partitions never cut.
struct Scenario {
    cluster: SimCluster,
    tester: NodeHandle,
    started: tokio::time::Instant,
}

impl Scenario {
    fn start(size: usize, snapshot_count: u64) -> Scenario {
        let cluster = SimCluster::start_with(size, snapshot_count);
        let tester = Handle::current()
            .create_node()
            .name("tester")
            .ip(IpAddr::from([10, 0, 2, 1]))
            .build();
        Scenario {
            cluster,
            tester,
            started: tokio::time::Instant::now(),
        }
    }

    fn all(&self) -> Vec<usize> {
        (0..self.cluster.size()).collect()
    }

    /// Runs `task` on the tester node.
    async fn on_tester<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        self.tester.spawn(task).await.expect("tester task")
    }

    /// A Cluster-service call through member `via`.
    async fn cluster_call<T: Send + 'static, F>(
        &self,
        via: usize,
        call: impl FnOnce(ClusterClient<tonic::transport::Channel>) -> F + Send + 'static,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>> + Send,
    {
        let url = client_url(via);
        self.on_tester(async move {
            let attempt = async move {
                let client = ClusterClient::connect(url)
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                call(client).await
            };
            tokio::time::timeout(CALL_TIMEOUT, attempt)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("timed out")))
        })
        .await
    }

    /// (member id, leader id) as member `index` reports them.
    async fn status(&self, index: usize) -> Option<(u64, u64)> {
        let url = client_url(index);
        self.on_tester(async move {
            let call = async move {
                let status = MaintenanceClient::connect(url)
                    .await
                    .ok()?
                    .status(StatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                Some((status.header?.member_id, status.leader))
            };
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .ok()
                .flatten()
        })
        .await
    }

    /// Waits until every member in `among` names the same leader, one of
    /// them; returns its index.
    async fn wait_for_leader(&self, among: &[usize]) -> usize {
        eventually(
            &format!("members {among:?} agree on a leader"),
            async || {
                let mut statuses = Vec::new();
                for &index in among {
                    statuses.push(self.status(index).await);
                }
                if let Some(Some((_, leader))) = statuses.first() {
                    let agreed = *leader != 0
                        && statuses
                            .iter()
                            .all(|status| status.is_some_and(|(_, l)| l == *leader));
                    let leader_index = among
                        .iter()
                        .zip(&statuses)
                        .find(|(_, status)| status.is_some_and(|(id, _)| id == *leader));
                    if let (true, Some((&index, _))) = (agreed, leader_index) {
                        return Ok(index);
                    }
                }
                Err(format!("(member id, leader) seen: {statuses:?}"))
            },
        )
        .await
    }

    /// Writes `count` keys from `first` on through the members in `via`
    /// (the client fails over between them), noting the acknowledged ones.
    async fn write_keys(
        &self,
        via: &[usize],
        first: usize,
        count: usize,
        acknowledged: &mut BTreeMap<String, String>,
    ) {
        let endpoints: Vec<String> = via.iter().map(|&index| client_url(index)).collect();
        let written = self
            .on_tester(async move {
                let mut client = Client::new(endpoints).with_request_timeout(CALL_TIMEOUT);
                let mut written = BTreeMap::new();
                for n in first..first + count {
                    let (key, value) = (format!("key{n:04}"), format!("value{n}"));
                    for _ in 0..WRITE_ATTEMPTS {
                        let request = PutRequest {
                            key: key.clone().into_bytes(),
                            value: value.clone().into_bytes(),
                            ..Default::default()
                        };
                        if client.put(request).await.is_ok() {
                            written.insert(key.clone(), value.clone());
                            break;
                        }
                    }
                }
                written
            })
            .await;
        acknowledged.extend(written);
    }

    /// Every key under "key" as one member sees it, without a read index.
    async fn local_keys(&self, index: usize) -> Option<BTreeMap<String, String>> {
        let url = client_url(index);
        self.on_tester(async move {
            let request = RangeRequest {
                key: b"key".to_vec(),
                range_end: b"kez".to_vec(),
                serializable: true,
                ..Default::default()
            };
            let mut client = Client::new(vec![url]).with_request_timeout(CALL_TIMEOUT);
            let response = client.range(request).await.ok()?;
            Some(
                response
                    .kvs
                    .into_iter()
                    .map(|kv| {
                        (
                            String::from_utf8(kv.key).unwrap(),
                            String::from_utf8(kv.value).unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .await
    }

    /// Waits until every member in `among` holds every acknowledged write,
    /// and all hold the same keys.
    async fn wait_converged(&self, among: &[usize], acknowledged: &BTreeMap<String, String>) {
        eventually(&format!("members {among:?} converge"), async || {
            let mut views = Vec::new();
            for &index in among {
                views.push(self.local_keys(index).await);
            }
            let complete = views.iter().all(|view| {
                view.as_ref()
                    .is_some_and(|keys| acknowledged.iter().all(|(k, v)| keys.get(k) == Some(v)))
            });
            if complete && views.windows(2).all(|pair| pair[0] == pair[1]) {
                Ok(())
            } else {
                let sizes: Vec<_> = views
                    .iter()
                    .map(|view| view.as_ref().map(BTreeMap::len))
                    .collect();
                Err(format!(
                    "keys held: {sizes:?} of {} acknowledged",
                    acknowledged.len()
                ))
            }
        })
        .await
    }
}

/// One member, killed (power loss) while a client writes, at a seed-drawn
/// moment; returns the trace of what the client saw.
async fn crash_during_writes() -> Trace {
    const WRITES: usize = 200;
    let mut scenario = Scenario::start(1, 25);
    let trace = Trace::new(false);
    let crash_after = Duration::from_millis(madsim::rand::thread_rng().gen_range(100..2000));
    let writer = {
        let trace = trace.clone();
        scenario.tester.spawn(async move {
            let mut client =
                Client::new(vec![client_url(0)]).with_request_timeout(Duration::from_secs(2));
            let (mut acknowledged, mut unknown) = (BTreeMap::new(), Vec::new());
            for n in 0..WRITES {
                let (key, value) = (format!("key{n:03}"), format!("value{n}"));
                let request = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    ..Default::default()
                };
                match client.put(request).await {
                    Ok(response) => {
                        trace.record(format!(
                            "put {key} ok rev {}",
                            response.header.unwrap().revision
                        ));
                        acknowledged.insert(key, value);
                    }
                    Err(error) => {
                        trace.record(format!("put {key}: {error}"));
                        unknown.push(key);
                    }
                }
            }
            (acknowledged, unknown)
        })
    };
    tokio::time::sleep(crash_after).await;
    scenario.cluster.crash(0);
    trace.record(format!(
        "crash after {crash_after:?}, disk holds {} bytes",
        scenario.cluster.disks[0].used_bytes()
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    scenario.cluster.restart(0);
    let (acknowledged, unknown) = writer.await.unwrap();

    // Every acknowledged write is there; an unacknowledged one whole or not at all.
    let (revision, stored) = scenario
        .on_tester(async {
            eventually("member 0 answers a range after its restart", async || {
                let mut client =
                    Client::new(vec![client_url(0)]).with_request_timeout(CALL_TIMEOUT);
                let request = RangeRequest {
                    key: b"key".to_vec(),
                    range_end: b"kez".to_vec(),
                    ..Default::default()
                };
                let response = client
                    .range(request)
                    .await
                    .map_err(|status| status.to_string())?;
                let kvs = response.kvs.into_iter().map(|kv| {
                    (
                        String::from_utf8(kv.key).unwrap(),
                        String::from_utf8(kv.value).unwrap(),
                    )
                });
                Ok((
                    response.header.unwrap().revision,
                    kvs.collect::<BTreeMap<_, _>>(),
                ))
            })
            .await
        })
        .await;
    for (key, value) in &acknowledged {
        assert_eq!(
            stored.get(key),
            Some(value),
            "acknowledged write to {key} was lost"
        );
    }
    for (key, value) in &stored {
        assert_eq!(
            value,
            &format!("value{}", key[3..].parse::<usize>().unwrap()),
            "{key} holds a value nobody wrote"
        );
        assert!(
            acknowledged.contains_key(key) || unknown.contains(key),
            "{key} appeared from nowhere"
        );
    }
    assert_eq!(
        revision,
        1 + stored.len() as i64,
        "each stored write took exactly one revision"
    );
    trace.record(format!(
        "read back {} keys at revision {revision}",
        stored.len()
    ));
    assert!(!acknowledged.is_empty(), "some writes were acknowledged");
    trace
}

#[madsim::test]
async fn acknowledged_writes_survive_crash_and_restart() {
    init_tracing();
    let trace = crash_during_writes().await;
    eprintln!("trace-hash: {:016x}", trace.hash(0));
}

#[test]
fn same_seed_gives_the_same_trace_hash() {
    let run = |seed: u64| {
        Runtime::with_seed_and_config(seed, madsim::Config::default())
            .block_on(crash_during_writes())
            .hash(0)
    };
    let first = run(7);
    assert_eq!(first, run(7), "one seed must replay bit for bit");
    assert_ne!(
        first,
        run(8),
        "the trace hash must depend on the seed, or it proves nothing"
    );
}

#[madsim::test]
async fn three_members_survive_leader_crash_and_partition() {
    init_tracing();
    let mut scenario = Scenario::start(3, 20);
    let mut acknowledged = BTreeMap::new();
    let all = scenario.all();

    tracing::info!("a leader is elected and writes through any member are acknowledged");
    let leader = scenario.wait_for_leader(&all).await;
    scenario.write_keys(&all, 0, 20, &mut acknowledged).await;
    assert_eq!(
        acknowledged.len(),
        20,
        "a healthy cluster acknowledges every write"
    );

    tracing::info!("the leader crashes: the other two elect a new one and keep writing");
    scenario.cluster.crash(leader);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let new_leader = scenario.wait_for_leader(&survivors).await;
    assert_ne!(new_leader, leader);
    scenario
        .write_keys(&survivors, 20, 60, &mut acknowledged)
        .await;

    tracing::info!("the old leader restarts and catches up (by snapshot: it missed more than --snapshot-count)");
    scenario.cluster.restart(leader);
    scenario.wait_converged(&all, &acknowledged).await;

    tracing::info!("the leader is cut off: the majority elects another and keeps writing");
    let leader = scenario.wait_for_leader(&all).await;
    scenario.cluster.isolate(leader);
    let majority: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let majority_leader = scenario.wait_for_leader(&majority).await;
    assert_ne!(majority_leader, leader);
    scenario
        .write_keys(&majority, 80, 20, &mut acknowledged)
        .await;

    tracing::info!("the partition heals: the old leader has stepped down, everyone converges");
    scenario.cluster.heal_links();
    let healed_leader = scenario.wait_for_leader(&all).await;
    assert_ne!(
        healed_leader, leader,
        "check-quorum made the cut-off leader step down"
    );
    scenario.wait_converged(&all, &acknowledged).await;
    eprintln!(
        "3 members: {} writes acknowledged, converged at {:?} virtual",
        acknowledged.len(),
        scenario.started.elapsed()
    );
}

#[madsim::test]
async fn five_members_survive_two_crashes() {
    init_tracing();
    let mut scenario = Scenario::start(5, 50);
    let mut acknowledged = BTreeMap::new();
    let all = scenario.all();

    tracing::info!("five members elect a leader and take writes");
    let leader = scenario.wait_for_leader(&all).await;
    scenario.write_keys(&all, 0, 20, &mut acknowledged).await;

    tracing::info!("the leader and one more member crash: three still make a quorum");
    let other = (leader + 1) % all.len();
    scenario.cluster.crash(leader);
    scenario.cluster.crash(other);
    let survivors: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| i != leader && i != other)
        .collect();
    scenario.wait_for_leader(&survivors).await;
    scenario
        .write_keys(&survivors, 20, 30, &mut acknowledged)
        .await;
    assert!(
        acknowledged.len() >= 45,
        "a quorum keeps acknowledging writes: {}",
        acknowledged.len()
    );

    tracing::info!("both come back and converge");
    scenario.cluster.restart(leader);
    scenario.cluster.restart(other);
    scenario.wait_for_leader(&all).await;
    scenario.wait_converged(&all, &acknowledged).await;
    eprintln!(
        "5 members: {} writes acknowledged, converged at {:?} virtual",
        acknowledged.len(),
        scenario.started.elapsed()
    );
}

/// Retries a membership call while the cluster answers "unhealthy cluster"
/// (strict reconfiguration waits until every voter has been connected for
/// a while) or, with `retry_any`, any error.
async fn until_accepted<T>(
    what: &str,
    retry_any: bool,
    mut call: impl AsyncFnMut() -> Result<T, tonic::Status>,
) -> T {
    eventually(&format!("{what} succeeds"), async || match call().await {
        Ok(answer) => Ok(answer),
        Err(status) if retry_any || status.message() == "etcdserver: unhealthy cluster" => {
            Err(status.to_string())
        }
        Err(status) => panic!("{what}: {status}"),
    })
    .await
}

#[madsim::test]
async fn learner_joins_catches_up_is_promoted_and_a_member_is_removed() {
    init_tracing();
    let mut scenario = Scenario::start(3, 20);
    let mut acknowledged = BTreeMap::new();
    let all = scenario.all();

    tracing::info!("enough writes that the log is compacted: the newcomer needs a snapshot");
    scenario.wait_for_leader(&all).await;
    scenario.write_keys(&all, 0, 60, &mut acknowledged).await;

    tracing::info!(
        "MemberAdd as a learner, then the new member joins with --initial-cluster-state existing"
    );
    let peer_url = format!("http://{}:2380", detcd_sim::harness::cluster::member_ip(3));
    let added = until_accepted("member add", false, async || {
        let peer_url = peer_url.clone();
        let request = MemberAddRequest {
            peer_ur_ls: vec![peer_url],
            is_learner: true,
        };
        scenario
            .cluster_call(0, move |mut client| async move {
                client.member_add(request).await.map(|r| r.into_inner())
            })
            .await
    })
    .await;
    let new_id = added.member.unwrap().id;
    assert_eq!(added.members.len(), 4);
    let newcomer = scenario.cluster.join(new_id, 20);
    let all = scenario.all();
    scenario.wait_converged(&all, &acknowledged).await;

    tracing::info!(
        "once caught up the learner is promoted (retrying while the leader says it is not ready)"
    );
    until_accepted("promotion", true, async || {
        scenario
            .cluster_call(1, move |mut client| async move {
                client
                    .member_promote(MemberPromoteRequest { id: new_id })
                    .await
            })
            .await
    })
    .await;
    let leader = scenario.wait_for_leader(&all).await;

    tracing::info!(
        "the leader is removed: it stops, the other three elect a leader and keep writing"
    );
    let leader_id = scenario.status(leader).await.expect("leader answers").0;
    let remaining: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let via = remaining[0];
    until_accepted("member remove", false, async || {
        scenario
            .cluster_call(via, move |mut client| async move {
                client
                    .member_remove(MemberRemoveRequest { id: leader_id })
                    .await
            })
            .await
    })
    .await;
    scenario.wait_for_leader(&remaining).await;
    scenario
        .write_keys(&remaining, 60, 20, &mut acknowledged)
        .await;
    assert!(remaining.contains(&newcomer));
    scenario.wait_converged(&remaining, &acknowledged).await;
}
