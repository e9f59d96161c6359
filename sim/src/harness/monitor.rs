//! The monitor: polls every member's Status while a run goes on, checks
//! election safety online and tells the nemesis who leads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{maintenance_client::MaintenanceClient, StatusRequest};

use super::cluster::client_url;

/// Watches the members while the run goes on. Checks Raft's election
/// safety online (§5.2: at most one leader per term — every member that
/// names a leader for a term must name the same one) and tells the nemesis
/// who leads, for leader-targeted faults.
#[derive(Clone, Default)]
pub struct Monitor {
    state: Arc<Mutex<MonitorState>>,
}

#[derive(Default)]
struct MonitorState {
    stopped: bool,
    /// term -> (leader id, the member that reported it)
    leaders: BTreeMap<u64, (u64, usize)>,
    violation: Option<String>,
    current_leader: Option<usize>,
}

/// How often the monitor asks every member for its status.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);
const MONITOR_CALL_TIMEOUT: Duration = Duration::from_millis(500);

impl Monitor {
    pub fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
    }

    pub fn violation(&self) -> Option<String> {
        self.state.lock().unwrap().violation.clone()
    }

    pub fn terms_seen(&self) -> usize {
        self.state.lock().unwrap().leaders.len()
    }

    /// The member index the latest reports name as leader.
    pub fn current_leader(&self) -> Option<usize> {
        self.state.lock().unwrap().current_leader
    }

    pub async fn watch(self, members: usize, member_ids: Vec<u64>) {
        while !self.state.lock().unwrap().stopped {
            for member in 0..members {
                let Some((term, leader)) = status(member).await else {
                    continue;
                };
                if leader == 0 {
                    continue;
                }
                let mut state = self.state.lock().unwrap();
                state.current_leader = member_ids.iter().position(|id| *id == leader);
                match state.leaders.get(&term) {
                    Some(&(known, reporter)) if known != leader && state.violation.is_none() => {
                        state.violation = Some(format!(
                            "election safety: in term {term} m{reporter} named leader {known:x} and m{member} named {leader:x}"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        state.leaders.insert(term, (leader, member));
                    }
                }
            }
            tokio::time::sleep(MONITOR_INTERVAL).await;
        }
    }
}

/// (term, leader) as one member reports them.
async fn status(member: usize) -> Option<(u64, u64)> {
    let call = async {
        let mut client = MaintenanceClient::connect(client_url(member)).await.ok()?;
        let status = client.status(StatusRequest {}).await.ok()?.into_inner();
        Some((status.raft_term, status.leader))
    };
    tokio::time::timeout(MONITOR_CALL_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}
