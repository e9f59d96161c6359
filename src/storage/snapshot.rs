//! Snapshots as streams of pieces, and the files that hold them: the whole
//! applied state at one raft index, written, sent and read piece by
//! piece, so that no member ever holds a whole snapshot in memory.
//!
//! Stream layout: magic | format version (u32 LE) | pieces. A piece is its
//! payload's length (u32 LE) | the payload's CRC32C (u32 LE) | payload, a
//! `detcdpb.SnapshotPiece` message (proto/detcd/state.proto): first the
//! header (index, term, raft configuration, the state besides the
//! revisions), then the revisions in ascending order in pieces of about
//! `PIECE_TARGET_BYTES`, then the end, which counts what came. The
//! framing is ours, as the WAL's is: each piece's checksum is checked
//! before prost reads it, because a protobuf decoder takes some damaged
//! bytes for other valid ones; a stream cut anywhere, or with anything
//! after its end, is refused.
//!
//! A file is written under a temporary name, fsynced, renamed and its
//! directory fsynced, so it appears whole or not at all. Files of format
//! 2 (one checksummed `SnapshotFile` message holding a whole state
//! image, before snapshots streamed) are still read (`Found::legacy`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::ConfState;
use thiserror::Error;

use super::disk::Disk;
use crate::mvcc::{Record, Revision};
use crate::proto::detcdpb::{
    snapshot_piece::Piece, SnapshotEnd, SnapshotFile, SnapshotHeader, SnapshotPiece,
    SnapshotRecords,
};

const MAGIC: &[u8; 4] = b"DSNP";
/// 3: a stream of pieces. 2 was one `SnapshotFile` message (read still);
/// 1 a hand-made layout (refused).
const FORMAT_VERSION: u32 = 3;
const LEGACY_FORMAT_VERSION: u32 = 2;
/// magic, format version.
const PREAMBLE_BYTES: usize = 8;
/// A piece's length and checksum.
const PIECE_HEADER_BYTES: usize = 8;
/// The revisions a piece holds stop once their encoding passes this.
pub const PIECE_TARGET_BYTES: usize = 1024 * 1024;
/// No piece is larger: one revision is bounded as a WAL record is, and a
/// length above this is taken as damage rather than allocated.
pub const PIECE_BYTES_MAX: usize = super::record::RECORD_PAYLOAD_MAX + PIECE_TARGET_BYTES;
/// A format-2 file's magic, version and checksum.
const LEGACY_HEADER_BYTES: usize = 12;
const SUFFIX: &str = ".snap";
/// A file being written ends so until it is whole.
const TEMP_SUFFIX: &str = ".tmp";
/// Older snapshots kept besides the newest, as a fallback if the newest is
/// found corrupt while the WAL still covers the gap.
pub const SNAPSHOTS_KEPT: usize = 2;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Where a stream's bytes go: memory, or a file being made.
pub trait PieceSink {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl PieceSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Writes a snapshot stream: the header at once, then each revision
/// pushed, in ascending order, then the end (`finish`).
pub struct SnapshotWriter<S: PieceSink> {
    sink: S,
    records: Vec<crate::proto::detcdpb::MvccRecord>,
    records_bytes: usize,
    record_count: u64,
    piece_count: u64,
}

impl<S: PieceSink> SnapshotWriter<S> {
    pub fn new(mut sink: S, header: SnapshotHeader) -> std::io::Result<SnapshotWriter<S>> {
        let mut preamble = Vec::with_capacity(PREAMBLE_BYTES);
        preamble.extend_from_slice(MAGIC);
        preamble.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        sink.put(&preamble)?;
        let mut writer = SnapshotWriter {
            sink,
            records: Vec::new(),
            records_bytes: 0,
            record_count: 0,
            piece_count: 0,
        };
        writer.piece(Piece::Header(header))?;
        Ok(writer)
    }

    /// The next revision, after every one pushed before.
    pub fn push(&mut self, revision: Revision, record: &Record) -> std::io::Result<()> {
        let message = crate::mvcc::record_message(revision, record);
        self.records_bytes += message.encoded_len();
        self.records.push(message);
        self.record_count += 1;
        if self.records_bytes >= PIECE_TARGET_BYTES {
            self.flush_records()?;
        }
        Ok(())
    }

    /// The sink, holding what was written so far (a sender takes the
    /// bytes out between pieces).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Writes the end; the sink holds the whole stream.
    pub fn finish(mut self) -> std::io::Result<S> {
        self.flush_records()?;
        let end = SnapshotEnd {
            record_count: self.record_count,
            piece_count: self.piece_count + 1,
        };
        self.piece(Piece::End(end))?;
        Ok(self.sink)
    }

    /// Ends the current piece of revisions, if any.
    pub fn flush_records(&mut self) -> std::io::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        self.records_bytes = 0;
        self.piece(Piece::Records(SnapshotRecords { records }))
    }

    fn piece(&mut self, piece: Piece) -> std::io::Result<()> {
        let payload = SnapshotPiece { piece: Some(piece) }.encode_to_vec();
        let mut framed = Vec::with_capacity(PIECE_HEADER_BYTES + payload.len());
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        framed.extend_from_slice(&payload);
        self.piece_count += 1;
        self.sink.put(&framed)
    }
}

/// Where a stream is read from.
pub trait ReadAt {
    /// The stream's length in bytes.
    fn byte_len(&self) -> std::io::Result<u64>;
    /// Fills `out` from `offset`.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()>;
}

impl ReadAt for &[u8] {
    fn byte_len(&self) -> std::io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
    fn read_at(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let bytes = self
            .get(start..start + out.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(bytes);
        Ok(())
    }
}

/// A snapshot file, read through the disk seam.
pub struct FileAt {
    pub disk: Arc<dyn Disk>,
    pub path: PathBuf,
}

impl ReadAt for FileAt {
    fn byte_len(&self) -> std::io::Result<u64> {
        self.disk.file_len(&self.path)
    }
    fn read_at(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.disk.read_at(&self.path, offset, out)
    }
}

/// What a checked piece was.
enum Accepted {
    Header(SnapshotHeader),
    Records(Vec<(Revision, Record)>),
    End,
}

/// The rules a stream's pieces follow, one piece at a time: each passes
/// its checksum; the header comes first and once; revisions ascend; the
/// end counts the revisions and pieces that came. What comes after the
/// end is the framing's to refuse.
#[derive(Default)]
struct Sequence {
    started: bool,
    record_count: u64,
    piece_count: u64,
    previous: Option<Revision>,
    ended: bool,
}

impl Sequence {
    /// Checks the piece `payload`, framed with `crc`, at byte `at`.
    fn accept(&mut self, payload: &[u8], crc: u32, at: u64) -> Result<Accepted, String> {
        if crc32c::crc32c(payload) != crc {
            return Err(format!("the piece at byte {at} fails its checksum"));
        }
        self.piece_count += 1;
        let piece =
            SnapshotPiece::decode(payload).map_err(|error| format!("bad piece: {error}"))?;
        match piece.piece {
            Some(Piece::Header(header)) if !self.started => {
                self.started = true;
                Ok(Accepted::Header(header))
            }
            _ if !self.started => Err("the stream does not start with its header".into()),
            Some(Piece::Header(_)) => Err("a second header".into()),
            Some(Piece::Records(piece)) => {
                let mut records = Vec::with_capacity(piece.records.len());
                for message in piece.records {
                    let (revision, record) =
                        crate::mvcc::record_from_message(message).map_err(|e| e.to_string())?;
                    if self.previous.is_some_and(|previous| revision <= previous) {
                        return Err(format!("revision {revision} is out of order"));
                    }
                    self.previous = Some(revision);
                    records.push((revision, record));
                }
                self.record_count += records.len() as u64;
                Ok(Accepted::Records(records))
            }
            Some(Piece::End(end)) => {
                if end.record_count != self.record_count || end.piece_count != self.piece_count {
                    return Err(format!(
                        "its end counts {} revisions in {} pieces, but {} came in {}",
                        end.record_count, end.piece_count, self.record_count, self.piece_count
                    ));
                }
                self.ended = true;
                Ok(Accepted::End)
            }
            None => Err("a piece that is neither header, revisions nor end".into()),
        }
    }
}

/// A piece's length and checksum, from its first `PIECE_HEADER_BYTES`;
/// an error for a length no piece has.
fn piece_frame(bytes: &[u8], at: u64) -> Result<(usize, u32), String> {
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len > PIECE_BYTES_MAX {
        return Err(format!("a piece at byte {at} claims {len} bytes"));
    }
    Ok((len, crc))
}

/// Reads a snapshot stream piece by piece, checking each: the header
/// when opened, then the revisions (`next_records`) up to the end.
pub struct SnapshotReader<R: ReadAt> {
    source: R,
    len: u64,
    offset: u64,
    header: SnapshotHeader,
    conf_state: ConfState,
    sequence: Sequence,
}

impl<R: ReadAt> SnapshotReader<R> {
    /// Reads and checks the preamble and the header.
    pub fn open(source: R) -> Result<SnapshotReader<R>, String> {
        let len = source.byte_len().map_err(|error| error.to_string())?;
        let mut preamble = [0u8; PREAMBLE_BYTES];
        if len < PREAMBLE_BYTES as u64 {
            return Err("not a detcd snapshot (too short)".into());
        }
        source
            .read_at(0, &mut preamble)
            .map_err(|error| error.to_string())?;
        check_preamble(&preamble, FORMAT_VERSION)?;
        let mut reader = SnapshotReader {
            source,
            len,
            offset: PREAMBLE_BYTES as u64,
            header: SnapshotHeader::default(),
            conf_state: ConfState::default(),
            sequence: Sequence::default(),
        };
        let Accepted::Header(header) = reader.next_piece()? else {
            unreachable!("the sequence starts with the header or fails");
        };
        reader.conf_state = parse_conf_state(&header.conf_state)?;
        reader.header = header;
        Ok(reader)
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// raft's configuration at the snapshot's index.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The next piece's revisions, in order; `None` once the end was read
    /// and found to count what came, with nothing after it.
    pub fn next_records(&mut self) -> Result<Option<Vec<(Revision, Record)>>, String> {
        if self.sequence.ended {
            return Ok(None);
        }
        match self.next_piece()? {
            Accepted::Records(records) => Ok(Some(records)),
            Accepted::End if self.offset != self.len => Err(format!(
                "{} bytes follow its end",
                self.len.saturating_sub(self.offset)
            )),
            Accepted::End => Ok(None),
            Accepted::Header(_) => unreachable!("a second header fails"),
        }
    }

    /// Reads every remaining piece, checking each: the whole stream is
    /// good.
    pub fn check_to_end(&mut self) -> Result<(), String> {
        while self.next_records()?.is_some() {}
        Ok(())
    }

    fn next_piece(&mut self) -> Result<Accepted, String> {
        let at = self.offset;
        let remaining = self.len.saturating_sub(at);
        if remaining < PIECE_HEADER_BYTES as u64 {
            return Err(format!("cut short at byte {at}"));
        }
        let mut frame = [0u8; PIECE_HEADER_BYTES];
        self.read(&mut frame)?;
        let (len, crc) = piece_frame(&frame, at)?;
        if len as u64 > remaining - PIECE_HEADER_BYTES as u64 {
            return Err(format!("cut short in the piece at byte {at}"));
        }
        let mut payload = vec![0u8; len];
        self.read(&mut payload)?;
        self.sequence.accept(&payload, crc, at)
    }

    fn read(&mut self, out: &mut [u8]) -> Result<(), String> {
        self.source
            .read_at(self.offset, out)
            .map_err(|error| error.to_string())?;
        self.offset += out.len() as u64;
        Ok(())
    }
}

/// raft's configuration from a header, guarded as a peer message is (a
/// snapshot arrives from the leader).
fn parse_conf_state(bytes: &[u8]) -> Result<ConfState, String> {
    crate::proto::raft_shape::check_conf_state(bytes)?;
    let mut conf_state = ConfState::default();
    conf_state
        .merge_from_bytes(bytes)
        .map_err(|error| format!("bad conf state: {error}"))?;
    Ok(conf_state)
}

/// Checks a stream as its bytes arrive (a snapshot received from the
/// leader), holding at most one piece: `feed` each chunk, then `finish`.
#[derive(Default)]
pub struct StreamCheck {
    /// Bytes of the piece (or preamble) not yet whole.
    pending: Vec<u8>,
    /// Bytes checked so far.
    offset: u64,
    header: Option<SnapshotHeader>,
    sequence: Sequence,
}

impl StreamCheck {
    /// Checks the next bytes of the stream: every piece they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.sequence.ended && !bytes.is_empty() {
            return Err("bytes follow its end".into());
        }
        self.pending.extend_from_slice(bytes);
        if self.offset == 0 {
            if self.pending.len() < PREAMBLE_BYTES {
                return Ok(());
            }
            check_preamble(&self.pending[..PREAMBLE_BYTES], FORMAT_VERSION)?;
            self.pending.drain(..PREAMBLE_BYTES);
            self.offset = PREAMBLE_BYTES as u64;
        }
        let mut start = 0;
        while self.pending.len() - start >= PIECE_HEADER_BYTES {
            let (len, crc) = piece_frame(&self.pending[start..], self.offset)?;
            let end = start + PIECE_HEADER_BYTES + len;
            if self.pending.len() < end {
                break;
            }
            let payload = &self.pending[start + PIECE_HEADER_BYTES..end];
            match self.sequence.accept(payload, crc, self.offset)? {
                Accepted::Header(header) => {
                    parse_conf_state(&header.conf_state)?;
                    self.header = Some(header);
                }
                Accepted::Records(_) => {}
                Accepted::End if end != self.pending.len() => {
                    return Err("bytes follow its end".into())
                }
                Accepted::End => {}
            }
            self.offset += (end - start) as u64;
            start = end;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// The stream's header, once it ended whole.
    pub fn finish(self) -> Result<SnapshotHeader, String> {
        if !self.sequence.ended {
            return Err(format!("cut short at byte {}", self.offset));
        }
        self.header.ok_or_else(|| "no header".into())
    }
}

fn check_preamble(bytes: &[u8], expected: u32) -> Result<(), String> {
    if bytes.len() < PREAMBLE_BYTES || &bytes[0..4] != MAGIC {
        return Err("not a detcd snapshot".into());
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != expected {
        return Err(format!(
            "unsupported snapshot format version {version} (this detcd reads {FORMAT_VERSION} and {LEGACY_FORMAT_VERSION})"
        ));
    }
    Ok(())
}

#[cfg(test)]
/// Checks a whole stream held in memory; its header.
pub fn check_bytes(bytes: &[u8]) -> Result<SnapshotHeader, String> {
    let mut reader = SnapshotReader::open(bytes)?;
    reader.check_to_end()?;
    Ok(reader.header)
}

/// A format-2 snapshot: one message holding the whole state image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LegacySnapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// A `StateImage` message.
    pub state: Vec<u8>,
}

impl LegacySnapshot {
    /// The format-2 encoding (tests write old data dirs with it).
    pub fn encode(&self) -> Vec<u8> {
        let body = SnapshotFile {
            index: self.index,
            term: self.term,
            conf_state: self
                .conf_state
                .write_to_bytes()
                .expect("conf state encodes"),
            state: self.state.clone(),
        }
        .encode_to_vec();
        let mut out = Vec::with_capacity(LEGACY_HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&LEGACY_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LegacySnapshot, String> {
        check_preamble(bytes, LEGACY_FORMAT_VERSION)?;
        if bytes.len() < LEGACY_HEADER_BYTES {
            return Err("cut short".into());
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[LEGACY_HEADER_BYTES..];
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch".into());
        }
        let file = SnapshotFile::decode(body).map_err(|e| format!("bad snapshot body: {e}"))?;
        crate::proto::raft_shape::check_conf_state(&file.conf_state)?;
        let mut conf_state = ConfState::default();
        conf_state
            .merge_from_bytes(&file.conf_state)
            .map_err(|e| format!("bad conf state: {e}"))?;
        Ok(LegacySnapshot {
            index: file.index,
            term: file.term,
            conf_state,
            state: file.state,
        })
    }
}

/// A snapshot file that checked out (`SnapshotDir::load_newest_first`).
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub index: u64,
    pub term: u64,
    pub path: PathBuf,
    /// Format 2: the whole file is one state image (`LegacySnapshot`).
    pub legacy: bool,
}

/// A snapshot file being written: the stream's bytes go to a temporary
/// name, and `SnapshotDir::keep` makes it the snapshot at its index.
pub struct NewSnapshotFile {
    disk: Arc<dyn Disk>,
    temp: PathBuf,
    /// Where `keep` puts it: the snapshot directory, or its `incoming`.
    dir: PathBuf,
    term: u64,
    index: u64,
}

impl Drop for NewSnapshotFile {
    /// A stream not kept (cut off, refused) leaves no file behind; once
    /// kept, the temporary name is gone already.
    fn drop(&mut self) {
        let _ = self.disk.remove(&self.temp);
    }
}

impl PieceSink for NewSnapshotFile {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.disk.append(&self.temp, bytes)
    }
}

/// The directory of snapshot files.
pub struct SnapshotDir {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// `INCOMING`: snapshots received from a leader that raft has not
    /// taken yet. Recovery never reads them, and `open` empties it.
    incoming: PathBuf,
    /// Receives begun, for their files' temporary names: a receive cut
    /// off while its blocking work still runs never shares one.
    receives: std::sync::atomic::AtomicU64,
}

/// The subdirectory of received snapshots (`SnapshotDir::receive`).
pub const INCOMING: &str = "incoming";

fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

fn parse_index(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (_, index) = stem.split_once('-')?;
    u64::from_str_radix(index, 16).ok()
}

impl SnapshotDir {
    /// Opens (or makes) the directory, removing what no one will read:
    /// received snapshots raft never took, and temporary files of writes
    /// a crash cut off.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<SnapshotDir, SnapshotError> {
        let incoming = dir.join(INCOMING);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        disk.create_dir_all(&incoming).map_err(io(&incoming))?;
        for name in disk.list(&incoming).map_err(io(&incoming))? {
            let path = incoming.join(name);
            disk.remove(&path).map_err(io(&path))?;
        }
        for name in disk.list(dir).map_err(io(dir))? {
            if name.ends_with(TEMP_SUFFIX) {
                let path = dir.join(name);
                disk.remove(&path).map_err(io(&path))?;
            }
        }
        Ok(SnapshotDir {
            disk,
            dir: dir.to_path_buf(),
            incoming,
            receives: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// Where the snapshot at (`term`, `index`) is kept.
    pub fn path(&self, term: u64, index: u64) -> PathBuf {
        self.dir.join(file_name(term, index))
    }

    /// Starts the file of the snapshot at (`term`, `index`), under a
    /// temporary name.
    pub fn create(&self, term: u64, index: u64) -> Result<NewSnapshotFile, SnapshotError> {
        let temp = self
            .dir
            .join(format!("{}{TEMP_SUFFIX}", file_name(term, index)));
        self.new_file(temp, self.dir.clone(), term, index)
    }

    /// Starts the file of a snapshot received from a leader, which `keep`
    /// puts in `INCOMING` until raft takes it (`adopt`).
    pub fn receive(&self, term: u64, index: u64) -> Result<NewSnapshotFile, SnapshotError> {
        let number = (self.receives).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp =
            (self.incoming).join(format!("{}.{number}{TEMP_SUFFIX}", file_name(term, index)));
        self.new_file(temp, self.incoming.clone(), term, index)
    }

    fn new_file(
        &self,
        temp: PathBuf,
        dir: PathBuf,
        term: u64,
        index: u64,
    ) -> Result<NewSnapshotFile, SnapshotError> {
        self.disk
            .create(&temp)
            .map_err(|source| SnapshotError::Io {
                path: temp.clone(),
                source,
            })?;
        Ok(NewSnapshotFile {
            disk: self.disk.clone(),
            temp,
            dir,
            term,
            index,
        })
    }

    /// Where a received snapshot waits for raft (`receive`).
    pub fn received_path(&self, term: u64, index: u64) -> PathBuf {
        self.incoming.join(file_name(term, index))
    }

    /// Makes the received snapshot at (`term`, `index`) one of the
    /// member's, durably (raft took it, and the WAL is about to say so),
    /// keeping the newest `SNAPSHOTS_KEPT`; its path.
    pub fn adopt(&self, term: u64, index: u64) -> Result<PathBuf, SnapshotError> {
        let from = self.received_path(term, index);
        let path = self.path(term, index);
        self.disk
            .rename(&from, &path)
            .map_err(|source| SnapshotError::Io {
                path: from.clone(),
                source,
            })?;
        self.settle(&self.dir)?;
        self.disk
            .sync_dir(&self.incoming)
            .map_err(|source| SnapshotError::Io {
                path: self.incoming.clone(),
                source,
            })?;
        Ok(path)
    }

    /// Removes all but the newest `SNAPSHOTS_KEPT` in `dir`, and makes
    /// its names durable.
    fn settle(&self, dir: &Path) -> Result<(), SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        let names = self.names_in(dir)?;
        for (_, name) in names.iter().rev().skip(SNAPSHOTS_KEPT) {
            let old = dir.join(name);
            self.disk.remove(&old).map_err(io(&old))?;
        }
        self.disk.sync_dir(dir).map_err(io(dir))
    }

    /// Makes a whole stream written to `file` durable under its name, then
    /// removes all but the newest `SNAPSHOTS_KEPT`; its path.
    pub fn keep(&self, file: NewSnapshotFile) -> Result<PathBuf, SnapshotError> {
        let path = file.dir.join(file_name(file.term, file.index));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SnapshotError::Io { path, source }
        };
        self.disk.sync(&file.temp).map_err(io(&file.temp))?;
        self.disk.rename(&file.temp, &path).map_err(io(&path))?;
        self.settle(&file.dir)?;
        Ok(path)
    }

    /// `keep`, once the whole stream written to `file` checked out as it
    /// came (`check`) and is the snapshot at the index and term the file
    /// was created for; a stream that is not is refused, and its file
    /// goes. Its header.
    pub fn keep_checked(
        &self,
        file: NewSnapshotFile,
        check: StreamCheck,
    ) -> Result<SnapshotHeader, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt {
            path: file.temp.clone(),
            reason,
        };
        let header = check.finish().map_err(corrupt)?;
        if (header.index, header.term) != (file.index, file.term) {
            return Err(corrupt(format!(
                "it holds the snapshot at index {} term {}, not {} {}",
                header.index, header.term, file.index, file.term
            )));
        }
        self.keep(file)?;
        Ok(header)
    }

    #[cfg(test)]
    /// Saves a whole stream held in memory (checked first) as the
    /// snapshot at its header's index; its path.
    pub fn save_bytes(&self, bytes: &[u8]) -> Result<PathBuf, SnapshotError> {
        let header = check_bytes(bytes).map_err(|reason| SnapshotError::Corrupt {
            path: self.dir.clone(),
            reason,
        })?;
        let mut file = self.create(header.term, header.index)?;
        file.put(bytes).map_err(|source| SnapshotError::Io {
            path: file.temp.clone(),
            source,
        })?;
        self.keep(file)
    }

    /// Removes every snapshot at or below `index`: once the backend holds
    /// a state that new, they are never read again.
    pub fn prune_through(&self, index: u64) -> Result<(), SnapshotError> {
        self.prune(|at| at <= index)
    }

    /// Removes every snapshot above `index`: `--force-new-cluster` forks
    /// the history there, and a leader's snapshot beyond it (an install
    /// that crashed before its WAL mark) belongs to the old one.
    pub fn prune_above(&self, index: u64) -> Result<(), SnapshotError> {
        self.prune(|at| at > index)
    }

    fn prune(&self, doomed: impl Fn(u64) -> bool) -> Result<(), SnapshotError> {
        let names = self.names()?;
        let old: Vec<&String> = (names.iter())
            .filter(|(at, _)| doomed(*at))
            .map(|(_, name)| name)
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        for name in old {
            let path = self.dir.join(name);
            self.disk
                .remove(&path)
                .map_err(|source| SnapshotError::Io { path, source })?;
        }
        self.disk
            .sync_dir(&self.dir)
            .map_err(|source| SnapshotError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// Every snapshot file that checks out (each read through, piece by
    /// piece), newest first, and the path and reason of each that did
    /// not.
    pub fn load_newest_first(&self) -> Result<(Vec<Found>, Vec<SnapshotError>), SnapshotError> {
        let mut valid = Vec::new();
        let mut bad = Vec::new();
        for (index, name) in self.names()?.iter().rev() {
            let path = self.dir.join(name);
            match self.check(&path) {
                Ok(found) if found.index != *index => bad.push(SnapshotError::Corrupt {
                    path,
                    reason: format!("it holds the snapshot at index {}", found.index),
                }),
                Ok(found) => valid.push(found),
                Err(reason) => bad.push(SnapshotError::Corrupt { path, reason }),
            }
        }
        Ok((valid, bad))
    }

    fn check(&self, path: &Path) -> Result<Found, String> {
        let mut preamble = [0u8; PREAMBLE_BYTES];
        self.disk
            .read_at(path, 0, &mut preamble)
            .map_err(|error| error.to_string())?;
        if check_preamble(&preamble, LEGACY_FORMAT_VERSION).is_ok() {
            let bytes = self.disk.read(path).map_err(|error| error.to_string())?;
            let legacy = LegacySnapshot::decode(&bytes)?;
            return Ok(Found {
                index: legacy.index,
                term: legacy.term,
                path: path.to_path_buf(),
                legacy: true,
            });
        }
        let mut reader = SnapshotReader::open(FileAt {
            disk: self.disk.clone(),
            path: path.to_path_buf(),
        })?;
        reader.check_to_end()?;
        Ok(Found {
            index: reader.header.index,
            term: reader.header.term,
            path: path.to_path_buf(),
            legacy: false,
        })
    }

    /// Snapshot files sorted by index, oldest first.
    fn names(&self) -> Result<Vec<(u64, String)>, SnapshotError> {
        self.names_in(&self.dir)
    }

    /// Snapshot files in `dir` sorted by index, oldest first.
    fn names_in(&self, dir: &Path) -> Result<Vec<(u64, String)>, SnapshotError> {
        let names = self.disk.list(dir).map_err(|source| SnapshotError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut indexed: Vec<(u64, String)> = names
            .into_iter()
            .filter_map(|name| parse_index(&name).map(|index| (index, name)))
            .collect();
        indexed.sort();
        Ok(indexed)
    }
}
