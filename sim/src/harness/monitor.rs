//! The monitor: polls every member's Status while a run goes on, feeds
//! the leaders they name to election safety (`properties::raft`) and
//! tells the nemesis who leads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::{maintenance_client::MaintenanceClient, StatusRequest};

use super::cluster::client_url;
use crate::properties::raft::RaftInvariants;

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
    /// Election safety, from the leaders the members name.
    raft: RaftInvariants,
    /// The id the latest report names as leader.
    current_leader: Option<u64>,
}

/// How often the monitor asks every member for its status.
const MONITOR_INTERVAL: Duration = Duration::from_millis(100);
const MONITOR_CALL_TIMEOUT: Duration = Duration::from_millis(500);

impl Monitor {
    pub fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
    }

    pub fn violation(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .raft
            .violation()
            .map(str::to_string)
    }

    pub fn summary(&self) -> String {
        let state = self.state.lock().unwrap();
        format!(
            "leaders of {} terms agreed on by every member that named one",
            state.raft.terms_seen()
        )
    }

    /// The member index the latest reports name as leader, among
    /// `member_ids` (the cluster's current ids: churn changes them).
    pub fn current_leader(&self, member_ids: &[u64]) -> Option<usize> {
        let leader = self.state.lock().unwrap().current_leader?;
        member_ids.iter().position(|id| *id == leader)
    }

    pub async fn watch(self, members: usize) {
        while !self.state.lock().unwrap().stopped {
            for member in 0..members {
                let Some((reporter, term, leader)) = status(member).await else {
                    continue;
                };
                if leader == 0 {
                    continue;
                }
                let mut state = self.state.lock().unwrap();
                state.current_leader = Some(leader);
                state.raft.leader_reported(term, leader, reporter);
            }
            tokio::time::sleep(MONITOR_INTERVAL).await;
        }
    }
}

/// (its id, term, leader) as one member reports them.
async fn status(member: usize) -> Option<(u64, u64, u64)> {
    let call = async {
        let mut client = MaintenanceClient::connect(client_url(member)).await.ok()?;
        let status = client.status(StatusRequest {}).await.ok()?.into_inner();
        let reporter = status.header.map_or(0, |header| header.member_id);
        Some((reporter, status.raft_term, status.leader))
    };
    tokio::time::timeout(MONITOR_CALL_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}
