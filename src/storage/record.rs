//! CRC-framed records, the unit of the WAL.
//!
//! Frame: payload length (u32 LE) | record type (u8) | header CRC32C (u32
//! LE, over length and type) | payload CRC32C (u32 LE) | payload.
//!
//! The header has its own checksum so a torn write and bit rot look
//! different: a crash leaves a prefix of what was written, so a torn
//! record has either an incomplete header or a header that checks out and
//! a payload cut short ([`DecodeError::Truncated`]); a header or payload
//! that is all there but does not check out is damage
//! ([`DecodeError::Bad`]). `wal` decides what each means where it is.

use thiserror::Error;

pub const HEADER_BYTES: usize = 13;

/// No record is larger: a raft entry is bounded by --max-request-bytes
/// (a u32 flag, checked before proposing) plus framing, and a length above
/// this is taken as garbage rather than allocated.
pub const RECORD_PAYLOAD_MAX: usize = 512 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Member and cluster id of the node that owns the log.
    Metadata = 1,
    /// A raft log entry (raft's protobuf encoding).
    Entry = 2,
    /// Raft term, vote and commit index.
    HardState = 3,
    /// A snapshot was saved at (index, term); entries up to it may be gone.
    Snapshot = 4,
    /// The raft configuration at bootstrap.
    ConfState = 5,
    /// A snapshot from the leader replaced the whole log at (index, term):
    /// every entry before this record is void.
    SnapshotInstalled = 6,
    /// The segment is complete and the log continues in the segment with
    /// the sequence number in the payload: the newest segment, if it
    /// vanishes, is then missed instead of silently not read.
    Sealed = 7,
    /// The size the segment file was preallocated to (u64 LE), in its
    /// header: a file found shorter was cut after it was written.
    Preallocated = 8,
}

impl RecordType {
    fn from_byte(byte: u8) -> Option<RecordType> {
        Some(match byte {
            1 => RecordType::Metadata,
            2 => RecordType::Entry,
            3 => RecordType::HardState,
            4 => RecordType::Snapshot,
            5 => RecordType::ConfState,
            6 => RecordType::SnapshotInstalled,
            7 => RecordType::Sealed,
            8 => RecordType::Preallocated,
            _ => return None,
        })
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared payload: a torn write.
    #[error("truncated record")]
    Truncated,
    /// The bytes are all there but do not check out.
    #[error("bad record: {0}")]
    Bad(&'static str),
}

pub fn encode(record_type: RecordType, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_MAX,
        "record payload exceeds RECORD_PAYLOAD_MAX"
    );
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(record_type as u8);
    let header_crc = crc32c::crc32c(&out[start..start + 5]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// How many bytes the record at the start of `bytes` declares it takes,
/// if its header is all there and checks out.
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < HEADER_BYTES || crc32c::crc32c(&bytes[0..5]) != header_word(bytes, 5) {
        return None;
    }
    Some(HEADER_BYTES + header_word(bytes, 0) as usize)
}

fn header_word(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes the record at the start of `bytes`: its type, payload and the
/// total number of bytes it occupies.
pub fn decode(bytes: &[u8]) -> Result<(RecordType, &[u8], usize), DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated);
    }
    let word = |at: usize| header_word(bytes, at);
    if crc32c::crc32c(&bytes[0..5]) != word(5) {
        return Err(DecodeError::Bad("header checksum mismatch"));
    }
    let len = word(0) as usize;
    if len > RECORD_PAYLOAD_MAX {
        return Err(DecodeError::Bad("length over RECORD_PAYLOAD_MAX"));
    }
    let total = HEADER_BYTES + len;
    if bytes.len() < total {
        return Err(DecodeError::Truncated);
    }
    let payload = &bytes[HEADER_BYTES..total];
    if crc32c::crc32c(payload) != word(9) {
        return Err(DecodeError::Bad("payload checksum mismatch"));
    }
    let record_type =
        RecordType::from_byte(bytes[4]).ok_or(DecodeError::Bad("unknown record type"))?;
    Ok((record_type, payload, total))
}
