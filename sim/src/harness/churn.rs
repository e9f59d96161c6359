//! Membership churn under faults: an operator replaces a member, as etcd's
//! runbook does after losing a machine. MemberRemove, the node stopped and
//! its disk wiped, MemberAdd of the same peer URL as a learner, the node
//! started empty with `--initial-cluster-state existing`, and MemberPromote
//! once it has caught up. The victim may be the leader.
//!
//! Each step is one operator call, retried on later nemesis ticks until
//! the cluster accepts it: calls fail under partitions and elections, and a
//! call that timed out may still have been applied, so each step also
//! accepts the answer that says it already happened ("member not found",
//! "Peer URLs already exists", "can only promote a learner member"). What
//! is left when the faults end is finished once everything is healed, and
//! a replacement that cannot finish then is a liveness failure.

use std::time::Duration;

use detcd::proto::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, AuthenticateRequest, MemberAddRequest,
    MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
};

use super::cluster::{client_url, peer_url, SimCluster};
use super::monitor::Monitor;
use super::operator::on_operator;
use super::trace::Trace;

/// How long one membership call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Between attempts while finishing after the faults have healed.
const FINISH_RETRY: Duration = Duration::from_millis(500);
/// How long finishing may take once everything is healed.
pub const FINISH_BOUND: Duration = Duration::from_secs(30);

const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
const NOT_A_LEARNER: &str = "etcdserver: can only promote a learner member";

/// Where a replacement stands: the next call to make.
#[derive(Clone, Copy, Debug)]
pub enum Churn {
    Remove {
        index: usize,
        id: u64,
    },
    /// `old_id` is the removed member's: a member that has not applied
    /// the removal yet still lists it under the peer URL.
    Add {
        index: usize,
        old_id: u64,
    },
    Promote {
        index: usize,
        id: u64,
    },
}

/// Starts replacing `victim`: a running member, the leader included, or
/// one whose disk failed its checks (the operator's fix for it).
pub fn start(cluster: &SimCluster, victim: usize, trace: &Trace) -> Churn {
    let id = cluster.member_ids[victim];
    trace.record(format!("nemesis: churn: replace m{victim} ({id:x})"));
    Churn::Remove { index: victim, id }
}

/// Makes the step's call once. Returns the next step, or `None` when the
/// replacement is complete.
pub async fn advance(
    churn: Churn,
    cluster: &mut SimCluster,
    leader: Option<usize>,
    operator: &madsim::runtime::NodeHandle,
    trace: &Trace,
) -> Option<Churn> {
    let index = match churn {
        Churn::Remove { index, .. } | Churn::Add { index, .. } | Churn::Promote { index, .. } => {
            index
        }
    };
    // Ask the leader if it is up, else another running member.
    let running = cluster.running();
    let Some(via) = leader
        .filter(|leader| *leader != index && running.contains(leader))
        .or_else(|| running.iter().copied().find(|member| *member != index))
    else {
        return Some(churn);
    };
    let url = client_url(via);
    match churn {
        Churn::Remove { index, id } => {
            let outcome = call(operator, url, move |mut client, admin| async move {
                client
                    .member_remove(admin.request(MemberRemoveRequest { id }))
                    .await
                    .map(|_| ())
            })
            .await;
            trace.record(format!(
                "nemesis: churn: remove m{index} via m{via}: {}",
                describe(&outcome)
            ));
            match outcome {
                Ok(()) => {}
                Err(message) if message == MEMBER_NOT_FOUND => {}
                Err(_) => return Some(churn),
            }
            cluster.retire(index);
            trace.record(format!("nemesis: churn: m{index} stopped, disk wiped"));
            Some(Churn::Add { index, old_id: id })
        }
        Churn::Add { index, old_id } => {
            let peer = peer_url(index);
            let added = call(operator, url, {
                let peer = peer.clone();
                move |mut client, admin| async move {
                    let request = MemberAddRequest {
                        peer_ur_ls: vec![peer.clone()],
                        is_learner: true,
                    };
                    match client.member_add(admin.request(request)).await {
                        Ok(response) => Ok(response.into_inner().member.map_or(0, |m| m.id)),
                        // An earlier attempt that timed out was applied: the
                        // member listed under the URL, unless that is still
                        // the removed one (the answering member has not
                        // applied the removal yet).
                        Err(status) if status.message() == PEER_URL_EXISTS => {
                            let members = client
                                .member_list(admin.request(MemberListRequest::default()))
                                .await?
                                .into_inner()
                                .members;
                            Ok(members
                                .iter()
                                .find(|member| member.peer_ur_ls.contains(&peer))
                                .map_or(0, |member| member.id))
                            .map(|id| if id == old_id { 0 } else { id })
                        }
                        Err(status) => Err(status),
                    }
                }
            })
            .await;
            trace.record(format!(
                "nemesis: churn: add {peer} as a learner via m{via}: {}",
                match &added {
                    Ok(id) => format!("member {id:x}"),
                    Err(message) => message.clone(),
                }
            ));
            let id = match added {
                Ok(id) if id != 0 => id,
                _ => return Some(churn),
            };
            cluster.rejoin(index, id);
            trace.record(format!("nemesis: churn: m{index} starts empty as {id:x}"));
            Some(Churn::Promote { index, id })
        }
        Churn::Promote { index, id } => {
            // A joiner that gave up (no member answered for its whole join
            // timeout, as under a long partition) is started again, as an
            // operator or systemd would.
            let refused = cluster.refused.lock().unwrap().get(&index).cloned();
            if let Some(reason) = refused {
                trace.record(format!(
                    "nemesis: churn: m{index} could not join ({reason}), starting it again"
                ));
                cluster.restart(index);
                return Some(churn);
            }
            let outcome = call(operator, url, move |mut client, admin| async move {
                client
                    .member_promote(admin.request(MemberPromoteRequest { id }))
                    .await
                    .map(|_| ())
            })
            .await;
            trace.record(format!(
                "nemesis: churn: promote m{index} via m{via}: {}",
                describe(&outcome)
            ));
            match outcome {
                Ok(()) => None,
                Err(message) if message == NOT_A_LEARNER => None,
                Err(_) => Some(churn),
            }
        }
    }
}

/// Finishes a replacement once every fault has healed. Returns why it
/// could not, after `FINISH_BOUND`.
pub async fn finish(
    mut churn: Churn,
    cluster: &mut SimCluster,
    monitor: &Monitor,
    operator: &madsim::runtime::NodeHandle,
    trace: &Trace,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + FINISH_BOUND;
    loop {
        let leader = monitor.current_leader(&cluster.member_ids);
        match advance(churn, cluster, leader, operator, trace).await {
            None => return Ok(()),
            Some(next) => churn = next,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "replacing a member did not finish within {FINISH_BOUND:?} after healing: stuck at {churn:?}"
            ));
        }
        tokio::time::sleep(FINISH_RETRY).await;
    }
}

fn describe(outcome: &Result<(), String>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(message) => message.clone(),
    }
}

/// The operator's credentials: with auth enabled (the auth workload) only
/// root may change the membership, as in etcd.
struct Admin {
    token: Option<String>,
}

impl Admin {
    /// Logs in as root; no token when auth is off (or root is unknown).
    async fn login(url: &str) -> Admin {
        let token = match AuthClient::connect(url.to_string()).await {
            Ok(mut auth) => auth
                .authenticate(AuthenticateRequest {
                    name: "root".into(),
                    password: super::auth::ROOT_PASSWORD.into(),
                })
                .await
                .ok()
                .map(|response| response.into_inner().token),
            Err(_) => None,
        };
        Admin { token }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self.token.as_deref().and_then(|token| token.parse().ok()) {
            request.metadata_mut().insert("token", value);
        }
        request
    }
}

/// One Cluster call from the operator's node, as root where auth is on,
/// bounded by `CALL_TIMEOUT`.
async fn call<T, F, Fut>(
    operator: &madsim::runtime::NodeHandle,
    url: String,
    request: F,
) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(ClusterClient<tonic::transport::Channel>, Admin) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send,
{
    on_operator(operator, CALL_TIMEOUT, async move {
        let admin = Admin::login(&url).await;
        let client = ClusterClient::connect(url)
            .await
            .map_err(|error| error.to_string())?;
        request(client, admin)
            .await
            .map_err(|status| status.message().to_string())
    })
    .await
}
