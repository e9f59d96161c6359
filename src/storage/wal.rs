//! The write-ahead log: raft entries and hard state in CRC-framed records,
//! spread over numbered segment files, one fsync per batch (group commit).
//!
//! Segments are preallocated, as etcd's are: a segment appears whole at
//! its final size (zeros past its data, the size named in its header), and
//! batches are written in place. So a segment found shorter than its
//! header says was cut after it was written, and opening fails: bytes that
//! were fsynced never vanish silently. Ahead of the batches, the zeros are
//! written out in `ZEROS_AHEAD_BYTES` steps (`Disk::write_zeros_ahead`):
//! a batch's fdatasync is then one device write, not two.
//!
//! Recovery rules (DESIGN.md "Storage model"): past the last valid record
//! of the last segment, zeros are the clean end. A record that fails there
//! is a torn write from a crash only if part of it never landed (a whole
//! file-aligned sector of it is zeros) and nothing follows it; it is then
//! zeroed away and logged. A bad record anywhere else is corruption and
//! opening fails — the node never serves from a log it cannot trust.
//! Segments written before preallocation (no size in their header) are
//! read by the older rule: a record cut short at the very end of the last
//! segment is a torn write.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use thiserror::Error;

use super::disk::{Disk, SECTOR_BYTES};
use super::record::{self, DecodeError, RecordType};

/// Where a data dir keeps its WAL unless `--wal-dir` names another place
/// (etcd's layout).
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("wal")
}

/// The WAL's directory: `dedicated` (`--wal-dir`; empty means unset, as
/// in etcd's sample config file), or else `default_dir`.
pub fn dir(dedicated: Option<&Path>, data_dir: &Path) -> PathBuf {
    match dedicated {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => default_dir(data_dir),
    }
}

/// Each segment file is preallocated to this size (etcd's 64 MB), or to
/// what its first batch needs if that is more; a batch that does not fit
/// in the tail starts the next segment. The simulator's disk (and the unit
/// tests') lives in memory, so there segments are 16 KiB, which also
/// makes them roll over (and be sealed and released) within a run.
#[cfg(not(any(madsim, test)))]
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
#[cfg(any(madsim, test))]
pub const SEGMENT_BYTES: u64 = 16 * 1024;

const SEGMENT_SUFFIX: &str = ".wal";

/// How far ahead of the tail's data its preallocated zeros are written
/// out, once the data reaches what was written out before. Blocks reserved
/// by fallocate are unwritten: the first fdatasync after writing into each
/// one also writes the file's metadata, a second device write (measured
/// here: fdatasync p50 0.16 ms for 2.5 KiB batches into reserved blocks,
/// 0.11 ms with zeros written 256 KiB ahead). One metadata write per step
/// instead; larger steps made that one fsync slow enough to show in p99.
pub const ZEROS_AHEAD_BYTES: u64 = 256 * 1024;

/// A seal record's size: every segment keeps room for one.
const SEAL_BYTES: usize = record::HEADER_BYTES + 8;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("wal i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wal corrupt in {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The data dir is etcd's (see `WRITTEN_BY_ETCD`).
    #[error("{path} is etcd's WAL, not detcd's: {WRITTEN_BY_ETCD}")]
    WrittenByEtcd { path: PathBuf },
    /// The simulator's nemesis crashes the member at this point.
    #[cfg(madsim)]
    #[error("crash point {0:?}")]
    CrashPoint(crate::probe::CrashPoint),
}

/// Who owns this log; written at the start of every segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// A snapshot marker: a snapshot file at (index, term) was durably saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMark {
    pub index: u64,
    pub term: u64,
}

/// Everything read back from the log on open.
#[derive(Debug, Default)]
pub struct Replay {
    pub metadata: Metadata,
    pub hard_state: HardState,
    pub conf_state: Option<ConfState>,
    /// Consecutive entries, later writes having replaced conflicting ones.
    pub entries: Vec<Entry>,
    pub snapshot_marks: Vec<SnapshotMark>,
    /// What was cut from a torn tail, if anything.
    pub torn_tail: Option<TornTail>,
    /// The segment the last replayed one says comes next, if it was sealed.
    sealed_next: Option<u64>,
}

/// A torn write cut from the end of the log on open: always logged, so no
/// truncation is silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the valid log ends (the file's new length).
    pub offset: u64,
    pub bytes: u64,
    /// What the dropped bytes were: a record cut short, or zeros.
    pub what: &'static str,
}

#[derive(Clone, Debug)]
struct Segment {
    seq: u64,
    first_index: u64,
}

impl Segment {
    fn name(&self) -> String {
        format!(
            "{:016x}-{:016x}{SEGMENT_SUFFIX}",
            self.seq, self.first_index
        )
    }

    fn parse(name: &str) -> Option<Segment> {
        let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
        let (seq, first_index) = stem.split_once('-')?;
        Some(Segment {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(first_index, 16).ok()?,
        })
    }
}

pub struct Wal {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    metadata: Metadata,
    conf_state: Option<ConfState>,
    /// The hard state and snapshot mark written to the log (not those
    /// still pending): a new segment's header repeats them, and must never
    /// claim what a crash could still take back.
    hard_state: HardState,
    last_mark: SnapshotMark,
    pending_hard_state: Option<HardState>,
    pending_mark: Option<SnapshotMark>,
    segments: Vec<Segment>,
    /// Where the tail segment's data ends: the next batch goes here.
    tail_bytes: u64,
    /// The tail segment's preallocated size; `None` for a segment written
    /// before preallocation, which the next batch leaves for a new one.
    tail_len: Option<u64>,
    last_index: u64,
    pending: Vec<u8>,
    /// The index of the first entry in `pending`, if it holds one.
    pending_first_index: Option<u64>,
    /// Bytes were written to the tail since its last fsync.
    unsynced: bool,
    /// Where the zeros written out ahead of the tail's data end
    /// (`ZEROS_AHEAD_BYTES`).
    zeroed_to: u64,
    segment_bytes: u64,
    /// The last entry index the last write reached, and how far the log
    /// is durable by the WAL's own account of its syncs, shared with the
    /// raft loop (simulator only: `synced_index`).
    #[cfg(madsim)]
    written_index: u64,
    #[cfg(madsim)]
    synced: Arc<super::synced::SyncedLog>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("last_index", &self.last_index)
            .finish()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Wal {
    /// True if `dir` holds at least one segment.
    pub fn exists(disk: &dyn Disk, dir: &Path) -> bool {
        disk.list(dir)
            .map(|names| names.iter().any(|name| Segment::parse(name).is_some()))
            .unwrap_or(false)
    }

    /// Creates a new log in `dir` (which must not hold one). The first
    /// segment appears atomically, complete with metadata, conf state and
    /// the bootstrap entries and hard state, so a crash leaves either
    /// nothing or a whole bootstrap.
    pub fn create(
        disk: Arc<dyn Disk>,
        dir: &Path,
        metadata: Metadata,
        conf_state: ConfState,
        entries: &[Entry],
        hard_state: &HardState,
    ) -> Result<Wal, WalError> {
        disk.create_dir_all(dir).map_err(io_error(dir))?;
        let mut wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            metadata,
            conf_state: Some(conf_state),
            hard_state: HardState::default(),
            last_mark: SnapshotMark::default(),
            pending_hard_state: None,
            pending_mark: None,
            segments: Vec::new(),
            tail_bytes: 0,
            tail_len: None,
            unsynced: false,
            zeroed_to: 0,
            last_index: 0,
            pending: Vec::new(),
            pending_first_index: None,
            segment_bytes: SEGMENT_BYTES,
            #[cfg(madsim)]
            written_index: 0,
            #[cfg(madsim)]
            synced: Arc::default(),
        };
        wal.append(entries, None);
        wal.hard_state = hard_state.clone();
        let bootstrap = std::mem::take(&mut wal.pending);
        wal.pending_first_index = None;
        wal.start_segment(0, 1, &bootstrap)?;
        #[cfg(madsim)]
        {
            wal.written_index = wal.last_index;
            wal.synced.recovered(wal.last_index);
        }
        if let Some(parent) = dir.parent() {
            wal.disk.sync_dir(parent).map_err(io_error(parent))?;
        }
        Ok(wal)
    }

    /// Opens the log in `dir`, replaying every record.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<(Wal, Replay), WalError> {
        let names = disk.list(dir).map_err(io_error(dir))?;
        let mut segments: Vec<Segment> = names
            .iter()
            .filter_map(|name| Segment::parse(name))
            .collect();
        segments.sort_by_key(|segment| segment.seq);
        if segments.is_empty() {
            return Err(WalError::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                reason: "no wal segment".into(),
            });
        }
        for pair in segments.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                let path = dir.join(pair[1].name());
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    reason: format!("segment {} is missing", pair[0].seq + 1),
                });
            }
        }
        let mut replay = Replay::default();
        let mut tail_bytes = 0;
        let mut tail_len = None;
        for (position, segment) in segments.iter().enumerate() {
            let path = dir.join(segment.name());
            let is_last = position + 1 == segments.len();
            if let Some(next) = replay.sealed_next.take() {
                if next != segment.seq {
                    return Err(WalError::Corrupt {
                        path,
                        offset: 0,
                        reason: format!(
                            "the segment before it was sealed to continue in segment {next}"
                        ),
                    });
                }
            }
            let bytes = disk.read(&path).map_err(io_error(&path))?;
            if position == 0 && written_by_etcd(&bytes) {
                return Err(WalError::WrittenByEtcd { path });
            }
            let tail = if is_last {
                Tail::Last
            } else if position + 2 == segments.len() {
                Tail::SealedTo(segments[position + 1].seq)
            } else {
                Tail::Middle
            };
            let end = replay_segment(&bytes, &path, tail, &mut replay)?;
            let valid = end.valid;
            // Nonzero bytes past the valid records: a torn write (checked
            // by replay_segment) to drop.
            let dropped = bytes[valid..]
                .iter()
                .rposition(|&byte| byte != 0)
                .map_or(0, |last| last + 1);
            if !is_last && end.preallocated.is_some() && !end.sealed {
                // A crash while sealing: the next segment was already
                // durable, so nothing is lost (see `roll`). Finish the seal
                // now, so the segment reads whole once it is no longer the
                // one before the newest.
                let next = segments[position + 1].seq;
                let mut seal = Vec::new();
                record::encode(RecordType::Sealed, &next.to_le_bytes(), &mut seal);
                seal.resize(seal.len().max(dropped), 0);
                disk.write_at(&path, valid as u64, &seal)
                    .map_err(io_error(&path))?;
                disk.sync(&path).map_err(io_error(&path))?;
                replay.sealed_next = Some(next);
                tracing::warn!(
                    path = %path.display(),
                    "a segment's seal was cut short by a crash; completed it (the next segment is whole)"
                );
            } else if !is_last && end.preallocated.is_none() && valid < bytes.len() {
                // The same for a segment written before preallocation.
                let next = segments[position + 1].seq;
                let mut seal = Vec::new();
                record::encode(RecordType::Sealed, &next.to_le_bytes(), &mut seal);
                disk.truncate(&path, valid as u64)
                    .map_err(io_error(&path))?;
                disk.append(&path, &seal).map_err(io_error(&path))?;
                disk.sync(&path).map_err(io_error(&path))?;
                replay.sealed_next = Some(next);
                tracing::warn!(
                    path = %path.display(),
                    "a seal record was cut short by a crash; completed it (the next segment is whole)"
                );
            } else if is_last && end.preallocated.is_some() && dropped > 0 {
                disk.write_at(&path, valid as u64, &vec![0; dropped])
                    .map_err(io_error(&path))?;
                disk.sync(&path).map_err(io_error(&path))?;
                replay.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: valid as u64,
                    bytes: dropped as u64,
                    what: "a record cut short (part of it never landed); zeroed",
                });
            } else if is_last && end.preallocated.is_none() && valid < bytes.len() {
                disk.truncate(&path, valid as u64)
                    .map_err(io_error(&path))?;
                disk.sync(&path).map_err(io_error(&path))?;
                let rest = &bytes[valid..];
                replay.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: valid as u64,
                    bytes: rest.len() as u64,
                    what: if rest.iter().all(|&byte| byte == 0) {
                        "zeros (the file grew, its data never landed)"
                    } else {
                        "a record cut short"
                    },
                });
            }
            tail_bytes = valid as u64;
            tail_len = end.preallocated;
        }
        if let Some(next) = replay.sealed_next {
            // The last segment says the log went on: the newest segment is
            // gone, and with it entries this member may have acknowledged.
            let last = segments.last().expect("segments is not empty");
            return Err(WalError::Corrupt {
                path: dir.join(last.name()),
                offset: 0,
                reason: format!(
                    "segment {next} is missing: this segment was sealed when the log moved on to it"
                ),
            });
        }
        // After a kill -9 (the machine ran on), what the process wrote and
        // never synced is still in the page cache and was just replayed:
        // raft takes every replayed entry as persisted, may apply it, and
        // the backend may then commit it durably. Make it durable before
        // anything builds on it, or a power loss after the restart could
        // leave the backend ahead of the WAL. The last two segments: a
        // kill while rolling over can leave the older one's seal unsynced.
        for segment in segments.iter().rev().take(2) {
            let path = dir.join(segment.name());
            disk.sync(&path).map_err(io_error(&path))?;
        }
        disk.sync_dir(dir).map_err(io_error(dir))?;
        if let Some(parent) = dir.parent() {
            disk.sync_dir(parent).map_err(io_error(parent))?;
        }
        let last_index = replay.entries.last().map(|entry| entry.index).unwrap_or(0);
        #[cfg(madsim)]
        let synced_through = (replay.snapshot_marks.iter())
            .map(|mark| mark.index)
            .fold(last_index, u64::max);
        let wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            metadata: replay.metadata,
            conf_state: replay.conf_state.clone(),
            hard_state: replay.hard_state.clone(),
            last_mark: replay.snapshot_marks.last().copied().unwrap_or_default(),
            pending_hard_state: None,
            pending_mark: None,
            segments,
            tail_bytes,
            tail_len,
            unsynced: false,
            zeroed_to: tail_bytes,
            last_index,
            pending: Vec::new(),
            pending_first_index: None,
            segment_bytes: SEGMENT_BYTES,
            #[cfg(madsim)]
            written_index: synced_through,
            #[cfg(madsim)]
            synced: Arc::new(super::synced::SyncedLog::new(synced_through)),
        };
        Ok((wal, replay))
    }

    /// Buffers entries (replacing any at or after the first one's index on
    /// replay) and, if given, a new hard state. Nothing is durable before `sync`.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) {
        #[cfg(madsim)]
        if let Some(first) = entries.first() {
            // Entries replaced from here on are durable no more.
            self.synced_below(first.index);
        }
        for entry in entries {
            self.pending_first_index.get_or_insert(entry.index);
            let bytes = entry.write_to_bytes().expect("raft entry encodes");
            record::encode(RecordType::Entry, &bytes, &mut self.pending);
            self.last_index = entry.index;
        }
        if let Some(hard_state) = hard_state {
            #[cfg(madsim)]
            let forgotten;
            #[cfg(madsim)]
            let hard_state = if crate::sabotage::active(crate::sabotage::Sabotage::VoteForgotten) {
                forgotten = {
                    let mut without_vote = hard_state.clone();
                    without_vote.vote = 0;
                    without_vote
                };
                &forgotten
            } else {
                hard_state
            };
            let bytes = hard_state.write_to_bytes().expect("hard state encodes");
            record::encode(RecordType::HardState, &bytes, &mut self.pending);
            self.pending_hard_state = Some(hard_state.clone());
        }
    }

    /// Records that a snapshot at `mark` is durable. Entries up to it may
    /// later be released.
    pub fn mark_snapshot(&mut self, mark: SnapshotMark) {
        record::encode(RecordType::Snapshot, &encode_mark(mark), &mut self.pending);
        self.pending_mark = Some(mark);
    }

    /// Records that a snapshot from the leader replaced the log: on replay
    /// every earlier entry is dropped, and the next entry follows the mark.
    pub fn mark_installed(&mut self, mark: SnapshotMark) {
        record::encode(
            RecordType::SnapshotInstalled,
            &encode_mark(mark),
            &mut self.pending,
        );
        self.pending_mark = Some(mark);
        self.last_index = mark.index;
        self.pending_first_index.get_or_insert(mark.index + 1);
        #[cfg(madsim)]
        self.synced_below(1);
    }

    /// How far the log is durable by the WAL's own account of its syncs,
    /// for the simulator's check that no acknowledgement (and no count of
    /// raft's) runs ahead of it. Shared: it moves while a write that holds
    /// the WAL is in flight, and the raft loop lowers it as soon as a
    /// Ready replaces entries (`SyncedLog`).
    #[cfg(madsim)]
    pub fn synced_index(&self) -> Arc<super::synced::SyncedLog> {
        self.synced.clone()
    }

    #[cfg(madsim)]
    fn synced_below(&mut self, index: u64) {
        self.synced.dropped_from(index);
        self.written_index = self.written_index.min(index.saturating_sub(1));
    }

    /// Writes everything buffered to the tail segment, in place, first
    /// moving on to a new segment if it does not fit. Not durable yet: a
    /// crash before `sync` may lose it or leave a torn part of it.
    pub fn write(&mut self) -> Result<(), WalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fits = self
            .tail_len
            .is_some_and(|len| self.tail_bytes + (self.pending.len() + SEAL_BYTES) as u64 <= len);
        if !fits {
            self.roll()?;
        }
        let path = self.tail_path();
        self.write_zeros_ahead(&path)?;
        self.disk
            .write_at(&path, self.tail_bytes, &self.pending)
            .map_err(io_error(&path))?;
        self.tail_bytes += self.pending.len() as u64;
        self.pending.clear();
        self.pending_first_index = None;
        if let Some(hard_state) = self.pending_hard_state.take() {
            self.hard_state = hard_state;
        }
        if let Some(mark) = self.pending_mark.take() {
            self.last_mark = mark;
        }
        self.unsynced = true;
        #[cfg(madsim)]
        {
            self.written_index = self.last_index;
        }
        Ok(())
    }

    /// Writes out the tail's zeros past the pending batch, a step ahead,
    /// if the batch reaches past those written out before. Only zeros past
    /// the data, and only inside the preallocated length.
    fn write_zeros_ahead(&mut self, path: &Path) -> Result<(), WalError> {
        let Some(len) = self.tail_len else {
            return Ok(());
        };
        let end = self.tail_bytes + self.pending.len() as u64;
        if end <= self.zeroed_to || end >= len {
            return Ok(());
        }
        let ahead = (end + ZEROS_AHEAD_BYTES).min(len);
        self.disk
            .write_zeros_ahead(path, end, ahead - end)
            .map_err(io_error(path))?;
        self.zeroed_to = ahead;
        Ok(())
    }

    /// Writes anything still buffered and fsyncs the tail segment: the
    /// group-commit point.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.write()?;
        self.sync_tail()
    }

    fn sync_tail(&mut self) -> Result<(), WalError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = self.tail_path();
        #[cfg(madsim)]
        let skip_fsync = crate::sabotage::active(crate::sabotage::Sabotage::AckBeforeFsync);
        #[cfg(not(madsim))]
        let skip_fsync = false;
        if !skip_fsync {
            self.disk.sync(&path).map_err(io_error(&path))?;
        }
        self.unsynced = false;
        // By the WAL's own account, skipped fsync or not: what it claims
        // after a sync is the raft loop's to respect; whether the disk
        // keeps it is for power losses to show. Only replaced entries
        // lower it (`synced_below`), never a sync.
        #[cfg(madsim)]
        self.synced.synced(self.written_index);
        Ok(())
    }

    /// Moves the log on to a new segment sized for what is pending. The
    /// old tail is synced and the new segment made durable first; only
    /// then is the old one sealed. A crash between the two leaves an
    /// unsealed segment with a successor, which is fine; a sealed one
    /// without its successor means the newest segment was lost.
    fn roll(&mut self) -> Result<(), WalError> {
        self.sync_tail()?;
        let old_tail = self.tail_path();
        let (old_bytes, old_len) = (self.tail_bytes, self.tail_len);
        let seq = self.segments.last().map_or(0, |segment| segment.seq + 1);
        let first_index = self.pending_first_index.unwrap_or(self.last_index + 1);
        self.start_segment(seq, first_index, &[])?;
        #[cfg(madsim)]
        self.crash_point(crate::probe::CrashPoint::WalRolledNotSealed)?;
        let mut seal = Vec::new();
        record::encode(RecordType::Sealed, &seq.to_le_bytes(), &mut seal);
        let sealing = match old_len {
            Some(_) => self.disk.write_at(&old_tail, old_bytes, &seal),
            None => self.disk.append(&old_tail, &seal),
        };
        sealing.map_err(io_error(&old_tail))?;
        self.disk.sync(&old_tail).map_err(io_error(&old_tail))?;
        tracing::info!(
            segment = %self.tail_path().display(),
            bytes = self.tail_len.unwrap_or_default(),
            "started a new preallocated WAL segment"
        );
        Ok(())
    }

    /// Preallocates new segments to `bytes` instead of `SEGMENT_BYTES`
    /// (tests, which need several segments without writing 64 MiB).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    /// Removes whole segments holding only entries at or below `index`
    /// (covered by a durable snapshot). The tail segment always stays.
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        let mut released = false;
        while self.segments.len() > 1 && self.segments[1].first_index <= index + 1 {
            let path = self.dir.join(self.segments[0].name());
            self.disk.remove(&path).map_err(io_error(&path))?;
            self.segments.remove(0);
            released = true;
        }
        self.disk.sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        if released {
            #[cfg(madsim)]
            self.crash_point(crate::probe::CrashPoint::WalReleased)?;
        }
        Ok(())
    }

    /// Stops here if the simulator's nemesis armed `point` for this member.
    #[cfg(madsim)]
    fn crash_point(&self, point: crate::probe::CrashPoint) -> Result<(), WalError> {
        if crate::probe::crash_here(self.metadata.member_id, point) {
            return Err(WalError::CrashPoint(point));
        }
        Ok(())
    }

    pub fn metadata(&self) -> Metadata {
        self.metadata
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn tail_path(&self) -> PathBuf {
        self.dir
            .join(self.segments.last().expect("a wal has a segment").name())
    }

    /// Starts a segment that stands alone: it names its preallocated size
    /// and repeats the metadata, the bootstrap conf state, the hard state
    /// and the last snapshot mark, so older segments can be released.
    fn start_segment(
        &mut self,
        seq: u64,
        first_index: u64,
        bootstrap_entries: &[u8],
    ) -> Result<(), WalError> {
        let segment = Segment { seq, first_index };
        let mut header = Vec::new();
        record::encode(
            RecordType::Metadata,
            &encode_metadata(self.metadata),
            &mut header,
        );
        if let Some(conf_state) = &self.conf_state {
            record::encode(
                RecordType::ConfState,
                &conf_state.write_to_bytes().expect("encodes"),
                &mut header,
            );
        }
        header.extend_from_slice(bootstrap_entries);
        record::encode(
            RecordType::HardState,
            &self.hard_state.write_to_bytes().expect("encodes"),
            &mut header,
        );
        if self.last_mark != SnapshotMark::default() {
            record::encode(
                RecordType::Snapshot,
                &encode_mark(self.last_mark),
                &mut header,
            );
        }
        // The header's own size record, then room for what is pending and
        // the seal that will close the segment.
        let size_record = record::HEADER_BYTES + 8;
        let needed = (header.len() + size_record + self.pending.len() + SEAL_BYTES) as u64;
        let len = self.segment_bytes.max(needed);
        let mut sized = Vec::with_capacity(header.len() + size_record);
        record::encode(RecordType::Preallocated, &len.to_le_bytes(), &mut sized);
        sized.extend_from_slice(&header);
        let path = self.dir.join(segment.name());
        super::disk::write_preallocated(&*self.disk, &path, &sized, len)
            .map_err(io_error(&path))?;
        self.segments.push(segment);
        self.tail_bytes = sized.len() as u64;
        self.tail_len = Some(len);
        self.zeroed_to = self.tail_bytes;
        Ok(())
    }
}

/// Where a segment sits, for what its end may look like.
#[derive(Clone, Copy)]
enum Tail {
    /// The newest segment: its end may be a torn write.
    Last,
    /// The one before the newest, whose seal naming that segment may have
    /// been cut short by a crash.
    SealedTo(u64),
    /// Any other: complete, or it is corrupt.
    Middle,
}

/// How a segment's replay ended.
struct SegmentEnd {
    /// How many leading bytes hold valid records.
    valid: usize,
    /// The size the segment says it was preallocated to; `None` for a
    /// segment written before preallocation.
    preallocated: Option<u64>,
    /// Its last record is a seal.
    sealed: bool,
}

/// What to do instead, when a WAL etcd wrote is refused (the formats
/// differ).
pub const WRITTEN_BY_ETCD: &str = "detcd does not read an etcd data dir (etcdctl snapshot \
restore makes one); save a snapshot from etcd with `etcdctl snapshot save` and restore it with \
`detcd snapshot restore`";

/// Whether a first segment starts as etcd's do: a record frame (a u64
/// length of 4 to 8, its top byte 0 or marking padding) holding a
/// `walpb.Record` of type 4 (crcType) and its crc (`08 04 10 …`). No
/// detcd segment does: its first record is the preallocation header, a
/// u32 length and then its type (8), not 0.
fn written_by_etcd(bytes: &[u8]) -> bool {
    bytes.len() >= 11
        && (4..=8).contains(&bytes[0])
        && bytes[1..7].iter().all(|&byte| byte == 0)
        && (bytes[7] == 0 || bytes[7] & 0x80 != 0)
        && bytes[8..11] == [0x08, 0x04, 0x10]
}

/// Replays one segment into `replay`. A bad record is tolerated only as
/// the torn tail of the last segment, or as a seal cut short in the one
/// before it; a preallocated segment of another size than its header says
/// was cut or grown after it was written.
fn replay_segment(
    bytes: &[u8],
    path: &Path,
    tail: Tail,
    replay: &mut Replay,
) -> Result<SegmentEnd, WalError> {
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut end = SegmentEnd {
        valid: 0,
        preallocated: None,
        sealed: false,
    };
    let failure = loop {
        if end.valid == bytes.len() {
            break None;
        }
        match record::decode(&bytes[end.valid..]) {
            Ok((RecordType::Preallocated, payload, used)) => {
                let len = decode_words::<1>(payload)
                    .ok_or_else(|| corrupt(end.valid, "bad preallocated size".into()))?[0];
                if len != bytes.len() as u64 {
                    return Err(corrupt(
                        bytes.len().min(len as usize),
                        format!(
                            "the segment is {} bytes but was preallocated to {len}: it was {} \
                             after it was written, and fsynced records may be gone",
                            bytes.len(),
                            if (bytes.len() as u64) < len {
                                "cut"
                            } else {
                                "grown"
                            }
                        ),
                    ));
                }
                end.preallocated = Some(len);
                end.valid += used;
            }
            Ok((record_type, payload, used)) => {
                apply_record(record_type, payload, replay)
                    .map_err(|reason| corrupt(end.valid, reason))?;
                end.valid += used;
                if record_type == RecordType::Sealed && end.preallocated.is_some() {
                    end.sealed = true;
                    break None;
                }
            }
            Err(error) => break Some(error),
        }
    };
    let rest = &bytes[end.valid..];
    let clean = rest.iter().all(|&byte| byte == 0);
    let torn_here = matches!(tail, Tail::Last | Tail::SealedTo(_));
    match (failure, end.preallocated) {
        (None, _) if end.sealed && !clean => {
            Err(corrupt(end.valid, "data after the segment's seal".into()))
        }
        (None, _) => Ok(end),
        (Some(_), Some(_)) if clean => Ok(end),
        (Some(_), Some(_)) if torn_here && torn_in_place(bytes, end.valid) => Ok(end),
        (Some(error), None) if appended_tail_is_torn(rest, &error, tail) => Ok(end),
        (Some(error), _) => Err(corrupt(end.valid, error.to_string())),
    }
}

/// Whether the record that failed at the start of `rest`, in a segment
/// written before preallocation, is what a crash leaves where `tail` is.
fn appended_tail_is_torn(rest: &[u8], error: &DecodeError, tail: Tail) -> bool {
    match tail {
        Tail::Last => is_torn_tail(rest, error),
        Tail::SealedTo(next) => {
            // A prefix of the seal, or zeros where the file grew but its
            // data never landed.
            let mut seal = Vec::new();
            record::encode(RecordType::Sealed, &next.to_le_bytes(), &mut seal);
            rest.len() < seal.len()
                && (seal.starts_with(rest) || rest.iter().all(|&byte| byte == 0))
        }
        Tail::Middle => false,
    }
}

/// Is the record that failed to decode at `offset` of a preallocated
/// segment a torn write? A crash leaves whole sectors from the start of
/// the unsynced write, and zeros where the rest would have landed. So a
/// torn record has a whole (file-aligned) piece that is zeros, and only
/// zeros follow it. Bit rot leaves the record's bytes all there. (A record
/// whose own data holds a zero sector, damaged as the last one, would be
/// taken for torn: etcd's `isTornEntry` has the same limit.)
fn torn_in_place(bytes: &[u8], offset: usize) -> bool {
    #[cfg(madsim)]
    if crate::sabotage::active(crate::sabotage::Sabotage::CorruptionAsTornTail) {
        return true;
    }
    let rest = &bytes[offset..];
    let extent = record::declared_len(rest)
        .unwrap_or(record::HEADER_BYTES)
        .min(rest.len());
    let end = offset + extent;
    if bytes[end..].iter().any(|&byte| byte != 0) {
        return false;
    }
    let mut start = offset;
    while start < end {
        let piece_end = ((start / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if bytes[start..piece_end].iter().all(|&byte| byte == 0) {
            return true;
        }
        start = piece_end;
    }
    false
}

/// Is the record that failed to decode at the start of `rest` a torn tail
/// of a segment written before preallocation? A crash leaves a prefix of
/// the unsynced bytes, so a torn record is cut short (`Truncated`) and
/// nothing valid follows it. A file system may also extend a file without
/// its data landing (etcd's `isTornEntry` looks for the same thing), so an
/// all-zero tail is torn too. Anything else — a checksum that fails on
/// bytes that are all there — is bit rot, and must stop the member rather
/// than quietly drop an acknowledged entry.
fn is_torn_tail(rest: &[u8], error: &DecodeError) -> bool {
    #[cfg(madsim)]
    if crate::sabotage::active(crate::sabotage::Sabotage::CorruptionAsTornTail) {
        return true;
    }
    match error {
        DecodeError::Truncated => {
            (1..rest.len()).all(|offset| record::decode(&rest[offset..]).is_err())
        }
        DecodeError::Bad(_) => rest.iter().all(|&byte| byte == 0),
    }
}

fn apply_record(
    record_type: RecordType,
    payload: &[u8],
    replay: &mut Replay,
) -> Result<(), String> {
    match record_type {
        RecordType::Metadata => replay.metadata = decode_metadata(payload)?,
        RecordType::HardState => {
            let mut hard_state = HardState::default();
            hard_state
                .merge_from_bytes(payload)
                .map_err(|e| format!("bad hard state: {e}"))?;
            replay.hard_state = hard_state;
        }
        RecordType::ConfState => {
            let mut conf_state = ConfState::default();
            conf_state
                .merge_from_bytes(payload)
                .map_err(|e| format!("bad conf state: {e}"))?;
            replay.conf_state = Some(conf_state);
        }
        RecordType::Snapshot => {
            let mark = decode_mark(payload)?;
            if replay.snapshot_marks.last() != Some(&mark) {
                replay.snapshot_marks.push(mark);
            }
        }
        RecordType::SnapshotInstalled => {
            replay.entries.clear();
            replay.snapshot_marks.push(decode_mark(payload)?);
        }
        RecordType::Preallocated => {}
        RecordType::Sealed => {
            let words = decode_words::<1>(payload).ok_or("bad seal length")?;
            replay.sealed_next = Some(words[0]);
        }
        RecordType::Entry => {
            let mut entry = Entry::default();
            entry
                .merge_from_bytes(payload)
                .map_err(|e| format!("bad entry: {e}"))?;
            push_entry(&mut replay.entries, entry)?;
        }
    }
    Ok(())
}

/// Appends an entry, replacing any entries at or after its index (raft
/// overwrote an uncommitted suffix).
fn push_entry(entries: &mut Vec<Entry>, entry: Entry) -> Result<(), String> {
    if let Some(first) = entries.first() {
        let keep = entry.index.saturating_sub(first.index) as usize;
        if keep < entries.len() {
            entries.truncate(keep);
        }
    }
    if let Some(last) = entries.last() {
        if entry.index != last.index + 1 {
            return Err(format!(
                "entry {} follows entry {}: a gap in the log",
                entry.index, last.index
            ));
        }
    }
    entries.push(entry);
    Ok(())
}

fn encode_metadata(metadata: Metadata) -> Vec<u8> {
    [
        metadata.member_id.to_le_bytes(),
        metadata.cluster_id.to_le_bytes(),
    ]
    .concat()
}

fn decode_metadata(payload: &[u8]) -> Result<Metadata, String> {
    let words = decode_words::<2>(payload).ok_or("bad metadata length")?;
    Ok(Metadata {
        member_id: words[0],
        cluster_id: words[1],
    })
}

fn encode_mark(mark: SnapshotMark) -> Vec<u8> {
    [mark.index.to_le_bytes(), mark.term.to_le_bytes()].concat()
}

fn decode_mark(payload: &[u8]) -> Result<SnapshotMark, String> {
    let words = decode_words::<2>(payload).ok_or("bad snapshot mark length")?;
    Ok(SnapshotMark {
        index: words[0],
        term: words[1],
    })
}

fn decode_words<const N: usize>(payload: &[u8]) -> Option<[u64; N]> {
    if payload.len() != N * 8 {
        return None;
    }
    let mut words = [0u64; N];
    for (word, chunk) in words.iter_mut().zip(payload.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(words)
}
