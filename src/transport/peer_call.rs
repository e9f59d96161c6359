//! One-off calls to a peer's `detcdpb.Raft` service, outside the raft
//! streams: a joining member asks for the cluster, and a follower forwards
//! a promotion to the leader. Here so that only `transport` dials peers.

use std::time::Duration;

use crate::clock::Clock;
use crate::proto::detcdpb::{
    MembersRequest, MembersResponse, PeerHashKvRequest, PeerHashKvResponse, PromoteRequest,
};

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

/// How long one ask for the members waits for its answer. Callers ask
/// several peers in turn, so one that hangs (paused, cut off) must not
/// stall the answers of the others.
pub const MEMBERS_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the member at one of `urls` for the cluster's members and id,
/// waiting at most `MEMBERS_ASK_TIMEOUT`.
pub async fn fetch_members(
    urls: &[String],
    clock: &Clock,
) -> Result<MembersResponse, PeerCallError> {
    let ask = async {
        let mut client = super::dial(urls)
            .await
            .map_err(PeerCallError::Unreachable)?;
        let response = client
            .members(MembersRequest {})
            .await
            .map_err(|e| PeerCallError::Failed(e.to_string()))?;
        Ok(response.into_inner())
    };
    answer_within(MEMBERS_ASK_TIMEOUT, clock, ask).await
}

/// `ask`'s answer, or unreachable once `timeout` has passed on `clock`.
async fn answer_within<T>(
    timeout: Duration,
    clock: &Clock,
    ask: impl std::future::Future<Output = Result<T, PeerCallError>>,
) -> Result<T, PeerCallError> {
    tokio::select! {
        biased;
        answer = ask => answer,
        () = clock.sleep(timeout) => {
            Err(PeerCallError::Unreachable("no answer in time".to_string()))
        }
    }
}

/// Asks the leader at one of `urls` to promote learner `id`. The answer is etcd's
/// error string, empty once the promotion has applied on the leader.
pub async fn forward_promote(urls: &[String], id: u64) -> Result<String, PeerCallError> {
    let mut client = super::dial(urls)
        .await
        .map_err(PeerCallError::Unreachable)?;
    let response = client
        .promote(PromoteRequest { id })
        .await
        .map_err(|e| PeerCallError::Failed(e.to_string()))?;
    Ok(response.into_inner().error)
}

/// How long a peer's HashKV may take to arrive (etcd waits a request
/// timeout per peer): hashing reads the whole history.
pub const HASH_KV_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the member at one of `urls` for its HashKV up to `revision`, waiting at
/// most `HASH_KV_TIMEOUT`.
pub async fn fetch_hash_kv(
    urls: &[String],
    revision: i64,
    clock: &Clock,
) -> Result<PeerHashKvResponse, PeerCallError> {
    let ask = async {
        let mut client = super::dial(urls)
            .await
            .map_err(PeerCallError::Unreachable)?;
        let response = client
            .hash_kv(PeerHashKvRequest { revision })
            .await
            .map_err(|e| PeerCallError::Failed(e.to_string()))?;
        Ok(response.into_inner())
    };
    answer_within(HASH_KV_TIMEOUT, clock, ask).await
}
