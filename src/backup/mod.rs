//! Backups, as etcd's snapshot file and `etcdctl snapshot restore` work.
//!
//! A backup is a bbolt file (`bolt`) laid out as etcd 3.4's backend: the
//! `key` bucket maps each revision (8 bytes main, `_`, 8 bytes sub, big
//! endian; a trailing `t` for a tombstone) to an `mvccpb.KeyValue`, and
//! `meta`, `lease`, `auth`, `authUsers`, `authRoles`, `members`,
//! `cluster` and `alarm` hold what etcd keeps there. After the bbolt
//! pages comes the SHA-256 of all of them, as etcd appends one; etcdctl
//! 3.4 checks that what precedes it is whole 512-byte pages (a bbolt file
//! always is). So `etcdctl snapshot save` writes a file that `etcdctl
//! snapshot status` reads and `etcdctl snapshot restore` turns into a data
//! dir etcd 3.4 starts from, with the same keys and revisions.
//!
//! Those buckets are all a backup holds, so `etcdctl snapshot status`
//! counts the keys etcd's backup of the same state holds, and detcd
//! restores its own backups as it restores etcd's. Backups of earlier
//! detcd versions held one more bucket, `detcd` (its `state`: a
//! `SnapshotHeader` without revisions; before that `image`: the whole
//! state image), and those before them were `LEGACY_MAGIC`, length,
//! image, padding, SHA-256; both still restore. `restore` turns a backup into a new member's
//! data dir for a new cluster, with the membership the flags name: the
//! same keys, revisions and leases, a new cluster id.
//!
//! The restored data dir is what a member would hold right after saving a
//! snapshot: the snapshot file at index N (one entry per member, as a new
//! cluster's log starts), and a WAL that begins at it. Every member of the
//! new cluster restores from the same file, so they start identical.

pub mod bolt;
mod etcd_buckets;

pub use crate::mvcc::layout::revision_key;

use std::path::PathBuf;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, HardState};
use sha2::{Digest, Sha256};

use crate::apply::StateMachine;
use crate::membership::{InitialCluster, Members, MembershipChange};
use crate::mvcc::{Record, Revision};
use crate::proto::detcdpb::SnapshotHeader;
use crate::storage::snapshot::SnapshotDir;
use crate::storage::wal::{Metadata, SnapshotMark, Wal};
use crate::storage::Disk;

/// The SHA-256 at the end of a backup.
pub const CHECKSUM_BYTES: usize = 32;
/// What precedes the checksum is a whole number of these (etcdctl checks).
pub const PAGE_BYTES: usize = 512;
/// The first bytes of a backup older detcd versions wrote.
pub const LEGACY_MAGIC: &[u8; 8] = b"DETCDBAK";
/// The bucket in which backups of earlier detcd versions held detcd's
/// state besides the revisions, and its key (a `SnapshotHeader` without
/// revisions: the `key` bucket holds them).
const DETCD_BUCKET: &[u8] = b"detcd";
const STATE_KEY: &[u8] = b"state";
/// The key of the whole state image that backups of detcd versions before
/// streamed backups held instead (they still restore).
const IMAGE_KEY: &[u8] = b"image";
/// etcd's bucket of revisions, and the byte marking a tombstone's key.
use crate::mvcc::layout::KEY_BUCKET;

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

/// The whole backup file for a state: what Maintenance.Snapshot streams
/// and `etcdctl snapshot save` writes.
pub fn frame(state: &StateMachine) -> Result<Vec<u8>, crate::mvcc::Error> {
    let mut file = bolt::write(&etcd_buckets::of(state)?);
    let sum = checksum(&file);
    file.extend_from_slice(&sum);
    Ok(file)
}

/// `state` besides its revisions, as a view of the backend describes it.
fn detcd_header(state: &StateMachine) -> SnapshotHeader {
    SnapshotHeader {
        index: state.applied_index(),
        term: 0,
        conf_state: Vec::new(),
        parts: state.encode_parts(),
        current_revision: state.store().current_revision(),
        compact_revision: state.store().compact_revision(),
    }
}

/// Writes the bbolt pages of the backup of the state `header` describes
/// (`SnapshotHeader`: a view of the backend's) to `out`, its revisions
/// as `next_records` yields them, a piece at a time in ascending order,
/// until it yields none: nothing holds the whole state. `out` then holds
/// the pages, without the checksum; their count.
pub fn write_pages<O: bolt::PageOut>(
    out: O,
    header: &SnapshotHeader,
    mut next_records: impl FnMut() -> Result<Vec<(Revision, Record)>, String>,
) -> Result<(O, u64), BackupError> {
    let state = StateMachine::from_stored(&header.parts, crate::mvcc::Store::new(), 0)
        .map_err(BackupError::Image)?;
    let io = |error: std::io::Error| BackupError::Image(error.to_string());
    let mut others = etcd_buckets::others(&state, header).into_iter().peekable();
    let mut writer = bolt::Writer::new(out);
    while let Some(bucket) = others.next_if(|bucket| bucket.name.as_slice() < KEY_BUCKET) {
        writer
            .bucket(&bucket.name, bucket.entries.into_iter().map(Ok))
            .map_err(io)?;
    }
    let mut failed = None;
    let mut piece = Vec::new().into_iter();
    let keys = std::iter::from_fn(|| loop {
        if let Some((revision, record)) = piece.next() {
            return Some(Ok(crate::mvcc::layout::key_entry(revision, &record)));
        }
        if failed.is_some() {
            return None;
        }
        match next_records() {
            Ok(records) if records.is_empty() => return None,
            Ok(records) => piece = records.into_iter(),
            Err(why) => {
                failed = Some(why.clone());
                return Some(Err(std::io::Error::other(why)));
            }
        }
    });
    writer.bucket(KEY_BUCKET, keys).map_err(io)?;
    for bucket in others {
        writer
            .bucket(&bucket.name, bucket.entries.into_iter().map(Ok))
            .map_err(io)?;
    }
    writer.finish().map_err(io)
}

/// The SHA-256 a backup ends with, over its pages.
pub fn checksum_of(pages: impl IntoIterator<Item = Vec<u8>>) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = Sha256::new();
    for chunk in pages {
        hasher.update(&chunk);
    }
    hasher.finalize().into()
}

/// Checks a backup's checksum; the bytes it covers.
fn checked(file: &[u8]) -> Result<&[u8], BackupError> {
    if file.len() < CHECKSUM_BYTES + LEGACY_MAGIC.len() + 8 {
        return Err(BackupError::TooShort(file.len()));
    }
    let (body, sum) = file.split_at(file.len() - CHECKSUM_BYTES);
    if body.len() % PAGE_BYTES != 0 || checksum(body)[..] != *sum {
        return Err(BackupError::Checksum);
    }
    Ok(body)
}

/// Checks a backup's checksum and reads its state: from the `detcd`
/// bucket's image, or from etcd's buckets when the file holds no image
/// (etcd saved it) or one its `key` bucket no longer matches (etcd wrote
/// to it after restoring a detcd backup, so its buckets say what is true).
/// Backups older detcd versions wrote still open.
pub fn open(file: &[u8]) -> Result<StateMachine, BackupError> {
    let body = checked(file)?;
    if let Some(rest) = body.strip_prefix(LEGACY_MAGIC) {
        let (length, rest) = rest.split_at(8);
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes")) as usize;
        let image = rest
            .get(..length)
            .ok_or_else(|| BackupError::Image(format!("the image claims {length} bytes")))?;
        return StateMachine::decode(image, 0).map_err(BackupError::Image);
    }
    let buckets =
        bolt::by_name(bolt::read(body).map_err(|error| BackupError::Image(error.to_string()))?);
    let detcd = |name: &[u8]| {
        (buckets.get(DETCD_BUCKET))
            .and_then(|detcd| detcd.iter().find(|(key, _)| key == name))
            .map(|(_, value)| value)
    };
    if let Some(header) = detcd(STATE_KEY) {
        match from_header(header, &buckets) {
            Ok(state) => return Ok(state),
            Err(why) => tracing::info!(
                %why,
                "the detcd state does not match etcd's buckets: reading etcd's buckets"
            ),
        }
    }
    if let Some(image) = detcd(IMAGE_KEY) {
        let state = StateMachine::decode(image, 0).map_err(BackupError::Image)?;
        let keys = buckets.get(KEY_BUCKET).cloned().unwrap_or_default();
        if etcd_buckets::key_entries(&state).is_ok_and(|entries| entries == keys) {
            return Ok(state);
        }
        tracing::info!("the detcd image no longer matches the key bucket: reading etcd's buckets");
    }
    etcd_buckets::to_state(&buckets).map_err(BackupError::Image)
}

/// The state of a backup detcd wrote: the `detcd` bucket's header, and
/// the revisions in the `key` bucket. An error if they do not agree (etcd
/// wrote to the file after restoring a detcd backup: its buckets then say
/// what is true).
fn from_header(
    header: &[u8],
    buckets: &std::collections::BTreeMap<Vec<u8>, bolt::Entries>,
) -> Result<StateMachine, String> {
    use prost::Message as _;
    let header = SnapshotHeader::decode(header).map_err(|error| error.to_string())?;
    let consistent_index = (buckets.get(b"meta".as_slice()))
        .and_then(|meta| meta.iter().find(|(key, _)| key == b"consistent_index"))
        .map(|(_, value)| value.as_slice());
    if consistent_index != Some(header.index.to_be_bytes().as_slice()) {
        return Err("the meta bucket's consistent index is not the header's".into());
    }
    let mut rebuild =
        crate::mvcc::Rebuild::new(header.current_revision, header.compact_revision, true)
            .map_err(|error| error.to_string())?;
    for (key, value) in buckets.get(KEY_BUCKET).into_iter().flatten() {
        let (revision, record) = crate::mvcc::layout::parse_key_entry(key, value)?;
        rebuild
            .push(revision, record)
            .map_err(|error| error.to_string())?;
    }
    let store = rebuild.finish().map_err(|error| error.to_string())?;
    let mut state = StateMachine::from_stored(&header.parts, store, 0)?;
    if state.applied_index() > header.index {
        return Err(format!(
            "its parts are applied to {}, past the header's index {}",
            state.applied_index(),
            header.index
        ));
    }
    state.skip(header.index);
    Ok(state)
}

/// What `detcd snapshot status` prints: etcdctl's columns, computed as
/// etcdctl computes them, so both print the same for one file.
#[derive(Debug, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every bucket's name, then its keys and values.
    pub hash: u32,
    /// The main revision of the `key` bucket's last key.
    pub revision: i64,
    /// Entries in all buckets.
    pub total_keys: usize,
    /// The bbolt data size (pages in use times the page size).
    pub total_size: u64,
}

pub fn status(file: &[u8]) -> Result<Status, BackupError> {
    let body = checked(file)?;
    if body.starts_with(LEGACY_MAGIC) {
        let state = open(file)?;
        return Ok(Status {
            hash: crc32c::crc32c(
                &state
                    .encode()
                    .map_err(|error| BackupError::Image(error.to_string()))?,
            ),
            revision: state.store().current_revision(),
            total_keys: state.store().key_count(),
            total_size: file.len() as u64,
        });
    }
    let bad = |error: bolt::BoltError| BackupError::Image(error.to_string());
    let mut status = Status {
        hash: 0,
        revision: 0,
        total_keys: 0,
        total_size: bolt::data_bytes(body).map_err(bad)?,
    };
    for bucket in bolt::read(body).map_err(bad)? {
        status.hash = crc32c::crc32c_append(status.hash, &bucket.name);
        for (key, value) in &bucket.entries {
            status.hash = crc32c::crc32c_append(status.hash, key);
            status.hash = crc32c::crc32c_append(status.hash, value);
            if bucket.name == KEY_BUCKET {
                if let Some(main) = key.get(..8) {
                    status.revision = i64::from_be_bytes(main.try_into().expect("8 bytes"));
                }
            }
            status.total_keys += 1;
        }
    }
    Ok(status)
}

/// Who the restored member is, with etcdctl's flag names.
#[derive(Clone, Debug)]
pub struct Target {
    pub data_dir: PathBuf,
    /// Where the WAL goes (`--wal-dir`, or the data dir's member/wal).
    pub wal_dir: PathBuf,
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
    if !disk.list(&target.wal_dir).unwrap_or_default().is_empty() {
        return Err(BackupError::Target(format!(
            "wal-dir {:?} exists and is not empty: restore into a new directory",
            target.wal_dir.display().to_string()
        )));
    }
    let holds_member =
        crate::raft_node::RaftNode::has_data(&*disk, &target.data_dir, &target.wal_dir)
            .unwrap_or(true);
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
    let file = snapshots.create(1, index)?;
    let file = state
        .write_snapshot(
            1,
            conf_state.write_to_bytes().expect("a conf state encodes"),
            file,
        )
        .map_err(BackupError::Image)?;
    snapshots.keep(file)?;
    let hard_state = HardState {
        term: 1,
        commit: index,
        ..HardState::default()
    };
    let mut wal = Wal::create(
        disk,
        &target.wal_dir,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::raft_node::RaftNode;
    use prost::Message as _;

    use crate::mvcc::Revision;
    use crate::proto::detcdpb::internal_request::Request;
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::mvccpb;
    use crate::storage::SimDisk;

    fn backup() -> Vec<u8> {
        frame(&state()).unwrap()
    }

    fn state() -> StateMachine {
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
        let version = crate::proto::detcdpb::ClusterVersionSet {
            ver: crate::ETCD_CLUSTER_VERSION.into(),
        };
        state
            .apply(4, Some(&Request::ClusterVersionSet(version)))
            .unwrap()
            .unwrap();
        state
    }

    fn target(dir: &str) -> Target {
        Target {
            data_dir: PathBuf::from(dir),
            wal_dir: crate::storage::wal::default_dir(Path::new(dir)),
            name: "m1".into(),
            initial_cluster: "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380".into(),
            initial_cluster_token: "restored".into(),
            initial_advertise_peer_urls: "http://10.0.0.1:2380".into(),
        }
    }

    /// `--wal-dir`: the WAL goes there and nowhere else, into a directory
    /// that must be empty.
    #[test]
    fn a_restore_puts_the_wal_in_a_dedicated_dir() {
        let file = backup();
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let dedicated = Target {
            wal_dir: PathBuf::from("/wal-disk/wal"),
            ..target("/restored")
        };
        restore(disk.clone(), &file, &dedicated).unwrap();
        let data_dir = Path::new("/restored");
        assert!(RaftNode::has_data(&*disk, data_dir, &dedicated.wal_dir).unwrap());
        assert!(disk
            .list(&data_dir.join("member/wal"))
            .unwrap_or_default()
            .is_empty());
        let elsewhere = Target {
            data_dir: PathBuf::from("/other"),
            ..dedicated
        };
        let refused = restore(disk.clone(), &file, &elsewhere).unwrap_err();
        assert!(refused.to_string().contains("wal-dir"), "{refused}");
    }

    #[test]
    fn a_backup_restores_into_a_data_dir_a_member_recovers_from() {
        let file = backup();
        let status = status(&file).unwrap();
        assert_eq!(status.revision, 4);
        assert_eq!(status.total_size, (file.len() - CHECKSUM_BYTES) as u64);
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        let restored = restore(disk.clone(), &file, &target("/restored")).unwrap();
        assert_eq!(restored.revision, 4);
        let wal_dir = crate::storage::wal::default_dir(Path::new("/restored"));
        assert!(
            crate::raft_node::RaftNode::has_data(&*disk, Path::new("/restored"), &wal_dir).unwrap()
        );
        let (_, replay) = Wal::open(disk.clone(), &wal_dir).unwrap();
        assert_eq!(replay.hard_state.commit, 2);
        let snapshots =
            SnapshotDir::open(disk.clone(), Path::new("/restored/member/snap")).unwrap();
        let (valid, bad) = snapshots.load_newest_first().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let mut reader =
            crate::storage::snapshot::SnapshotReader::open(crate::storage::snapshot::FileAt {
                disk: disk.clone(),
                path: valid[0].path.clone(),
            })
            .unwrap();
        let header = reader.header().clone();
        let mut revisions = 0;
        while let Some(records) = reader.next_records().unwrap() {
            revisions += records.len();
        }
        let state = StateMachine::from_stored(&header.parts, crate::mvcc::Store::new(), 0).unwrap();
        assert_eq!(header.index, 2);
        assert_eq!(state.members().list().count(), 2);
        assert_eq!(header.current_revision, 4);
        assert_eq!(revisions, 3);

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
        assert_eq!(
            checked(&file).unwrap(),
            &file[..file.len() - CHECKSUM_BYTES]
        );
    }

    #[test]
    fn the_key_bucket_holds_every_revision_as_etcd_does() {
        let file = backup();
        let buckets = bolt::by_name(bolt::read(checked(&file).unwrap()).unwrap());
        let keys = &buckets[KEY_BUCKET];
        let revisions: Vec<Vec<u8>> = keys.iter().map(|(key, _)| key.clone()).collect();
        let expected: Vec<Vec<u8>> = (2..=4)
            .map(|main| revision_key(Revision::new(main, 0)))
            .collect();
        assert_eq!(revisions, expected);
        let last = mvccpb::KeyValue::decode(&keys[2].1[..]).unwrap();
        assert_eq!(
            (
                last.key.as_slice(),
                last.create_revision,
                last.mod_revision,
                last.version
            ),
            (&b"a"[..], 2, 4, 2)
        );
        assert_eq!(
            buckets[&b"meta"[..]],
            vec![(b"consistent_index".to_vec(), 4u64.to_be_bytes().to_vec())]
        );
        for name in [
            "alarm",
            "auth",
            "authRoles",
            "authUsers",
            "cluster",
            "lease",
            "members",
        ] {
            assert!(buckets.contains_key(name.as_bytes()), "{name}");
        }
    }

    /// The buckets with the `detcd` bucket the backups of detcd versions
    /// before this one held: the state besides the revisions.
    fn with_detcd_state(mut buckets: Vec<bolt::Bucket>, state: &StateMachine) -> Vec<bolt::Bucket> {
        buckets.push(bolt::Bucket {
            name: DETCD_BUCKET.to_vec(),
            entries: vec![(STATE_KEY.to_vec(), detcd_header(state).encode_to_vec())],
        });
        buckets.sort_by(|a, b| a.name.cmp(&b.name));
        buckets
    }

    fn file_of(buckets: &[bolt::Bucket]) -> Vec<u8> {
        let mut file = bolt::write(buckets);
        let sum = checksum(&file);
        file.extend_from_slice(&sum);
        file
    }

    /// A backup of the state as detcd kept it before backups held etcd's
    /// buckets alone.
    #[test]
    fn a_backup_with_the_detcd_state_still_restores() {
        let file = file_of(&with_detcd_state(
            etcd_buckets::of(&state()).unwrap(),
            &state(),
        ));
        let opened = open(&file).unwrap();
        assert_eq!(opened.encode().unwrap(), state().encode().unwrap());
    }

    /// etcd's restore keeps its alarm bucket: a NOSPACE alarm still
    /// refuses writes in the restored cluster.
    #[test]
    fn alarms_survive_a_backup_as_in_etcd() {
        use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        let mut alarmed = state();
        let alarm = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: 7,
            alarm: AlarmType::Nospace as i32,
        };
        alarmed
            .apply(5, Some(&Request::Alarm(alarm)))
            .unwrap()
            .unwrap();
        let opened = open(&frame(&alarmed).unwrap()).unwrap();
        let all = AlarmType::None as i32;
        assert_eq!(opened.alarms(all), alarmed.alarms(all));
        assert_eq!(opened.alarms(all).len(), 1);
    }

    /// `etcdctl snapshot status` counts the keys of every bucket: a backup
    /// holds the ones etcd 3.4 holds for the same state, no more.
    #[test]
    fn a_backup_holds_the_keys_etcd_holds() {
        // Three revisions; meta's consistent_index; cluster's version;
        // auth's revision (etcd writes `enabled` only once auth is on).
        // The cluster bucket's version, set by the cluster's leader.
        assert_eq!(status(&backup()).unwrap().total_keys, 3 + 1 + 1 + 1);
        let buckets =
            bolt::by_name(bolt::read(&backup()[..backup().len() - CHECKSUM_BYTES]).unwrap());
        let names: Vec<&[u8]> = buckets.keys().map(Vec::as_slice).collect();
        assert_eq!(
            names,
            [
                &b"alarm"[..],
                b"auth",
                b"authRoles",
                b"authUsers",
                b"cluster",
                b"key",
                b"lease",
                b"members",
                b"members_removed",
                b"meta"
            ]
        );
    }

    #[test]
    fn etcd_buckets_alone_give_the_same_store() {
        // What etcd's own snapshot holds: its buckets, no detcd image.
        let buckets = etcd_buckets::of(&state()).unwrap();
        let opened = open(&file_of(&buckets)).unwrap();
        assert_eq!(
            opened.store().encode_image(),
            state().store().encode_image()
        );
    }

    #[test]
    fn a_key_bucket_that_disagrees_with_the_detcd_state_wins() {
        // What etcd leaves after restoring a detcd backup and taking a
        // write: the key bucket holds one more revision than the image.
        let mut later = state();
        let put = PutRequest {
            key: b"c".to_vec(),
            value: b"etcd".to_vec(),
            ..Default::default()
        };
        later.apply(5, Some(&Request::Put(put))).unwrap().unwrap();
        let mut buckets = with_detcd_state(etcd_buckets::of(&state()).unwrap(), &state());
        let keys = buckets.iter_mut().find(|b| b.name == KEY_BUCKET).unwrap();
        keys.entries = etcd_buckets::key_entries(&later).unwrap();
        let opened = open(&file_of(&buckets)).unwrap();
        assert_eq!(opened.store().current_revision(), 5);
        assert_eq!(opened.store().encode_image(), later.store().encode_image());
    }

    #[test]
    fn a_compaction_etcd_had_only_scheduled_is_finished_on_restore() {
        // a=1 at 2, b=v at 3, a=v at 4; compaction at 3 scheduled, the
        // snapshot taken before any of it ran: the log is whole.
        let mut compacted = state();
        let mut buckets = etcd_buckets::of(&compacted).unwrap();
        let meta = buckets.iter_mut().find(|b| b.name == b"meta").unwrap();
        meta.entries.push((
            b"scheduledCompactRev".to_vec(),
            revision_key(Revision::new(3, 0)),
        ));
        meta.entries.sort();
        let opened = open(&file_of(&buckets)).unwrap();
        let compact = crate::proto::etcdserverpb::CompactionRequest {
            revision: 3,
            physical: false,
        };
        compacted
            .apply(5, Some(&Request::Compaction(compact)))
            .unwrap()
            .unwrap();
        assert_eq!(
            opened.store().encode_image(),
            compacted.store().encode_image()
        );
    }

    #[test]
    fn etcd_buckets_that_no_etcd_writes_are_refused() {
        let mut buckets = etcd_buckets::of(&state()).unwrap();
        let at = buckets.iter().position(|b| b.name == KEY_BUCKET).unwrap();
        buckets[at].entries.remove(0); // revision 2 missing: a hole in history
        assert!(open(&file_of(&buckets)).is_err());
        buckets[at].entries[0].0.truncate(5);
        assert!(open(&file_of(&buckets)).is_err());
    }

    /// The backup a view streams (pieces of revisions, the pages written
    /// out of order) is the file the whole state makes, byte for byte.
    #[test]
    fn a_streamed_backup_is_the_whole_states_file() {
        let state = state();
        let mut records = Vec::new();
        state
            .store()
            .visit_records(i64::MIN, i64::MAX, |revision, record| {
                records.push((revision, record.clone()))
            })
            .unwrap();
        let mut pieces = records
            .chunks(2)
            .map(<[_]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter();
        let (mut pages, count) = write_pages(Vec::new(), &detcd_header(&state), || {
            Ok(pieces.next().unwrap_or_default())
        })
        .unwrap();
        assert_eq!(pages.len() as u64, count * bolt::PAGE_BYTES as u64);
        let sum = checksum_of([pages.clone()]);
        pages.extend_from_slice(&sum);
        assert_eq!(pages, frame(&state).unwrap());
        let opened = open(&pages).unwrap();
        assert_eq!(opened.store().encode_image(), state.store().encode_image());
        assert_eq!(opened.applied_index(), state.applied_index());
    }

    /// Backups of detcd versions before streamed backups held the whole
    /// state image in the `detcd` bucket.
    #[test]
    fn a_backup_with_a_whole_state_image_still_restores() {
        let mut buckets = with_detcd_state(etcd_buckets::of(&state()).unwrap(), &state());
        let detcd = buckets.iter_mut().find(|b| b.name == DETCD_BUCKET).unwrap();
        detcd.entries = vec![(IMAGE_KEY.to_vec(), state().encode().unwrap())];
        let opened = open(&file_of(&buckets)).unwrap();
        assert_eq!(
            opened.store().encode_image(),
            state().store().encode_image()
        );
    }

    #[test]
    fn a_backup_older_detcd_versions_wrote_still_restores() {
        let image = state().encode().unwrap();
        let mut legacy = LEGACY_MAGIC.to_vec();
        legacy.extend_from_slice(&(image.len() as u64).to_le_bytes());
        legacy.extend_from_slice(&image);
        legacy.resize(legacy.len().div_ceil(PAGE_BYTES) * PAGE_BYTES, 0);
        let sum = checksum(&legacy);
        legacy.extend_from_slice(&sum);
        assert_eq!(status(&legacy).unwrap().revision, 4);
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
        assert_eq!(
            restore(disk, &legacy, &target("/legacy")).unwrap().revision,
            4
        );
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
