//! Senders the raft loop does not know. A member that fell behind a
//! membership change does not know the members added since; if one of
//! them leads, admission drops its appends and the member's answers would
//! have nowhere to go, so it never catches up (the simulator's seed 100077
//! with five members and churn). So the loop asks the peers it knows about
//! a stranger, and takes it as a peer once a peer whose state is ahead of
//! its own lists it, as etcd's transport learns "remotes". A removed
//! member is never vouched for: a peer ahead of this member has applied
//! every removal this member applied.
//!
//! The bookkeeping is plain and tested here; the asking is one task per
//! stranger, at most `STRANGERS_MAX` remembered and each asked about at
//! most once per `STRANGER_ASK_EVERY`, so forged sender ids cannot make a
//! flood of calls.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Clock;

/// How long a member hears nothing from its peers before it asks them
/// whether it was removed (and again after as long, while it hears
/// nothing). A removed member is sent nothing: a learner would otherwise
/// serve stale reads, a restarted voter campaign, for good.
pub const REMOVAL_CHECK_AFTER: Duration = Duration::from_secs(2);

/// How often the peers are asked about the same stranger.
pub const STRANGER_ASK_EVERY: Duration = Duration::from_secs(1);
/// How many strangers are remembered at once.
pub const STRANGERS_MAX: usize = 16;

/// When each stranger was last asked about.
#[derive(Default)]
pub struct Strangers {
    asked: BTreeMap<u64, Duration>,
}

impl Strangers {
    /// Whether to ask the peers about `id` now (and note that we did).
    pub fn should_ask(&mut self, id: u64, now: Duration) -> bool {
        let recent = |at: &Duration| now.saturating_sub(*at) < STRANGER_ASK_EVERY;
        match self.asked.get(&id) {
            Some(at) if recent(at) => return false,
            Some(_) => {}
            None if self.asked.len() >= STRANGERS_MAX => {
                self.asked.retain(|_, at| recent(at));
                if self.asked.len() >= STRANGERS_MAX {
                    return false;
                }
            }
            None => {}
        }
        self.asked.insert(id, now);
        true
    }

    /// `id` is a peer now (vouched for, or added by a membership change).
    pub fn forget(&mut self, id: u64) {
        self.asked.remove(&id);
    }
}

/// Asks `peers` in turn whether `id` is a member, trusting only an answer
/// from a peer that has applied more than this member (`applied`).
/// Returns the stranger's peer URLs once one vouches for it.
pub async fn vouch(
    id: u64,
    peers: Vec<Vec<String>>,
    applied: u64,
    clock: Clock,
) -> Option<Vec<String>> {
    for urls in peers {
        let Ok(answer) = crate::transport::peer_call::fetch_members(&urls, &clock).await else {
            continue;
        };
        if answer.applied_index <= applied {
            continue;
        }
        if let Some(member) = answer.members.iter().find(|member| member.id == id) {
            return crate::transport::peer_target(&member.peer_urls);
        }
    }
    None
}

/// Whether a peer of cluster `cluster_id` at one of `peers` lists `id`
/// among the removed members. Any such answer is final: a removed id is
/// never added again (`Members::check_add`), and a peer lists only
/// removals it has applied.
pub async fn removed(id: u64, cluster_id: u64, peers: Vec<Vec<String>>, clock: Clock) -> bool {
    for urls in peers {
        let Ok(answer) = crate::transport::peer_call::fetch_members(&urls, &clock).await else {
            continue;
        };
        if answer.cluster_id == cluster_id && answer.removed.contains(&id) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_stranger_is_asked_about_once_per_interval() {
        let mut strangers = Strangers::default();
        assert!(strangers.should_ask(7, SECOND));
        assert!(!strangers.should_ask(7, SECOND + STRANGER_ASK_EVERY / 2));
        assert!(strangers.should_ask(8, SECOND + STRANGER_ASK_EVERY / 2));
        assert!(strangers.should_ask(7, SECOND + STRANGER_ASK_EVERY));
        strangers.forget(7);
        assert!(strangers.should_ask(7, SECOND + STRANGER_ASK_EVERY));
    }

    #[test]
    fn a_flood_of_forged_ids_is_bounded() {
        let mut strangers = Strangers::default();
        let asked = (0..1000)
            .filter(|id| strangers.should_ask(*id, SECOND))
            .count();
        assert_eq!(asked, STRANGERS_MAX);
        // Once the interval has passed, old entries make room again.
        assert!(strangers.should_ask(5000, SECOND + STRANGER_ASK_EVERY));
        assert_eq!(strangers.asked.len(), 1);
    }
}
