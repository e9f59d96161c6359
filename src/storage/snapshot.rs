//! Snapshot files: the whole applied state at one raft index, checksummed
//! and written atomically (temp file, fsync, rename, fsync dir).
//!
//! File layout: magic | format version (u32 LE) | CRC32C of the rest (u32 LE)
//! | body: a `detcdpb.SnapshotFile` message (proto/detcd/state.proto) with
//! the index, term, conf state (raft's protobuf) and the application's
//! state (opaque to this module). The framing in front is the file's
//! alone, as the WAL's record framing is: the checksum covers the body,
//! so a torn or rotten file is refused before prost reads it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::ConfState;
use thiserror::Error;

use super::disk::{self, Disk};
use crate::proto::detcdpb::SnapshotFile;

const MAGIC: &[u8; 4] = b"DSNP";
/// 2: the body is a prost message (1 was a hand-made layout, refused).
const FORMAT_VERSION: u32 = 2;
/// magic, format version, checksum.
const HEADER_BYTES: usize = 12;
const SUFFIX: &str = ".snap";
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

/// A snapshot as held in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    /// The application's state image (MVCC and, later, leases, auth, members).
    pub state: Vec<u8>,
}

impl Snapshot {
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
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        if bytes.len() < HEADER_BYTES || &bytes[0..4] != MAGIC {
            return Err("not a detcd snapshot".into());
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported snapshot format version {version} (this detcd reads {FORMAT_VERSION})"
            ));
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[HEADER_BYTES..];
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch".into());
        }
        let file = SnapshotFile::decode(body).map_err(|e| format!("bad snapshot body: {e}"))?;
        // A snapshot also arrives from the leader (MsgSnapshot's data):
        // guard protobuf 2 as for peer messages.
        crate::proto::raft_shape::check_conf_state(&file.conf_state)?;
        let mut conf_state = ConfState::default();
        conf_state
            .merge_from_bytes(&file.conf_state)
            .map_err(|e| format!("bad conf state: {e}"))?;
        Ok(Snapshot {
            index: file.index,
            term: file.term,
            conf_state,
            state: file.state,
        })
    }
}

/// The directory of snapshot files.
pub struct SnapshotDir {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

fn parse_index(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (_, index) = stem.split_once('-')?;
    u64::from_str_radix(index, 16).ok()
}

impl SnapshotDir {
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<SnapshotDir, SnapshotError> {
        disk.create_dir_all(dir)
            .map_err(|source| SnapshotError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(SnapshotDir {
            disk,
            dir: dir.to_path_buf(),
        })
    }

    /// Saves a snapshot durably and removes all but the newest `SNAPSHOTS_KEPT`.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let path = self.dir.join(file_name(snapshot.term, snapshot.index));
        disk::write_atomically(&*self.disk, &path, &snapshot.encode()).map_err(|source| {
            SnapshotError::Io {
                path: path.clone(),
                source,
            }
        })?;
        let names = self.names()?;
        for (_, name) in names.iter().rev().skip(SNAPSHOTS_KEPT) {
            let old = self.dir.join(name);
            self.disk
                .remove(&old)
                .map_err(|source| SnapshotError::Io { path: old, source })?;
        }
        self.disk
            .sync_dir(&self.dir)
            .map_err(|source| SnapshotError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// Removes every snapshot at or below `index`: once the backend holds
    /// a state that new, they are never read again.
    pub fn prune_through(&self, index: u64) -> Result<(), SnapshotError> {
        let names = self.names()?;
        let old: Vec<&String> = (names.iter())
            .filter(|(at, _)| *at <= index)
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

    /// Every snapshot that checks out, newest first, each with the path and
    /// reason of any newer one that did not.
    pub fn load_newest_first(&self) -> Result<(Vec<Snapshot>, Vec<SnapshotError>), SnapshotError> {
        let mut valid = Vec::new();
        let mut bad = Vec::new();
        for (_, name) in self.names()?.iter().rev() {
            let path = self.dir.join(name);
            let bytes = self.disk.read(&path).map_err(|source| SnapshotError::Io {
                path: path.clone(),
                source,
            })?;
            match Snapshot::decode(&bytes) {
                Ok(snapshot) => valid.push(snapshot),
                Err(reason) => bad.push(SnapshotError::Corrupt { path, reason }),
            }
        }
        Ok((valid, bad))
    }

    /// Snapshot files sorted by index, oldest first.
    fn names(&self) -> Result<Vec<(u64, String)>, SnapshotError> {
        let names = self
            .disk
            .list(&self.dir)
            .map_err(|source| SnapshotError::Io {
                path: self.dir.clone(),
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
