//! Peer messages into raft: admission, refused senders, heartbeat round trips.

use std::sync::atomic::Ordering;

use raft::eraftpb::Message;

use super::{admission, strangers, RaftNode};

/// A refused peer message is logged once per this many.
const DROPPED_MESSAGES_LOG_EVERY: u64 = 1000;

impl RaftNode {
    /// Asks the known peers about a sender this member does not know (see
    /// `strangers`), in a task of its own: the loop never waits on a peer.
    pub(super) fn ask_about_stranger(&mut self, id: u64) {
        if !self.strangers.should_ask(id, self.clock.elapsed()) {
            return;
        }
        let applied = self.shared.applied_index();
        let peers = self.transport.peer_urls();
        let clock = self.clock.clone();
        let vouched = self.vouched.clone();
        tokio::spawn(async move {
            if let Some(url) = strangers::vouch(id, peers, applied, clock).await {
                let _ = vouched.send((id, url)).await;
            }
        });
    }

    /// A member that has heard nothing from its peers for
    /// `REMOVAL_CHECK_AFTER` asks them, in a task of its own, whether it
    /// was removed (`strangers::removed`); once one says so, the loop
    /// stops as a member that applied its own removal does.
    pub(super) fn check_removed(&mut self) -> Result<(), super::FatalError> {
        if self.removed.load(Ordering::Relaxed) {
            return Err(super::FatalError::Removed);
        }
        let now = self.clock.elapsed();
        let quiet_since = self.last_heard.max(self.removal_asked_at);
        if now.saturating_sub(quiet_since) < strangers::REMOVAL_CHECK_AFTER {
            return Ok(());
        }
        self.removal_asked_at = now;
        let peers = self.transport.peer_urls();
        // One question at a time: unreachable peers answer slowly.
        if peers.is_empty() || self.removal_asking.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let (id, cluster_id, clock) = (
            self.shared.member_id,
            self.shared.cluster_id,
            self.clock.clone(),
        );
        let (removed, asking) = (self.removed.clone(), self.removal_asking.clone());
        tokio::spawn(async move {
            if strangers::removed(id, cluster_id, peers, clock).await {
                removed.store(true, Ordering::Relaxed);
            }
            asking.store(false, Ordering::Relaxed);
        });
        Ok(())
    }

    pub(super) fn step(&mut self, messages: Vec<Message>) {
        for message in messages {
            let prs = self.raw.raft.prs();
            let transport = &self.transport;
            let is_peer = |id: u64| prs.get(id).is_some() || transport.knows(id);
            let view = admission::MemberView {
                member_id: self.shared.member_id,
                is_peer: &is_peer,
                last_index: self.raw.raft.raft_log.last_index(),
            };
            if let Err(refusal) = admission::admit(&message, &view) {
                if refusal == admission::Refusal::FromStranger {
                    self.ask_about_stranger(message.from);
                }
                self.dropped_messages += 1;
                // The first, then every thousandth: a flood of forged
                // messages must not flood the log too.
                if self.dropped_messages % DROPPED_MESSAGES_LOG_EVERY == 1 {
                    tracing::warn!(
                        from = format_args!("{:x}", message.from),
                        kind = ?message.get_msg_type(),
                        term = message.term,
                        dropped = self.dropped_messages,
                        "dropped a peer message that {refusal}"
                    );
                }
                continue;
            }
            self.last_heard = self.clock.elapsed();
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse {
                if let Some(sent) = self.heartbeats_sent.remove(&message.from) {
                    let round_trip = self.clock.elapsed().saturating_sub(sent);
                    self.round_trips
                        .entry(message.from)
                        .or_insert_with(|| self.shared.metrics.peer_round_trip(message.from))
                        .observe(round_trip.as_secs_f64());
                }
            }
            if let Err(error) = self.raw.step(message) {
                // Messages from removed members or stale terms: raft says no.
                tracing::debug!(%error, "raft refused a message");
            }
            self.election.fix(&mut self.raw);
        }
    }
}
