//! etcd's corruption checks, over HashKV:
//! - initial (`--experimental-initial-corrupt-check`, etcd
//!   `CheckInitialHashKV`): before a member serves clients, it compares
//!   its HashKV with each peer's at its own revision, and refuses to start
//!   if a peer with the same compacted history holds a different one;
//! - periodic (`--experimental-corrupt-check-time`, etcd `monitorKVHash`):
//!   every interval the leader compares its HashKV with its peers' and,
//!   if a member differs, raises the CORRUPT alarm through raft (for
//!   member 0, as etcd 3.4.23: which side is bad is not known), which
//!   stops every member's writes (apply refuses them).

use std::time::Duration;

use crate::error::Error;
use crate::proto::detcdpb::internal_request::Request;
use crate::proto::detcdpb::PeerHashKvResponse;
use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use crate::transport::peer_call::{fetch_hash_kv, PeerCallError};

use super::Server;

/// A peer's answer to a HashKV request, or why there is none.
type PeerAnswer = (u64, Result<PeerHashKvResponse, PeerCallError>);

/// Runs until the member stops: every `interval` (0: never), the leader
/// checks its peers' hashes (`check_hash_kv`).
pub async fn monitor(server: Server, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    tracing::info!(?interval, "enabled corruption checking");
    while let Some(leads) = server.leads_after(interval).await {
        if !leads {
            continue;
        }
        if let Err(error) = server.check_hash_kv().await {
            tracing::warn!(%error, "failed to check hash KV");
        }
    }
}

/// One member's HashKV reading: etcd's (hash, revision, compact revision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
}

impl Server {
    /// HashKV now, as a `Reading`.
    fn reading(&self) -> Result<Reading, Error> {
        let answer = self.hash_kv(0)?;
        Ok(Reading {
            hash: answer.hash,
            revision: answer.header.map_or(0, |header| header.revision),
            compact_revision: answer.compact_revision,
        })
    }

    /// Every peer's HashKV at `revision` (over their peer URLs).
    async fn peer_hashes(&self, revision: i64) -> Vec<PeerAnswer> {
        let member_id = self.shared.member_id;
        let peers: Vec<(u64, Vec<String>)> = (self.members().into_iter())
            .filter(|member| member.id != member_id)
            .filter_map(|member| {
                Some((member.id, crate::transport::peer_target(&member.peer_urls)?))
            })
            .collect();
        let mut answers = Vec::new();
        for (id, urls) in peers {
            answers.push((id, fetch_hash_kv(&urls, revision, &self.clock).await));
        }
        answers
    }

    /// etcd's `checkHashKV`: hash here, ask the peers for theirs at this
    /// revision, wait for a linearizable read (so everything a peer could
    /// have applied is applied here), hash again, and raise CORRUPT if
    /// the readings convict a member (`convicted`).
    pub async fn check_hash_kv(&self) -> Result<(), Error> {
        let before = self.reading()?;
        let answers = self.peer_hashes(before.revision).await;
        self.read_index().await?;
        let after = self.reading()?;
        let (checked, convicted) = convicted(self.shared.member_id, before, after, &answers);
        if convicted.is_some() {
            // As etcd 3.4.23: member 0, since which side holds the bad
            // data is not known (the leader's own may be; etcd #14828).
            let raise = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: 0,
                alarm: AlarmType::Corrupt as i32,
            };
            self.propose(Request::Alarm(raise)).await?;
        }
        tracing::info!(
            number_of_peers_checked = checked,
            "finished peer corruption check"
        );
        Ok(())
    }

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
        let local = self.reading().map_err(|error| {
            format!("initial corruption check: cannot hash the local store: {error}")
        })?;
        let answers = self.peer_hashes(local.revision).await;
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

/// etcd `checkHashKV`'s verdict, from the leader's readings before it
/// asked its peers and after a linearizable read: how many peers answered,
/// and the member the readings point at first. This member, if its hash changed
/// while its revisions did not; else the first peer that is ahead of the
/// leader's revision or compaction, or holds another hash over the same
/// compaction. Every finding is logged.
pub fn convicted(
    member_id: u64,
    before: Reading,
    after: Reading,
    answers: &[PeerAnswer],
) -> (usize, Option<u64>) {
    let mut convicted = None;
    let mut convict = |id: u64| {
        convicted.get_or_insert(id);
    };
    if after.hash != before.hash
        && after.revision == before.revision
        && after.compact_revision == before.compact_revision
    {
        tracing::warn!(
            member = format_args!("{member_id:x}"),
            revision = after.revision,
            hash = before.hash,
            hash_now = after.hash,
            "found hash mismatch"
        );
        convict(member_id);
    }
    let mut checked = 0;
    for (id, answer) in answers {
        let Ok(answer) = answer else { continue };
        if !answer.error.is_empty() {
            continue;
        }
        checked += 1;
        let peer = format_args!("{id:x}");
        if answer.revision > after.revision {
            tracing::warn!(%peer, leader_revision = after.revision, follower_revision = answer.revision,
                "revision from follower must be less than or equal to leader's");
            convict(*id);
        }
        if answer.compact_revision > after.compact_revision {
            tracing::warn!(%peer, leader_compact_revision = after.compact_revision,
                follower_compact_revision = answer.compact_revision,
                "compact revision from follower must be less than or equal to leader's");
            convict(*id);
        }
        if answer.compact_revision == before.compact_revision && answer.hash != before.hash {
            tracing::warn!(%peer, leader_hash = before.hash, follower_hash = answer.hash,
                compact_revision = before.compact_revision,
                "same compact revision then hashes must match");
            convict(*id);
        }
    }
    (checked, convicted)
}

/// The peers whose HashKV differs from ours over the same compacted
/// history (etcd: a different compact revision explains a different
/// hash, and is only logged). Logs every peer that could not be compared.
pub fn hash_mismatches(hash: u32, compact_revision: i64, answers: &[PeerAnswer]) -> Vec<u64> {
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

    #[test]
    fn the_leader_convicts_as_etcds_check_hash_kv_does() {
        let reading = |hash, revision, compact_revision| Reading {
            hash,
            revision,
            compact_revision,
        };
        let peer = |hash, revision, compact_revision| PeerHashKvResponse {
            hash,
            revision,
            compact_revision,
            error: String::new(),
        };
        let leader = reading(7, 9, 3);
        let agreeing: Vec<PeerAnswer> = vec![(2, Ok(peer(7, 9, 3))), (3, Ok(peer(7, 8, 3)))];
        assert_eq!(convicted(1, leader, leader, &agreeing), (2, None));
        // Another hash over the same compaction; a compaction since the
        // first reading explains one.
        let other_hash = vec![(2, Ok(peer(8, 9, 3)))];
        assert_eq!(convicted(1, leader, leader, &other_hash), (1, Some(2)));
        let compacted_since = vec![(2, Ok(peer(8, 9, 4)))];
        let later = reading(6, 10, 4);
        assert_eq!(convicted(1, leader, later, &compacted_since), (1, None));
        // Ahead of the leader, in revision or compaction.
        let ahead = vec![(2, Ok(peer(7, 11, 3))), (3, Ok(peer(7, 9, 5)))];
        assert_eq!(
            convicted(1, leader, reading(7, 10, 3), &ahead),
            (2, Some(2))
        );
        // The leader's own hash moved under the same revisions: it first.
        let moved = reading(5, 9, 3);
        assert_eq!(convicted(1, leader, moved, &other_hash), (1, Some(1)));
        // Peers that could not answer are not counted.
        let silent = vec![
            (2, Err(PeerCallError::Unreachable("refused".into()))),
            (
                3,
                Ok(PeerHashKvResponse {
                    error: "etcdserver: mvcc: required revision is a future revision".into(),
                    ..PeerHashKvResponse::default()
                }),
            ),
        ];
        assert_eq!(convicted(1, leader, leader, &silent), (0, None));
    }
}
