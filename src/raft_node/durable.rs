//! The applied state as the on-disk backend holds it (`crate::backend`),
//! and back: the revision log in its `key` table, the rest of the state
//! (`StateMachine::encode_parts`), the raft term and configuration at the
//! consistent index in its `meta` table.

use protobuf::Message as _;
use raft::eraftpb::ConfState;

use crate::apply::StateMachine;
use std::sync::Arc;

use crate::backend::{Backend, Batch, Durable, Loaded, StateMeta, View, Writer};
use crate::mvcc::{ColdLog, Rebuild, Record, Revision};
use crate::proto::detcdpb::SnapshotHeader;
use crate::storage::snapshot::{ReadAt, SnapshotReader, SnapshotWriter};
use crate::transport::{NextChunk, SnapshotChunks, SnapshotSource};

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

/// What a state is restored from: the backend, a view of it, or a
/// database being built to replace it. Its revisions are scanned, and
/// the restored store reads its values through `cold_log`.
pub(super) trait Source {
    fn load(&self) -> Result<Loaded, crate::backend::Error>;
    fn scan(&self, visit: &mut dyn FnMut(Revision, Record)) -> Result<(), String>;
    fn cold_log(&self) -> Arc<dyn ColdLog>;
}

impl Source for Writer {
    fn load(&self) -> Result<Loaded, crate::backend::Error> {
        Writer::load(self)
    }
    fn scan(&self, visit: &mut dyn FnMut(Revision, Record)) -> Result<(), String> {
        Writer::cold_log(self).scan(Revision::new(0, 0), i64::MAX, visit)
    }
    fn cold_log(&self) -> Arc<dyn ColdLog> {
        Writer::cold_log(self)
    }
}

/// Builds the database that is to replace `backend`'s from the snapshot
/// `reader` streams (`Backend::fill_from_snapshot`, read to its end,
/// each piece checked), and the state it holds, its key index rebuilt
/// from the revisions as they go in and checked as on a restart. The
/// backend is not touched: `Writer::install` swaps the database in, after
/// which the state reads its values from there.
pub(super) fn build_from_snapshot<R: ReadAt>(
    backend: &Writer,
    reader: &mut SnapshotReader<R>,
    quota_bytes: i64,
) -> Result<(StateMachine, ConfState, Durable), String> {
    let header = reader.header().clone();
    let mut rebuild = Rebuild::new(header.current_revision, header.compact_revision, false)
        .map_err(|error| error.to_string())?;
    let path = backend
        .replacement_path()
        .map_err(|error| error.to_string())?;
    let mut durable = None;
    Backend::build_at(backend.disk().clone(), &path, |built| {
        let mut push = |revision, record: &Record| {
            (rebuild.push_ref(revision, record))
                .map_err(|error| crate::backend::Error::Corrupt(error.to_string()))
        };
        durable = Some(built.fill_from_snapshot(reader, &mut push)?);
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    let durable = durable.expect("filled");
    let meta = StateMeta {
        term: header.term,
        conf_state: header.conf_state,
        current_revision: header.current_revision,
        state: Some(header.parts),
    };
    let (state, conf_state, restored) =
        assemble(rebuild, header.index, meta, backend.cold_log(), quota_bytes)?;
    debug_assert_eq!(restored, durable);
    Ok((state, conf_state, durable))
}

/// What a view of the backend holds besides its revisions, as a
/// snapshot's header: its consistent index, the term and configuration
/// there, the rest of the state and the revisions' bounds.
pub fn view_header(view: &View) -> Result<SnapshotHeader, String> {
    let loaded = view.loaded();
    let meta = loaded
        .meta
        .as_ref()
        .ok_or("the backend holds no state yet")?;
    Ok(SnapshotHeader {
        index: loaded.consistent_index,
        term: meta.term,
        conf_state: meta.conf_state.clone(),
        parts: meta
            .state
            .clone()
            .ok_or("the backend holds no state parts")?,
        current_revision: meta.current_revision,
        compact_revision: loaded.compact_revision,
    })
}

/// A snapshot for followers: everything a view of the backend holds, at
/// its consistent index, with the term and configuration there. The
/// transport streams it (`SnapshotSource`), read from the view a piece at
/// a time, as often as followers need it while it lives.
pub(super) struct ViewSnapshot {
    header: SnapshotHeader,
    view: Arc<View>,
}

impl ViewSnapshot {
    pub(super) fn new(view: View) -> Result<ViewSnapshot, String> {
        let header = view_header(&view)?;
        Ok(ViewSnapshot {
            header,
            view: Arc::new(view),
        })
    }

    pub(super) fn header(&self) -> &SnapshotHeader {
        &self.header
    }
}

impl SnapshotSource for ViewSnapshot {
    fn index(&self) -> u64 {
        self.header.index
    }

    fn chunks(&self) -> Box<dyn SnapshotChunks> {
        Box::new(ViewChunks {
            reading: Some(ViewReading {
                view: self.view.clone(),
                header: Some(self.header.clone()),
                writer: None,
                next: Some(Revision::new(0, 0)),
            }),
        })
    }
}

/// One pass over a `ViewSnapshot`: each chunk is one piece of revisions
/// (the first the preamble and header, the last the end), read in a
/// blocking task.
struct ViewChunks {
    /// `None` only while a read is under way, or after one failed.
    reading: Option<ViewReading>,
}

struct ViewReading {
    view: Arc<View>,
    /// Until the first chunk.
    header: Option<SnapshotHeader>,
    writer: Option<SnapshotWriter<Vec<u8>>>,
    /// Where the next piece starts; `None` after the end.
    next: Option<Revision>,
}

impl ViewReading {
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let io = |error: std::io::Error| error.to_string();
        if let Some(header) = self.header.take() {
            let mut writer = SnapshotWriter::new(Vec::new(), header).map_err(io)?;
            let chunk = std::mem::take(writer.sink_mut());
            self.writer = Some(writer);
            return Ok(Some(chunk));
        }
        if self.next.is_none() {
            return Ok(None);
        }
        let records = (self.view.next_piece(&mut self.next)).map_err(|error| error.to_string())?;
        let mut writer = self.writer.take().ok_or("the stream ended")?;
        if self.next.is_none() {
            return writer.finish().map(Some).map_err(io);
        }
        for (revision, record) in &records {
            writer.push(*revision, record).map_err(io)?;
        }
        writer.flush_records().map_err(io)?;
        let chunk = std::mem::take(writer.sink_mut());
        self.writer = Some(writer);
        Ok(Some(chunk))
    }
}

impl SnapshotChunks for ViewChunks {
    fn next_chunk(&mut self) -> NextChunk<'_> {
        Box::pin(async move {
            let mut reading = self.reading.take().ok_or("an earlier read failed")?;
            let (reading, chunk) = crate::storage::blocking::run(move || {
                let chunk = reading.next_chunk();
                (reading, chunk)
            })
            .await;
            if chunk.is_ok() {
                self.reading = Some(reading);
            }
            chunk
        })
    }
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
        backend.scan(&mut |_, _| any = true)?;
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
    backend.scan(&mut |revision, record| {
        if refused.is_none() {
            refused = rebuild.push_ref(revision, &record).err();
        }
    })?;
    if let Some(error) = refused {
        return Err(error.to_string());
    }
    assemble(
        rebuild,
        loaded.consistent_index,
        meta,
        backend.cold_log(),
        quota_bytes,
    )
    .map(Some)
}

/// The state whose key index `rebuild` holds (values read through
/// `cold_log`), with the rest of it from `meta`, at `consistent_index`;
/// checked.
fn assemble(
    rebuild: Rebuild,
    consistent_index: u64,
    meta: StateMeta,
    cold_log: Arc<dyn ColdLog>,
    quota_bytes: i64,
) -> Result<(StateMachine, ConfState, Durable), String> {
    let mut store = rebuild.finish().map_err(|error| error.to_string())?;
    store.attach_cold(cold_log, meta.current_revision);
    let parts = meta.state.as_deref().ok_or("it holds no state parts")?;
    let mut state = StateMachine::from_stored(parts, store, quota_bytes)?;
    // The parts are written when they change: as of their own applied
    // index, unchanged by the key-value entries applied after it.
    if state.applied_index() > consistent_index {
        return Err(format!(
            "its consistent index is {} but its state is applied to {}",
            consistent_index,
            state.applied_index()
        ));
    }
    state.skip(consistent_index);
    crate::proto::raft_shape::check_conf_state(&meta.conf_state)?;
    let mut conf_state = ConfState::default();
    conf_state
        .merge_from_bytes(&meta.conf_state)
        .map_err(|error| format!("bad conf state: {error}"))?;
    let durable = Durable {
        index: consistent_index,
        term: meta.term,
        conf_state: meta.conf_state,
        revision: meta.current_revision,
    };
    Ok((state, conf_state, durable))
}
