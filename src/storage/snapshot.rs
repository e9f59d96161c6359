//! Snapshot files: the whole applied state at one raft index, checksummed
//! and written atomically (temp file, fsync, rename, fsync dir).
//!
//! File layout: magic | format version (u32 LE) | CRC32C of the rest (u32 LE)
//! | index (u64 LE) | term (u64 LE) | conf state length (u32 LE) | conf state
//! (raft protobuf) | application state (the rest; opaque to this module).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::ConfState;
use thiserror::Error;

use super::disk::{self, Disk};

const MAGIC: &[u8; 4] = b"DSNP";
const FORMAT_VERSION: u32 = 1;
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
        let conf = self
            .conf_state
            .write_to_bytes()
            .expect("conf state encodes");
        let mut body = Vec::with_capacity(20 + conf.len() + self.state.len());
        body.extend_from_slice(&self.index.to_le_bytes());
        body.extend_from_slice(&self.term.to_le_bytes());
        body.extend_from_slice(&(conf.len() as u32).to_le_bytes());
        body.extend_from_slice(&conf);
        body.extend_from_slice(&self.state);
        let mut out = Vec::with_capacity(12 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        if bytes.len() < 12 + 20 || &bytes[0..4] != MAGIC {
            return Err("not a detcd snapshot".into());
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!("unsupported snapshot format version {version}"));
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[12..];
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch".into());
        }
        let index = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
        let term = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let conf_len = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        let conf_end = 20usize
            .checked_add(conf_len)
            .filter(|end| *end <= body.len())
            .ok_or("bad conf state length")?;
        // A snapshot also arrives from the leader (MsgSnapshot's data):
        // guard protobuf 2 as for peer messages.
        crate::proto::raft_shape::check_conf_state(&body[20..conf_end])?;
        let mut conf_state = ConfState::default();
        conf_state
            .merge_from_bytes(&body[20..conf_end])
            .map_err(|e| format!("bad conf state: {e}"))?;
        Ok(Snapshot {
            index,
            term,
            conf_state,
            state: body[conf_end..].to_vec(),
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
