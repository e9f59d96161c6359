//! The nesting shapes of raft 0.7's eraftpb messages, for prost: a guard
//! in front of protobuf 2.
//!
//! raft 0.7's types are protobuf 2, whose skipping of unknown fields
//! recurses without a bound into nested groups (RUSTSEC-2024-0437): one
//! crafted message would overflow the stack. Every eraftpb parse of bytes
//! that can come from a peer is first decoded here with prost into the
//! message's shape (each field that holds a message, by its tag; the rest
//! skipped), and refused if prost refuses it: prost skips unknown fields,
//! groups included, with its recursion limit. Covered: a raft message
//! (`check_message`, with its entries' conf change data, which raft
//! parses itself), a snapshot's conf state (`check_conf_state`), and a
//! conf change entry's data (`check_conf_change`). The shapes follow
//! raft-proto 0.7's eraftpb.proto.

use prost::Message as _;

/// eraftpb's `EntryType` values whose data raft parses as a conf change.
const ENTRY_CONF_CHANGE: i32 = 1;
const ENTRY_CONF_CHANGE_V2: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(message, repeated, tag = "7")]
    entries: Vec<Entry>,
    #[prost(message, optional, tag = "9")]
    snapshot: Option<Snapshot>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(int32, tag = "1")]
    entry_type: i32,
    #[prost(bytes = "vec", tag = "4")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Snapshot {
    #[prost(message, optional, tag = "2")]
    metadata: Option<SnapshotMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotMetadata {
    #[prost(message, optional, tag = "1")]
    conf_state: Option<Leaf>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ConfChangeV2 {
    #[prost(message, repeated, tag = "2")]
    changes: Vec<Leaf>,
}

/// ConfState, ConfChange, ConfChangeSingle: no message fields.
#[derive(Clone, PartialEq, prost::Message)]
struct Leaf {}

/// A raft message, and the conf change data of its entries.
pub fn check_message(bytes: &[u8]) -> Result<(), String> {
    let message = Message::decode(bytes).map_err(|error| error.to_string())?;
    for entry in &message.entries {
        check_entry_data(entry.entry_type, &entry.data)?;
    }
    Ok(())
}

/// A conf change entry's data (v1 or v2); other entries' data is ours,
/// not protobuf's.
pub fn check_entry_data(entry_type: i32, data: &[u8]) -> Result<(), String> {
    match entry_type {
        ENTRY_CONF_CHANGE => check_conf_change(data, false),
        ENTRY_CONF_CHANGE_V2 => check_conf_change(data, true),
        _ => Ok(()),
    }
}

/// A ConfChange (`v2`: a ConfChangeV2).
pub fn check_conf_change(bytes: &[u8], v2: bool) -> Result<(), String> {
    let decoded = if v2 {
        ConfChangeV2::decode(bytes).map(drop)
    } else {
        Leaf::decode(bytes).map(drop)
    };
    decoded.map_err(|error| format!("bad conf change: {error}"))
}

/// A ConfState.
pub fn check_conf_state(bytes: &[u8]) -> Result<(), String> {
    Leaf::decode(bytes)
        .map(drop)
        .map_err(|error| format!("bad conf state: {error}"))
}

#[cfg(test)]
mod tests {
    use protobuf::Message as _;
    use raft::eraftpb;

    use super::*;

    /// Unknown field 100 as groups nested `depth` deep.
    fn nested_groups(depth: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(depth * 4);
        for _ in 0..depth {
            bytes.extend_from_slice(&[0xa3, 0x06]);
        }
        for _ in 0..depth {
            bytes.extend_from_slice(&[0xa4, 0x06]);
        }
        bytes
    }

    #[test]
    fn real_conf_changes_and_states_pass() {
        let change = eraftpb::ConfChangeV2 {
            changes: vec![eraftpb::ConfChangeSingle {
                node_id: 7,
                ..Default::default()
            }]
            .into(),
            context: b"member".to_vec().into(),
            ..Default::default()
        };
        check_conf_change(&change.write_to_bytes().unwrap(), true).unwrap();
        let v1 = eraftpb::ConfChange {
            node_id: 7,
            ..Default::default()
        };
        check_conf_change(&v1.write_to_bytes().unwrap(), false).unwrap();
        let state = eraftpb::ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        check_conf_state(&state.write_to_bytes().unwrap()).unwrap();
    }

    /// What protobuf 2 would recurse into without a bound is refused at
    /// prost's limit, wherever raft or detcd would parse it.
    #[test]
    fn deeply_nested_groups_are_refused_everywhere_protobuf_parses() {
        let groups = nested_groups(100_000);
        assert!(check_conf_state(&groups).is_err());
        assert!(check_conf_change(&groups, false).is_err());
        assert!(check_conf_change(&groups, true).is_err());
        // Inside a ConfChangeV2's single change (tag 2).
        let mut in_single = vec![2 << 3 | 2];
        let mut len = groups.len();
        while len >= 0x80 {
            in_single.push((len as u8) | 0x80);
            len >>= 7;
        }
        in_single.push(len as u8);
        in_single.extend_from_slice(&groups);
        assert!(check_conf_change(&in_single, true).is_err());
        assert!(check_entry_data(ENTRY_CONF_CHANGE_V2, &in_single).is_err());
        // Normal entries' data is detcd's own encoding, never protobuf's.
        assert!(check_entry_data(0, &groups).is_ok());
    }
}
