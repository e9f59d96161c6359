//! The applied state as the on-disk backend holds it (`crate::backend`),
//! and back: the revision log in its `key` table, the rest of the state
//! (`StateMachine::encode_parts`), the raft term and configuration at the
//! consistent index in its `meta` table.

use protobuf::Message as _;
use raft::eraftpb::ConfState;

use crate::apply::StateMachine;
use std::sync::Arc;

use crate::backend::{Batch, Durable, Loaded, StateMeta, View, Writer};
use crate::mvcc::{ColdLog, Rebuild, Revision, NEVER_COMPACTED};
use crate::storage::snapshot::Snapshot;

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
pub(super) fn whole(
    state: &StateMachine,
    term: u64,
    conf_state: &ConfState,
) -> Result<(Batch, Durable), String> {
    let store = state.store();
    let compact_revision = store.compact_revision();
    let meta = meta(state, term, conf_state, Some(state.encode_parts()));
    let durable = Durable {
        index: state.applied_index(),
        term,
        conf_state: meta.conf_state.clone(),
        revision: meta.current_revision,
    };
    let batch = Batch {
        consistent_index: state.applied_index(),
        records: store
            .records_since(i64::MIN)
            .map_err(|error| error.to_string())?,
        compaction: (compact_revision != NEVER_COMPACTED).then(|| (compact_revision, Vec::new())),
        meta: Some(meta),
    };
    Ok((batch, durable))
}

/// What a state is restored from: the backend, or a view of it. Its
/// revisions are scanned, and its values read, through `cold_log`.
pub(super) trait Source {
    fn load(&self) -> Result<Loaded, crate::backend::Error>;
    fn cold_log(&self) -> Arc<dyn ColdLog>;
}

impl Source for Writer {
    fn load(&self) -> Result<Loaded, crate::backend::Error> {
        Writer::load(self)
    }
    fn cold_log(&self) -> Arc<dyn ColdLog> {
        Writer::cold_log(self)
    }
}

impl Source for Arc<View> {
    fn load(&self) -> Result<Loaded, crate::backend::Error> {
        Ok(self.loaded().clone())
    }
    fn cold_log(&self) -> Arc<dyn ColdLog> {
        self.clone()
    }
}

/// The state a view of the backend holds (a backup or a hash is taken
/// from it, while the member goes on): its store reads the values from
/// the view, which lives as long as the state.
pub fn state_in(view: View) -> Result<StateMachine, String> {
    Ok(match restore(&Arc::new(view), 0)? {
        Some((state, _, _)) => state,
        None => StateMachine::new(0, crate::membership::Members::default()),
    })
}

/// A snapshot for followers: the state a view of the backend holds, at
/// its consistent index, with the term and configuration there.
pub(super) fn snapshot_in(view: View) -> Result<Snapshot, String> {
    let (state, conf_state, durable) =
        restore(&Arc::new(view), 0)?.ok_or("the backend holds no state yet")?;
    Ok(Snapshot {
        index: durable.index,
        term: durable.term,
        conf_state,
        state: state.encode().map_err(|error| error.to_string())?,
    })
}

/// The state `backend` holds, checked; `None` for a backend that holds
/// none yet (made at a first start, nothing applied since). The key index
/// is rebuilt from a scan of every revision, each checked; the values
/// stay on disk, read from there (`Store::attach_cold`).
pub(super) fn restore(
    backend: &impl Source,
    quota_bytes: i64,
) -> Result<Option<(StateMachine, ConfState, Durable)>, String> {
    let loaded = backend.load().map_err(|error| error.to_string())?;
    let Some(meta) = loaded.meta else {
        let mut any = false;
        backend
            .cold_log()
            .scan(Revision::new(0, 0), i64::MAX, &mut |_, _| any = true)?;
        if loaded.consistent_index == 0 && !any {
            return Ok(None);
        }
        return Err(format!(
            "it holds changes up to index {} but not the state there",
            loaded.consistent_index
        ));
    };
    let mut rebuild = Rebuild::new(meta.current_revision, loaded.compact_revision, false)
        .map_err(|error| error.to_string())?;
    let mut refused = None;
    backend
        .cold_log()
        .scan(Revision::new(0, 0), i64::MAX, &mut |revision, record| {
            if refused.is_none() {
                refused = rebuild.push(revision, record).err();
            }
        })?;
    if let Some(error) = refused {
        return Err(error.to_string());
    }
    let mut store = rebuild.finish().map_err(|error| error.to_string())?;
    store.attach_cold(backend.cold_log(), meta.current_revision);
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
        revision: meta.current_revision,
    };
    Ok(Some((state, conf_state, durable)))
}
