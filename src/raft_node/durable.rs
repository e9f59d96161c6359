//! The applied state as the on-disk backend holds it (`crate::backend`),
//! and back: the revision log in its `key` table, the rest of the state
//! (`StateMachine::encode_parts`), the raft term and configuration at the
//! consistent index in its `meta` table.

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::eraftpb::ConfState;

use crate::apply::StateMachine;
use crate::backend::{Batch, Durable, Loaded, StateMeta};
use crate::mvcc::{Store, NEVER_COMPACTED};

/// What the backend stores as the state at `state.applied_index()`,
/// with `parts` (`StateMachine::encode_parts`, or `None`: unchanged).
fn meta(
    state: &StateMachine,
    term: u64,
    conf_state: &ConfState,
    parts: Option<Vec<u8>>,
) -> StateMeta {
    StateMeta {
        term,
        conf_state: conf_state.write_to_bytes().expect("a conf state encodes"),
        current_revision: state.store().current_revision(),
        state: parts,
    }
}

/// What the backend must write to follow `state` since the last call:
/// the store's changes, and the rest of the state if it changed (with
/// many leases it is large, and most rounds change only keys).
pub(super) fn changes(state: &mut StateMachine, term: u64, conf_state: &ConfState) -> Batch {
    let changes = state.take_changes();
    let parts = state.take_parts_if_changed();
    Batch {
        consistent_index: state.applied_index(),
        records: changes.records,
        compaction: changes.compaction,
        meta: Some(meta(state, term, conf_state, parts)),
    }
}

/// The whole of `state`, for a backend that starts over from it.
pub(super) fn whole(state: &StateMachine, term: u64, conf_state: &ConfState) -> (Batch, Durable) {
    let store = state.store();
    let compact_revision = store.compact_revision();
    let meta = meta(state, term, conf_state, Some(state.encode_parts()));
    let durable = Durable {
        index: state.applied_index(),
        term,
        conf_state: meta.conf_state.clone(),
    };
    let batch = Batch {
        consistent_index: state.applied_index(),
        records: store
            .records_since(i64::MIN)
            .map(|(revision, record)| (*revision, record.clone()))
            .collect(),
        compaction: (compact_revision != NEVER_COMPACTED).then(|| (compact_revision, Vec::new())),
        meta: Some(meta),
    };
    (batch, durable)
}

/// The state a backend holds, checked; `None` for a backend that holds
/// none yet (made at a first start, nothing applied since).
pub(super) fn restore(
    loaded: Loaded,
    quota_bytes: i64,
) -> Result<Option<(StateMachine, ConfState, Durable)>, String> {
    let Some(meta) = loaded.meta else {
        if loaded.consistent_index == 0 && loaded.records.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "it holds changes up to index {} but not the state there",
            loaded.consistent_index
        ));
    };
    let records: BTreeMap<_, _> = loaded.records.into_iter().collect();
    let store = Store::from_revision_log(meta.current_revision, loaded.compact_revision, records)
        .map_err(|error| error.to_string())?;
    let parts = meta.state.as_deref().ok_or("it holds no state parts")?;
    let mut state = StateMachine::from_stored(parts, store, quota_bytes)?;
    // The parts are written when they change: as of their own applied
    // index, unchanged by the key-value entries applied after it.
    if state.applied_index() > loaded.consistent_index {
        return Err(format!(
            "its consistent index is {} but its state is applied to {}",
            loaded.consistent_index,
            state.applied_index()
        ));
    }
    state.skip(loaded.consistent_index);
    crate::proto::raft_shape::check_conf_state(&meta.conf_state)?;
    let mut conf_state = ConfState::default();
    conf_state
        .merge_from_bytes(&meta.conf_state)
        .map_err(|error| format!("bad conf state: {error}"))?;
    let durable = Durable {
        index: loaded.consistent_index,
        term: meta.term,
        conf_state: meta.conf_state,
    };
    Ok(Some((state, conf_state, durable)))
}
