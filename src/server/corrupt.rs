//! etcd's initial corruption check (`--experimental-initial-corrupt-check`,
//! etcd `CheckInitialHashKV`): before a member serves clients, it compares
//! its HashKV with each peer's at its own revision, and refuses to start
//! if a peer with the same compacted history holds a different one.

use crate::proto::detcdpb::PeerHashKvResponse;
use crate::transport::peer_call::{fetch_hash_kv, PeerCallError};

use super::Server;

impl Server {
    /// Compares this member's HashKV with its peers' (over their peer
    /// URLs); an error names the inconsistency. Peers that cannot answer
    /// (not started, behind, compacted past us) are logged and skipped,
    /// as etcd does: the check proves a mismatch, never an agreement.
    pub async fn check_initial_hash_kv(&self) -> Result<(), String> {
        let member_id = self.shared.member_id;
        tracing::info!(
            member = format_args!("{member_id:x}"),
            "starting initial corruption check"
        );
        let local = self.hash_kv(0).map_err(|error| {
            format!("initial corruption check: cannot hash the local store: {error}")
        })?;
        let revision = local.header.as_ref().map_or(0, |header| header.revision);
        let peers: Vec<(u64, Vec<String>)> = self
            .members()
            .into_iter()
            .filter(|member| member.id != member_id)
            .filter_map(|member| {
                Some((member.id, crate::transport::peer_target(&member.peer_urls)?))
            })
            .collect();
        let mut answers = Vec::new();
        for (id, urls) in peers {
            answers.push((id, fetch_hash_kv(&urls, revision, &self.clock).await));
        }
        let mismatched = hash_mismatches(local.hash, local.compact_revision, &answers);
        if !mismatched.is_empty() {
            return Err(format!("{member_id:x} found data inconsistency with peers"));
        }
        tracing::info!(
            member = format_args!("{member_id:x}"),
            "initial corruption checking passed; no corruption"
        );
        Ok(())
    }
}

/// The peers whose HashKV differs from ours over the same compacted
/// history (etcd: a different compact revision explains a different
/// hash, and is only logged). Logs every peer that could not be compared.
pub fn hash_mismatches(
    hash: u32,
    compact_revision: i64,
    answers: &[(u64, Result<PeerHashKvResponse, PeerCallError>)],
) -> Vec<u64> {
    let mut mismatched = Vec::new();
    for (id, answer) in answers {
        let peer = format_args!("{id:x}");
        match answer {
            Ok(answer) if !answer.error.is_empty() => {
                tracing::warn!(%peer, error = %answer.error, "cannot fetch hash from remote peer");
            }
            Ok(answer) if answer.hash == hash => {}
            Ok(answer) if answer.compact_revision == compact_revision => {
                tracing::warn!(
                    %peer,
                    local_hash = hash,
                    remote_hash = answer.hash,
                    revision = answer.revision,
                    compact_revision,
                    "found different hash values from remote peer"
                );
                mismatched.push(*id);
            }
            Ok(answer) => {
                tracing::warn!(
                    %peer,
                    local_compact_revision = compact_revision,
                    remote_compact_revision = answer.compact_revision,
                    "found different compact revision values from remote peer"
                );
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "cannot fetch hash from remote peer");
            }
        }
    }
    mismatched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(hash: u32, compact_revision: i64, error: &str) -> PeerHashKvResponse {
        PeerHashKvResponse {
            hash,
            compact_revision,
            revision: 9,
            error: error.to_string(),
        }
    }

    #[test]
    fn only_a_different_hash_over_the_same_compaction_is_a_mismatch() {
        let answers = vec![
            (1, Ok(answer(7, 3, ""))),
            (2, Ok(answer(8, 3, ""))),
            (3, Ok(answer(8, 4, ""))),
            (
                4,
                Ok(answer(
                    0,
                    0,
                    "etcdserver: mvcc: required revision is a future revision",
                )),
            ),
            (5, Err(PeerCallError::Unreachable("refused".into()))),
        ];
        assert_eq!(hash_mismatches(7, 3, &answers), vec![2]);
        assert!(hash_mismatches(7, 3, &answers[..1]).is_empty());
    }
}
