//! Which peer messages the raft loop lets into raft-rs. raft-rs trusts its
//! peers: a heartbeat committing past the end of the log makes it panic,
//! and a message from a stranger can raise the term. Nothing a peer sends
//! may stop a member, so every received message passes here first and
//! anything that cannot come from a member of this cluster is dropped (and
//! logged by the caller).
//!
//! Plain logic over a view of the member, so it is tested on its own.

use raft::eraftpb::{Message, MessageType};

/// What admission needs to know about this member.
pub struct MemberView<'a> {
    pub member_id: u64,
    /// Members raft knows (the configuration), and peers the transport was
    /// told of (a member that joins knows no configuration yet).
    pub is_peer: &'a dyn Fn(u64) -> bool,
    /// The index of the last entry in the log.
    pub last_index: u64,
}

/// Why a message was dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    AddressedElsewhere,
    FromItself,
    FromStranger,
    /// Message types raft-rs makes only locally (MsgHup, MsgBeat, ...).
    LocalOnly,
    /// A heartbeat may only carry a commit index the follower can reach
    /// (the leader sends min(commit, what the follower matched)).
    CommitBeyondLog,
    /// A snapshot whose data does not check out.
    BadSnapshot(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::AddressedElsewhere => write!(f, "addressed to another member"),
            Refusal::FromItself => write!(f, "claims to come from this member"),
            Refusal::FromStranger => write!(f, "from no member of this cluster"),
            Refusal::LocalOnly => write!(f, "a message type raft only makes locally"),
            Refusal::CommitBeyondLog => write!(f, "commits past the end of the log"),
            Refusal::BadSnapshot(why) => write!(f, "carries a bad snapshot: {why}"),
        }
    }
}

/// Checks one message from the network.
pub fn admit(message: &Message, member: &MemberView<'_>) -> Result<(), Refusal> {
    if message.to != member.member_id {
        return Err(Refusal::AddressedElsewhere);
    }
    if message.from == member.member_id {
        return Err(Refusal::FromItself);
    }
    if !(member.is_peer)(message.from) {
        return Err(Refusal::FromStranger);
    }
    match message.get_msg_type() {
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum => Err(Refusal::LocalOnly),
        MessageType::MsgHeartbeat if message.commit > member.last_index => {
            Err(Refusal::CommitBeyondLog)
        }
        MessageType::MsgSnapshot => {
            // The peer service received the stream into its file and put
            // the header it read back there in the message.
            let snapshot = message.get_snapshot();
            let header = <crate::proto::detcdpb::SnapshotHeader as prost::Message>::decode(
                &snapshot.data[..],
            )
            .map_err(|error| Refusal::BadSnapshot(format!("bad header: {error}")))?;
            let metadata = snapshot.get_metadata();
            if (header.index, header.term) != (metadata.index, metadata.term) {
                return Err(Refusal::BadSnapshot(format!(
                    "metadata says index {} term {}, the snapshot {} {}",
                    metadata.index, metadata.term, header.index, header.term
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 1;
    const PEER: u64 = 2;

    fn message(kind: MessageType, from: u64, to: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.from = from;
        message.to = to;
        message.term = 5;
        message
    }

    fn check(message: &Message) -> Result<(), Refusal> {
        let is_peer = |id: u64| id == PEER;
        admit(
            message,
            &MemberView {
                member_id: ME,
                is_peer: &is_peer,
                last_index: 10,
            },
        )
    }

    #[test]
    fn what_a_peer_sends_in_protocol_passes() {
        let mut heartbeat = message(MessageType::MsgHeartbeat, PEER, ME);
        heartbeat.commit = 10;
        assert_eq!(check(&heartbeat), Ok(()));
        assert_eq!(check(&message(MessageType::MsgAppend, PEER, ME)), Ok(()));
        assert_eq!(
            check(&message(MessageType::MsgRequestVote, PEER, ME)),
            Ok(())
        );
        assert_eq!(check(&message(MessageType::MsgPropose, PEER, ME)), Ok(()));
    }

    #[test]
    fn forged_or_out_of_protocol_messages_are_refused() {
        let table = [
            (
                message(MessageType::MsgAppend, PEER, 3),
                Refusal::AddressedElsewhere,
            ),
            (message(MessageType::MsgAppend, ME, ME), Refusal::FromItself),
            (
                message(MessageType::MsgAppend, 99, ME),
                Refusal::FromStranger,
            ),
            (
                message(MessageType::MsgHeartbeat, 99, ME),
                Refusal::FromStranger,
            ),
            (message(MessageType::MsgHup, PEER, ME), Refusal::LocalOnly),
            (
                message(MessageType::MsgCheckQuorum, PEER, ME),
                Refusal::LocalOnly,
            ),
        ];
        for (message, refusal) in table {
            assert_eq!(check(&message), Err(refusal), "{message:?}");
        }
        let mut heartbeat = message(MessageType::MsgHeartbeat, PEER, ME);
        heartbeat.commit = 11;
        assert_eq!(check(&heartbeat), Err(Refusal::CommitBeyondLog));
        let mut snapshot = message(MessageType::MsgSnapshot, PEER, ME);
        snapshot.mut_snapshot().data = b"not a snapshot".to_vec().into();
        assert!(matches!(check(&snapshot), Err(Refusal::BadSnapshot(_))));
    }
}
