//! Backups, as etcd's snapshot file and `etcdctl snapshot restore` work.
//!
//! A backup is one member's applied state image (`StateMachine::encode`:
//! keys with every revision since the last compaction, leases, alarms,
//! members), framed as `BACKUP_MAGIC`, the image's length (u64, little
//! endian), the image, and zeros up to a multiple of `PAGE_BYTES`; then
//! the SHA-256 of all that, as etcd appends one to its bbolt file.
//! etcdctl 3.4 checks that what precedes the checksum is whole 512-byte
//! pages (a bbolt file always is), hence the padding. `Maintenance.Snapshot` streams it, so `etcdctl snapshot save
//! FILE` writes exactly this file. `restore` turns it into a new member's
//! data dir for a new cluster, with the membership the flags name: the
//! same keys, revisions and leases, a new cluster id.
//!
//! The restored data dir is what a member would hold right after saving a
//! snapshot: the snapshot file at index N (one entry per member, as a new
//! cluster's log starts), and a WAL that begins at it. Every member of the
//! new cluster restores from the same file, so they start identical.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::eraftpb::{ConfState, HardState};
use sha2::{Digest, Sha256};

use crate::apply::StateMachine;
use crate::membership::{InitialCluster, Members, MembershipChange};
use crate::storage::snapshot::{Snapshot, SnapshotDir};
use crate::storage::wal::{Metadata, SnapshotMark, Wal};
use crate::storage::Disk;

/// The SHA-256 at the end of a backup.
pub const CHECKSUM_BYTES: usize = 32;
/// What precedes the checksum is a whole number of these (etcdctl checks).
pub const PAGE_BYTES: usize = 512;
/// The first bytes of a detcd backup.
pub const BACKUP_MAGIC: &[u8; 8] = b"DETCDBAK";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("snapshot file is too short to hold a checksum ({0} bytes)")]
    TooShort(usize),
    #[error("snapshot file fails its SHA-256 checksum: truncated or altered")]
    Checksum,
    #[error("snapshot file holds no state detcd can read: {0}")]
    Image(String),
    #[error("{0}")]
    Target(String),
    #[error(transparent)]
    Wal(#[from] crate::storage::wal::WalError),
    #[error(transparent)]
    Snapshot(#[from] crate::storage::snapshot::SnapshotError),
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_BYTES] {
    Sha256::digest(body).into()
}

/// The whole backup file for a state image: what Maintenance.Snapshot
/// streams and `etcdctl snapshot save` writes.
pub fn frame(image: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(image.len() + 2 * PAGE_BYTES);
    file.extend_from_slice(BACKUP_MAGIC);
    file.extend_from_slice(&(image.len() as u64).to_le_bytes());
    file.extend_from_slice(image);
    file.resize(file.len().div_ceil(PAGE_BYTES) * PAGE_BYTES, 0);
    let sum = checksum(&file);
    file.extend_from_slice(&sum);
    file
}

/// Checks a backup's checksum and framing; its state image.
fn image(file: &[u8]) -> Result<&[u8], BackupError> {
    if file.len() < CHECKSUM_BYTES + BACKUP_MAGIC.len() + 8 {
        return Err(BackupError::TooShort(file.len()));
    }
    let (body, sum) = file.split_at(file.len() - CHECKSUM_BYTES);
    if checksum(body)[..] != *sum {
        return Err(BackupError::Checksum);
    }
    let rest = body
        .strip_prefix(BACKUP_MAGIC)
        .ok_or_else(|| BackupError::Image("not a detcd backup (no DETCDBAK header)".into()))?;
    let (length, rest) = rest.split_at(8);
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
    rest.get(..length)
        .ok_or_else(|| BackupError::Image(format!("the image claims {length} bytes")))
}

/// Checks a backup's checksum and decodes its state.
pub fn open(file: &[u8]) -> Result<StateMachine, BackupError> {
    StateMachine::decode(image(file)?, 0).map_err(BackupError::Image)
}

/// What `detcd snapshot status` prints (etcdctl's columns).
#[derive(Debug, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C of the image.
    pub hash: u32,
    pub revision: i64,
    pub total_keys: usize,
    pub total_size: usize,
}

pub fn status(file: &[u8]) -> Result<Status, BackupError> {
    let state = open(file)?;
    Ok(Status {
        hash: crc32c::crc32c(image(file)?),
        revision: state.store().current_revision(),
        total_keys: state.store().key_count(),
        total_size: file.len(),
    })
}

/// Who the restored member is, with etcdctl's flag names.
#[derive(Clone, Debug)]
pub struct Target {
    pub data_dir: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
}

/// What `restore` made.
#[derive(Debug)]
pub struct Restored {
    pub member_id: u64,
    pub cluster_id: u64,
    pub revision: i64,
}

/// Builds a new member's data dir from a backup. Refuses, writing
/// nothing, when the file fails its checks, the data dir holds anything,
/// or the flags do not name this member consistently.
pub fn restore(disk: Arc<dyn Disk>, file: &[u8], target: &Target) -> Result<Restored, BackupError> {
    let mut state = open(file)?;
    let holds_member =
        crate::raft_node::RaftNode::has_data(&*disk, &target.data_dir).unwrap_or(true);
    if holds_member || !disk.list(&target.data_dir).unwrap_or_default().is_empty() {
        return Err(BackupError::Target(format!(
            "data-dir {:?} exists and is not empty: restore into a new directory",
            target.data_dir.display().to_string()
        )));
    }
    let cluster = InitialCluster::parse(&target.initial_cluster, &target.initial_cluster_token)
        .map_err(|error| BackupError::Target(error.to_string()))?;
    let member = cluster
        .member(&target.name)
        .map_err(|error| BackupError::Target(error.to_string()))?;
    let mut advertised: Vec<String> = target
        .initial_advertise_peer_urls
        .split(',')
        .map(|url| url.trim().to_string())
        .collect();
    advertised.sort();
    let mut listed = member.peer_urls.clone();
    listed.sort();
    if advertised != listed {
        return Err(BackupError::Target(format!(
            "--initial-advertise-peer-urls {advertised:?} do not match {}'s URLs in --initial-cluster {listed:?}",
            target.name
        )));
    }
    let mut members = Members::default();
    for member in &cluster.members {
        members.apply(&MembershipChange::Add(member.clone()));
    }
    let index = cluster.members.len() as u64;
    state.restore_membership(members, index);
    let conf_state = ConfState {
        voters: cluster.members.iter().map(|member| member.id).collect(),
        ..ConfState::default()
    };
    let member_dir = target.data_dir.join("member");
    let snapshots = SnapshotDir::open(disk.clone(), &member_dir.join("snap"))?;
    snapshots.save(&Snapshot {
        index,
        term: 1,
        conf_state: conf_state.clone(),
        state: state.encode(),
    })?;
    let hard_state = HardState {
        term: 1,
        commit: index,
        ..HardState::default()
    };
    let mut wal = Wal::create(
        disk,
        &wal_dir(&target.data_dir),
        Metadata {
            member_id: member.id,
            cluster_id: cluster.cluster_id,
        },
        conf_state,
        &[],
        &hard_state,
    )?;
    wal.mark_snapshot(SnapshotMark { index, term: 1 });
    wal.sync()?;
    Ok(Restored {
        member_id: member.id,
        cluster_id: cluster.cluster_id,
        revision: state.store().current_revision(),
    })
}

fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("wal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::detcdpb::internal_request::Request;
    use crate::proto::etcdserverpb::PutRequest;
    use crate::storage::SimDisk;

    fn backup() -> Vec<u8> {
        let mut state = StateMachine::new(0, Members::default());
        for (index, key) in ["a", "b", "a"].iter().enumerate() {
            let put = PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            state
                .apply(index as u64 + 1, Some(&Request::Put(put)))
                .unwrap()
                .unwrap();
        }
        frame(&state.encode())
    }

    fn target(dir: &str) -> Target {
        Target {
            data_dir: PathBuf::from(dir),
            name: "m1".into(),
            initial_cluster: "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380".into(),
            initial_cluster_token: "restored".into(),
            initial_advertise_peer_urls: "http://10.0.0.1:2380".into(),
        }
    }

    #[test]
    fn a_backup_restores_into_a_data_dir_a_member_recovers_from() {
        let file = backup();
        assert_eq!(
            status(&file).unwrap(),
            Status {
                hash: crc32c::crc32c(image(&file).unwrap()),
                revision: 4,
                total_keys: 2,
                total_size: file.len(),
            }
        );
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let restored = restore(disk.clone(), &file, &target("/restored")).unwrap();
        assert_eq!(restored.revision, 4);
        assert!(crate::raft_node::RaftNode::has_data(&*disk, Path::new("/restored")).unwrap());
        let (_, replay) = Wal::open(disk.clone(), &wal_dir(Path::new("/restored"))).unwrap();
        assert_eq!(replay.hard_state.commit, 2);
        let snapshots =
            SnapshotDir::open(disk.clone(), Path::new("/restored/member/snap")).unwrap();
        let (valid, _) = snapshots.load_newest_first().unwrap();
        let state = StateMachine::decode(&valid[0].state, 0).unwrap();
        assert_eq!(state.applied_index(), 2);
        assert_eq!(state.members().list().count(), 2);
        assert_eq!(state.store().current_revision(), 4);

        tracing::info!("a second restore into the same data dir is refused");
        assert!(matches!(
            restore(disk, &file, &target("/restored")),
            Err(BackupError::Target(_))
        ));
    }

    #[test]
    fn the_frame_is_whole_pages_then_the_checksum() {
        let file = backup();
        assert_eq!((file.len() - CHECKSUM_BYTES) % PAGE_BYTES, 0);
        assert!(file.starts_with(BACKUP_MAGIC));
    }

    #[test]
    fn a_truncated_or_altered_backup_is_refused_and_writes_nothing() {
        let file = backup();
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let mut altered = file.clone();
        altered[10] ^= 1;
        for bad in [&file[..file.len() - 1], &altered[..], &file[..5]] {
            assert!(restore(disk.clone(), bad, &target("/r")).is_err());
        }
        assert!(disk.list(Path::new("/r")).unwrap_or_default().is_empty());
        let mut wrong_urls = target("/r");
        wrong_urls.initial_advertise_peer_urls = "http://10.0.0.9:2380".into();
        assert!(restore(disk.clone(), &file, &wrong_urls).is_err());
        assert!(disk.list(Path::new("/r")).unwrap_or_default().is_empty());
    }
}
