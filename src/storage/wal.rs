//! The write-ahead log: raft entries and hard state in CRC-framed records,
//! spread over numbered segment files, one fsync per batch (group commit).
//!
//! Recovery rules (DESIGN.md "Storage model"): a record that fails its
//! checksum or is cut short at the very end of the last segment is a torn
//! write from a crash and is truncated away; a bad record anywhere else is
//! corruption and opening fails — the node never serves from a log it
//! cannot trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};
use thiserror::Error;

use super::disk::Disk;
use super::record::{self, DecodeError, RecordType};

/// A segment is closed and a new one started past this size, so released
/// segments free space in reasonable steps (etcd uses 64 MB too).
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".wal";

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
    hard_state: HardState,
    last_mark: SnapshotMark,
    segments: Vec<Segment>,
    tail_bytes: u64,
    last_index: u64,
    pending: Vec<u8>,
    /// Bytes were written to the tail since its last fsync.
    unsynced: bool,
    segment_bytes_max: u64,
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
            segments: Vec::new(),
            tail_bytes: 0,
            unsynced: false,
            last_index: 0,
            pending: Vec::new(),
            segment_bytes_max: SEGMENT_BYTES_MAX,
        };
        wal.append(entries, None);
        wal.hard_state = hard_state.clone();
        let bootstrap = std::mem::take(&mut wal.pending);
        wal.start_segment(0, 1, &bootstrap)?;
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
            let tail = if is_last {
                Tail::Last
            } else if position + 2 == segments.len() {
                Tail::SealedTo(segments[position + 1].seq)
            } else {
                Tail::Middle
            };
            let valid = replay_segment(&bytes, &path, tail, &mut replay)?;
            if valid < bytes.len() && !is_last {
                // A crash while sealing: the next segment was already
                // durable, so nothing is lost (see `sync`). Finish the seal
                // now, so the segment reads whole once it is no longer the
                // one before the newest.
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
            } else if valid < bytes.len() {
                // Only the last segment can get here (replay_segment fails otherwise).
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
        let wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            metadata: replay.metadata,
            conf_state: replay.conf_state.clone(),
            hard_state: replay.hard_state.clone(),
            last_mark: replay.snapshot_marks.last().copied().unwrap_or_default(),
            segments,
            tail_bytes,
            unsynced: false,
            last_index: replay.entries.last().map(|entry| entry.index).unwrap_or(0),
            pending: Vec::new(),
            segment_bytes_max: SEGMENT_BYTES_MAX,
        };
        Ok((wal, replay))
    }

    /// Buffers entries (replacing any at or after the first one's index on
    /// replay) and, if given, a new hard state. Nothing is durable before `sync`.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) {
        for entry in entries {
            let bytes = entry.write_to_bytes().expect("raft entry encodes");
            record::encode(RecordType::Entry, &bytes, &mut self.pending);
            self.last_index = entry.index;
        }
        if let Some(hard_state) = hard_state {
            let bytes = hard_state.write_to_bytes().expect("hard state encodes");
            record::encode(RecordType::HardState, &bytes, &mut self.pending);
            self.hard_state = hard_state.clone();
        }
    }

    /// Records that a snapshot at `mark` is durable. Entries up to it may
    /// later be released.
    pub fn mark_snapshot(&mut self, mark: SnapshotMark) {
        record::encode(RecordType::Snapshot, &encode_mark(mark), &mut self.pending);
        self.last_mark = mark;
    }

    /// Records that a snapshot from the leader replaced the log: on replay
    /// every earlier entry is dropped, and the next entry follows the mark.
    pub fn mark_installed(&mut self, mark: SnapshotMark) {
        record::encode(
            RecordType::SnapshotInstalled,
            &encode_mark(mark),
            &mut self.pending,
        );
        self.last_mark = mark;
        self.last_index = mark.index;
    }

    /// Writes everything buffered to the tail segment. Not durable yet: a
    /// crash before `sync` may lose it or leave a torn part of it.
    pub fn write(&mut self) -> Result<(), WalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.tail_path();
        self.disk
            .append(&path, &self.pending)
            .map_err(io_error(&path))?;
        self.tail_bytes += self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Writes anything still buffered and fsyncs the tail segment: the
    /// group-commit point.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.write()?;
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
        if self.tail_bytes >= self.segment_bytes_max {
            let old_tail = self.tail_path();
            let seq = self
                .segments
                .last()
                .map(|segment| segment.seq + 1)
                .unwrap_or(0);
            // The new segment first, durably; only then seal the old one.
            // A crash between the two leaves an unsealed segment with a
            // successor, which is fine; a sealed one without its successor
            // means the newest segment was lost.
            self.start_segment(seq, self.last_index + 1, &[])?;
            let mut seal = Vec::new();
            record::encode(RecordType::Sealed, &seq.to_le_bytes(), &mut seal);
            self.disk
                .append(&old_tail, &seal)
                .map_err(io_error(&old_tail))?;
            self.disk.sync(&old_tail).map_err(io_error(&old_tail))?;
        }
        Ok(())
    }

    /// Rolls segments over past `bytes` instead of `SEGMENT_BYTES_MAX`
    /// (tests, which need several segments without writing 64 MiB).
    pub fn set_segment_bytes_max(&mut self, bytes: u64) {
        self.segment_bytes_max = bytes;
    }

    /// Removes whole segments holding only entries at or below `index`
    /// (covered by a durable snapshot). The tail segment always stays.
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        while self.segments.len() > 1 && self.segments[1].first_index <= index + 1 {
            let path = self.dir.join(self.segments[0].name());
            self.disk.remove(&path).map_err(io_error(&path))?;
            self.segments.remove(0);
        }
        self.disk.sync_dir(&self.dir).map_err(io_error(&self.dir))
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

    /// Starts a segment that stands alone: it repeats the metadata, the
    /// bootstrap conf state, the hard state and the last snapshot mark, so
    /// older segments can be released.
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
        let path = self.dir.join(segment.name());
        super::disk::write_atomically(&*self.disk, &path, &header).map_err(io_error(&path))?;
        self.segments.push(segment);
        self.tail_bytes = header.len() as u64;
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

/// Replays one segment into `replay`, returning how many leading bytes are
/// valid. A bad record is tolerated only as the torn tail of the last
/// segment, or as a seal cut short in the one before it.
fn replay_segment(
    bytes: &[u8],
    path: &Path,
    tail: Tail,
    replay: &mut Replay,
) -> Result<usize, WalError> {
    let mut offset = 0;
    while offset < bytes.len() {
        match record::decode(&bytes[offset..]) {
            Ok((record_type, payload, used)) => {
                apply_record(record_type, payload, replay).map_err(|reason| WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: offset as u64,
                    reason,
                })?;
                offset += used;
            }
            Err(error) => {
                let rest = &bytes[offset..];
                let torn = match tail {
                    Tail::Last => is_torn_tail(rest, &error),
                    Tail::SealedTo(next) => {
                        // A prefix of the seal, or zeros where the file grew
                        // but its data never landed.
                        let mut seal = Vec::new();
                        record::encode(RecordType::Sealed, &next.to_le_bytes(), &mut seal);
                        rest.len() < seal.len()
                            && (seal.starts_with(rest) || rest.iter().all(|&byte| byte == 0))
                    }
                    Tail::Middle => false,
                };
                if torn {
                    return Ok(offset);
                }
                let reason = error.to_string();
                return Err(WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: offset as u64,
                    reason,
                });
            }
        }
    }
    Ok(offset)
}

/// Is the record that failed to decode at the start of `rest` a torn tail?
/// A crash leaves a prefix of the unsynced bytes, so a torn record is cut
/// short (`Truncated`) and nothing valid follows it. A file system may
/// also extend a file without its data landing (etcd's `isTornEntry` looks
/// for the same thing), so an all-zero tail is torn too. Anything else —
/// a checksum that fails on bytes that are all there — is bit rot, and
/// must stop the member rather than quietly drop an acknowledged entry.
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
