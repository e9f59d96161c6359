//! One-off calls to a peer's `detcdpb.Raft` service, outside the raft
//! streams: a joining member asks for the cluster, and a follower forwards
//! a promotion to the leader. Here so that only `transport` dials peers.

use crate::proto::detcdpb::{MembersRequest, MembersResponse, PromoteRequest};

/// Why a call to a peer did not get an answer.
#[derive(Debug)]
pub enum PeerCallError {
    /// No connection to the peer.
    Unreachable(String),
    /// Connected, but the call failed on the way.
    Failed(String),
}

impl std::fmt::Display for PeerCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerCallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            PeerCallError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Asks the member at `url` for the cluster's members and id.
pub async fn fetch_members(url: &str) -> Result<MembersResponse, PeerCallError> {
    let mut client = super::dial(url).await.map_err(PeerCallError::Unreachable)?;
    let response = client
        .members(MembersRequest {})
        .await
        .map_err(|e| PeerCallError::Failed(e.to_string()))?;
    Ok(response.into_inner())
}

/// Asks the leader at `url` to promote learner `id`. The answer is etcd's
/// error string, empty once the promotion has applied on the leader.
pub async fn forward_promote(url: &str, id: u64) -> Result<String, PeerCallError> {
    let mut client = super::dial(url).await.map_err(PeerCallError::Unreachable)?;
    let response = client
        .promote(PromoteRequest { id })
        .await
        .map_err(|e| PeerCallError::Failed(e.to_string()))?;
    Ok(response.into_inner().error)
}
